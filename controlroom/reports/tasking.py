"""The weekly tasking pack: what last week's incidents, faults, hits and hours say, for the
multi-agency tasking meeting (docs/design/reports.md says what each figure means).

One :class:`TaskingPack` is built from the database (every count a ``GROUP BY``, see
storage.reports) and rendered three ways from that same object: JSON for the browser
(:meth:`TaskingPack.to_dict`), CSV and PDF (controlroom.reports.render). Two editions:
``supervisor`` (everything, with operators' names, plates and free-text places) and ``police``
(:func:`police_safe`: no names, no plates, no free text, no images; nothing else is ever shown).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import reports as q
from storage.db import now_us
from storage.duty import TARGET_HOURS, incidents_in_unmonitored, week_coverage
from storage.health import availability, list_faults
from storage.incidents import CATEGORIES, OUTCOMES, Incident
from storage.models import Camera
from storage.weeks import LONDON, parse_week, week_bounds, week_days

HOUR_US = 3_600_000_000
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
REPEAT_AT_LEAST = 3  # a camera or site with this many incidents in the week is a repeat location
NOT_RECORDED = "not_recorded"


@dataclass
class Count:
    key: str
    label: str
    count: int
    previous: int | None = None  # the week before, where the pack compares


@dataclass
class Place:
    kind: str  # "site" | "camera" | "text"
    name: str
    count: int
    site: str | None = None


@dataclass
class TaskingPack:
    edition: str  # "supervisor" | "police"
    week: str
    tz: str
    start_us: int
    end_us: int
    generated_at_us: int
    total: int
    previous_total: int
    by_category: list[Count]
    by_site: list[Place]
    by_camera: list[Place]
    by_place: list[Place]  # free text (supervisor edition only)
    heatmap: list[list[int]]  # [day 0=Monday][local hour 0..23]
    day_dates: list[str]
    repeat_at_least: int
    repeat_locations: list[Place]
    outcomes: list[Count]
    by_operator: list[Count]  # who logged them (supervisor edition only)
    hits: list[dict[str, Any]]  # per hotlist and state
    hits_total: int
    hit_list: list[dict[str, Any]]  # each hit with its plate (supervisor edition only)
    evidence_released: int
    releases: list[dict[str, Any]]  # register entries, with officers' names (supervisor edition only)
    faults: list[dict[str, Any]]
    faults_opened: int
    faults_repaired: int
    availability_mean: float | None
    availability_worst: list[dict[str, Any]]
    staffed: dict[str, Any]
    incidents_unmonitored: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def busiest_cell(self) -> tuple[int, int, int]:
        """(day, hour, count) of the heat map's highest cell (the first, on a tie)."""
        best = (0, 0, -1)
        for d, row in enumerate(self.heatmap):
            for h, n in enumerate(row):
                if n > best[2]:
                    best = (d, h, n)
        return best


def previous_week(week: str) -> str:
    year, number = parse_week(week)
    monday = datetime.fromisocalendar(year, number, 1) - timedelta(days=7)
    y, n, _ = monday.isocalendar()
    return f"{y}-W{n:02d}"


def last_week(at_us: int | None = None, tz_name: str = LONDON) -> str:
    """The last complete ISO week before ``at_us`` (now), in local time."""
    local = datetime.fromtimestamp((now_us() if at_us is None else at_us) / 1e6, ZoneInfo(tz_name)) - timedelta(days=7)
    y, n, _ = local.isocalendar()
    return f"{y}-W{n:02d}"


def heatmap_cells(week: str, start_us: int, by_hour: dict[int, int], tz_name: str = LONDON) -> list[list[int]]:
    """Name each UTC hour since the week's local start by its local (weekday, hour). In the
    October week the repeated 01:00 adds both its hours to Sunday 01:00; in the March week
    Sunday 01:00 does not exist and stays 0."""
    tz = ZoneInfo(tz_name)
    cells = [[0] * 24 for _ in range(7)]
    for offset, n in by_hour.items():
        local = datetime.fromtimestamp((start_us + offset * HOUR_US) / 1e6, tz)
        cells[local.weekday()][local.hour] += n
    return cells


