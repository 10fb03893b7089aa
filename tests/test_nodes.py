"""Nodes and camera leases (storage.nodes) on the real PostgreSQL, and SQLite's one-node path.

The races are real: two nodes claim at once through two connections (PostgreSQL's SKIP LOCKED
keeps their sets disjoint), and a segment whose lease changed hands is refused by the catalogue.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update

from storage import Conflict, jobs
from storage.alerts import Alert
from storage.catalogue import NewSegment, commit_segment, incoming_dir, open_gap, scan_store
from storage.db import make_engine, make_sessionmaker, now_us, transaction
from storage.migrate import upgrade
from storage.models import Camera, Gap, Segment
from storage.nodes import (
    CameraLease,
    Fence,
    Fenced,
    Late,
    LeaseGeneration,
    LeaseKeeper,
    NodeRow,
    check_fence,
    claim,
    expire,
    heartbeat,
    list_nodes,
    load_or_create_node_id,
    move,
    parse_roles,
    plan_balance,
    register,
    release,
    unleased_cameras,
)

TTL_S = 2.0


async def add_cameras(sessions, n: int) -> list[int]:
    async with transaction(sessions) as session:
        cams = [Camera(name=f"cam{i}", main_url=f"rtsp://127.0.0.1:1/{i}") for i in range(n)]
        session.add_all(cams)
        await session.flush()
        return [c.id for c in cams]


def segment_files(root: Path, cam: int) -> Callable[[], Path]:
    """A maker of distinct finished segment files in the camera's ``incoming/``."""
    made = itertools.count(1)

    def file() -> Path:
        n = next(made)
        folder = incoming_dir(root, cam)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"1-{n}.mkv"
        path.write_bytes(b"x" * (100 + n))
        return path

    return file


async def keeper(sessions, node_id: str, capacity: int = 100, ttl_s: float = TTL_S) -> LeaseKeeper:
    k = LeaseKeeper(sessions, node_id, ("recorder", "api"), capacity=capacity, heartbeat_s=0.5, ttl_s=ttl_s)
    await k.start()
    return k


def test_node_id_is_stable_and_roles_are_checked(tmp_path: Path) -> None:
    first = load_or_create_node_id(tmp_path)
    assert first == load_or_create_node_id(tmp_path)
    assert load_or_create_node_id(tmp_path, "rec-2") == "rec-2"
    assert parse_roles("recorder, api,recorder") == ("recorder", "api")
    with pytest.raises(Exception, match="choose from"):
        parse_roles("recorder,cooking")


async def test_claims_up_to_capacity_renews_and_releases(sessions) -> None:
    cams = await add_cameras(sessions, 5)
    a = await keeper(sessions, "a", capacity=3)
    await a.tick()
    assert sorted(a.held) == cams[:3]
    assert all(h.generation == 1 for h in a.held.values())
    await a.tick()  # renewal keeps the same leases, no new generation
    assert sorted(a.held) == cams[:3] and all(h.generation == 1 for h in a.held.values())
    async with transaction(sessions) as session:
        assert await release(session, "a", [cams[0]]) == 1
    b = await keeper(sessions, "b", capacity=10)
    await b.tick()
    assert sorted(b.held) == [cams[0], *cams[3:]]
    assert b.held[cams[0]].generation == 2  # a hand-over is a new generation
    await a.tick()
    assert sorted(a.held) == cams[1:3]
    await a.stop()
    await b.tick()
    assert sorted(b.held) == cams
    async with sessions() as session:
        nodes = {n.id: n for n in await list_nodes(session, TTL_S)}
    assert nodes["a"].state == "stopped" and nodes["b"].state == "running" and nodes["b"].cameras == 5


async def test_a_lease_expires_when_its_node_stops_heartbeating(sessions) -> None:
    cams = await add_cameras(sessions, 2)
    a = await keeper(sessions, "a")
    await a.tick()
    b = await keeper(sessions, "b")
    await b.tick()
    assert b.held == {}  # a's leases are live
    await asyncio.sleep(TTL_S + 0.3)  # a is "killed": no heartbeat
    async with transaction(sessions) as session:
        assert await heartbeat(session, "b", TTL_S) == {}  # b lives on
        assert await expire(session, TTL_S) == ["a"]
    await b.tick()
    assert sorted(b.held) == cams and {h.generation for h in b.held.values()} == {2}
    await a.tick()  # a wakes up: its renewal finds nothing of its own
    assert a.held == {}
    async with sessions() as session:
        nodes = {n.id: n.state for n in await list_nodes(session, TTL_S)}
    assert nodes == {"a": "running", "b": "running"}


