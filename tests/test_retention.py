"""The keep-or-delete decision as a pure function, and a real retention run on both databases."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from storage import audit
from storage.catalogue import NewSegment, commit_segment, timeline
from storage.db import transaction
from storage.holds import HeldSpan, add_hold, release_hold
from storage.inventory import CameraSpec, add_camera
from storage.keys import load_or_create_keys
from storage.models import RetentionReceipt
from storage.retention import DAY_US, SegmentInfo, plan_deletions, run_retention

NOW = 1_800_000_000 * 1_000_000


def seg(i: int, cam: int, age_days: float, size: int = 100) -> SegmentInfo:
    end = NOW - int(age_days * DAY_US)
    return SegmentInfo(i, cam, end - 30_000_000, end, size, f"{cam}/{i}.mkv")


def plan(segments, holds=(), free=10**12, floor=0, days=None, default=31):
    return plan_deletions(list(segments), now_us=NOW, retention_days=days or {}, default_days=default,
                          holds=list(holds), free_bytes=free, floor_bytes=floor)


def test_expired_goes_young_stays() -> None:
    out = plan([seg(1, 1, 32), seg(2, 1, 30), seg(3, 1, 31.0001)])
    assert [(d.segment.id, d.reason) for d in out] == [(1, "expired"), (3, "expired")]


def test_per_camera_days() -> None:
    out = plan([seg(1, 1, 10), seg(2, 2, 10)], days={1: 7})
    assert [d.segment.id for d in out] == [1]


def test_hold_blocks_expiry_for_its_camera_and_time_only() -> None:
    old = seg(1, 1, 40)
    other_cam = seg(2, 2, 40)
    hold = HeldSpan(1, old.start_us - 1, old.end_us + 1)
    out = plan([old, other_cam], holds=[hold])
    assert [d.segment.id for d in out] == [2]
    everything = HeldSpan(None, 0, NOW)
    assert plan([old, other_cam], holds=[everything]) == []


def test_floor_purges_oldest_unheld_first() -> None:
    segs = [seg(1, 1, 5), seg(2, 2, 4), seg(3, 1, 3), seg(4, 2, 2)]
    held = HeldSpan(2, segs[1].start_us, segs[1].end_us)
    out = plan(segs, holds=[held], free=50, floor=250)
    assert [(d.segment.id, d.reason) for d in out] == [(1, "disk_floor"), (3, "disk_floor")]


def test_expired_deletions_count_towards_the_floor() -> None:
    out = plan([seg(1, 1, 40), seg(2, 1, 1)], free=0, floor=100)
    assert [(d.segment.id, d.reason) for d in out] == [(1, "expired")]


ages = st.lists(st.tuples(st.integers(1, 3), st.floats(0, 60), st.integers(1, 1000)), max_size=40)


@given(ages, st.integers(0, 5000), st.integers(0, 5000), st.booleans())
def test_never_deletes_held_footage(spec, free, floor, hold_all_of_cam1) -> None:
    segs = [seg(i, cam, age, size) for i, (cam, age, size) in enumerate(spec)]
    holds = [HeldSpan(1, 0, NOW)] if hold_all_of_cam1 else []
    out = plan(segs, holds=holds, free=free, floor=floor)
    deleted = {d.segment.id for d in out}
    assert len(deleted) == len(out)
    for s in segs:
        if hold_all_of_cam1 and s.camera_id == 1:
            assert s.id not in deleted
        if s.end_us <= NOW - 31 * DAY_US and not (hold_all_of_cam1 and s.camera_id == 1):
            assert s.id in deleted  # expired and unheld always goes


async def _store_segments(sessions, root: Path, cam_id: int, ages_days: list[float]) -> None:
    for age in ages_days:
        end = NOW - int(age * DAY_US)
        tmp = root / "tmp.mkv"
        root.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b"x" * 1000)
        await commit_segment(sessions, root, tmp, NewSegment(cam_id, end - 30_000_000, end))


async def test_run_deletes_expired_unheld_and_writes_receipt(sessions, tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path / "key")
    root = tmp_path / "rec"
    async with transaction(sessions) as s:
        cam = await add_camera(s, CameraSpec(name="Town Centre 01"), keys)
        held_end = NOW - 40 * DAY_US
        hold = await add_hold(s, reason="police request", owner="sup", review_us=NOW + DAY_US,
                              windows=[(cam.id, held_end - 60_000_000, held_end)])
    await _store_segments(sessions, root, cam.id, [40, 35, 2, 1])

    dry = await run_retention(sessions, root, default_days=31, floor_bytes=0, dry_run=True, now=NOW, free_bytes=10**12)
    assert dry.deleted == 1 and dry.dry_run
    async with sessions() as s:
        assert len((await timeline(s, cam.id, 0, NOW)).segments) == 4

    result = await run_retention(sessions, root, default_days=31, floor_bytes=0, now=NOW, free_bytes=10**12)
    assert result.deleted == 1 and result.bytes == 1000
    async with sessions() as s:
        left = (await timeline(s, cam.id, 0, NOW)).segments
        assert len(left) == 3
        assert all((root / x.path).exists() for x in left)
        receipt = await s.get(RetentionReceipt, result.receipt_id)
        assert receipt.segments == 1 and receipt.summary[0]["reason"] == "expired"
        assert (await audit.verify_chain(s)).ok
    assert sum(1 for p in root.rglob("*.mkv")) == 3

    async with transaction(sessions) as s:
        await release_hold(s, hold.id, "sup")
    result = await run_retention(sessions, root, default_days=31, floor_bytes=0, now=NOW, free_bytes=10**12)
    assert result.deleted == 1  # the 40-day-old segment, no longer held


async def test_floor_never_touches_held(sessions, tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path / "key")
    root = tmp_path / "rec"
    async with transaction(sessions) as s:
        cam = await add_camera(s, CameraSpec(name="Queens Park 01"), keys)
        await add_hold(s, reason="incident", owner="sup", review_us=NOW + DAY_US, windows=[(cam.id, 0, NOW)])
    await _store_segments(sessions, root, cam.id, [3, 2, 1])
    result = await run_retention(sessions, root, default_days=31, floor_bytes=10**15, now=NOW, free_bytes=0)
    assert result.deleted == 0 and result.below_floor