async def build_tasking(session: AsyncSession, week: str, *, tz_name: str = LONDON,
                        repeat_at_least: int = REPEAT_AT_LEAST, target_hours: float = TARGET_HOURS,
                        now: int | None = None) -> TaskingPack:
    """The supervisor's pack for ISO ``week`` (local time)."""
    now = now_us() if now is None else now
    start, end = week_bounds(week, tz_name)
    prev_start, prev_end = week_bounds(previous_week(week), tz_name)
    cats = await q.by_category(session, start, end)
    prev_cats = await q.by_category(session, prev_start, prev_end)
    total = sum(cats.values())
    sites = [Place("site", name, n) for _, name, n in await q.by_site(session, start, end)]
    cameras = [Place("camera", name, n, site) for _, name, site, n in await q.by_camera(session, start, end)]
    repeats = [p for p in sites + cameras if p.count >= repeat_at_least]
    outcomes = await q.count_by(session, Incident.outcome, start, end)
    operators = await q.count_by(session, Incident.opened_by, start, end)
    heat = heatmap_cells(week, start, await q.by_hour_offset(session, start, end), tz_name)
    hits = [{"hotlist": h, "state": s, "count": n} for h, s, n in await q.hits_by_hotlist(session, start, end)]
    releases = await q.releases_in(session, start, end)
    names = {cid: name for cid, name in await session.execute(select(Camera.id, Camera.name))}
    faults = await list_faults(session, start_us=start, end_us=end, limit=1000)
    fault_rows = [{
        "camera": names.get(f.camera_id, str(f.camera_id)), "kind": f.kind, "status": f.status,
        "source": f.source, "opened_at_us": f.opened_at_us, "repaired_at_us": f.repaired_at_us,
        "contractor_ref": f.contractor_ref,
        "repair_hours": None if f.time_to_repair_us is None else round(f.time_to_repair_us / HOUR_US, 1),
    } for f in sorted(faults, key=lambda f: (f.opened_at_us, f.id))]
    # The week as one period: the pack shows each camera's week, not its days, and each period
    # is one more sum over the week's segments (seven cost about three times one; bench/reports.py).
    avail = await availability(session, [(start, end)], now=now)
    ratios = [(a.name, a.total.ratio) for a in avail if a.total.ratio is not None]
    coverage = await week_coverage(session, week, target_hours=target_hours, tz_name=tz_name, now=now)
    unmonitored = await incidents_in_unmonitored(session, start, end, await q.occurrence_times(session, start, end),
                                                 now=now)
    return TaskingPack(
        edition="supervisor", week=week, tz=tz_name, start_us=start, end_us=end, generated_at_us=now,
        total=total, previous_total=sum(prev_cats.values()),
        by_category=[Count(k, label, cats.get(k, 0), prev_cats.get(k, 0)) for k, label in CATEGORIES.items()],
        by_site=sites, by_camera=cameras,
        by_place=[Place("text", text, n) for text, n in await q.by_free_text(session, start, end)],
        heatmap=heat, day_dates=[d.isoformat() for d, _, _ in week_days(week, tz_name)],
        repeat_at_least=repeat_at_least, repeat_locations=repeats,
        outcomes=[Count(k, label, outcomes.get(k, 0)) for k, label in OUTCOMES.items()]
        + [Count(NOT_RECORDED, "Not recorded yet", outcomes.get(None, 0))],
        by_operator=[Count(name, name, n) for name, n in sorted(operators.items(), key=lambda kv: (-kv[1], kv[0]))],
        hits=hits, hits_total=sum(h["count"] for h in hits), hit_list=await q.hits_list(session, start, end),
        evidence_released=len(releases), releases=releases,
        faults=fault_rows, faults_opened=sum(start <= f["opened_at_us"] < end for f in fault_rows),
        faults_repaired=sum(f["repaired_at_us"] is not None and start <= f["repaired_at_us"] < end for f in fault_rows),
        availability_mean=round(sum(r for _, r in ratios) / len(ratios), 4) if ratios else None,
        availability_worst=[{"camera": n, "availability": round(r, 4)} for n, r in sorted(ratios, key=lambda t: t[1])[:10]],
        staffed={"target_hours": coverage.target_hours, "staffed_hours": coverage.staffed_hours,
                 "hours_in_week": coverage.hours_in_week, "unmonitored_hours": round(coverage.unmonitored_hours, 3),
                 "planned_hours": coverage.planned_hours, "planned_staffed_hours": coverage.planned_staffed_hours},
        incidents_unmonitored=len(unmonitored),
    )


def police_safe(pack: TaskingPack) -> TaskingPack:
    """The edition a supervisor may send to police: the same counts, with everything that names
    or pictures a person left out (operators' names, plates, officers in the register, who
    opened a fault, free-text places, which may hold anything an operator typed). The pack
    never holds images."""
    faults = [{**f, "source": "automatic" if f["source"] == "automatic" else "by hand"} for f in pack.faults]
    return dataclasses.replace(
        pack, edition="police", by_place=[], by_operator=[], hit_list=[], releases=[], faults=faults,
        notes=[*pack.notes, "Police edition: names, plates, free-text places and images are left out."])


def from_dict(data: dict[str, Any]) -> TaskingPack:
    """A pack kept as JSON (a release to police) back as the object the renderers take."""
    data = dict(data)
    data["by_category"] = [Count(**c) for c in data["by_category"]]
    data["outcomes"] = [Count(**c) for c in data["outcomes"]]
    data["by_operator"] = [Count(**c) for c in data["by_operator"]]
    for key in ("by_site", "by_camera", "by_place", "repeat_locations"):
        data[key] = [Place(**p) for p in data[key]]
    return TaskingPack(**data)