async def test_a_crashed_nodes_cameras_are_claimed_as_its_leases_run_out_not_at_the_next_heartbeat(sessions) -> None:
    """Failover's worst case was the lease's time-to-live plus a whole heartbeat (seen: 29.1 s and
    37.5 s under load against the 30 s goal): a node with room sees a lease that runs out before
    its next heartbeat (its node missed two) and claims it at that moment."""
    cams = await add_cameras(sessions, 2)
    a = LeaseKeeper(sessions, "a", ("recorder",), capacity=10, heartbeat_s=5, ttl_s=TTL_S)
    b = LeaseKeeper(sessions, "b", ("recorder",), capacity=10, heartbeat_s=5, ttl_s=TTL_S)
    changed = asyncio.Event()

    async def on_change() -> None:
        changed.set()

    b.leases["recorder"].on_change = on_change
    for k in (a, b):
        await k.start()
    await a.tick()
    assert sorted(a.held) == cams
    # a is "killed" now; b's heartbeat comes a moment later, with a's leases still live.
    await asyncio.sleep(0.2)
    killed = time.monotonic()
    await b.tick()
    assert b.held == {}
    # b's next heartbeat is 5 s away; a's leases run out within 2 s of the kill.
    await asyncio.wait_for(changed.wait(), 4.0)
    took_s = time.monotonic() - killed
    assert sorted(b.held) == cams and {h.generation for h in b.held.values()} == {2}
    assert took_s <= TTL_S + 0.5, took_s
    async with sessions() as session:
        rows = {r.camera_id: r.node_id for r in (await session.execute(select(CameraLease))).scalars()}
    assert rows == dict.fromkeys(cams, "b")
    await b.tick()  # the heartbeat renews what the early claim took
    assert sorted(b.held) == cams
    await b.stop()


async def test_a_stale_generation_is_fenced_at_the_catalogue(sessions, tmp_path: Path) -> None:
    (cam,) = await add_cameras(sessions, 1)
    root = tmp_path / "store"
    a = await keeper(sessions, "a")
    await a.tick()
    fence_a = Fence("a", a.held[cam].generation)
    t0 = now_us()

    def segment(n: int) -> tuple[Path, NewSegment]:
        folder = incoming_dir(root, cam)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"1-{n}.mkv"
        path.write_bytes(b"x" * 100)
        return path, NewSegment(cam, t0 + n * 1_000_000, t0 + (n + 1) * 1_000_000)

    path, seg = segment(0)
    await commit_segment(sessions, root, path, seg, fence=fence_a)
    async with transaction(sessions) as session:  # the lease changes hands: a is cut off
        await release(session, "a")
    b = await keeper(sessions, "b")
    await b.tick()
    path, seg = segment(1)
    with pytest.raises(Fenced, match="generation 1; the lease is now node b, generation 2"):
        await commit_segment(sessions, root, path, seg, fence=fence_a)
    assert not path.exists() and (root / str(cam) / "fenced" / path.name).exists()
    path, seg = segment(2)
    await commit_segment(sessions, root, path, seg, fence=Fence("b", 2))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Segment)) == 2
    assert len(scan_store(root)) == 2  # the fenced file is not in a day folder


