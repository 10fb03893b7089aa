"""Charts (matplotlib, PNG) and PDF (fpdf2) of the reports; reached through
controlroom.reports.render, which imports this module on the first drawing.

matplotlib draws through its object API (``Figure`` + the Agg canvas), never ``pyplot``, so it
keeps no global state and is safe in worker threads. The PDF embeds DejaVu Sans, the font
matplotlib ships, so any name or place (accents, other scripts) prints as typed.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
from fpdf import FPDF
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from controlroom.reports.render import _local, _pct
from controlroom.reports.stats import StatsTable
from controlroom.reports.tasking import DAYS, TaskingPack

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png", dpi=110, bbox_inches="tight")
    return out.getvalue()


def heatmap_png(pack: TaskingPack) -> bytes:
    fig = Figure(figsize=(9, 3.2))
    ax = fig.add_subplot()
    im = ax.imshow(pack.heatmap, aspect="auto", cmap="Reds", vmin=0)
    ax.set_yticks(range(7), [f"{d} {pack.day_dates[i][5:]}" for i, d in enumerate(DAYS)])
    ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
    ax.set_xlabel(f"hour of the day ({pack.tz})")
    ax.set_title(f"Incidents by hour of the week, {pack.week}")
    fig.colorbar(im, ax=ax, label="incidents", ticks=MaxNLocator(integer=True))
    return _png(fig)


def categories_png(pack: TaskingPack) -> bytes:
    fig = Figure(figsize=(9, 3.6))
    ax = fig.add_subplot()
    labels = [c.label for c in pack.by_category][::-1]
    ax.barh(labels, [c.previous or 0 for c in pack.by_category][::-1], color="#bbbbbb", label="week before")
    ax.barh(labels, [c.count for c in pack.by_category][::-1], height=0.5, color="#b03030", label=pack.week)
    ax.set_xlabel("incidents")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    ax.set_title(f"Incidents by category, {pack.week}")
    return _png(fig)


CHART = {"heatmap": heatmap_png, "categories": categories_png}


# --- PDF --------------------------------------------------------------------------------------

class _Pdf(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
        self.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.set_title(title)
        self.set_creator("controlroom")
        self.title_text = title
        self.set_auto_page_break(True, margin=15)
        self.add_page()

    def header(self) -> None:
        self.set_font("DejaVu", "B", 9)
        self.cell(0, 6, self.title_text, align="L")
        self.ln(8)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("DejaVu", "", 8)
        self.cell(0, 6, f"page {self.page_no()}/{{nb}}", align="R")

    def heading(self, text: str) -> None:
        self.set_font("DejaVu", "B", 12)
        self.ln(2)
        self.cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")
        self.set_font("DejaVu", "", 9)

    def para(self, text: str) -> None:
        self.set_font("DejaVu", "", 9)
        self.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")

    def table_of(self, head: list[str], rows: list[list[object]], widths: list[int] | None = None) -> None:
        if not rows:
            self.para("None.")
            return
        self.set_font("DejaVu", "", 8.5)
        with self.table(col_widths=widths, text_align="LEFT", first_row_as_headings=True,
                        line_height=5) as table:
            for row in [head, *rows]:
                cells = table.row()
                for value in row:
                    cells.cell(str(value))
        self.ln(2)


def tasking_pdf(pack: TaskingPack) -> bytes:
    edition = "police edition" if pack.edition == "police" else "supervisor edition"
    pdf = _Pdf(f"Weekly tasking pack {pack.week} ({edition})")
    pdf.heading(f"Weekly tasking pack, week {pack.week}")
    pdf.para(f"{_local(pack.start_us, pack.tz, '%A %d %B %Y')} to {_local(pack.end_us - 1, pack.tz, '%A %d %B %Y')} "
             f"({pack.tz}). Generated {_local(pack.generated_at_us, pack.tz, '%d %b %Y %H:%M')}. {edition}.")
    for n in pack.notes:
        pdf.para(n)
    pdf.para(f"Incidents: {pack.total} (week before: {pack.previous_total}).")
    pdf.heading("Incidents by category")
    pdf.table_of(["category", pack.week, "week before"], [[c.label, c.count, c.previous] for c in pack.by_category],
                 [90, 40, 40])
    pdf.image(io.BytesIO(categories_png(pack)), w=180)
    pdf.heading("Hour of the week")
    pdf.image(io.BytesIO(heatmap_png(pack)), w=180)
    d, h, n = pack.busiest_cell
    if n > 0:
        pdf.para(f"Busiest hour: {DAYS[d]} {pack.day_dates[d]} {h:02d}:00 with {n} incidents.")
    pdf.heading(f"Repeat locations (at least {pack.repeat_at_least} incidents)")
    pdf.table_of(["kind", "location", "incidents"], [[p.kind, p.name, p.count] for p in pack.repeat_locations],
                 [30, 110, 30])
    pdf.heading("By site")
    pdf.table_of(["site", "incidents"], [[p.name, p.count] for p in pack.by_site], [140, 30])
    pdf.heading("By camera")
    pdf.table_of(["camera", "site", "incidents"], [[p.name, p.site or "", p.count] for p in pack.by_camera[:30]],
                 [80, 60, 30])
    if pack.edition != "police":
        pdf.heading("Free-text places")
        pdf.table_of(["place", "incidents"], [[p.name, p.count] for p in pack.by_place], [140, 30])
    pdf.heading("Outcomes")
    pdf.table_of(["outcome", "incidents"], [[c.label, c.count] for c in pack.outcomes], [140, 30])
    if pack.edition != "police":
        pdf.heading("Logged by")
        pdf.table_of(["operator", "incidents"], [[c.label, c.count] for c in pack.by_operator], [140, 30])
    pdf.heading(f"ANPR hotlist hits: {pack.hits_total}")
    pdf.table_of(["hotlist", "state", "hits"], [[h["hotlist"], h["state"], h["count"]] for h in pack.hits], [90, 50, 30])
    if pack.hit_list:
        pdf.table_of(["time", "plate", "camera", "hotlist", "state"],
                     [[_local(h["at_us"], pack.tz), h["vrm"], h["camera"] or "", h["hotlist"], h["state"]]
                      for h in pack.hit_list[:50]], [35, 30, 45, 40, 20])
    pdf.heading(f"Evidence released: {pack.evidence_released}")
    if pack.releases:
        pdf.table_of(["time", "exhibit", "recipient", "released by"],
                     [[_local(r["at_us"], pack.tz), r["exhibit"], r["recipient"], r["released_by"]]
                      for r in pack.releases], [35, 45, 60, 30])
    pdf.heading(f"Camera faults: {pack.faults_opened} opened, {pack.faults_repaired} repaired")
    pdf.table_of(["camera", "kind", "status", "source", "opened", "repair h"],
                 [[f["camera"], f["kind"], f["status"], f["source"], _local(f["opened_at_us"], pack.tz),
                   "" if f["repair_hours"] is None else f["repair_hours"]] for f in pack.faults[:60]],
                 [40, 22, 22, 28, 38, 20])
    mean = "n/a" if pack.availability_mean is None else f"{pack.availability_mean * 100:.1f}%"
    pdf.heading(f"Camera availability: {mean} on average")
    pdf.table_of(["camera", "availability"],
                 [[a["camera"], f"{a['availability'] * 100:.1f}%"] for a in pack.availability_worst], [140, 30])
    s = pack.staffed
    pdf.heading("Monitoring hours")
    pdf.para(f"Staffed {s['staffed_hours']:.1f} h of {s['hours_in_week']:.0f} h (target {s['target_hours']:.0f} h); "
             f"unmonitored {s['unmonitored_hours']:.1f} h; planned {s['planned_hours']:.1f} h. "
             f"Incidents in unmonitored hours: {pack.incidents_unmonitored}.")
    return bytes(pdf.output())


def stats_pdf(table: StatsTable) -> bytes:
    pdf = _Pdf(f"Incident statistics {table.from_date} to {table.to_date}")
    pdf.heading("Incidents by category")
    pdf.para(f"{table.from_date} to {table.to_date} against {table.compare_from} to {table.compare_to} "
             f"(local dates, {table.tz}, both ends included). Generated "
             f"{_local(table.generated_at_us, table.tz, '%d %b %Y %H:%M')}.")
    head = ["category", f"{table.from_date} to {table.to_date}", f"{table.compare_from} to {table.compare_to}", "change"]
    rows = [[("    " * r.level) + r.label, r.current, r.previous, _pct(r.change_pct)] for r in [*table.rows, table.total]]
    pdf.table_of(head, rows, [70, 40, 40, 25])
    return bytes(pdf.output())
