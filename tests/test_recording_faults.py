"""Fault injection with real components: the simulator's RTSP server, real ffmpeg, real SQLite and
PostgreSQL, a real full disk. Each test asserts that nothing written is lost (every file on disk
is catalogued once the fault is over, with no hole in the footage beyond the fault's own) and
that the service said what happened while it lasted (camera state, alert, /healthz, /metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select
from test_anpr_mqtt import subscriber
from test_recording import add_cameras

from cameras.recorder import unhealthy_after_s
from controlroom.app import create_app
from controlroom.context import ALERTS, SESSIONS, SUPERVISOR
from controlroom.mqtt import MqttBridge
from controlroom.settings import MqttSettings, Settings
from simulator import Simulation
from storage import holds as holds_store
from storage.alerts import Alert
from storage.audit import AuditEntry
from storage.catalogue import (
    NewSegment,
    commit_segment,
    incoming_dir,
    scan_store,
    sha256_file,
    timeline,
)
from storage.db import now_us, transaction
from storage.keys import load_or_create_keys
from storage.models import Camera, Segment

pytestmark = pytest.mark.slow
SEGMENT_S = 4
US = 1_000_000


def fault_settings(settings: Settings, **extra: object) -> Settings:
    return settings.with_overrides(**{
        "recording.segment_s": SEGMENT_S, "http.port": 0, "mqtt.enabled": False,
        "retention.free_space_floor_bytes": 0, "recording.min_free_bytes": 0, **extra,
    })


async def catalogued(app) -> list[Segment]:
    async with app[SESSIONS]() as s:
        return list((await s.execute(select(Segment).order_by(Segment.camera_id, Segment.start_us))).scalars())


async def wait_until(check, timeout_s: float, what: str, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(interval_s)
    raise AssertionError(f"not within {timeout_s} s: {what}")


async def all_catalogued(app, root: Path) -> bool:
    """Every file in a day folder has its row, and ``incoming/`` holds only the file being written."""
    rows = {s.path for s in await catalogued(app)}
    on_disk = await asyncio.to_thread(scan_store, root)
    incoming = [p for d in root.iterdir() if d.name.isdigit() for p in incoming_dir(root, int(d.name)).glob("*.mkv")]
    return on_disk <= rows and len(incoming) <= len([d for d in root.iterdir() if d.name.isdigit()])


def holes(segments: list, from_us: int, to_us: int) -> list[tuple[int, int]]:
    """Holes of over 2 s between consecutive segments that end after ``from_us`` and start before ``to_us``."""
    segs = [s for s in segments if s.end_us > from_us and s.start_us < to_us]
    return [(a.end_us, b.start_us) for a, b in zip(segs, segs[1:], strict=False) if b.start_us - a.end_us > 2 * US]


class Watch:
    """What the service says while a fault lasts: /healthz, /metrics, alerts on the hub."""

    def __init__(self, client, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers
        self.queue = client.server.app[ALERTS].subscribe()
        self.alerts: list[dict] = []
        self.healthz: list[tuple[int, dict]] = []
        self.at: list[float] = []  # monotonic time of each /healthz answer
        self.metrics: list[str] = []

    async def look(self) -> None:
        # As a monitor asks: no session cookie (the logged-in client's would need the database).
        async with aiohttp.ClientSession() as monitor, monitor.get(self.client.make_url("/healthz")) as r:
            self.healthz.append((r.status, await r.json()))
            self.at.append(time.monotonic())
        while not self.queue.empty():
            self.alerts.append(self.queue.get_nowait())

    async def scrape(self) -> str:
        r = await self.client.get("/metrics", headers=self.headers)
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain; version=")
        text = await r.text()
        self.metrics.append(text)
        return text

    def first_degraded(self, cam_id: int) -> float | None:
        for at, (status, body) in zip(self.at, self.healthz, strict=True):
            if status == 503 and any(p.get("camera_id") == cam_id for p in body.get("problems", [])):
                return at
        return None

    def degraded(self, cam_id: int) -> list[str]:
        return [p["reason"] for status, body in self.healthz if status == 503
                for p in body.get("problems", []) if p.get("camera_id") == cam_id]

    def kinds(self, cam_id: int | None = None) -> list[str]:
        return [a["kind"] for a in self.alerts if cam_id is None or a["camera_id"] == cam_id]


@contextlib.asynccontextmanager
async def recording(aiohttp_client, login, settings: Settings, sim: Simulation, n: int = 1) -> AsyncIterator[tuple]:
    ids = await add_cameras(settings, [dict(name=c.name, main_url=c.main_url, username=c.username, password=c.password)
                                       for c in sim.cameras[:n]])
    client = await aiohttp_client(create_app(settings, anpr=False))
    headers = await login(client, "administrator")
    yield client, headers, [ids[c.name] for c in sim.cameras[:n]]


async def segments_after(app, cam_id: int, after_us: int) -> int:
    return sum(1 for s in await catalogued(app) if s.camera_id == cam_id and s.start_us > after_us)


# --- SQLite locked for 40 s -----------------------------------------------------------------------


def hold_write_lock(db: Path, hold_s: float, locked: list[float]) -> None:
    """Another process's writer: BEGIN IMMEDIATE holds SQLite's write lock until ROLLBACK."""
    con = sqlite3.connect(db, isolation_level=None, timeout=60)
    try:
        con.execute("BEGIN IMMEDIATE")
        locked.append(time.monotonic())
        time.sleep(hold_s)
        con.execute("ROLLBACK")
    finally:
        con.close()


async def test_sqlite_locked_40s_is_reported_and_catalogued_after(aiohttp_client, login, settings, tmp_path,
                                                                  caplog) -> None:
    # Found: after ~40 s of a locked database the recorder stopped cataloguing for good, silently.
    caplog.set_level(logging.INFO)
    settings = fault_settings(settings)
    async with Simulation(tmp_path / "sim", cameras=1) as sim:
        async with recording(aiohttp_client, login, settings, sim) as (client, headers, (cam,)):
            app = client.server.app
            await wait_until(lambda: segments_after(app, cam, 0), 60, "a first segment")
            watch = Watch(client, headers)
            # The MQTT bridge (as the service runs it) on the loopback Mosquitto, under a topic of our own.
            prefix = f"controlroom-test-{uuid.uuid4().hex[:8]}"
            bridge = MqttBridge(app[ALERTS], MqttSettings(topic_prefix=prefix))
            bridge_task = asyncio.create_task(bridge.run())
            async with subscriber(1883, f"{prefix}/alerts/#") as mqtt_messages:
                await asyncio.wait_for(bridge.connected.wait(), 10)
                locked: list[float] = []
                locker = asyncio.create_task(asyncio.to_thread(hold_write_lock, settings.data_dir / "controlroom.db", 40,
                                                               locked))
                lock_from_us, lock_from = now_us(), time.monotonic()
                while not locker.done():
                    await watch.look()
                    await asyncio.sleep(1)
                mqtt_during_lock = [t for t, _ in mqtt_messages]
                await locker
                lock_to_us = now_us()
                bridge_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await bridge_task
            await wait_until(lambda: all_catalogued(app, settings.storage_root), 60, "the backlog catalogued")
            await wait_until(lambda: segments_after(app, cam, lock_to_us + SEGMENT_S * US), 30, "new segments after")
            await asyncio.sleep(2)  # the next health check sees it recovered
            await watch.look()
            text = await watch.scrape()
            async with app[SESSIONS]() as s:
                row = await s.get(Camera, cam)
                stored = list((await s.execute(select(Alert.kind).where(Alert.camera_id == cam))).scalars())
            segs = [s for s in await catalogued(app) if s.camera_id == cam]
            rec = app[SUPERVISOR].recorders[cam]

    # Said what happened while it lasted: /healthz degraded with the reason, an alert at once.
    reasons = watch.degraded(cam)
    assert reasons, watch.healthz
    assert any("no segment catalogued" in r and "locked" in r for r in reasons), reasons
    # ... within the health rule's silence of the last catalogued segment, plus a segment, the
    # 1 s check and our 1 s poll.
    told_after_s = watch.first_degraded(cam) - lock_from
    assert told_after_s <= unhealthy_after_s(SEGMENT_S) + SEGMENT_S + 3, told_after_s
    assert "recording_stopped" in watch.kinds(cam), watch.alerts
    assert "recording_resumed" in watch.kinds(cam)
    assert f"{prefix}/alerts/recording_stopped" in mqtt_during_lock  # out on MQTT while the database was locked
    assert {"recording_stopped", "recording_resumed"} <= set(stored)  # stored once the database was back
    assert f"camera {cam}: cannot catalogue" in caplog.text
    # Repaired without a restart: recording, healthy, everything catalogued, no hole in the footage.
    assert watch.healthz[-1][0] == 200 and row.state == "recording", (watch.healthz[-1], row.state)
    assert holes(segs, lock_from_us - 10 * US, lock_to_us + 5 * US) == []
    assert sum(1 for s in segs if lock_from_us <= s.start_us < lock_to_us) >= 40 // SEGMENT_S - 2
    assert rec.catalogue_error == ""
    assert f'controlroom_camera_recording_healthy{{camera="{sim.cameras[0].name}",camera_id="{cam}"}} 1.0' in text
    assert f'controlroom_camera_segments_total{{camera="{sim.cameras[0].name}",camera_id="{cam}"}} {float(len(segs))}' in text


# --- PostgreSQL restarted mid-recording -----------------------------------------------------------


PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A PostgreSQL of the test's own on a free port (never the shared one on 5432)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="controlroom-pg-"))  # tmp_path is not readable by postgres
        shutil.chown(self.dir, "postgres")

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-o",
                          f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def crash(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.crash()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def private_pg(unused_tcp_port_factory) -> Iterator[PrivatePostgres]:
    if os.geteuid() != 0 or not (PG_BIN / "initdb").exists():
        pytest.skip("a private PostgreSQL needs root (runuser) and PostgreSQL 15's binaries")
    pg = PrivatePostgres(unused_tcp_port_factory())
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.remove()


@pytest.mark.postgres
async def test_postgresql_restarted_mid_recording(private_pg, aiohttp_client, login, settings, tmp_path) -> None:
    settings = fault_settings(settings, database_url=private_pg.url)
    async with Simulation(tmp_path / "sim", cameras=1) as sim:
        async with recording(aiohttp_client, login, settings, sim) as (client, headers, (cam,)):
            app = client.server.app
            await wait_until(lambda: segments_after(app, cam, 0), 60, "a first segment")
            watch = Watch(client, headers)
            down_from_us = now_us()
            await asyncio.to_thread(private_pg.crash)
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                await watch.look()
                await asyncio.sleep(1)
            await asyncio.to_thread(private_pg.start)
            down_to_us = now_us()
            await wait_until(lambda: all_catalogued(app, settings.storage_root), 60, "the backlog catalogued")
            await wait_until(lambda: segments_after(app, cam, down_to_us + SEGMENT_S * US), 30, "new segments after")
            await asyncio.sleep(2)
            await watch.look()
            segs = [s for s in await catalogued(app) if s.camera_id == cam]
            async with app[SESSIONS]() as s:
                row = await s.get(Camera, cam)

    reasons = watch.degraded(cam)
    assert any("no segment catalogued" in r for r in reasons), watch.healthz
    assert any(p.get("component") == "database" for _, body in watch.healthz for p in body.get("problems", []))
    assert "recording_stopped" in watch.kinds(cam) and "recording_resumed" in watch.kinds(cam), watch.alerts
    assert watch.healthz[-1][0] == 200 and row.state == "recording", (watch.healthz[-1], row.state)
    assert holes(segs, down_from_us - 10 * US, down_to_us + 5 * US) == []
    assert sum(1 for s in segs if down_from_us <= s.start_us < down_to_us) >= 25 // SEGMENT_S - 2


# --- the storage root gone for 30 s -------------------------------------------------------------------


async def test_storage_root_gone_recording_goes_to_the_local_spool_and_is_catalogued_after(
    aiohttp_client, login, settings, tmp_path
) -> None:
    """The storage root disappears (renamed away, a file in its place: every path under it fails
    with ENOTDIR, as a lost share does) for 30 s: ffmpeg writes to the node's local spool (on
    /dev/shm here: another filesystem, as a local disk is to a NAS), the camera shows degraded
    with the reason, and when the storage is back the recorder goes back to it and the spooled
    segments are moved into the store and catalogued; the holes are ffmpeg's two restarts."""
    store = tmp_path / "store"
    store.mkdir()
    spool = Path(tempfile.mkdtemp(prefix="cr-spool-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    settings = fault_settings(settings, **{"recording.storage_root": str(store), "recording.spool_dir": str(spool)})
    spooled: set[str] = set()
    try:
        async with Simulation(tmp_path / "sim", cameras=1) as sim:
            async with recording(aiohttp_client, login, settings, sim) as (client, headers, (cam,)):
                app = client.server.app
                await wait_until(lambda: segments_after(app, cam, 0), 60, "a first segment")
                rec = app[SUPERVISOR].recorders[cam]
                watch = Watch(client, headers)
                away = tmp_path / "store.away"
                down_from_us = now_us()
                os.rename(store, away)
                store.write_text("the recording storage is gone")
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    await watch.look()
                    spooled |= {p.name for p in spool.rglob("*.mkv")}
                    await asyncio.sleep(1)
                store.unlink()
                os.rename(away, store)
                down_to_us = now_us()

                async def settled() -> bool:
                    return not rec.spooling and rec.pending == 0 and not list(spool.rglob("*.mkv"))

                await wait_until(settled, 60, "back on the storage, the spool emptied")
                await wait_until(lambda: all_catalogued(app, store), 60, "everything catalogued")
                await wait_until(lambda: segments_after(app, cam, down_to_us + SEGMENT_S * US), 30, "new segments after")
                await asyncio.sleep(2)
                await watch.look()
                text = await watch.scrape()
                segs = [s for s in await catalogued(app) if s.camera_id == cam]
                async with app[SESSIONS]() as s:
                    tl = await timeline(s, cam, 0, now_us() + 60 * US)
                    row = await s.get(Camera, cam)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    # One machine fences nothing and catalogues nothing late; the counters are there (a cluster's).
    assert "controlroom_segments_fenced_total 0.0" in text and "controlroom_segments_catalogued_late_total 0.0" in text

    reasons = watch.degraded(cam)
    during = [s for s in segs if down_from_us <= s.start_us < down_to_us]
    found = holes(segs, down_from_us - 10 * US, down_to_us + 10 * US)
    print(f"\nstorage root away {(down_to_us - down_from_us) / US:.0f} s: {len(spooled)} segments spooled, {len(during)} "
          f"catalogued from the outage, holes {[round((b - a) / US, 1) for a, b in found]} s")
    assert any("shared storage unavailable" in r and "local spool" in r for r in reasons), watch.healthz
    assert "recording_stopped" in watch.kinds(cam) and "recording_resumed" in watch.kinds(cam), watch.alerts
    assert watch.healthz[-1][0] == 200 and row.state == "recording", (watch.healthz[-1], row.state)
    assert len(spooled) >= 30 // SEGMENT_S - 3, spooled
    assert len(during) >= 30 // SEGMENT_S - 2, (len(during), spooled)
    # Holes: ffmpeg's exit at the loss (its next segment could not be opened) and its restart on
    # the storage when it was back; each a few seconds and each a gap.
    assert len(found) <= 2 and all(b - a < 8 * US for a, b in found), found
    for gap in tl.gaps:
        end = gap.end_us if gap.end_us is not None else now_us()
        assert not [s for s in tl.segments if s.start_us < end and s.end_us > gap.start_us], gap
    for a, b in found:
        assert any(g.start_us <= a + US and (g.end_us or now_us()) >= b - US for g in tl.gaps), ((a, b), tl.gaps)
    for seg in segs:
        assert sha256_file(store / seg.path) == (seg.sha256, seg.bytes), seg.path


# --- a camera flapping every few seconds ------------------------------------------------------------


async def test_flapping_camera_loses_nothing_and_gaps_never_overlap_footage(aiohttp_client, login, settings,
                                                                            tmp_path) -> None:
    settings = fault_settings(settings)
    async with Simulation(tmp_path / "sim", cameras=1) as sim:
        async with recording(aiohttp_client, login, settings, sim) as (client, headers, (cam,)):
            app = client.server.app
            await wait_until(lambda: segments_after(app, cam, 0), 60, "a first segment")
            watch = Watch(client, headers)
            for _ in range(5):
                await sim.set_off_air(sim.cameras[0].name, True)
                await asyncio.sleep(3)
                await watch.look()
                await sim.set_off_air(sim.cameras[0].name, False)
                await asyncio.sleep(5)
                await watch.look()
            await wait_until(lambda: all_catalogued(app, settings.storage_root), 60, "everything catalogued")
            text = await watch.scrape()
            async with app[SESSIONS]() as s:
                tl = await timeline(s, cam, 0, now_us() + 60 * US)
            rec = app[SUPERVISOR].recorders[cam]

    assert "camera_offline" in watch.kinds(cam) or rec.restarts >= 3
    assert rec.restarts >= 3
    reconnects = [line for line in text.splitlines() if line.startswith("controlroom_camera_reconnects_total{")]
    assert len(reconnects) == 1 and f'camera_id="{cam}"' in reconnects[0], reconnects
    assert 3 <= float(reconnects[0].rsplit(" ", 1)[1]) <= rec.restarts  # the simulator's stop may add one
    # Found: gaps overstated missing footage; a gap never overlaps a catalogued segment.
    assert tl.gaps, "the outages are gaps"
    for gap in tl.gaps:
        end = gap.end_us if gap.end_us is not None else now_us()
        overlapping = [s for s in tl.segments if s.start_us < end and s.end_us > gap.start_us]
        assert not overlapping, (gap, overlapping)


# --- a full disk --------------------------------------------------------------------------------------


MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MiB tmpfs to fill (needs root; skipped with a reason otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk needs a tmpfs mount, which needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m,mode=0777", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> OSError:
    """Write until the disk refuses; return the real ENOSPC it raised (a recorder writing to the
    same disk may have filled it before the first byte: CI saw
    ENOSPC from the open itself: that is the disk refusing too)."""
    try:
        with path.open("wb") as fh:
            while True:
                fh.write(b"\0" * MIB)
                fh.flush()
    except OSError as exc:
        return exc
    raise AssertionError("the disk never filled")


async def test_full_disk_purges_oldest_unheld_footage_and_recording_resumes(
        aiohttp_client, login, settings, tmp_path, small_disk, caplog) -> None:
    # Found: on a full disk the recorder restarted every few seconds leaving empty files, no
    # alert, /healthz ok, retention waited for its next sweep.
    caplog.set_level(logging.INFO)
    settings = fault_settings(settings, **{
        "recording.storage_root": str(small_disk), "retention.free_space_floor_bytes": 10 * MIB,
        "recording.min_free_bytes": 3 * MIB, "retention.sweep_interval_s": 3600})
    async with Simulation(tmp_path / "sim", cameras=1) as sim:
        ids = await add_cameras(settings, [dict(name=c.name, main_url=c.main_url, username=c.username,
                                                password=c.password) for c in sim.cameras])
        cam = ids[sim.cameras[0].name]
        # Six old segments of 4 MiB (two days old: not expired), the oldest under a hold.
        from storage.db import make_engine, make_sessionmaker
        engine = make_engine(settings.db_url)
        sessions = make_sessionmaker(engine, audit_key=load_or_create_keys(settings.key_file).audit_mac_key)
        t0 = now_us() - 2 * 86_400 * US
        old = []
        for i in range(6):
            tmp = incoming_dir(small_disk, cam) / f"old{i}.mkv"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(os.urandom(4 * MIB))
            old.append(await commit_segment(sessions, small_disk, tmp,
                                            NewSegment(cam, t0 + i * 30 * US, t0 + (i + 1) * 30 * US)))
        async with transaction(sessions) as s:
            await holds_store.add_hold(s, reason="incident 7", owner="test", review_us=now_us() + 86_400 * US,
                                       windows=[(cam, old[0].start_us, old[0].end_us)])
        await engine.dispose()

        client = await aiohttp_client(create_app(settings, anpr=False))
        headers = await login(client, "administrator")
        app = client.server.app
        await wait_until(lambda: segments_after(app, cam, t0 + 10 * 30 * US), 60, "a first new segment")
        watch = Watch(client, headers)
        filler = small_disk / "filler"
        enospc = fill(filler)
        filled_us = now_us()

        async def resumed() -> bool:
            await watch.look()
            return await segments_after(app, cam, filled_us + SEGMENT_S * US) >= 2

        await wait_until(resumed, 60, "recording resumed after the emergency purge", interval_s=1)
        text = await watch.scrape()
        segs = await catalogued(app)
        async with app[SESSIONS]() as s:
            purges = list((await s.execute(select(AuditEntry).where(AuditEntry.action == "retention.delete"))).scalars())
            stored = list((await s.execute(select(Alert.kind))).scalars())
        damaged = list((small_disk / str(cam) / "damaged").glob("*"))
        empty = [p for p in small_disk.glob("*/20*/*.mkv") if p.stat().st_size == 0]
        assert await all_catalogued(app, small_disk)

    from controlroom.errors import message_for, status_for
    assert status_for(enospc) == 507 and "full" in message_for(enospc)
    kept = {s.path for s in segs}
    # Held footage is never touched; the oldest unheld went first, only down to the floor.
    assert old[0].path in kept and (small_disk / old[0].path).exists()
    assert old[1].path not in kept and not (small_disk / old[1].path).exists()
    assert old[-1].path in kept, "purged beyond the floor"
    # The purge is audited like retention, by the emergency purge, with the floor as its reason.
    assert any(e.actor == "system:emergency-purge" and '"below_floor":true' in e.details.replace(" ", "")
               for e in purges), [(e.actor, e.details) for e in purges]
    # Told: an alert at once (and stored), /healthz degraded for the disk, metrics of the disk.
    assert "disk_floor" in watch.kinds() and "disk_floor" in stored, watch.alerts
    assert any(p.get("component") == "disk" for _, body in watch.healthz for p in body.get("problems", []))
    assert "controlroom_disk_free_bytes " in text and "controlroom_disk_floor_bytes 1.048576e+07" in text
    # No restart loop leaving empty or unreadable files behind.
    assert damaged == [] and empty == []


# --- kill -9 mid-retention ------------------------------------------------------------------------------

KILLABLE_RETENTION = r"""
import asyncio, sys, time
from pathlib import Path
import storage.retention as retention
from storage.db import make_engine, make_sessionmaker
from storage.keys import load_or_create_keys

data = Path(sys.argv[1])
real_unlink = retention.unlink_segments
def slow_unlink(root, paths):
    real_unlink(root, paths[: len(paths) // 2])
    print("unlinked half", flush=True)
    time.sleep(30)  # killed here: rows marked garbage, half the files gone, no receipt, no audit
retention.unlink_segments = slow_unlink

async def main():
    engine = make_engine(f"sqlite+aiosqlite:///{data / 'controlroom.db'}")
    key = load_or_create_keys(data / "secret.key").audit_mac_key
    await retention.run_retention(make_sessionmaker(engine, audit_key=key), data / "recordings", default_days=31,
                                  floor_bytes=0)
asyncio.run(main())
"""


async def test_kill9_mid_retention_is_finished_and_audited_at_start(settings, tmp_path) -> None:
    import sys

    from storage.catalogue import reconcile
    from storage.db import make_engine, make_sessionmaker
    from storage.migrate import upgrade

    root = settings.storage_root
    engine = make_engine(settings.db_url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine, audit_key=load_or_create_keys(settings.key_file).audit_mac_key)
    ids = await add_cameras(settings, [dict(name="old camera", main_url="rtsp://127.0.0.1:9/x")])
    cam = ids["old camera"]
    t0 = now_us() - 40 * 86_400 * US  # expired
    for i in range(8):
        tmp = incoming_dir(root, cam) / f"{i}.mkv"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(os.urandom(1000))
        await commit_segment(sessions, root, tmp, NewSegment(cam, t0 + i * 30 * US, t0 + (i + 1) * 30 * US))
    young = incoming_dir(root, cam) / "young.mkv"
    young.write_bytes(b"young")
    kept = await commit_segment(sessions, root, young, NewSegment(cam, now_us() - 60 * US, now_us() - 30 * US))

    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", KILLABLE_RETENTION, str(settings.data_dir),
                                                stdout=asyncio.subprocess.PIPE, env={**os.environ})
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"unlinked half\n"
    finally:
        proc.kill()
        await proc.wait()
    async with sessions() as s:
        garbage = list((await s.execute(select(Segment).where(Segment.state == "garbage"))).scalars())
    assert len(garbage) == 8  # the kill landed between "mark garbage" and "drop the rows"

    report = await reconcile(sessions, root)  # what the next start does
    async with sessions() as s:
        rows = list((await s.execute(select(Segment))).scalars())
        entries = list((await s.execute(select(AuditEntry).where(AuditEntry.action == "retention.delete"))).scalars())
    await engine.dispose()
    assert report.garbage_finished == 8 and report.missing == []
    assert [r.path for r in rows] == [kept.path] and (root / kept.path).exists()
    assert await asyncio.to_thread(scan_store, root) == {kept.path}
    # Footage is never deleted unaudited, even when the run that deleted it died first.
    assert len(entries) == 1 and entries[0].actor == "system:reconcile" and '"segments":8' in entries[0].details


async def test_api_on_a_full_disk_answers_507_not_500(aiohttp_client, login, settings, small_disk) -> None:
    # Found: with the disk full the recordings API answered 500 "internal error".
    from controlroom.settings import load_settings

    settings = load_settings(small_disk / "data", environ={}).with_overrides(**{"http.port": 0})
    (small_disk / "data").mkdir()
    client = await aiohttp_client(create_app(settings, record=False))
    headers = await login(client, "supervisor")
    ids = await add_cameras(settings, [dict(name="cam", main_url="rtsp://127.0.0.1:9/x")])
    fill(small_disk / "filler")
    url = f"/api/v1/cameras/{ids['cam']}/recordings?from=2026-12-01T00:00:00Z&to=2026-12-01T01:00:00Z"
    r = await client.get(url, headers=headers)
    body = await r.json()
    assert r.status in (507, 503) and "full" in body["error"], (r.status, body)
    (small_disk / "filler").unlink(missing_ok=True)
    r = await client.get(url, headers=headers)
    assert r.status == 200, await r.text()