async def test_a_cut_off_nodes_segments_from_before_the_takeover_are_catalogued_late(sessions, tmp_path: Path) -> None:
    """The rule (docs/design/cluster.md, "Cut off from the database"): a segment of an older
    generation is catalogued, late, when it ended before the next generation began (its claim,
    on the database's clock) and overlaps no catalogued segment; one that did not end before
    is fenced, as before. Late footage closes no gap (the open gap is the new holder's) but cuts
    its span out of the gaps, so they stay truthful."""
    (cam,) = await add_cameras(sessions, 1)
    root = tmp_path / "store"
    a = await keeper(sessions, "a")
    await a.tick()
    fence_a = Fence("a", a.held[cam].generation)
    s = 1_000_000
    t0 = now_us() - 60 * s  # a's footage from a minute ago on
    file = segment_files(root, cam)

    late: list = []
    await commit_segment(sessions, root, file(), NewSegment(cam, t0, t0 + 10 * s), fence=fence_a, on_late=late.append)
    assert late == []  # a's own lease: on time
    # a is cut off: its lease runs out and b takes the camera, opening a gap from the last
    # catalogued footage (cameras.recorder.Supervisor._open_gaps).
    async with transaction(sessions) as session:
        await release(session, "a")
    b = await keeper(sessions, "b")
    await b.tick()
    assert b.held[cam].generation == 2
    async with transaction(sessions) as session:
        await open_gap(session, cam, t0 + 10 * s, "camera taken over by node b")
        claimed_us = (await session.get(LeaseGeneration, (cam, "recorder", 2))).since_us
    assert t0 + 60 * s <= claimed_us <= now_us()
    # a's queue, written when the database is back: two segments from before b's claim (a hole
    # between them, a reconnection while cut off), one going on past the claim, one after it.
    await commit_segment(sessions, root, file(), NewSegment(cam, t0 + 10 * s, t0 + 20 * s), fence=fence_a,
                         closes_gap=True, on_late=late.append)
    await commit_segment(sessions, root, file(), NewSegment(cam, t0 + 25 * s, t0 + 30 * s), fence=fence_a,
                         closes_gap=True, on_late=late.append)
    assert late == [Late(2, "b", claimed_us)] * 2
    straddling, after = file(), file()
    with pytest.raises(Fenced, match="generation 1; the lease is now node b, generation 2"):
        await commit_segment(sessions, root, straddling, NewSegment(cam, claimed_us - 5 * s, claimed_us + s),
                             fence=fence_a, on_late=late.append)
    with pytest.raises(Fenced):
        await commit_segment(sessions, root, after, NewSegment(cam, claimed_us + s, claimed_us + 3 * s),
                             fence=fence_a, on_late=late.append)
    assert len(late) == 2 and {p.name for p in (root / str(cam) / "fenced").iterdir()} == {straddling.name, after.name}
    # b's first segment closes its gap; what is missing is exactly what nobody catalogued.
    await commit_segment(sessions, root, file(), NewSegment(cam, claimed_us + 2 * s, claimed_us + 4 * s),
                         fence=Fence("b", 2), closes_gap=True)
    async with sessions() as session:
        gaps = (await session.execute(select(Gap.start_us, Gap.end_us).where(Gap.camera_id == cam)
                                      .order_by(Gap.start_us))).all()
        spans = (await session.execute(select(Segment.start_us, Segment.end_us).where(Segment.camera_id == cam)
                                       .order_by(Segment.start_us))).all()
        last = await session.scalar(select(Camera.last_segment_us).where(Camera.id == cam))
    assert [tuple(g) for g in gaps] == [(t0 + 20 * s, t0 + 25 * s), (t0 + 30 * s, claimed_us + 2 * s)]
    assert [tuple(r) for r in spans] == [(t0, t0 + 10 * s), (t0 + 10 * s, t0 + 20 * s), (t0 + 25 * s, t0 + 30 * s),
                                         (claimed_us + 2 * s, claimed_us + 4 * s)]
    assert last == claimed_us + 4 * s
    assert len(scan_store(root)) == 4  # the fenced files are not in a day folder


