"""Calendar months in Europe/London: the statutory periods of RIPA authorisations and subject
access requests are counted in calendar days and months where the council is, not in UTC.

A period of months "beginning with" a day ends at the end of the day before the corresponding
date that many months later (1 April + 3 months: the end of 30 June). When that month has no
corresponding date (31 January + 1 month), the period ends at the end of the last day of that
month (28 or 29 February). Periods are returned as an exclusive end: the start (00:00 London)
of the day after the last day, in UTC microseconds, so "still in force" is ``now < end``.
See docs/design/lawful-use.md.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")


def local_date(at_us: int) -> date:
    """The calendar day in London at ``at_us``."""
    return datetime.fromtimestamp(at_us / 1_000_000, UTC).astimezone(LONDON).date()


def day_start_us(day: date) -> int:
    """00:00 London of ``day``, UTC microseconds (midnight always exists in London: the clocks
    change at 01:00 UTC)."""
    start = datetime.combine(day, time(0), LONDON)
    return int(start.astimezone(UTC).timestamp()) * 1_000_000


def corresponding_date(day: date, months: int) -> tuple[date, bool]:
    """The same day of the month ``months`` later, or the last day of that month when it has
    no such day; the flag says the day was clamped to the month's end."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    last = calendar.monthrange(year, month)[1]
    return (date(year, month, day.day), False) if day.day <= last else (date(year, month, last), True)


def months_beginning_with(day: date, months: int) -> int:
    """Exclusive end (UTC microseconds) of a period of ``months`` calendar months beginning with
    ``day``: 00:00 London of the corresponding date, or of the day after the month's last day."""
    end, clamped = corresponding_date(day, months)
    return day_start_us(end + timedelta(days=1) if clamped else end)


def month_deadline(day: date, months: int) -> int:
    """Exclusive end of a deadline of ``months`` calendar months from ``day`` (UK GDPR Art. 12(3)
    as the ICO reads it: the corresponding calendar date, else the last day of that month; the
    whole of that day is in time): 00:00 London of the day after it."""
    end, _ = corresponding_date(day, months)
    return day_start_us(end + timedelta(days=1))
