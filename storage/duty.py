"""Monitoring hours: operators' duty sessions, the planned rota, and what a week was monitored.

A duty session is a deliberate act (sign on, sign off), not a login: an operator may be logged
in without watching, and a screen may stay logged in through a handover. A user has at most
one open session (a partial unique index, so two racing sign-ons cannot both win).

**Staffed hours** of a week are the hours in which at least one operator was on duty: the
union of the sessions, so two operators on at once count once. This is what the council's
target (116 h a week) measures: hours of the week that were monitored. Operator-hours (the sum
of every session) are reported beside it, for staffing cost. **Unmonitored** intervals are the
rest of the week. A week is an ISO week in Europe/London local time: Monday 00:00 to the next
Monday 00:00 local, so the week of the March clock change has 167 hours and the October one 169.

The rota is a set of weekly windows in local time (weekday 0 = Monday, minutes from local
midnight, end after start, at most 1440: a shift across midnight is two windows). A window's
local times are turned into instants per date, so the rota follows the clock changes; a local
time the March change skips is read as the instant after the gap (01:30 is 02:30 BST).
Times are integer UTC microseconds (docs/design/time.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Index, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import Conflict, Invalid, NotFound, audit
from storage.db import Base, now_us
from storage.weeks import LONDON, local_us, parse_week, week_bounds

HOUR_US = 3_600_000_000
MINUTES_PER_DAY = 1440
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TARGET_HOURS = 116  # the council's staffed-hours target per week (issue 13)


class DutySession(Base):
    __tablename__ = "duty_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(200))
    on_at_us: Mapped[int] = mapped_column(BigInteger)
    off_at_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        Index("ix_duty_sessions_on_at_us", "on_at_us"),
        # At most one open session per user, enforced by the database (migration 0011).
        Index("uq_duty_sessions_open", "username", unique=True,
              sqlite_where=off_at_us.is_(None), postgresql_where=off_at_us.is_(None)),
    )

    def to_dict(self) -> dict:
        return {"id": self.id, "username": self.username, "on_at_us": self.on_at_us,
                "off_at_us": self.off_at_us, "note": self.note}


class RotaWindow(Base):
    __tablename__ = "rota_windows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday .. 6 = Sunday, local
    start_minute: Mapped[int] = mapped_column(Integer)  # minutes from local midnight
    end_minute: Mapped[int] = mapped_column(Integer)  # after start_minute, at most 1440
    operators: Mapped[int] = mapped_column(Integer, default=1)  # planned staff in the window

    def to_dict(self) -> dict:
        return {"id": self.id, "weekday": self.weekday, "start_minute": self.start_minute,
                "end_minute": self.end_minute, "operators": self.operators}


# --- intervals (pure) ---------------------------------------------------------------------

Interval = tuple[int, int]  # [start_us, end_us)


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, merged, non-empty intervals covering exactly what ``intervals`` cover."""
    merged: list[list[int]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def clip(intervals: Iterable[Interval], start_us: int, end_us: int) -> list[Interval]:
    return [(max(s, start_us), min(e, end_us)) for s, e in intervals if s < end_us and e > start_us]


def complement(covered: Sequence[Interval], start_us: int, end_us: int) -> list[Interval]:
    """What of [start_us, end_us) ``covered`` (merged, sorted) leaves out."""
    out, at = [], start_us
    for s, e in clip(covered, start_us, end_us):
        if s > at:
            out.append((at, s))
        at = max(at, e)
    if at < end_us:
        out.append((at, end_us))
    return out


def total_us(intervals: Iterable[Interval]) -> int:
    return sum(e - s for s, e in intervals)


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Intersection of two merged, sorted interval lists."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def inside(at_us: int, intervals: Sequence[Interval]) -> bool:
    return any(s <= at_us < e for s, e in intervals)


def rota_intervals(windows: Iterable[RotaWindow], week: str, tz_name: str = LONDON) -> list[tuple[int, int, int]]:
    """Each rota window placed in the week: (start_us, end_us, operators), in time order."""
    year, number = parse_week(week)
    tz = ZoneInfo(tz_name)
    monday = date.fromisocalendar(year, number, 1)
    out = []
    for w in windows:
        day = monday + timedelta(days=w.weekday)
        out.append((local_us(day, w.start_minute, tz), local_us(day, w.end_minute, tz), w.operators))
    return sorted(out)


# --- duty sessions ------------------------------------------------------------------------

async def current(session: AsyncSession, username: str) -> DutySession | None:
    """The user's open duty session, if any."""
    return await session.scalar(
        select(DutySession).where(DutySession.username == username, DutySession.off_at_us.is_(None)))


async def on_duty(session: AsyncSession) -> list[DutySession]:
    """Every open duty session, oldest first."""
    return list((await session.execute(
        select(DutySession).where(DutySession.off_at_us.is_(None)).order_by(DutySession.on_at_us))).scalars())


async def sign_on(session: AsyncSession, username: str, note: str = "", *, at_us: int | None = None) -> DutySession:
    """Open a duty session for ``username``; Conflict if one is already open. Audited."""
    if not username.strip():
        raise Invalid("signing on needs a user")
    if await current(session, username) is not None:
        raise Conflict(f"{username} is already on duty: sign off first")
    duty = DutySession(username=username, on_at_us=now_us() if at_us is None else at_us, note=note)
    session.add(duty)
    await session.flush()
    await audit.append(session, username, "duty.on", f"duty:{duty.id}", note=note)
    return duty


async def sign_off(session: AsyncSession, username: str, *, by: str | None = None,
                   at_us: int | None = None) -> DutySession:
    """Close the user's open duty session (``by`` a supervisor signing someone else off);
    Conflict if none is open. Audited."""
    duty = await current(session, username)
    if duty is None:
        raise Conflict(f"{username} is not on duty")
    off = now_us() if at_us is None else at_us
    if off < duty.on_at_us:
        raise Invalid("a duty session cannot end before it began")
    duty.off_at_us = off
    await session.flush()
    await audit.append(session, by or username, "duty.off", f"duty:{duty.id}", user=username,
                       minutes=(off - duty.on_at_us) // 60_000_000)
    return duty


async def sessions_between(session: AsyncSession, start_us: int, end_us: int,
                           username: str | None = None) -> list[DutySession]:
    """Duty sessions overlapping [start_us, end_us) (open ones included), oldest first."""
    query = (select(DutySession).where(DutySession.on_at_us < end_us)
             .where(DutySession.off_at_us.is_(None) | (DutySession.off_at_us > start_us))
             .order_by(DutySession.on_at_us, DutySession.id))
    if username is not None:
        query = query.where(DutySession.username == username)
    return list((await session.execute(query)).scalars())


# --- rota windows -------------------------------------------------------------------------

def _check_window(weekday: int, start_minute: int, end_minute: int, operators: int) -> None:
    if not 0 <= weekday <= 6:
        raise Invalid("weekday: 0 (Monday) to 6 (Sunday)")
    if not 0 <= start_minute < MINUTES_PER_DAY:
        raise Invalid("start_minute: 0 to 1439 (minutes from local midnight)")
    if not start_minute < end_minute <= MINUTES_PER_DAY:
        raise Invalid("end_minute: after start_minute and at most 1440 (a shift across midnight is two windows)")
    if not 0 <= operators <= 100:
        raise Invalid("operators: 0 to 100")


async def list_rota(session: AsyncSession) -> list[RotaWindow]:
    return list((await session.execute(
        select(RotaWindow).order_by(RotaWindow.weekday, RotaWindow.start_minute, RotaWindow.id))).scalars())


async def add_window(session: AsyncSession, by: str, *, weekday: int, start_minute: int, end_minute: int,
                     operators: int = 1) -> RotaWindow:
    _check_window(weekday, start_minute, end_minute, operators)
    window = RotaWindow(weekday=weekday, start_minute=start_minute, end_minute=end_minute, operators=operators)
    session.add(window)
    await session.flush()
    await audit.append(session, by, "rota.add", f"rota:{window.id}", **window.to_dict())
    return window


async def update_window(session: AsyncSession, by: str, window_id: int, **changes: int) -> RotaWindow:
    window = await session.get(RotaWindow, window_id)
    if window is None:
        raise NotFound(f"no rota window {window_id}")
    unknown = set(changes) - {"weekday", "start_minute", "end_minute", "operators"}
    if unknown:
        raise Invalid(f"unknown rota fields: {', '.join(sorted(unknown))}")
    merged = {**window.to_dict(), **changes}
    _check_window(merged["weekday"], merged["start_minute"], merged["end_minute"], merged["operators"])
    before = window.to_dict()
    for key, value in changes.items():
        setattr(window, key, value)
    await session.flush()
    await audit.append(session, by, "rota.update", f"rota:{window.id}",
                       changes={k: [before[k], v] for k, v in changes.items() if before[k] != v})
    return window


async def remove_window(session: AsyncSession, by: str, window_id: int) -> None:
    window = await session.get(RotaWindow, window_id)
    if window is None:
        raise NotFound(f"no rota window {window_id}")
    record = window.to_dict()
    await session.delete(window)
    await session.flush()
    await audit.append(session, by, "rota.remove", f"rota:{window_id}", **record)


# --- reports ------------------------------------------------------------------------------

@dataclass(frozen=True)
class WeekCoverage:
    """What one week was monitored, against the target and the rota. Hours are floats for
    display; the intervals are exact (UTC microseconds)."""

    week: str
    start_us: int
    end_us: int
    hours_in_week: float  # 168, or 167 / 169 in the weeks of the clock changes
    target_hours: float
    staffed_hours: float  # at least one operator on duty (the union)
    operator_hours: float  # every session's own hours, summed
    unmonitored: list[Interval]
    planned_hours: float  # hours the rota plans at least one operator for
    planned_operator_hours: float
    planned_staffed_hours: float  # of the planned hours, those someone was on duty
    planned_unstaffed: list[Interval]  # planned, but nobody on duty
    unplanned_staffed_hours: float  # on duty outside the rota

    @property
    def unmonitored_hours(self) -> float:
        return self.hours_in_week - self.staffed_hours

    def to_dict(self) -> dict:
        return {
            "week": self.week, "start_us": self.start_us, "end_us": self.end_us,
            "hours_in_week": self.hours_in_week, "target_hours": self.target_hours,
            "staffed_hours": self.staffed_hours, "operator_hours": self.operator_hours,
            "unmonitored_hours": self.unmonitored_hours,
            "unmonitored": [{"start_us": s, "end_us": e} for s, e in self.unmonitored],
            "planned_hours": self.planned_hours, "planned_operator_hours": self.planned_operator_hours,
            "planned_staffed_hours": self.planned_staffed_hours,
            "planned_unstaffed": [{"start_us": s, "end_us": e} for s, e in self.planned_unstaffed],
            "unplanned_staffed_hours": self.unplanned_staffed_hours,
        }


def _hours(us: int) -> float:
    return round(us / HOUR_US, 3)


async def on_duty_intervals(session: AsyncSession, start_us: int, end_us: int,
                            *, now: int | None = None) -> list[Interval]:
    """Every duty session overlapping [start_us, end_us), clipped to it; an open session runs
    to ``now`` (not into the future)."""
    now = now_us() if now is None else now
    rows = await sessions_between(session, start_us, end_us)
    return clip([(d.on_at_us, d.off_at_us if d.off_at_us is not None else max(now, d.on_at_us)) for d in rows],
                start_us, end_us)


async def staffed_intervals(session: AsyncSession, start_us: int, end_us: int, *, now: int | None = None) -> list[Interval]:
    """Merged intervals of [start_us, end_us) with at least one operator on duty."""
    return union(await on_duty_intervals(session, start_us, end_us, now=now))


async def unmonitored_intervals(session: AsyncSession, start_us: int, end_us: int,
                                *, now: int | None = None) -> list[Interval]:
    """Intervals of [start_us, end_us) with nobody on duty. The future is not counted as
    unmonitored: the period is cut at ``now``."""
    now = now_us() if now is None else now
    end = min(end_us, max(now, start_us))
    return complement(await staffed_intervals(session, start_us, end, now=now), start_us, end)


async def week_coverage(session: AsyncSession, week: str, *, target_hours: float = TARGET_HOURS,
                        tz_name: str = LONDON, now: int | None = None) -> WeekCoverage:
    """Staffed hours of an ISO week against the target and the rota (see the module's rules)."""
    now = now_us() if now is None else now
    start, end = week_bounds(week, tz_name)
    sessions_ = await on_duty_intervals(session, start, end, now=now)
    staffed = union(sessions_)
    planned_raw = [(s, e, n) for s, e, n in rota_intervals(await list_rota(session), week, tz_name) if n > 0]
    planned = union((s, e) for s, e, _ in planned_raw)
    planned_staffed = intersect(planned, staffed)
    elapsed_end = min(end, max(now, start))
    return WeekCoverage(
        week=week, start_us=start, end_us=end, hours_in_week=_hours(end - start), target_hours=target_hours,
        staffed_hours=_hours(total_us(staffed)), operator_hours=_hours(total_us(sessions_)),
        unmonitored=complement(staffed, start, elapsed_end),
        planned_hours=_hours(total_us(planned)),
        planned_operator_hours=_hours(sum((e - s) * n for s, e, n in planned_raw)),
        planned_staffed_hours=_hours(total_us(planned_staffed)),
        planned_unstaffed=intersect(planned, complement(staffed, start, elapsed_end)),
        unplanned_staffed_hours=_hours(total_us(staffed) - total_us(planned_staffed)),
    )


async def incidents_in_unmonitored(session: AsyncSession, start_us: int, end_us: int, times_us: Iterable[int],
                                   *, now: int | None = None) -> list[int]:
    """Which of ``times_us`` (e.g. incidents' ``occurred_at_us``) fall in [start_us, end_us)
    when nobody was on duty, in time order. Takes times, not incidents, so it depends on no
    other table."""
    gaps = await unmonitored_intervals(session, start_us, end_us, now=now)
    return sorted(t for t in times_us if start_us <= t < end_us and inside(t, gaps))