async def test_late_footage_must_not_overlap_and_needs_the_lease_history(sessions, tmp_path: Path) -> None:
    """The rule's guards: a late segment overlapping catalogued footage (two nodes' clocks
    apart) is fenced; after two takeovers a segment is judged against the first (the claim
    after its own generation); a lease whose history is not known (taken before it was kept)
    fences as before; a generation that was not the fence's node's fences."""
    (cam,) = await add_cameras(sessions, 1)
    root = tmp_path / "store"
    s = 1_000_000
    t0 = now_us() - 120 * s
    file = segment_files(root, cam)

    nodes = {}
    for name in ("a", "b", "c"):  # a, then b, then c hold the camera: generations 1, 2, 3
        async with transaction(sessions) as session:
            await release(session, "a")
            await release(session, "b")
        nodes[name] = await keeper(sessions, name)
        await nodes[name].tick()
        await asyncio.sleep(0.05)
    async with sessions() as session:
        since = {g.generation: (g.node_id, g.since_us) for g in (await session.scalars(select(LeaseGeneration))).all()}
    assert [since[g][0] for g in (1, 2, 3)] == ["a", "b", "c"] and since[1][1] < since[2][1] < since[3][1]
    # b's catalogued footage (its clock ahead of a's) overlaps a's late segment: fenced.
    await commit_segment(sessions, root, file(), NewSegment(cam, t0, t0 + 10 * s), fence=Fence("c", 3))
    with pytest.raises(Fenced, match="overlaps the catalogued"):
        await commit_segment(sessions, root, file(), NewSegment(cam, t0 + 5 * s, t0 + 15 * s), fence=Fence("a", 1))
    late: list = []
    # a's segment ending before b's claim, and b's ending before c's, are catalogued late.
    await commit_segment(sessions, root, file(), NewSegment(cam, t0 + 20 * s, since[2][1]), fence=Fence("a", 1),
                         on_late=late.append)
    with pytest.raises(Fenced):  # a's footage after b's claim, though before c's
        await commit_segment(sessions, root, file(), NewSegment(cam, since[2][1], since[2][1] + 1), fence=Fence("a", 1))
    await commit_segment(sessions, root, file(), NewSegment(cam, since[2][1], since[3][1]), fence=Fence("b", 2),
                         on_late=late.append)
    assert late == [Late(3, "c", since[2][1]), Late(3, "c", since[3][1])]
    with pytest.raises(Fenced):  # not a's generation
        await commit_segment(sessions, root, file(), NewSegment(cam, t0 + 30 * s, t0 + 31 * s), fence=Fence("x", 1))
    async with transaction(sessions) as session:  # a lease taken before the history was kept
        await session.execute(delete(LeaseGeneration).where(LeaseGeneration.generation == 2))
    with pytest.raises(Fenced):
        await commit_segment(sessions, root, file(), NewSegment(cam, t0 + 40 * s, t0 + 41 * s), fence=Fence("a", 1))


async def test_moving_a_camera_waits_for_the_holder(sessions) -> None:
    cams = await add_cameras(sessions, 2)
    a = await keeper(sessions, "a")
    await a.tick()
    b = await keeper(sessions, "b")
    async with transaction(sessions) as session:
        assert await move(session, cams[0], "b", TTL_S) == "asked"
    await a.tick()
    assert a.held[cams[0]].moving_to == "b"
    await a.hand_over(cams[0])
    await b.tick()
    assert list(b.held) == [cams[0]] and b.held[cams[0]].generation == 2
    async with transaction(sessions) as session:
        with pytest.raises(Exception, match="does not exist"):
            await move(session, cams[1], "nobody", TTL_S)


async def test_a_second_machine_with_the_same_id_is_refused(sessions) -> None:
    async with transaction(sessions) as session:
        await register(session, "n1", ("recorder",), 10, ttl_s=30, host="hostA", pid=1)
    async with transaction(sessions) as session:
        with pytest.raises(Conflict, match="already running on hostA"):
            await register(session, "n1", ("recorder",), 10, ttl_s=30, host="hostB", pid=2)
    async with transaction(sessions) as session:  # a restart on the same host is allowed
        await register(session, "n1", ("recorder",), 10, ttl_s=30, host="hostA", pid=3)


@pytest.mark.postgres
async def test_nodes_claiming_at_once_take_disjoint_cameras(pg_url: str) -> None:
    """Ten nodes, each with its own engine (connections), claim 200 cameras at the same moment."""
    # Leases long enough that none runs out during the four rounds, however busy the machine
    # (with 2 s, a load average of 16 made rounds slower than that: leases taken again, gen 2).
    ttl_s = 120.0
    engines = [make_engine(pg_url) for _ in range(10)]
    await upgrade(engines[0])
    pools = [make_sessionmaker(e) for e in engines]
    try:
        await add_cameras(pools[0], 200)
        for i, pool in enumerate(pools):
            async with transaction(pool) as session:
                await register(session, f"n{i}", ("recorder",), 30, ttl_s=ttl_s)

        async def one(i: int) -> dict[int, int]:
            async with transaction(pools[i]) as session:
                return await claim(session, f"n{i}", 30, ttl_s)

        taken = await asyncio.gather(*(one(i) for i in range(10)))
        claimed = [cam for t in taken for cam in t]
        assert len(claimed) == len(set(claimed)), "a camera claimed by two nodes"
        assert all(len(t) <= 30 for t in taken)
        # Whatever one round missed (skipped while locked) the next round takes.
        for _ in range(3):
            taken = await asyncio.gather(*(one(i) for i in range(10)))
        async with pools[0]() as session:
            rows = (await session.execute(select(CameraLease.node_id, func.count()).group_by(CameraLease.node_id))).all()
            held = await heartbeat(session, "n0", ttl_s)
        assert sum(n for _, n in rows) == 200 and all(n <= 30 for _, n in rows)
        assert all(h.generation == 1 for h in held.get("recorder", {}).values())
    finally:
        for e in engines:
            await e.dispose()


