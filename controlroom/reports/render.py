"""The reports rendered from the same objects the browser gets as JSON: CSV here; charts (PNG)
and PDF in controlroom.reports.drawing, imported on the first drawing, so that the CLI and
the service start without loading matplotlib and fpdf2 (about a second of start-up).
Blocking (drawing is CPU work): call from a thread.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

from controlroom.reports.stats import StatsTable
from controlroom.reports.tasking import DAYS, TaskingPack

CHARTS = ("heatmap", "categories")


def _local(us: int | None, tz: str, fmt: str = "%a %d %b %H:%M") -> str:
    if us is None:
        return ""
    return datetime.fromtimestamp(us / 1e6, ZoneInfo(tz)).strftime(fmt)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


# --- charts -----------------------------------------------------------------------------------

def chart_png(pack: TaskingPack, name: str) -> bytes:
    from controlroom.reports import drawing

    return drawing.CHART[name](pack)


def tasking_pdf(pack: TaskingPack) -> bytes:
    from controlroom.reports import drawing

    return drawing.tasking_pdf(pack)


def stats_pdf(table: StatsTable) -> bytes:
    from controlroom.reports import drawing

    return drawing.stats_pdf(table)


# --- CSV: one long table (section, item, detail, value), so a spreadsheet can filter it ---------

def _csv(rows: list[list[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue()


def tasking_csv(pack: TaskingPack) -> str:
    rows: list[list[object]] = [["section", "item", "detail", "value", "previous"],
                                ["pack", "week", pack.edition, pack.week, ""],
                                ["pack", "incidents", "", pack.total, pack.previous_total]]
    rows += [["category", c.label, c.key, c.count, c.previous] for c in pack.by_category]
    rows += [["site", p.name, "", p.count, ""] for p in pack.by_site]
    rows += [["camera", p.name, p.site or "", p.count, ""] for p in pack.by_camera]
    rows += [["place", p.name, "free text", p.count, ""] for p in pack.by_place]
    rows += [["repeat_location", p.name, p.kind, p.count, ""] for p in pack.repeat_locations]
    rows += [["hour_of_week", f"{DAYS[d]} {h:02d}:00", pack.day_dates[d], n, ""]
             for d in range(7) for h in range(24) if (n := pack.heatmap[d][h])]
    rows += [["outcome", c.label, c.key, c.count, ""] for c in pack.outcomes]
    rows += [["logged_by", c.label, "", c.count, ""] for c in pack.by_operator]
    rows += [["anpr_hits", h["hotlist"], h["state"], h["count"], ""] for h in pack.hits]
    rows += [["anpr_hit", h["vrm"], f"{h['camera']} {_local(h['at_us'], pack.tz)} {h['state']}", 1, ""]
             for h in pack.hit_list]
    rows.append(["evidence_released", "releases", "", pack.evidence_released, ""])
    rows += [["evidence_release", r["exhibit"], f"{r['recipient']} {_local(r['at_us'], pack.tz)}", 1, ""]
             for r in pack.releases]
    rows += [["fault", f["camera"], f"{f['kind']} {f['status']} {f['source']}", f["repair_hours"] or "", ""]
             for f in pack.faults]
    rows.append(["availability", "mean", "", pack.availability_mean if pack.availability_mean is not None else "", ""])
    rows += [["availability", a["camera"], "worst", a["availability"], ""] for a in pack.availability_worst]
    rows += [["staffed", k, "hours", v, ""] for k, v in pack.staffed.items()]
    rows.append(["staffed", "incidents_unmonitored", "", pack.incidents_unmonitored, ""])
    return _csv(rows)


def stats_csv(table: StatsTable) -> str:
    rows: list[list[object]] = [["category", "label", f"{table.from_date} to {table.to_date}",
                                 f"{table.compare_from} to {table.compare_to}", "change_pct"]]
    for r in [*table.rows, table.total]:
        rows.append([r.key, ("  " * r.level) + r.label, r.current, r.previous,
                     "" if r.change_pct is None else f"{r.change_pct:.1f}"])
    return _csv(rows)
