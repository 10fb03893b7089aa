"""ANPR cameras leased by anpr nodes, as real processes on PostgreSQL (issue 16, item 2).

Two ``controlroom serve --roles anpr,api`` processes read the simulator's two ANPR cameras (real
RTSP, real plate reader), each up to its ANPR capacity of 2. node-a starts alone and reads both;
node-b joins and takes its share (one camera, handed over by node-a after its tracked vehicles
are stored). ``kill -9`` of node-a: its camera is read again by node-b, every vehicle passing
from 30 s after the kill on is read. No vehicle is read twice across the nodes, before, at the
hand-over or after the kill (the fence: a read is stored only under the camera's current anpr
lease). Ground truth: the simulator's schedule. Skipped without PostgreSQL on loopback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from test_cluster import Node, pg_available, until  # noqa: F401 - pg_available is a fixture

from simulator import Simulation, anpr_schedule
from storage.anpr.reads import AnprRead
from storage.db import make_engine, make_sessionmaker, now_us, transaction
from storage.inventory import CameraSpec, add_camera
from storage.keys import load_or_create_keys
from storage.migrate import upgrade
from storage.nodes import CameraLease

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.usefixtures("pg_available")]
S = 1_000_000
TAKEOVER_GOAL_S = 30.0
ROI = [0.2, 0.1, 0.6, 0.9]  # as tests/test_anpr_e2e.py: below the caption, across the lane


async def test_kill9_of_an_anpr_node_its_camera_is_read_elsewhere_and_no_vehicle_twice(
    pg_url: str, tmp_path: Path, unused_tcp_port_factory
) -> None:
    store = tmp_path / "shared-store"
    store.mkdir()
    prefix = f"controlroom-test-{uuid.uuid4().hex[:8]}"
    extra = (f'[anpr]\nimage_root = "{tmp_path / "anpr-images"}"\nmax_parallel_reads = 1\n'
             f'[mqtt]\ntopic_prefix = "{prefix}"\n')
    a = Node(tmp_path, "node-a", pg_url, store, unused_tcp_port_factory(), None, roles="anpr,api",
             anpr_capacity=2, settings=extra)
    engine = make_engine(pg_url)
    sessions = make_sessionmaker(engine)
    async with Simulation(tmp_path / "sim", cameras=0, anpr=2) as sim:
        await upgrade(engine)
        keys = load_or_create_keys(a.settings.key_file)
        names: dict[int, str] = {}
        async with transaction(sessions) as s:
            for cam in sim.cameras:
                spec = {**cam.spec(), "recording": False, "extra": {"anpr_roi": ROI, "anpr_stream": "sub"}}
                names[(await add_camera(s, CameraSpec(**spec), keys)).id] = cam.name
        b = Node(tmp_path, "node-b", pg_url, store, unused_tcp_port_factory(), a.settings.key_file,
                 roles="anpr,api", anpr_capacity=2, settings=extra)

        async def leases() -> dict[int, tuple[str, int]]:
            async with sessions() as s:
                rows = (await s.execute(select(CameraLease).where(CameraLease.role == "anpr"))).scalars()
                return {r.camera_id: (r.node_id, r.generation) for r in rows}

        async def held_by(node: str, n: int):
            found = [cam for cam, (holder, _) in (await leases()).items() if holder == node]
            return found if len(found) == n else None

        async def reads_after(cam: int, after_us: int) -> list[AnprRead]:
            async with sessions() as s:
                return list((await s.execute(select(AnprRead).where(AnprRead.camera_id == cam,
                                                                    AnprRead.stored_us > after_us))).scalars())

        started_us = now_us()
        try:
            a.start()
            await until("node-a leases both ANPR cameras", lambda: held_by("node-a", 2), 60)
            for cam in names:
                await until(f"node-a reads camera {cam}", lambda cam=cam: reads_after(cam, 0), 90)
            b.start()
            # node-b joins: its share of 2 cameras by capacity is 1, asked of node-a, which stops
            # that reader (storing what it tracked) and hands the lease over.
            (moved,) = await until("node-b takes its share", lambda: held_by("node-b", 1), 60)
            moved_us = now_us()
            assert (await leases())[moved][1] == 2, "a hand-over is a new generation"
            await until("node-b reads its camera", lambda: reads_after(moved, moved_us), 90)
            (victim,) = await held_by("node-a", 1)
            before = (await leases())[victim]
            os.kill(a.proc.pid, signal.SIGKILL)
            killed_us = now_us()
            a.proc.wait(10)
            await until("node-b holds node-a's camera", lambda: held_by("node-b", 2), TAKEOVER_GOAL_S)
            taken_s = (now_us() - killed_us) / S
            assert (await leases())[victim] == ("node-b", before[1] + 1)
            first = await until("node-a's camera is read again", lambda: reads_after(victim, killed_us), 90)
            print(f"\nANPR takeover after kill -9: lease in {taken_s:.1f} s, first read stored "
                  f"{(min(r.stored_us for r in first) - killed_us) / S:.1f} s after the kill")
            # Every vehicle passing the victim camera from 30 s after the kill is read.
            watch_from, watch_to = killed_us + int(TAKEOVER_GOAL_S * S), killed_us + int((TAKEOVER_GOAL_S + 25) * S)
            await asyncio.sleep(max(0.0, (watch_to - now_us()) / S + 6))  # + the reader's lag behind the stream
            status, body = await asyncio.to_thread(b.healthz)
            assert body["node"]["anpr_cameras"] == sorted(names) and body["node"]["reads_fenced"] == 0, body
        finally:
            for node in (a, b):
                if node.proc is not None and node.proc.poll() is None:
                    node.proc.send_signal(signal.SIGTERM)
            for node in (a, b):
                if node.proc is not None:
                    try:
                        node.proc.wait(40)
                    except subprocess.TimeoutExpired:
                        node.proc.kill()
        assert b.proc.returncode == 0
        async with sessions() as s:
            reads = list((await s.execute(select(AnprRead).where(AnprRead.read_us > started_us))).scalars())
        await engine.dispose()

    expected = anpr_schedule.passes(names[victim], watch_from, watch_to)
    assert len(expected) >= 2, expected
    for p in expected:
        assert any(r.camera_id == victim and abs(r.read_us - p.time_us) <= 1.5 * S for r in reads), \
            f"{p.plate} passing camera {victim} at {p.time_us} was not read after the takeover"
    # No vehicle read twice: a vehicle is on screen for 2 s and the next passes 6 s or more later,
    # so two reads of one camera within 3 s are one vehicle read twice (two nodes reading it).
    by_cam: dict[int, list[int]] = {}
    for r in reads:
        by_cam.setdefault(r.camera_id, []).append(r.read_us)
    for cam, times in by_cam.items():
        times.sort()
        twice = [(x, y) for x, y in zip(times, times[1:], strict=False) if y - x < 3 * S]
        assert not twice, f"camera {cam}: a vehicle read twice at {twice}"
    assert set(by_cam) == set(names)