async def test_a_recorder_that_lost_its_lease_keeps_its_segment_out_of_the_catalogue(sessions, tmp_path: Path) -> None:
    """The recorder's side of the fence: the refused segment is counted and reported (the
    supervisor alerts on it), its file kept in fenced/, and the queue goes on."""
    from cameras.recorder import CameraRecorder, RecorderCamera, _Commit

    (cam,) = await add_cameras(sessions, 1)
    root = tmp_path / "store"
    a = await keeper(sessions, "a")
    await a.tick()
    reported: list[str] = []
    rec = CameraRecorder(RecorderCamera(cam, "cam0", "rtsp://127.0.0.1:1/0", generation=a.held[cam].generation),
                         sessions, root, segment_s=2, stall_timeout_s=5, backoff_initial_s=1, backoff_max_s=1,
                         node_id="a", on_fenced=lambda r, reason: reported.append(reason))
    folder = incoming_dir(root, cam)
    folder.mkdir(parents=True)
    t0 = now_us()
    for n in range(2):
        (folder / f"1-{n}.mkv").write_bytes(b"x" * 10)
    await rec._apply(_Commit(folder / "1-0.mkv", NewSegment(cam, t0, t0 + 2_000_000), closes_gap=False))
    await keeper(sessions, "b")
    async with transaction(sessions) as session:
        await move(session, cam, "b", TTL_S)
    await a.tick()
    await a.hand_over(cam)  # the lease is b's now, generation 2
    await rec._apply(_Commit(folder / "1-1.mkv", NewSegment(cam, t0 + 2_000_000, t0 + 4_000_000), closes_gap=False))
    assert rec.segments_committed == 1 and rec.segments_fenced == 1
    assert len(reported) == 1 and "the lease is now node b, generation 2" in reported[0]
    assert (root / str(cam) / "fenced" / "1-1.mkv").exists()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Segment)) == 1


async def test_a_recorder_back_from_a_cut_catalogues_late_and_leaves_the_new_holders_gap_and_state(
    sessions, tmp_path: Path
) -> None:
    """The recorder's side of the late rule: its queue, written when the database is back,
    catalogues what ended before the new holder's claim (counted, reported), and neither opens a
    gap nor writes the camera's state over the new holder's (they are its recorder's now)."""
    from cameras.recorder import CameraRecorder, RecorderCamera, _Commit, _OpenGap
    from storage.models import CameraState

    (cam,) = await add_cameras(sessions, 1)
    root = tmp_path / "store"
    a = await keeper(sessions, "a")
    await a.tick()
    reported: list = []
    rec = CameraRecorder(RecorderCamera(cam, "cam0", "rtsp://127.0.0.1:1/0", generation=a.held[cam].generation),
                         sessions, root, segment_s=2, stall_timeout_s=5, backoff_initial_s=1, backoff_max_s=1,
                         node_id="a", on_late=lambda r, late: reported.append(late))
    folder = incoming_dir(root, cam)
    folder.mkdir(parents=True)
    t0 = now_us() - 30_000_000
    (folder / "1-0.mkv").write_bytes(b"x" * 10)
    async with transaction(sessions) as session:  # a is cut off; b takes the camera
        await release(session, "a")
    b = await keeper(sessions, "b")
    await b.tick()
    async with transaction(sessions) as session:
        await session.execute(update(Camera).where(Camera.id == cam).values(state="recording", state_reason=""))
    await rec._apply(_Commit(folder / "1-0.mkv", NewSegment(cam, t0, t0 + 2_000_000), closes_gap=True))
    assert rec.segments_committed == 1 and rec.segments_late == 1 and rec.segments_fenced == 0
    assert reported == [rec.late] and rec.late.node_id == "b" and rec.late.generation == 2
    await rec._apply(_OpenGap("ffmpeg exited", now_us()))
    rec._set_state(CameraState.RECONNECTING, "connection refused")
    await rec._write_state()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Gap)) == 0
        assert await session.scalar(select(Camera.state).where(Camera.id == cam)) == "recording"
        assert await session.scalar(select(func.count()).select_from(Alert)) == 0  # no camera_offline


