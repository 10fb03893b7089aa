"""The statistics table, like the council report's Table 1: incidents by category in a period
against a comparison period, with the percentage change. Anti-social behaviour is shown as a
group (the sum of its three subtypes) and then each subtype.

Periods are local dates (Europe/London), both ends included: ``--from 2025-04-01 --to
2026-03-31`` is the whole financial year, from local midnight to local midnight.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from storage import Invalid
from storage import reports as q
from storage.db import now_us
from storage.incidents import CATEGORIES
from storage.weeks import LONDON, local_us

ASB = ("asb_personal", "asb_nuisance", "asb_environmental")
EARLIEST, LATEST = date(1970, 1, 2), date(2199, 12, 30)  # what timefmt accepts, a day inside


@dataclass
class StatsRow:
    key: str
    label: str
    current: int
    previous: int
    change_pct: float | None  # None: nothing in the comparison period to compare against
    level: int = 0  # 0: a category or group; 1: a subtype under its group
    group: bool = False


@dataclass
class StatsTable:
    tz: str
    from_date: str
    to_date: str
    compare_from: str
    compare_to: str
    start_us: int
    end_us: int
    compare_start_us: int
    compare_end_us: int
    generated_at_us: int
    rows: list[StatsRow]
    total: StatsRow

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def row(self, key: str) -> StatsRow:
        return next(r for r in [*self.rows, self.total] if r.key == key)


def change_pct(current: int, previous: int) -> float | None:
    """Percentage change from ``previous`` to ``current``, one decimal; None when previous is 0."""
    if previous == 0:
        return None
    return round((current - previous) * 100 / previous, 1)


def day_bounds(first: date, last: date, tz_name: str = LONDON) -> tuple[int, int]:
    """[start_us, end_us) from local midnight of ``first`` to local midnight after ``last``."""
    for d in (first, last):
        if not EARLIEST <= d <= LATEST:
            raise Invalid(f"date {d.isoformat()}: outside 1970 to 2199")
    if last < first:
        raise Invalid(f"period {first.isoformat()} to {last.isoformat()}: ends before it starts")
    tz = ZoneInfo(tz_name)
    return local_us(first, 0, tz), local_us(last + timedelta(days=1), 0, tz)


def _row(key: str, label: str, a: int, b: int, **kw: Any) -> StatsRow:
    return StatsRow(key, label, a, b, change_pct(a, b), **kw)


async def build_stats(session: AsyncSession, from_date: date, to_date: date, compare_from: date, compare_to: date,
                      *, tz_name: str = LONDON, now: int | None = None) -> StatsTable:
    period = day_bounds(from_date, to_date, tz_name)
    compare = day_bounds(compare_from, compare_to, tz_name)
    counts = await q.by_category_two_periods(session, period, compare)
    get = {k: counts.get(k, (0, 0)) for k in CATEGORIES}
    asb = (sum(get[k][0] for k in ASB), sum(get[k][1] for k in ASB))
    rows = [_row("asb", "Anti-social behaviour (all)", *asb, group=True)]
    rows += [_row(k, CATEGORIES[k], *get[k], level=1) for k in ASB]
    rows += [_row(k, label, *get[k]) for k, label in CATEGORIES.items() if k not in ASB]
    total = _row("total", "All incidents", sum(a for a, _ in get.values()), sum(b for _, b in get.values()),
                 group=True)
    return StatsTable(
        tz=tz_name, from_date=from_date.isoformat(), to_date=to_date.isoformat(),
        compare_from=compare_from.isoformat(), compare_to=compare_to.isoformat(),
        start_us=period[0], end_us=period[1], compare_start_us=compare[0], compare_end_us=compare[1],
        generated_at_us=now_us() if now is None else now, rows=rows, total=total)
