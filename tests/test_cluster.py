"""Recorder nodes on one PostgreSQL and one shared storage folder, as real processes (issue 16).

Three ``controlroom serve`` processes on loopback record thirty simulated cameras, each node up to
its capacity (node-a 15, node-b 15, node-c 30). node-a and node-b fill up first; node-c, added
later, takes its share by capacity (seven from each, a few a heartbeat, each handed over after
the segment in progress).
``kill -9`` of node-a: its cameras must record again on another node within 30 s (a new
segment catalogued for each), with the production heartbeat and lease settings (5 s, 15 s); a
clean stop of node-b hands its cameras over at once. No segment is catalogued twice, none is
fenced, and the surviving node's API answers and names the lost node. Skipped without the
PostgreSQL server on loopback.

The cameras record the simulator's low-resolution stream (640x360, about 0.6 Mb/s, as the issue's
scale figure asks) rather than its 1080p one (about 4 Mb/s): what is tested is the coordination,
and thirty 1080p streams through the simulator, three nodes' recorders and their live outputs
take most of the two cores, starving the module the other test worker runs meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select
from test_recording import add_cameras

from controlroom.settings import load_settings
from simulator import Simulation
from storage.catalogue import sha256_file, timeline
from storage.db import make_engine, make_sessionmaker, now_us
from storage.models import Segment
from storage.nodes import CameraLease

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
SEGMENT_S = 2
CAMERAS = 30
FAILOVER_GOAL_S = 30.0
CAPACITY = {"node-a": 15, "node-b": 15, "node-c": 30}
# node-c's share when it joins: each node's share is its capacity's part of the cameras, rounded
# up (storage.nodes.plan_balance): node-a and node-b keep ceil(30 * 15 / 60) = 8 each and give 7,
# node-c holds the other 14.
KEPT, JOINED = 8, 14


@pytest.fixture
def pg_available() -> None:
    async def probe() -> None:
        conn = await asyncpg.connect(os.environ.get("CONTROLROOM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
                                     timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"no PostgreSQL on loopback: {exc}")


class Node:
    def __init__(self, tmp: Path, node_id: str, pg_url: str, store: Path, port: int, key: Path | None, *,
                 roles: str = "recorder,api,jobs", anpr_capacity: int = 0, settings: str = "") -> None:
        self.id, self.port, self.roles = node_id, port, roles
        self.data_dir = tmp / node_id
        self.data_dir.mkdir()
        if key is not None:  # every node decrypts the camera passwords with the same key
            shutil.copy(key, self.data_dir / "secret.key")
        (self.data_dir / "settings.toml").write_text(
            f'database_url = "{pg_url}"\n'
            f'[recording]\nstorage_root = "{store}"\nsegment_s = {SEGMENT_S}\nstall_timeout_s = 8\n'
            f'[cluster]\nenabled = true\nnode_id = "{node_id}"\ncapacity = {CAPACITY.get(node_id, 0)}\n'
            'relay_port = 0\n'  # every node on this machine: the live relay on a free port
            f'anpr_capacity = {anpr_capacity}\n{settings}\n')
        self.settings = load_settings(self.data_dir, environ={})
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlroom.cli", "--data-dir", str(self.data_dir), "serve", "--port",
             str(self.port), "--roles", self.roles],
            stdout=subprocess.DEVNULL, stderr=open(self.data_dir / "serve.log", "ab"))

    def healthz(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


def stop_nodes(*nodes) -> None:
    """SIGTERM to the node processes still running, then wait for each (killed after 40 s)."""
    for node in nodes:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
    for node in nodes:
        if node.proc is not None:
            try:
                node.proc.wait(40)
            except subprocess.TimeoutExpired:
                node.proc.kill()


async def until(what: str, check, timeout_s: float, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(every_s)


async def test_kill9_of_a_recorder_node_its_cameras_record_elsewhere_within_30_s(
    pg_available, pg_url: str, tmp_path: Path, unused_tcp_port_factory
) -> None:
    store = tmp_path / "shared-store"
    store.mkdir()
    a = Node(tmp_path, "node-a", pg_url, store, unused_tcp_port_factory(), None)
    async with Simulation(tmp_path / "sim", cameras=CAMERAS) as sim:
        ids = await add_cameras(a.settings, [dict(name=c.name, main_url=c.sub_url, username=c.username,
                                                  password=c.password) for c in sim.cameras])
        b = Node(tmp_path, "node-b", pg_url, store, unused_tcp_port_factory(), a.settings.key_file)
        c = Node(tmp_path, "node-c", pg_url, store, unused_tcp_port_factory(), a.settings.key_file)
        engine = make_engine(pg_url)
        sessions = make_sessionmaker(engine)

        async def leases() -> dict[int, tuple[str, int]]:
            async with sessions() as s:
                return {r.camera_id: (r.node_id, r.generation) for r in (await s.execute(select(CameraLease))).scalars()}

        async def new_segments(cams: list[int], after_us: int) -> dict[int, int]:
            """camera -> start of its first segment that began after ``after_us``."""
            async with sessions() as s:
                rows = (await s.execute(select(Segment.camera_id, Segment.start_us)
                                        .where(Segment.camera_id.in_(cams), Segment.start_us > after_us))).all()
            first: dict[int, int] = {}
            for cam, start in rows:
                first[cam] = min(start, first.get(cam, start))
            return first

        nodes = [a, b, c]
        try:
            a.start()  # one at a time, so that node-a and node-b fill up before node-c joins
            await until("node-a claims 15 cameras", lambda: _count(leases, "node-a", 15), 60)
            b.start()
            await until("node-b claims 15 cameras", lambda: _count(leases, "node-b", 15), 60)
            started_us = now_us()
            await until("every camera records", lambda: _all(new_segments(list(ids.values()), 0), len(ids)), 120)
            c.start()
            # node-c joins: it asks node-a and node-b for its share by capacity, at most five
            # cameras a heartbeat, and nobody gives below its share (KEPT, JOINED above).
            joined_us = now_us()
            await until("node-c takes its share", lambda: _count(leases, "node-c", JOINED), 90)
            held = await leases()
            shared = sorted(cam for cam, (node, _) in held.items() if node == "node-c")
            assert all(held[cam][1] == 2 for cam in shared), held
            assert sorted(node for node, _ in held.values()) == (["node-a"] * KEPT + ["node-b"] * KEPT
                                                                    + ["node-c"] * JOINED)
            await until("node-c records its share", lambda: _all(new_segments(shared, joined_us), JOINED), 60)
            settled_us = now_us()
            await until("every camera records", lambda: _all(new_segments(list(ids.values()), settled_us), len(ids)),
                        60)
            before = await leases()
            victims = sorted(cam for cam, (node, _) in before.items() if node == "node-a")
            assert len(victims) == KEPT
            # Kill mid-segment, once node-a's cameras have segments in progress.
            await asyncio.sleep(SEGMENT_S / 2)
            os.kill(a.proc.pid, signal.SIGKILL)
            killed_us = now_us()
            a.proc.wait(10)
            first = await until("node-a's cameras record again", lambda: _all(new_segments(victims, killed_us), KEPT),
                                90)
            failover_s = {cam: (start - killed_us) / 1e6 for cam, start in first.items()}
            print("\nfailover after kill -9 (first new footage, per camera): "
                  + ", ".join(f"camera {cam}: {s:.1f} s" for cam, s in sorted(failover_s.items()))
                  + f"; max {max(failover_s.values()):.1f} s")
            held = await leases()
            assert {held[cam][0] for cam in victims} <= {"node-b", "node-c"}, held
            assert all(held[cam][1] > before[cam][1] for cam in victims), "a takeover is a new generation"
            assert max(failover_s.values()) <= FAILOVER_GOAL_S, failover_s

            # The surviving nodes' API answers, says which node it is and that node-a is lost.
            status, body = await asyncio.to_thread(b.healthz)
            assert status == 503 and body["node"]["id"] == "node-b", body
            assert body["node"]["nodes"]["node-a"]["state"] == "lost", body
            assert any(p.get("node_id") == "node-a" for p in body["problems"]), body
            listed = subprocess.run([sys.executable, "-m", "controlroom.cli", "--data-dir", str(c.data_dir),
                                     "nodes", "list", "--json"], capture_output=True, text=True, check=True)
            states = {n["id"]: (n["state"], n["cameras"]) for n in json.loads(listed.stdout)}
            assert states["node-a"][0] == "lost" and states["node-c"][0] == "running", states
            assert states["node-b"][1] + states["node-c"][1] == CAMERAS, states

            # A clean stop hands over at once: node-b's cameras go to node-c (room for all 30).
            moved = sorted(cam for cam, (node, _) in held.items() if node == "node-b")
            b.proc.send_signal(signal.SIGTERM)
            assert b.proc.wait(30) == 0
            stopped_us = now_us()
            first = await until("node-b's cameras record again",
                                lambda: _all(new_segments(moved, stopped_us), len(moved)), 60)
            handover_s = max((start - stopped_us) / 1e6 for start in first.values())
            print(f"hand-over after a clean stop: {handover_s:.1f} s (max over node-b's cameras)")
            assert handover_s <= 5 + 2 * SEGMENT_S + 5, handover_s  # one heartbeat, ffmpeg's start
        finally:
            stop_nodes(*nodes)
        assert c.proc.returncode == 0

        async with sessions() as s:
            rows = (await s.execute(select(Segment).where(Segment.start_us > started_us - 60_000_000))).scalars().all()
            # The failover's hole in each of node-a's cameras is catalogued as a gap: playback and
            # an export of that span say "not recorded" rather than joining the footage around it.
            unexplained = {}
            for cam in victims:
                tl = await timeline(s, cam, killed_us - 10_000_000, stopped_us)
                for prev, nxt in zip(tl.segments, tl.segments[1:], strict=False):
                    if nxt.start_us - prev.end_us > 1_500_000 and not any(
                            g.start_us <= prev.end_us + 1_000_000 and g.end_us is not None
                            and g.end_us >= nxt.start_us - 1_000_000 for g in tl.gaps):
                        unexplained[cam] = ((nxt.start_us - prev.end_us) / 1e6, [tuple(g) for g in tl.gaps])
                assert any(g.start_us <= killed_us + 1_000_000 for g in tl.gaps), (cam, tl.gaps)
        await engine.dispose()
        assert not unexplained, f"holes in node-a's cameras' footage that no gap explains: {unexplained}"

    # No segment catalogued twice: no two rows of one camera overlap by more than a second (two
    # nodes recording one camera would overlap by whole segments; within one recorder run the
    # first segment may be stamped up to one reporting delay late, recording-store.md, "Times of
    # a segment", measured 0.19 s here), no file twice, and every row's file is in the shared
    # store, intact.
    by_cam: dict[int, list[Segment]] = {}
    for row in rows:
        by_cam.setdefault(row.camera_id, []).append(row)
    for cam, segs in by_cam.items():
        segs.sort(key=lambda r: r.start_us)
        for prev, nxt in zip(segs, segs[1:], strict=False):
            assert nxt.start_us >= prev.end_us - 1_000_000, (cam, prev.path, prev.state, nxt.path, nxt.state)
    assert len({r.path for r in rows}) == len(rows) and len({r.sha256 for r in rows}) == len(rows)
    for row in rows:
        assert sha256_file(store / row.path) == (row.sha256, row.bytes), row.path
    assert not list(store.glob("*/fenced/*")), "a segment was fenced: two nodes recorded one camera"


async def _count(leases, node: str, n: int) -> bool:
    return sum(1 for holder, _ in (await leases()).values() if holder == node) == n


async def _all(pending, n: int):
    found = await pending
    return found if len(found) == n else None


async def _answers(node: Node) -> bool:
    try:
        await asyncio.to_thread(node.healthz)
        return True
    except OSError:
        return False