async def test_the_spool_of_a_generation_no_recorder_runs_is_swept_into_the_store_under_its_fence(
    sessions, tmp_path: Path
) -> None:
    """A node stopped while the shared storage was away left segments in its local spool,
    and the camera is another node's now: the supervisor's sweep moves them into the store
    under their generation's fence (late if they ended before the taker's claim, else fenced);
    while the store is still away they wait, and /healthz's notes say so."""
    import os
    import shutil

    from evidence_media import make_segments

    from cameras.recorder import Supervisor, spool_incoming
    from storage.keys import load_or_create_keys

    (cam,) = await add_cameras(sessions, 1)
    a = await keeper(sessions, "a")
    await a.tick()
    async with transaction(sessions) as session:  # a is cut off; b takes the camera
        await release(session, "a")
    b = await keeper(sessions, "b")
    await b.tick()
    async with sessions() as session:
        claimed_us = (await session.get(LeaseGeneration, (cam, "recorder", 2))).since_us
    spool, root = tmp_path / "spool", tmp_path / "store"
    folder = spool_incoming(spool, cam, 1)
    folder.mkdir(parents=True)
    before, after = make_segments(tmp_path / "made", 2, seconds=2)
    for src, end_us in ((before, claimed_us - 10_000_000), (after, claimed_us + 5_000_000)):
        shutil.move(src, folder / src.name)
        os.utime(folder / src.name, ns=(end_us * 1000, end_us * 1000))
    notes: dict[str, str] = {}
    sup = Supervisor(sessions, load_or_create_keys(tmp_path / "key"), root, segment_s=2, stall_timeout_s=20,
                     backoff_initial_s=1, backoff_max_s=5, lease=a.leases["recorder"], notes=notes, spool_root=spool)
    root.write_text("the store is away")
    await sup._sweep_spool()
    assert "camera" in notes["recorder_spool"] and len(list(folder.iterdir())) == 2
    root.unlink()
    await sup._sweep_spool()
    assert "recorder_spool" not in notes and not (spool / str(cam)).joinpath("g1").exists()
    assert sup.segments_late == 1 and sup.segments_fenced == 1
    assert [p.name for p in (root / str(cam) / "fenced").iterdir()] == [after.name]
    async with sessions() as session:
        rows = (await session.scalars(select(Segment))).all()
    assert len(rows) == 1 and rows[0].end_us == claimed_us - 10_000_000 and rows[0].state == "recovered"


def test_balance_gives_a_joining_node_its_share_by_capacity_and_moves_nothing_else() -> None:
    caps = {"a": 3, "b": 3, "c": 6}
    assert plan_balance("c", {"a": 3, "b": 3, "c": 0}, caps) == {"a": 1, "b": 1}
    assert plan_balance("c", {"a": 2, "b": 2, "c": 2}, caps) == {}  # settled: nobody above its share
    assert plan_balance("a", {"a": 2, "b": 2, "c": 2}, caps) == {}
    even = {f"n{i}": 100 for i in range(10)}
    assert plan_balance("new", {**dict.fromkeys(even, 100), "new": 0}, {**even, "new": 100}) == {
        "n0": 5}  # a few per step, from one donor at a time
    load = {**dict.fromkeys(even, 100), "new": 0}
    moved = 0
    while asks := plan_balance("new", load, {**even, "new": 100}):
        for donor, n in asks.items():
            load[donor] -= n
            load["new"] += n
            moved += n
    assert load["new"] == 90 and moved == 90 and max(load.values()) - min(load.values()) <= 1
    assert plan_balance("a", {"a": 0}, {"a": 5}) == {} and plan_balance("a", {"a": 0, "b": 0}, caps) == {}


