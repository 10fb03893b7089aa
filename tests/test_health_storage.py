"""storage.health on SQLite and PostgreSQL: the fault log (by hand and automatic, at most one
unrepaired automatic fault per camera and kind, time to repair) and availability from the
catalogue's segments and gaps, per local day of an ISO week."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from evidence_media import add_cameras
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from storage import Conflict, Invalid, NotFound
from storage.audit import AuditEntry
from storage.db import transaction
from storage.health import (
    AUTOMATIC,
    CameraFault,
    availability,
    list_faults,
    open_automatic,
    open_fault,
    repair_automatic,
    set_status,
    update_fault,
    week_availability,
)
from storage.models import Gap, Segment
from storage.schema import metadata
from storage.weeks import week_bounds

HOUR_US = 3_600_000_000
MIN_US = 60_000_000


async def test_tables_match_the_migration(sessions):
    """The ORM models of duty and health and migration 0011 describe the same tables."""
    async with sessions() as session:
        conn = await session.connection()
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
    ours = [d for d in diff if any(t in repr(d) for t in ("duty_sessions", "rota_windows", "camera_faults"))]
    assert ours == []


async def test_a_fault_by_hand_through_its_life(sessions):
    (cam,) = await add_cameras(sessions, ["Market Street"])
    async with transaction(sessions) as session:
        fault = await open_fault(session, "sup1", cam, "other", "housing cracked", at_us=1_000 * HOUR_US)
    async with transaction(sessions) as session:
        await update_fault(session, "sup1", fault.id, contractor_ref="ACME-1234")
        await set_status(session, "sup1", fault.id, "reported")
    with pytest.raises(Conflict, match="cannot become open"):
        async with transaction(sessions) as session:
            await set_status(session, "sup1", fault.id, "open")
    async with transaction(sessions) as session:
        done = await set_status(session, "sup1", fault.id, "repaired", at_us=1_026 * HOUR_US)
        assert done.time_to_repair_us == 26 * HOUR_US
        await set_status(session, "sup1", fault.id, "closed")
    with pytest.raises(Conflict, match="closed"):
        async with transaction(sessions) as session:
            await update_fault(session, "sup1", fault.id, contractor_ref="X")
    for bad in (lambda s: open_fault(s, "sup1", cam, "exploded"), lambda s: open_fault(s, "", cam, "other"),
                lambda s: set_status(s, "sup1", fault.id, "mended")):
        with pytest.raises(Invalid):
            async with transaction(sessions) as session:
                await bad(session)
    with pytest.raises(NotFound):
        async with transaction(sessions) as session:
            await open_fault(session, "sup1", cam + 99, "other")
    async with sessions() as session:
        (row,) = await list_faults(session, camera_id=cam)
        assert (row.status, row.contractor_ref, row.source) == ("closed", "ACME-1234", "sup1")
        actions = list((await session.execute(select(AuditEntry.action).order_by(AuditEntry.seq))).scalars())
    assert actions == ["fault.open", "fault.update", "fault.reported", "fault.repaired", "fault.closed"]


async def test_one_unrepaired_automatic_fault_per_camera_and_kind(sessions):
    cam, other = await add_cameras(sessions, ["Bus Station", "Car Park"])
    async with transaction(sessions) as session:
        first, opened = await open_automatic(session, cam, "offline", "no footage for 6 min")
        assert opened
        again, opened = await open_automatic(session, cam, "offline", "no footage for 11 min")
        assert not opened and again.id == first.id
        _, opened = await open_automatic(session, cam, "dark", "mean luma 8")  # another kind
        assert opened
        _, opened = await open_automatic(session, other, "offline", "no footage")  # another camera
        assert opened
    with pytest.raises(IntegrityError):  # the database holds the rule against racing checks
        async with transaction(sessions) as session:
            session.add(CameraFault(camera_id=cam, kind="offline", source=AUTOMATIC, opened_at_us=1,
                                    description="", status="reported"))
    async with transaction(sessions) as session:
        fixed = await repair_automatic(session, cam, "offline", "recording again")
        assert fixed.id == first.id and fixed.status == "repaired" and fixed.time_to_repair_us >= 0
        assert await repair_automatic(session, cam, "offline") is None
        # It goes off again: a new fault, the repaired one stays as it was.
        second, opened = await open_automatic(session, cam, "offline", "no footage again")
        assert opened and second.id != first.id
    with pytest.raises(Conflict, match="already has an unrepaired"):
        async with transaction(sessions) as session:
            await set_status(session, "sup1", first.id, "open")
    async with sessions() as session:
        unrepaired = await list_faults(session, unrepaired_only=True)
        assert sorted((f.camera_id, f.kind) for f in unrepaired) == sorted(
            [(cam, "offline"), (cam, "dark"), (other, "offline")])
        actors = set((await session.execute(select(AuditEntry.actor))).scalars())
    assert actors == {"system:health"}


def _segment(cam: int, start: int, end: int) -> Segment:
    return Segment(camera_id=cam, start_us=start, end_us=end, bytes=1, sha256="0" * 64,
                   path=f"{cam}/x/{start}_{end}.mkv")


async def test_availability_per_local_day_from_segments_and_gaps(sessions):
    cam, late, silent = await add_cameras(sessions, ["Bridge", "New Camera", "Never Recorded"])
    start, end = week_bounds("2026-W43")  # the October change: Sunday has 25 hours
    day = 24 * HOUR_US
    async with transaction(sessions) as session:
        # Bridge: 30-minute segments all week, except Tuesday 10:00-16:00 (a 6-hour gap).
        t = start
        while t < end:
            if not (start + day + 10 * HOUR_US <= t < start + day + 16 * HOUR_US):
                session.add(_segment(cam, t, min(t + 30 * MIN_US, end)))
            t += 30 * MIN_US
        session.add(Gap(camera_id=cam, start_us=start + day + 10 * HOUR_US, end_us=start + day + 16 * HOUR_US,
                        reason="camera unreachable"))
        # New Camera: first footage on Thursday noon, continuous since.
        first = start + 3 * day + 12 * HOUR_US
        session.add(_segment(late, first, end))
        # A segment that began in the week before and ends 5 minutes into it.
        session.add(_segment(cam, start - 10 * MIN_US, start + 5 * MIN_US))
    async with sessions() as session:
        result = {a.camera_id: a for a in await week_availability(session, "2026-W43", now=end + day)}
    bridge = result[cam]
    assert [round(p.ratio, 4) for p in bridge.periods] == [1, 0.75, 1, 1, 1, 1, 1]
    assert bridge.periods[6].elapsed_us == 25 * HOUR_US
    assert bridge.total.elapsed_us == 169 * HOUR_US
    assert bridge.total.recorded_us == 163 * HOUR_US
    assert bridge.gaps == [(start + day + 10 * HOUR_US, start + day + 16 * HOUR_US, "camera unreachable")]
    newer = result[late]
    assert [p.ratio for p in newer.periods[:3]] == [None, None, None]  # before its first footage
    assert newer.periods[3].elapsed_us == 12 * HOUR_US and newer.periods[3].ratio == 1
    assert result[silent].total.ratio is None and result[silent].total.elapsed_us == 0


async def test_availability_stops_at_now_and_counts_an_open_gap(sessions):
    (cam,) = await add_cameras(sessions, ["Library"])
    start, _ = week_bounds("2026-W48")
    now = start + 10 * HOUR_US
    async with transaction(sessions) as session:
        session.add(_segment(cam, start, start + 4 * HOUR_US))
        session.add(Gap(camera_id=cam, start_us=start + 4 * HOUR_US, end_us=None, reason="no signal"))
    async with sessions() as session:
        (a,) = await availability(session, [(start, start + 24 * HOUR_US)], now=now)
        assert a.total.elapsed_us == 10 * HOUR_US and a.total.ratio == pytest.approx(0.4)
        assert a.gaps == [(start + 4 * HOUR_US, now, "no signal")]
        with pytest.raises(Invalid):
            await availability(session, [(start, start)])
