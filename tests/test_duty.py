"""storage.duty and storage.weeks on SQLite and PostgreSQL: signing on and off, the rota, and
what a week was monitored (union of sessions, clock-change weeks, incidents in unmonitored hours)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from storage import Conflict, Invalid, NotFound
from storage.audit import AuditEntry, verify_chain
from storage.db import transaction
from storage.duty import (
    DutySession,
    add_window,
    complement,
    current,
    incidents_in_unmonitored,
    list_rota,
    on_duty,
    remove_window,
    sign_off,
    sign_on,
    union,
    update_window,
    week_coverage,
)
from storage.weeks import week_bounds, week_days, week_of

HOUR_US = 3_600_000_000


def utc_us(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1_000_000


def test_weeks_are_local_and_the_clock_change_weeks_have_167_and_169_hours():
    start, end = week_bounds("2026-W48")
    # 23 November 2026 is a Monday in GMT: local midnight is 00:00 UTC.
    assert start == utc_us(2026, 11, 23) and end == utc_us(2026, 11, 30)
    assert (end - start) // HOUR_US == 168
    # Summer: local midnight is 23:00 UTC the day before.
    assert week_bounds("2026-W27")[0] == utc_us(2026, 6, 28, 23)
    # Clocks go forward on Sunday 29 March 2026 (week 13), back on Sunday 25 October (week 43).
    s, e = week_bounds("2026-W13")
    assert (e - s) // HOUR_US == 167
    s, e = week_bounds("2026-W43")
    assert (e - s) // HOUR_US == 169
    days = week_days("2026-W43")
    assert [(e - s) // HOUR_US for _, s, e in days] == [24] * 6 + [25]
    assert week_of(utc_us(2026, 11, 29, 23, 59)) == "2026-W48"
    assert week_of(utc_us(2026, 6, 28, 23, 30)) == "2026-W27"  # 00:30 BST on the Monday
    for bad in ("2026-48", "2026-W54", "", "2026-W00"):
        with pytest.raises(Invalid):
            week_bounds(bad)


def test_union_and_complement():
    assert union([(5, 9), (1, 3), (2, 4), (9, 10), (12, 12)]) == [(1, 4), (5, 10)]
    assert complement([(1, 4), (5, 10)], 0, 12) == [(0, 1), (4, 5), (10, 12)]
    assert complement([], 0, 5) == [(0, 5)]
    assert complement([(0, 5)], 0, 5) == []


async def test_sign_on_twice_is_a_conflict_and_sign_off_closes(sessions):
    async with transaction(sessions) as session:
        duty = await sign_on(session, "op1", "day shift")
    with pytest.raises(Conflict, match="already on duty"):
        async with transaction(sessions) as session:
            await sign_on(session, "op1")
    async with transaction(sessions) as session:
        await sign_on(session, "op2")
        assert [d.username for d in await on_duty(session)] == ["op1", "op2"]
    async with transaction(sessions) as session:
        off = await sign_off(session, "op1")
        assert off.id == duty.id and off.off_at_us >= off.on_at_us
    with pytest.raises(Conflict, match="not on duty"):
        async with transaction(sessions) as session:
            await sign_off(session, "op1")
    async with transaction(sessions) as session:
        assert await current(session, "op1") is None
        again = await sign_on(session, "op1")  # a new session after signing off
        assert again.id != duty.id
    async with sessions() as session:
        actions = [(a, t) for a, t in (await session.execute(
            select(AuditEntry.action, AuditEntry.actor).order_by(AuditEntry.seq))).all()]
        assert actions == [("duty.on", "op1"), ("duty.on", "op2"), ("duty.off", "op1"), ("duty.on", "op1")]
        assert (await verify_chain(session)).ok


async def test_the_database_refuses_a_second_open_session(sessions):
    """Two racing sign-ons that both passed the check: the partial unique index stops one."""
    async with transaction(sessions) as session:
        session.add(DutySession(username="op1", on_at_us=1, note=""))
    with pytest.raises(IntegrityError):
        async with transaction(sessions) as session:
            session.add(DutySession(username="op1", on_at_us=2, note=""))
    async with transaction(sessions) as session:  # closed ones may be many
        session.add_all([DutySession(username="op2", on_at_us=1, off_at_us=2, note=""),
                         DutySession(username="op2", on_at_us=3, off_at_us=4, note="")])


async def test_rota_windows_are_checked_and_audited(sessions):
    async with transaction(sessions) as session:
        w = await add_window(session, "sup1", weekday=0, start_minute=8 * 60, end_minute=16 * 60, operators=2)
    for bad in ({"weekday": 7}, {"start_minute": 600, "end_minute": 600}, {"end_minute": 1441},
                {"operators": -1}):
        with pytest.raises(Invalid):
            async with transaction(sessions) as session:
                await add_window(session, "sup1", **{"weekday": 0, "start_minute": 0, "end_minute": 60,
                                                     "operators": 1, **bad})
    async with transaction(sessions) as session:
        await update_window(session, "sup1", w.id, end_minute=18 * 60)
        with pytest.raises(Invalid):
            await update_window(session, "sup1", w.id, start_minute=19 * 60)
    async with transaction(sessions) as session:
        assert [(x.start_minute, x.end_minute) for x in await list_rota(session)] == [(480, 1080)]
        await remove_window(session, "sup1", w.id)
    with pytest.raises(NotFound):
        async with transaction(sessions) as session:
            await remove_window(session, "sup1", w.id)
    async with sessions() as session:
        actions = list((await session.execute(select(AuditEntry.action).order_by(AuditEntry.seq))).scalars())
        assert actions == ["rota.add", "rota.update", "rota.remove"]


async def test_week_coverage_counts_overlapping_operators_once(sessions):
    start, end = week_bounds("2026-W48")  # GMT: local = UTC
    mon = start
    async with transaction(sessions) as session:
        # Monday: op1 08-16, op2 12-20 (overlap 12-16 counted once: 12 staffed hours).
        await sign_on(session, "op1", at_us=mon + 8 * HOUR_US)
        await sign_off(session, "op1", at_us=mon + 16 * HOUR_US)
        await sign_on(session, "op2", at_us=mon + 12 * HOUR_US)
        await sign_off(session, "op2", at_us=mon + 20 * HOUR_US)
        # A session from the week before running into Monday: only its part in the week counts.
        await sign_on(session, "op3", at_us=start - 2 * HOUR_US)
        await sign_off(session, "op3", at_us=start + HOUR_US)
        # Rota: Monday 08:00-18:00 with 2 operators, Tuesday 08:00-10:00 with 1.
        await add_window(session, "sup", weekday=0, start_minute=480, end_minute=1080, operators=2)
        await add_window(session, "sup", weekday=1, start_minute=480, end_minute=600, operators=1)
    async with sessions() as session:
        cov = await week_coverage(session, "2026-W48", now=end + HOUR_US)
    assert cov.hours_in_week == 168 and cov.target_hours == 116
    assert cov.staffed_hours == 13  # 00-01 and 08-20
    assert cov.operator_hours == 1 + 8 + 8
    assert cov.unmonitored_hours == 155
    assert cov.unmonitored == [(mon + HOUR_US, mon + 8 * HOUR_US), (mon + 20 * HOUR_US, end)]
    assert cov.planned_hours == 12 and cov.planned_operator_hours == 22
    assert cov.planned_staffed_hours == 10  # Monday 08-18; Tuesday's window nobody came
    assert cov.planned_unstaffed == [(mon + 32 * HOUR_US, mon + 34 * HOUR_US)]
    assert cov.unplanned_staffed_hours == 3  # 00-01 and 18-20
    # Incidents found later in footage: which fell in unmonitored time.
    times = [mon + 30 * 60_000_000, mon + 9 * HOUR_US, mon + 22 * HOUR_US, end + HOUR_US, start - HOUR_US]
    async with sessions() as session:
        found = await incidents_in_unmonitored(session, start, end, times, now=end + HOUR_US)
    assert found == [mon + 22 * HOUR_US]


async def test_the_current_week_counts_unmonitored_time_only_up_to_now(sessions):
    start, end = week_bounds("2026-W43")  # 169 hours
    now = start + 10 * HOUR_US
    async with transaction(sessions) as session:
        await sign_on(session, "op1", at_us=start + 6 * HOUR_US)  # still on duty
    async with sessions() as session:
        cov = await week_coverage(session, "2026-W43", now=now)
    assert cov.hours_in_week == 169
    assert cov.staffed_hours == 4  # 06:00 to now, not to the end of the week
    assert cov.unmonitored == [(start, start + 6 * HOUR_US)]


async def test_a_rota_window_across_the_october_change_follows_local_time(sessions):
    """Sunday 25 October 2026 00:00-04:00 local is five hours (01:00-02:00 happens twice)."""
    async with transaction(sessions) as session:
        await add_window(session, "sup", weekday=6, start_minute=0, end_minute=240, operators=1)
    async with sessions() as session:
        cov = await week_coverage(session, "2026-W43", now=week_bounds("2026-W44")[0])
    assert cov.planned_hours == 5