async def test_a_node_with_room_asks_the_loaded_nodes_for_its_share(sessions) -> None:
    cams = await add_cameras(sessions, 6)
    a = await keeper(sessions, "a", capacity=6)
    await a.tick()
    b = await keeper(sessions, "b", capacity=6)
    await b.tick()  # nothing free: b asks a for 3
    await a.tick()
    assert sum(1 for h in a.held.values() if h.moving_to == "b") == 3
    for cam, h in list(a.held.items()):
        if h.moving_to:
            await a.hand_over(cam)
    await b.tick()
    await a.tick()
    assert len(a.held) == 3 and len(b.held) == 3 and sorted([*a.held, *b.held]) == cams
    assert all(h.generation == 2 for h in b.held.values())
    await b.tick()
    await a.tick()
    assert not any(h.moving_to for h in (*a.held.values(), *b.held.values())), "balanced: nothing more moves"


@pytest.mark.postgres
def test_nodes_list_and_cameras_move_from_the_cli(pg_url: str, data_dir: Path, capsys) -> None:
    from controlroom.cli import main as cli
    from controlroom.commands.common import open_store
    from controlroom.settings import load_settings
    from storage.audit import AuditEntry

    (data_dir / "settings.toml").write_text(f'database_url = "{pg_url}"\n')
    settings = load_settings(data_dir, environ={})

    async def seed() -> None:
        async with open_store(settings) as st:
            await add_cameras(st.sessions, 2)
            # Leases that outlast the CLI's start-ups (seconds each on a loaded machine): nothing
            # renews them once seeded, and a lease run out turns "asked to hand over" into "moved".
            a = await keeper(st.sessions, "rec-a", ttl_s=300)
            await a.tick()
            await keeper(st.sessions, "rec-b", ttl_s=300)

    async def lease_and_audit() -> tuple[dict, list]:
        async with open_store(settings) as st, st.sessions() as session:
            held = {r.camera_id: (r.node_id, r.moving_to) for r in (await session.scalars(select(CameraLease)))}
            actions = (await session.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.target)
                                             .where(AuditEntry.action == "camera.move"))).all()
        return held, [tuple(r) for r in actions]

    asyncio.run(seed())
    assert cli(["--data-dir", str(data_dir), "nodes", "list", "--json"]) == 0
    listed = {n["id"]: n for n in json.loads(capsys.readouterr().out)}
    assert listed["rec-a"]["cameras"] == 2 and listed["rec-a"]["state"] == "running"
    assert listed["rec-a"]["roles"] == "recorder,api" and listed["rec-b"]["cameras"] == 0
    assert cli(["--data-dir", str(data_dir), "cameras", "move", "cam1", "--to", "rec-b"]) == 0
    assert "hands it to rec-b" in capsys.readouterr().out
    held, actions = asyncio.run(lease_and_audit())
    assert held[2] == ("rec-a", "rec-b") and held[1] == ("rec-a", None)
    assert actions == [("cli", "camera.move", "camera:2")]
    assert cli(["--data-dir", str(data_dir), "cameras", "move", "cam1", "--to", "nobody"]) == 1
    assert "node nobody does not exist" in capsys.readouterr().err

    # A node gone for good is forgotten, never one that runs: rec-a is refused while it
    # heartbeats; once lost, its row and leases go (the cameras are anybody's) and its jobs are
    # queued again.
    assert cli(["--data-dir", str(data_dir), "nodes", "forget", "rec-a"]) == 1
    assert "node rec-a is running" in capsys.readouterr().err

    async def lose_rec_a() -> None:
        async with open_store(settings) as st, transaction(st.sessions) as session:
            await session.execute(update(NodeRow).where(NodeRow.id == "rec-a").values(heartbeat_us=0))
            await jobs.enqueue(session, "k")
            await jobs.claim_next(session, "rec-a", ["k"], 60)

    async def after() -> tuple[list, list, list]:
        async with open_store(settings) as st, st.sessions() as session:
            rows = [n.id for n in await list_nodes(session, TTL_S)]
            held = [(r.camera_id, r.node_id) for r in await session.scalars(select(CameraLease))]
            queued = [(j.state, j.node_id) for j in await session.scalars(select(jobs.Job))]
            forgot = (await session.execute(select(AuditEntry.action, AuditEntry.target)
                                            .where(AuditEntry.action == "node.forget"))).all()
        return rows, held, queued + [tuple(f) for f in forgot]

    asyncio.run(lose_rec_a())
    assert cli(["--data-dir", str(data_dir), "nodes", "forget", "rec-a"]) == 0
    assert "2 camera leases removed" in capsys.readouterr().out
    rows, held, rest = asyncio.run(after())
    assert rows == ["rec-b"] and held == [] and rest == [("queued", None), ("node.forget", "node:rec-a")]
    assert cli(["--data-dir", str(data_dir), "nodes", "forget", "rec-a"]) == 1


