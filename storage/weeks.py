"""ISO weeks and days in local time (Europe/London by default), as UTC microsecond bounds.

A week runs from local Monday 00:00 to the next local Monday 00:00, so the week of the March
clock change has 167 hours and the October one 169; a day likewise has 23, 24 or 25 hours.
Reports of monitoring hours and camera availability use these (docs/design/time.md).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from storage import Invalid

LONDON = "Europe/London"


_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


def parse_week(week: str) -> tuple[int, int]:
    """``"2026-W48"`` -> (2026, 48); Invalid names what is wrong."""
    m = _WEEK.match(week or "")
    if not m:
        raise Invalid(f"week {week!r}: expected an ISO week such as 2026-W48")
    year, number = int(m[1]), int(m[2])
    try:
        date.fromisocalendar(year, number, 1)
    except ValueError:
        raise Invalid(f"week {week!r}: {year} has no week {number}") from None
    return year, number


def local_us(day: date, minute: int, tz: ZoneInfo) -> int:
    """The instant of local ``minute`` after midnight of ``day`` (1440 is the next midnight)."""
    local = datetime.combine(day, time(), tzinfo=tz) + timedelta(minutes=minute)
    # datetime + timedelta is wall-clock arithmetic: re-attach the zone so the offset is the one
    # in force at that wall time (fold=0: a repeated hour is its first pass, a skipped one is
    # read with the offset before the gap, i.e. the instant after it).
    local = local.replace(tzinfo=None).replace(tzinfo=tz)
    return int(local.timestamp()) * 1_000_000


def week_bounds(week: str, tz_name: str = LONDON) -> tuple[int, int]:
    """[start_us, end_us) of an ISO week: local Monday 00:00 to the next local Monday 00:00."""
    year, number = parse_week(week)
    tz = ZoneInfo(tz_name)
    monday = date.fromisocalendar(year, number, 1)
    return local_us(monday, 0, tz), local_us(monday + timedelta(days=7), 0, tz)


def week_of(at_us: int, tz_name: str = LONDON) -> str:
    """The ISO week (local time) an instant falls in, e.g. ``"2026-W48"``."""
    local = datetime.fromtimestamp(at_us / 1e6, ZoneInfo(tz_name))
    year, number, _ = local.isocalendar()
    return f"{year}-W{number:02d}"


def week_days(week: str, tz_name: str = LONDON) -> list[tuple[date, int, int]]:
    """The seven local days of an ISO week: (date, start_us, end_us)."""
    year, number = parse_week(week)
    tz = ZoneInfo(tz_name)
    monday = date.fromisocalendar(year, number, 1)
    return [(monday + timedelta(days=i), local_us(monday + timedelta(days=i), 0, tz),
             local_us(monday + timedelta(days=i + 1), 0, tz)) for i in range(7)]
