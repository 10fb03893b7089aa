"""The segment catalogue's invariants on both databases: commit order, reconcile after a crash, safe paths."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from storage import Invalid
from storage.catalogue import (
    NewSegment,
    close_gap,
    commit_segment,
    find_run,
    incoming_named_us,
    incoming_pattern,
    media_offset_s,
    open_gap,
    reconcile,
    run_starting,
    safe_path,
    scan_store,
    sha256_file,
    timeline,
)
from storage.db import transaction
from storage.inventory import CameraSpec, add_camera
from storage.keys import load_or_create_keys
from storage.models import Segment, SegmentState

T0 = 1_800_000_000_000_000


async def make_camera(sessions, tmp_path: Path) -> int:
    keys = load_or_create_keys(tmp_path / "key")
    async with transaction(sessions) as s:
        return (await add_camera(s, CameraSpec(name="Town Centre 01"), keys)).id


def incoming_file(root: Path, cam: int, name: str, data: bytes) -> Path:
    path = root / str(cam) / "incoming" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def test_a_spooled_segment_is_moved_across_filesystems_whole_then_catalogued(sessions, tmp_path: Path) -> None:
    """A node's local spool (docs/design/cluster.md, "Losing the shared storage") is another
    filesystem than the store: the commit copies the file beside its place under a hidden name,
    fsyncs it and renames it in, then removes the spool's copy; a retry after a crash between
    the rename and the unlink copies again; a file refused by the fence crosses the same way."""
    import tempfile

    from storage.catalogue import move_file

    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem (/dev/shm) here")
    root = tmp_path / "rec"
    cam = await make_camera(sessions, tmp_path)
    with tempfile.TemporaryDirectory(dir=shm) as spool:
        src = Path(spool) / str(cam) / "g0" / "incoming" / "1-a.mkv"
        src.parent.mkdir(parents=True)
        src.write_bytes(b"footage" * 1000)
        row = await commit_segment(sessions, root, src, NewSegment(cam, T0, T0 + 30_000_000))
        assert not src.exists() and (root / row.path).read_bytes() == b"footage" * 1000
        assert sha256_file(root / row.path) == (row.sha256, row.bytes)
        assert not [p for p in (root / row.path).parent.iterdir() if p.name.startswith(".")]
        src.write_bytes(b"again")  # the source still there: a crash before its unlink
        dst = root / str(cam) / "fenced" / "1-a.mkv"
        dst.parent.mkdir(parents=True)
        move_file(src, dst)
        assert not src.exists() and dst.read_bytes() == b"again"


async def test_commit_moves_file_then_catalogues(sessions, tmp_path: Path) -> None:
    root = tmp_path / "rec"
    cam = await make_camera(sessions, tmp_path)
    tmp = incoming_file(root, cam, "a.mkv", b"segment-bytes")
    row = await commit_segment(sessions, root, tmp, NewSegment(cam, T0, T0 + 30_000_000, "h264", 1920, 1080))
    assert not tmp.exists()
    assert row.path == f"{cam}/2027-01-15/{T0}_{T0 + 30_000_000}.mkv"
    assert sha256_file(root / row.path) == (row.sha256, row.bytes)
    async with sessions() as s:
        tl = await timeline(s, cam, T0 + 10_000_000, T0 + 20_000_000)
    assert [x.path for x in tl.segments] == [row.path]


async def test_reconcile_repairs_what_a_crash_left(sessions, tmp_path: Path) -> None:
    root = tmp_path / "rec"
    cam = await make_camera(sessions, tmp_path)
    kept = await commit_segment(sessions, root, incoming_file(root, cam, "1.mkv", b"one"), NewSegment(cam, T0, T0 + 1))
    doomed = await commit_segment(sessions, root, incoming_file(root, cam, "2.mkv", b"two"), NewSegment(cam, T0 + 2, T0 + 3))
    lost = await commit_segment(sessions, root, incoming_file(root, cam, "3.mkv", b"three"), NewSegment(cam, T0 + 4, T0 + 5))
    # Crash during a deletion: row marked garbage, file still there.
    async with transaction(sessions) as s:
        await s.execute(update(Segment).where(Segment.id == doomed.id).values(state=SegmentState.GARBAGE.value))
    # Crash between rename and insert: a file in its day folder without a row.
    orphan = root / f"{cam}/2027-01-15/{T0 + 6}_{T0 + 7}.mkv"
    orphan.write_bytes(b"orphan")
    # Someone removed a catalogued file behind our back.
    (root / lost.path).unlink()

    report = await reconcile(sessions, root)
    assert report.garbage_finished == 1
    assert report.recatalogued == [f"{cam}/2027-01-15/{T0 + 6}_{T0 + 7}.mkv"]
    assert report.missing == [lost.path]
    async with sessions() as s:
        rows = {r.path: r for r in (await s.execute(select(Segment))).scalars()}
    assert doomed.path not in rows and not (root / doomed.path).exists()
    assert rows[orphan.relative_to(root).as_posix()].state == SegmentState.RECOVERED.value
    assert rows[kept.path].state == SegmentState.OK.value
    assert lost.path in rows  # a missing file is reported, never silently dropped
    assert scan_store(root) == set(rows) - {lost.path}


def test_safe_path_refuses_escape(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    root.mkdir()
    assert safe_path(root, "1/2027-01-15/a.mkv") == (root / "1/2027-01-15/a.mkv").resolve()
    for bad in ("../secret.key", "1/../../secret.key", "/etc/passwd"):
        with pytest.raises(Invalid):
            safe_path(root, bad)


async def test_timeline_rejects_inverted_range(sessions, tmp_path: Path) -> None:
    cam = await make_camera(sessions, tmp_path)
    async with sessions() as s:
        with pytest.raises(Invalid):
            await timeline(s, cam, T0, T0)


async def test_timeline_rows_read_like_the_model_and_stay_untracked(sessions, tmp_path: Path) -> None:
    root = tmp_path / "rec"
    cam = await make_camera(sessions, tmp_path)
    made = [
        await commit_segment(sessions, root, incoming_file(root, cam, f"{i}.mkv", b"x" * (i + 1)),
                             NewSegment(cam, T0 + i * 30_000_000, T0 + (i + 1) * 30_000_000, "h264", 1920, 1080,
                                        clock_offset_s=0.25 if i == 1 else None, clock_flag=i == 1))
        for i in (2, 0, 1)  # committed out of order: the timeline is in time order
    ]
    async with transaction(sessions) as s:
        await open_gap(s, cam, T0 + 90_000_000, "camera offline")
    async with transaction(sessions) as s:
        await close_gap(s, cam, T0 + 120_000_000)
    async with sessions() as s:
        tl = await timeline(s, cam, T0, T0 + 200_000_000)
    columns = ("id", "camera_id", "start_us", "end_us", "bytes", "sha256", "path", "codec", "width", "height",
               "state", "clock_offset_s", "clock_flag")
    expected = [tuple(getattr(row, c) for c in columns) for row in sorted(made, key=lambda r: r.start_us)]
    assert [tuple(x) for x in tl.segments] == expected
    assert len(tl.segments) == 3 and tl.segments[1].clock_flag is True and tl.segments[0].clock_flag is False
    assert tl.segments[-1].path == expected[-1][6] and [x.id for x in tl.segments[1:]] == [e[0] for e in expected[1:]]
    assert [(g.start_us, g.end_us, g.reason) for g in tl.gaps] == [(T0 + 90_000_000, T0 + 120_000_000, "camera offline")]
    # The point of storage.catalogue.Rows: a camera-day of rows the garbage collector need not
    # track, so it is never promoted into the old generation (whose full collections were the tail).
    gc.collect()
    assert not any(gc.is_tracked(r) for r in tl.segments._rows)


async def test_a_gap_never_overlaps_catalogued_footage(sessions, tmp_path: Path) -> None:
    """Issue 11: after a crash the gap opened at the last catalogued segment's end covered the
    partial segments recovered from it; every commit now cuts its span out of the gaps."""
    from storage.models import Gap

    root = tmp_path / "rec"
    cam = await make_camera(sessions, tmp_path)
    s1 = 1_000_000
    async with transaction(sessions) as s:  # Supervisor.start: "service not recording" from the last segment
        await open_gap(s, cam, T0, "service not recording")
    # recovered partial segments (a crash's leftovers), a real hole between them, then new footage
    await commit_segment(sessions, root, incoming_file(root, cam, "a.mkv", b"a"), NewSegment(cam, T0, T0 + 20 * s1))
    await commit_segment(sessions, root, incoming_file(root, cam, "b.mkv", b"b"), NewSegment(cam, T0 + 25 * s1, T0 + 28 * s1))
    async with transaction(sessions) as s:
        await close_gap(s, cam, T0 + 40 * s1)
    await commit_segment(sessions, root, incoming_file(root, cam, "c.mkv", b"c"), NewSegment(cam, T0 + 40 * s1, T0 + 70 * s1))
    # a gap around a late-recovered segment is split in two
    async with transaction(sessions) as s:
        s.add(Gap(camera_id=cam, start_us=T0 + 100 * s1, end_us=T0 + 200 * s1, reason="stalled"))
    await commit_segment(sessions, root, incoming_file(root, cam, "d.mkv", b"d"), NewSegment(cam, T0 + 120 * s1, T0 + 130 * s1))
    async with sessions() as s:
        tl = await timeline(s, cam, T0 - s1, T0 + 300 * s1)
    assert [(g.start_us - T0, g.end_us - T0, g.reason) for g in tl.gaps] == [
        (20 * s1, 25 * s1, "service not recording"), (28 * s1, 40 * s1, "service not recording"),
        (100 * s1, 120 * s1, "stalled"), (130 * s1, 200 * s1, "stalled")]


def test_the_growing_segment_name_reads_back_as_ffmpeg_wrote_it() -> None:
    """One naming rule: the pattern the recorder gives ffmpeg, filled in as ffmpeg's strftime
    does, parses back to the second it was opened."""
    opened = datetime.fromtimestamp(T0 / 1e6, UTC)
    name = opened.strftime(incoming_pattern("1765000000000"))
    assert name == "1765000000000-20270115T080000Z.mkv"
    assert incoming_named_us(Path(name)) == T0
    assert incoming_named_us(Path("1765000000000.mkv")) is None


async def test_find_run_continues_into_the_segment_being_written(sessions, tmp_path: Path) -> None:
    root = tmp_path / "rec"
    cam = await make_camera(sessions, tmp_path)
    s1 = 1_000_000
    for i in range(2):
        await commit_segment(sessions, root, incoming_file(root, cam, f"{i}.mkv", b"x"),
                             NewSegment(cam, T0 + i * 30 * s1, T0 + (i + 1) * 30 * s1))
    # ffmpeg opened the next segment where the last catalogued one ends: its start is that end.
    opened = datetime.fromtimestamp((T0 + 60 * s1) / 1e6, UTC)
    growing = incoming_file(root, cam, opened.strftime(incoming_pattern("9")), b"growing")

    async def not_probed(path: Path) -> float:
        raise AssertionError(f"{path} need not be probed: its name agrees with the last segment's end")

    async with sessions() as s:
        run = await find_run(s, root, cam, T0 + 5 * s1, not_probed)
        later = await run_starting(s, root, cam, T0 + 30 * s1, not_probed)
    assert [(p.start_us - T0, p.end_us and p.end_us - T0, p.media_offset_s) for p in run] == [
        (0, 30 * s1, 0.0), (30 * s1, 60 * s1, 30.0), (60 * s1, None, 60.0)]
    assert run[-1].path == growing
    assert media_offset_s(run, T0 + 65 * s1) == 65.0
    assert [(p.start_us - T0, p.media_offset_s) for p in later] == [(30 * s1, 0.0), (60 * s1, 30.0)]


async def test_find_run_waits_out_a_segment_between_its_rename_and_its_row(sessions, tmp_path: Path) -> None:
    """The recorder commits a segment by renaming it into the store, then inserting its row; on a
    loaded machine that takes a while. A reader asking about the live edge meanwhile found
    neither the segment nor, with ffmpeg's next file still empty, anything at all: playback of
    "20 s ago" answered 404 (seen in CI). It waits for the row instead."""
    root = tmp_path / "rec"
    cam = await make_camera(sessions, tmp_path)
    s1 = 1_000_000
    await commit_segment(sessions, root, incoming_file(root, cam, "0.mkv", b"x"), NewSegment(cam, T0, T0 + 30 * s1))
    # ffmpeg has just opened the next file (empty so far); the segment before it is in its commit.
    opened = datetime.fromtimestamp((T0 + 60 * s1) / 1e6, UTC)
    incoming_file(root, cam, opened.strftime(incoming_pattern("9")), b"")
    in_commit = tmp_path / "in-commit.mkv"
    in_commit.write_bytes(b"y")

    async def not_probed(path: Path) -> float:
        raise AssertionError(f"{path} is empty: nothing to probe")

    async def row_lands() -> None:
        await asyncio.sleep(0.6)
        await commit_segment(sessions, root, in_commit, NewSegment(cam, T0 + 30 * s1, T0 + 60 * s1))

    async with sessions() as s:
        landing = asyncio.create_task(row_lands())
        # However long the commit's fsyncs take (seconds, on a disk another process is writing
        # to): the reader waits for the row, not for a guess at the time the commit needs.
        run = await find_run(s, root, cam, T0 + 45 * s1, not_probed, settle_s=60)
        await landing
    assert [(p.start_us - T0, p.end_us - T0) for p in run] == [(30 * s1, 60 * s1)]
    # A real gap at the live edge is answered as one once the wait is over.
    async with sessions() as s:
        started = time.monotonic()
        assert await find_run(s, root, cam, T0 + 75 * s1, not_probed, settle_s=0.5) == []
    assert 0.5 <= time.monotonic() - started < 3


async def test_find_run_measures_the_first_segment_of_a_recorder_run(sessions, tmp_path: Path) -> None:
    """Nothing catalogued before it: the growing file began at its modification time minus its
    media duration so far, probed with ffprobe (real ffmpeg, real Matroska)."""
    from cameras.recorder import media_duration_s

    root = tmp_path / "rec"
    cam = await make_camera(sessions, tmp_path)
    opened = datetime.fromtimestamp(T0 / 1e6, UTC)
    growing = root / str(cam) / "incoming" / opened.strftime(incoming_pattern("9"))
    growing.parent.mkdir(parents=True)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=160x90:rate=25:duration=2", "-c:v", "libx264", "-g", "25", str(growing)],
                   check=True, timeout=60)
    mtime_us = T0 + 2_500_000
    os.utime(growing, ns=(mtime_us * 1000, mtime_us * 1000))
    duration_s = await media_duration_s(growing)
    assert 1.9 <= duration_s <= 2.0
    async with sessions() as s:
        run = await find_run(s, root, cam, T0 - 60_000_000, media_duration_s)
    assert [(p.path, p.start_us, p.end_us) for p in run] == [(growing, mtime_us - int(duration_s * 1e6), None)]


async def test_find_run_waits_out_a_growing_file_committed_while_it_is_measured(sessions, tmp_path: Path) -> None:
    """The first file of a recorder run is measured (its time, then its media duration); the
    recorder may commit it, renaming it into the store, between the two. The reader then stat()ed
    a file that was gone and the request failed with FileNotFoundError (seen in CI: playback of
    "20 s ago" on a loaded machine). The file is in its commit, as between a rename and its row:
    the reader waits for the row."""
    root = tmp_path / "rec"
    cam = await make_camera(sessions, tmp_path)
    s1 = 1_000_000
    opened = datetime.fromtimestamp(T0 / 1e6, UTC)
    growing = incoming_file(root, cam, opened.strftime(incoming_pattern("9")), b"growing")
    in_commit = tmp_path / "in-commit.mkv"
    landing: list[asyncio.Task] = []

    async def committed_while_probed(path: Path) -> float:
        # ffmpeg has opened the next segment (empty so far) and the recorder commits this one:
        # the rename now, the row a moment later.
        next_opened = datetime.fromtimestamp((T0 + 30 * s1) / 1e6, UTC)
        incoming_file(root, cam, next_opened.strftime(incoming_pattern("9")), b"")
        path.rename(in_commit)

        async def row_lands() -> None:
            await asyncio.sleep(0.5)
            await commit_segment(sessions, root, in_commit, NewSegment(cam, T0, T0 + 30 * s1))

        landing.append(asyncio.create_task(row_lands()))
        return 25.0

    async with sessions() as s:
        run = await find_run(s, root, cam, T0 + 10 * s1, committed_while_probed, settle_s=60)
    await asyncio.gather(*landing)
    assert not growing.exists()
    assert [(p.start_us - T0, p.end_us - T0) for p in run] == [(0, 30 * s1)]