async def test_anpr_cameras_are_leased_by_anpr_nodes_with_the_same_mechanism(sessions, tmp_path: Path) -> None:
    """The ANPR cameras' plate reading is leased per (camera, role): a recorder node records an
    ANPR camera while an anpr node reads it; anpr nodes claim up to their ANPR capacity, balance,
    hand over on a move, and a read made under a stale generation is refused by the fence as a
    segment is."""
    from anpr.camera_reader import LiveOptions
    from anpr.live import LiveReading
    from anpr.tracking import Vehicle
    from storage.anpr.reads import AnprRead
    from storage.keys import load_or_create_keys

    async with transaction(sessions) as session:
        plain = Camera(name="street", main_url="rtsp://127.0.0.1:1/0")
        anpr = [Camera(name=f"anpr{i}", kind="anpr", main_url=f"rtsp://127.0.0.1:1/a{i}") for i in range(3)]
        session.add_all([plain, *anpr])
        await session.flush()
        anpr_ids = [c.id for c in anpr]
    rec = LeaseKeeper(sessions, "rec", ("recorder",), capacity=10, heartbeat_s=0.5, ttl_s=TTL_S)
    a = LeaseKeeper(sessions, "a", ("anpr", "api"), capacity=10, anpr_capacity=3, heartbeat_s=0.5, ttl_s=TTL_S)
    for k in (rec, a):
        await k.start()
        await k.tick()
    assert sorted(rec.held) == sorted([plain.id, *anpr_ids])  # recording: every camera
    assert "anpr" not in rec.leases and "recorder" not in a.leases and a.held == {}
    assert sorted(a.leases["anpr"].held) == anpr_ids  # reading: the ANPR cameras only
    b = LeaseKeeper(sessions, "b", ("anpr",), capacity=0, anpr_capacity=2, heartbeat_s=0.5, ttl_s=TTL_S)
    await b.start()
    await b.tick()  # nothing free: b asks a for its share by capacity (one camera, a's newest)
    assert b.leases["anpr"].held == {}
    await a.tick()
    (moving,) = a.leases["anpr"].moving()
    assert moving == anpr_ids[2]
    stale = a.leases["anpr"].fence(moving)

    live = LiveReading(sessions, load_or_create_keys(tmp_path / "key"), None, tmp_path / "anpr", LiveOptions())
    vehicle = Vehicle(text="AB12CDE", confidence=0.95, read_us=now_us(), box=(1, 2, 3, 4), char_confidences=[],
                      raw_text="AB12CDE", format="uk", frames=3, commit_frame_us=now_us())
    await live.store_vehicle(moving, vehicle, fence=stale)  # still a's: stored
    await a.leases["anpr"].hand_over(moving)
    await b.tick()
    assert sorted(b.leases["anpr"].held) == [moving]
    assert b.leases["anpr"].held[moving].generation == stale.generation + 1
    with pytest.raises(Fenced, match="anpr work done under node a"):
        await live.store_vehicle(moving, vehicle, fence=stale)
    await live._store_logged(moving, vehicle, "", "", stale)  # the worker's path: counted, alerted
    assert live.reads_fenced == 1
    await live.store_vehicle(moving, vehicle, fence=b.leases["anpr"].fence(moving))
    assert sorted(rec.held) == sorted([plain.id, *anpr_ids])  # the recorder leases did not move
    with pytest.raises(Fenced):  # a recorder's lease is not an anpr one
        async with transaction(sessions) as session:
            await check_fence(session, moving, Fence("rec", rec.held[moving].generation, "anpr"))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AnprRead)) == 2
        kinds = [k for (k,) in (await session.execute(select(Alert.kind))).all()]
        nodes = {n.id: (n.cameras, n.anpr_cameras) for n in await list_nodes(session, TTL_S)}
    assert kinds == ["anpr_read_fenced"]
    assert nodes == {"rec": (4, 0), "a": (0, 2), "b": (0, 1)}
    await a.stop()  # a clean stop: b takes what it has room for at once
    await b.tick()
    assert sorted(b.leases["anpr"].held) == [anpr_ids[0], moving], "capacity 2: the third waits"
    async with sessions() as session:
        assert await unleased_cameras(session, "anpr") == [anpr_ids[1]]
