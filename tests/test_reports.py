"""The reports' figures (controlroom.reports) on SQLite and PostgreSQL, from incidents seeded at
known local times: exact counts, the percentage change, the heat-map cell, the October week's
repeated hour, and the PDF and CSV carrying the same numbers."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from zoneinfo import ZoneInfo

from evidence_media import add_cameras
from pypdf import PdfReader

from controlroom.reports.render import stats_csv, stats_pdf, tasking_csv, tasking_pdf
from controlroom.reports.stats import build_stats, change_pct
from controlroom.reports.tasking import build_tasking, police_safe, previous_week
from storage.db import transaction
from storage.incidents import open_incident

LONDON = ZoneInfo("Europe/London")
UTC = ZoneInfo("UTC")


def at(*parts: int, tz: ZoneInfo = LONDON) -> int:
    return int(datetime(*parts, tzinfo=tz).timestamp()) * 1_000_000


async def seed(sessions, rows: list[tuple]) -> None:
    """rows: (occurred_at_us, category, camera_id or None, by, location, outcome)."""
    async with transaction(sessions) as session:
        for occurred, category, cam, by, location, outcome in rows:
            await open_incident(session, by=by, category=category, occurred_at_us=occurred, camera_id=cam,
                                location=location, outcome=outcome)


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


async def test_weekly_pack_figures(sessions):
    market, bus = await add_cameras(sessions, ["Market Cross", "Bus Station"])
    # 2026-W48 is Monday 23 to Sunday 29 November 2026 (GMT all week).
    await seed(sessions, [
        (at(2026, 11, 24, 14, 5), "shoplifting", market, "op.amy", "", "arrest_assisted"),
        (at(2026, 11, 24, 14, 40), "shoplifting", market, "op.amy", "", None),
        (at(2026, 11, 24, 14, 59), "asb_personal", market, "op.ben", "", "police_attended"),
        (at(2026, 11, 27, 23, 10), "asb_nuisance", bus, "op.ben", "", None),
        (at(2026, 11, 29, 23, 59), "violence", None, "op.amy", "Outside the Red Lion", "no_further_action"),
        (at(2026, 11, 22, 23, 59), "shoplifting", market, "op.amy", "", None),  # W47: the week before
        (at(2026, 11, 30, 0, 0), "shoplifting", market, "op.amy", "", None),  # W49: after
    ])
    async with sessions() as session:
        pack = await build_tasking(session, "2026-W48")
    assert previous_week("2026-W48") == "2026-W47" and previous_week("2026-W01") == "2025-W52"
    assert pack.total == 5 and pack.previous_total == 1
    cats = {c.key: (c.count, c.previous) for c in pack.by_category}
    assert cats["shoplifting"] == (2, 1) and cats["asb_personal"] == (1, 0) and cats["violence"] == (1, 0)
    assert sum(c for c, _ in cats.values()) == 5
    assert pack.heatmap[1][14] == 3  # Tuesday 14:00-15:00
    assert pack.heatmap[4][23] == 1 and pack.heatmap[6][23] == 1
    assert sum(map(sum, pack.heatmap)) == 5
    assert pack.busiest_cell == (1, 14, 3)
    assert [(p.kind, p.name, p.count) for p in pack.repeat_locations] == [("site", "Town Centre", 4),
                                                                          ("camera", "Market Cross", 3)]
    assert [(p.name, p.count) for p in pack.by_camera] == [("Market Cross", 3), ("Bus Station", 1)]
    assert [(p.name, p.count) for p in pack.by_place] == [("outside the red lion", 1)]
    outcomes = {c.key: c.count for c in pack.outcomes}
    assert outcomes == {"arrest_assisted": 1, "offender_identified": 0, "police_attended": 1,
                        "no_further_action": 1, "not_recorded": 2}
    assert [(c.key, c.count) for c in pack.by_operator] == [("op.amy", 3), ("op.ben", 2)]
    assert pack.staffed["hours_in_week"] == 168 and pack.incidents_unmonitored == 5  # nobody signed on

    police = police_safe(pack)
    text = str(police.to_dict())
    assert police.edition == "police" and police.total == 5 and police.heatmap == pack.heatmap
    assert "op.amy" not in text and "op.ben" not in text and "red lion" not in text.lower()

    rows = list(csv.reader(io.StringIO(tasking_csv(pack))))
    assert ["category", "Shoplifting", "shoplifting", "2", "1"] in rows
    assert ["hour_of_week", "Tue 14:00", "2026-11-24", "3", ""] in rows
    assert ["logged_by", "op.amy", "", "3", ""] in rows
    assert not any("op.amy" in cell for row in csv.reader(io.StringIO(tasking_csv(police))) for cell in row)

    text = pdf_text(tasking_pdf(pack))
    assert "Weekly tasking pack, week 2026-W48" in text and "supervisor edition" in text
    assert "Busiest hour: Tue 2026-11-24 14:00 with 3 incidents." in text
    assert "Market Cross" in text and "op.amy" in text
    police_text = pdf_text(tasking_pdf(police))
    assert "police edition" in police_text and "Market Cross" in police_text
    assert "op.amy" not in police_text and "Red Lion" not in police_text


async def test_the_october_week_has_169_hours_and_one_cell_for_the_repeated_hour(sessions):
    (cam,) = await add_cameras(sessions, ["Clock Tower"])
    # Sunday 25 October 2026: 01:00-02:00 local happens twice (00:00-01:00 and 01:00-02:00 UTC).
    await seed(sessions, [
        (at(2026, 10, 25, 0, 30, tz=UTC), "drugs", cam, "op", "", None),  # 01:30 BST
        (at(2026, 10, 25, 1, 30, tz=UTC), "drugs", cam, "op", "", None),  # 01:30 GMT
        (at(2026, 10, 25, 2, 30, tz=UTC), "drugs", cam, "op", "", None),  # 02:30 GMT
        (at(2026, 10, 25, 22, 59, tz=UTC), "drugs", cam, "op", "", None),  # 22:59 GMT, last hour of W43
        (at(2026, 10, 18, 23, 0, tz=UTC), "drugs", cam, "op", "", None),  # Monday 00:00 BST: first hour of W43
    ])
    async with sessions() as session:
        pack = await build_tasking(session, "2026-W43")
    assert pack.staffed["hours_in_week"] == 169
    assert pack.end_us - pack.start_us == 169 * 3_600_000_000
    assert pack.total == 5
    assert pack.heatmap[6][1] == 2 and pack.heatmap[6][2] == 1 and pack.heatmap[6][22] == 1
    assert pack.heatmap[0][0] == 1


async def test_statistics_table(sessions):
    (cam,) = await add_cameras(sessions, ["High Street"])
    rows = []
    # This period: April 2026; comparison: April 2025 (dates inclusive, local).
    for category, now_n, before_n in (("asb_personal", 3, 4), ("asb_nuisance", 2, 2), ("asb_environmental", 1, 0),
                                      ("shoplifting", 11, 20), ("violence", 0, 3), ("drugs", 2, 0)):
        rows += [(at(2026, 4, 1 + i % 29, 12), category, cam, "op", "", None) for i in range(now_n)]
        rows += [(at(2025, 4, 1 + i % 29, 12), category, cam, "op", "", None) for i in range(before_n)]
    rows += [(at(2026, 4, 30, 23, 59), "shoplifting", cam, "op", "", None),  # the last minute: counted
             (at(2026, 5, 1, 0, 0), "shoplifting", cam, "op", "", None),  # the next day: not counted
             (at(2026, 3, 31, 23, 59), "shoplifting", cam, "op", "", None)]  # the day before: not counted
    await seed(sessions, rows)
    async with sessions() as session:
        table = await build_stats(session, date(2026, 4, 1), date(2026, 4, 30), date(2025, 4, 1), date(2025, 4, 30))
    asb = table.row("asb")
    assert (asb.current, asb.previous, asb.change_pct) == (6, 6, 0.0)
    assert [r.key for r in table.rows[:4]] == ["asb", "asb_personal", "asb_nuisance", "asb_environmental"]
    assert (table.row("asb_personal").current, table.row("asb_personal").previous) == (3, 4)
    assert table.row("asb_personal").change_pct == -25.0
    assert table.row("asb_environmental").change_pct is None  # nothing to compare against
    assert (table.row("shoplifting").current, table.row("shoplifting").change_pct) == (12, -40.0)
    assert table.row("violence").change_pct == -100.0
    assert (table.total.current, table.total.previous) == (20, 29)
    assert table.total.change_pct == change_pct(20, 29) == -31.0
    assert change_pct(117, 138) == -15.2  # the council's ASB figure

    rows_csv = list(csv.reader(io.StringIO(stats_csv(table))))
    assert rows_csv[0] == ["category", "label", "2026-04-01 to 2026-04-30", "2025-04-01 to 2025-04-30", "change_pct"]
    assert ["shoplifting", "Shoplifting", "12", "20", "-40.0"] in rows_csv
    assert ["asb_environmental", "  ASB: environmental", "1", "0", ""] in rows_csv
    text = pdf_text(stats_pdf(table))
    assert "2026-04-01 to 2026-04-30" in text and "-40.0%" in text and "-31.0%" in text


async def test_the_command_line_writes_the_pack_and_the_table(settings, data_dir, tmp_path, capsys):
    import asyncio

    from controlroom.cli import main as cli
    from storage.db import make_engine, make_sessionmaker
    from storage.keys import load_or_create_keys
    from storage.migrate import upgrade

    engine = make_engine(settings.db_url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine, audit_key=load_or_create_keys(settings.key_file).audit_mac_key)
    (cam,) = await add_cameras(sessions, ["Castle Gate"])
    await seed(sessions, [(at(2026, 11, 24, 9, 30), "criminal_damage", cam, "op.cli", "", None),
                          (at(2025, 11, 24, 9, 30), "criminal_damage", cam, "op.cli", "", None),
                          (at(2025, 11, 25, 9, 30), "criminal_damage", cam, "op.cli", "", None)])
    await engine.dispose()

    def run(*argv: str) -> int:
        return cli(["--data-dir", str(data_dir), *argv])

    pdf, pack_csv, table_csv = tmp_path / "pack.pdf", tmp_path / "pack.csv", tmp_path / "table.csv"
    assert await asyncio.to_thread(run, "reports", "tasking", "--week", "2026-W48", "--pdf", str(pdf),
                                   "--csv", str(pack_csv)) == 0
    assert "2026-W48: 1 incidents" in capsys.readouterr().out
    assert "Weekly tasking pack, week 2026-W48" in pdf_text(pdf.read_bytes())
    assert ["category", "Criminal damage", "criminal_damage", "1", "0"] in list(csv.reader(pack_csv.open()))
    assert await asyncio.to_thread(run, "reports", "stats", "--from", "2026-11-01", "--to", "2026-11-30",
                                   "--compare-from", "2025-11-01", "--compare-to", "2025-11-30",
                                   "--csv", str(table_csv)) == 0
    assert "1 incidents against 2 (-50.0%)" in capsys.readouterr().out
    assert ["criminal_damage", "Criminal damage", "1", "2", "-50.0"] in list(csv.reader(table_csv.open()))
    assert await asyncio.to_thread(run, "reports", "tasking", "--week", "2026-W99") == 1
