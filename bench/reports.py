"""Reports over a year of synthetic data: 100 cameras, 20,000 incidents, 365 days of segments.

Figures, on SQLite and on PostgreSQL (median of --runs warm runs, the first run apart):
- the weekly tasking pack: the page's data (controlroom.reports.tasking.build_tasking, what
  GET /api/v1/reports/tasking returns) and the PDF (data + charts + PDF); goals < 2 s and < 5 s;
- the statistics table (a half-year against the half-year before): data and PDF;
against two baselines measured in the same run: a plain ``SELECT count(*) FROM incidents`` (the
cheapest look at every incident), and the pack's data for one day (what a week costs over a day).

    .venv/bin/python -m bench.reports [--cameras 100] [--incidents 20000] [--days 365] [--runs 5]
                                       [--only sqlite|postgresql]

Segments: the recorder's 30 s segments for the week the pack reports (that is what its
availability query reads: 100 cameras x 20,160 rows), and 10 min segments for the rest of the
year (the table's size and index depth as a year of recording gives them, without filling
105 million rows: the pack never reads outside its week). Each camera misses 6 hours of that
week in turn, so availability is not a constant.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy import text

from bench.catalogue import COLS, PG_ADMIN
from controlroom.reports import render
from controlroom.reports.stats import build_stats
from controlroom.reports.tasking import build_tasking
from storage.db import make_engine, make_sessionmaker
from storage.incidents import CATEGORIES, OUTCOMES
from storage.migrate import upgrade
from storage.weeks import week_bounds

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
DENSE_US, SPARSE_US = 30_000_000, 600_000_000
FIRST_DAY = date(2025, 12, 1)  # the year: 2025-12-01 .. 2026-11-30
WEEK = "2026-W27"  # 29 June - 5 July 2026 (BST)
DAY = date(2026, 7, 1)
SITES = 10
# Evening and night-time economy: more incidents late in the day.
HOUR_WEIGHTS = [3, 2, 2, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 7, 8, 9, 9, 9, 9, 8, 6, 4]
CAT_WEIGHTS = [18, 14, 6, 22, 8, 7, 6, 5, 3, 6, 5]


def t0_us() -> int:
    return week_bounds("2025-W49")[0]  # Monday 1 December 2025, 00:00 GMT


def camera_rows(cameras: int):
    return [(c, f"Camera {c:03d}", 1 + (c - 1) % SITES) for c in range(1, cameras + 1)]


def segment_rows(cameras: int, days: int):
    """In time order across the cameras, as recorders commit them."""
    start_all, end_all = t0_us(), t0_us() + days * DAY_US
    dense_start, dense_end = week_bounds(WEEK)
    # Each camera is off the air for 6 hours of the reported week, in turn.
    off = {cam: dense_start + (cam % 28) * 6 * HOUR_US for cam in range(1, cameras + 1)}
    dense_start -= DAY_US
    t = start_all
    while t < end_all:
        step = DENSE_US if dense_start <= t < dense_end else SPARSE_US
        for cam in range(1, cameras + 1):
            if off[cam] <= t < off[cam] + 6 * HOUR_US:
                continue
            yield (cam, t, t + step, 15_000_000, "0" * 64, f"{cam}/{t}.mkv", "h264", 1920, 1080, "ok", None, False)
        t += step


def incident_rows(cameras: int, n: int, days: int):
    rng = random.Random(13)
    cats, outcomes = list(CATEGORIES), [*OUTCOMES, None]
    for i in range(1, n + 1):
        day = rng.randrange(days)
        hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
        at = t0_us() + day * DAY_US + hour * HOUR_US + rng.randrange(HOUR_US)
        cam = rng.choice([None, *range(1, cameras + 1), *range(1, 11)])  # some cameras see more
        site = None if cam is None else 1 + (cam - 1) % SITES
        outcome = rng.choice(outcomes)
        closed = outcome is not None
        yield (i, at, at + 600_000_000, f"op{rng.randrange(12)}", "closed" if closed else "open",
               at + DAY_US if closed else None, "sup1" if closed else None, rng.choices(cats, CAT_WEIGHTS)[0],
               site, cam, "" if cam else rng.choice(["Bus station", "Market Street", "Taxi rank"]),
               json.dumps(["police"] if rng.random() < 0.5 else []), None, outcome, "synthetic")


def duty_rows():
    start, _ = week_bounds(WEEK)
    for d in range(7):  # two shifts a day, 07:00-15:00 and 15:00-23:00 (local = UTC+1 in July)
        for s, (a, b) in enumerate(((6, 14), (14, 22))):
            yield (d * 2 + s + 1, f"op{s}", start + d * DAY_US + (a + 1) * HOUR_US, start + d * DAY_US + (b + 1) * HOUR_US, "")


def fault_rows(cameras: int):
    start, _ = week_bounds(WEEK)
    for i, cam in enumerate(range(1, cameras + 1, 7), start=1):
        opened = start + i * 5 * HOUR_US
        yield (i, cam, "offline", "automatic", opened, "", None, "repaired", opened + 4 * HOUR_US, None)


INCIDENT_COLS = ("id, occurred_at_us, opened_at_us, opened_by, status, closed_at_us, closed_by, category, site_id, "
                 "camera_id, location, told, police_reference, outcome, summary")
FAULT_COLS = "id, camera_id, kind, source, opened_at_us, description, contractor_ref, status, repaired_at_us, closed_at_us"
CAMERA_SQL = ("INSERT INTO cameras (id, name, site_id, position, kind, main_url, sub_url, snapshot_url, onvif_xaddr, "
              "username, password_enc, enabled, recording, notes, lane, direction, state, state_reason, clock_flag, "
              "ptz, extra) VALUES ({}, {}, {}, '', 'fixed', '', '', '', '', '', '', {t}, {t}, '', '', '', 'recording', "
              "'', {f}, {f}, '{{}}')")


def _cols(cols: str) -> list[str]:
    return [c.strip() for c in cols.split(",")]


async def fill_sqlite(path: Path, cameras: int, incidents: int, days: int) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    await engine.dispose()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.executemany("INSERT INTO sites (id, name, location, notes) VALUES (?, ?, '', '')",
                    [(s, f"Site {s:02d}") for s in range(1, SITES + 1)])
    con.executemany(CAMERA_SQL.format("?", "?", "?", t=1, f=0), camera_rows(cameras))
    con.executemany(f"INSERT INTO segments ({COLS}) VALUES ({','.join('?' * 12)})", segment_rows(cameras, days))
    con.executemany(f"INSERT INTO incidents ({INCIDENT_COLS}) VALUES ({','.join('?' * 15)})",
                    incident_rows(cameras, incidents, days))
    con.executemany("INSERT INTO duty_sessions (id, username, on_at_us, off_at_us, note) VALUES (?,?,?,?,?)", duty_rows())
    con.executemany(f"INSERT INTO camera_faults ({FAULT_COLS}) VALUES ({','.join('?' * 10)})", fault_rows(cameras))
    con.commit()
    con.execute("ANALYZE")
    con.close()


async def fill_pg(url: str, cameras: int, incidents: int, days: int) -> None:
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await conn.executemany("INSERT INTO sites (id, name, location, notes) VALUES ($1, $2, '', '')",
                               [(s, f"Site {s:02d}") for s in range(1, SITES + 1)])
        await conn.executemany(CAMERA_SQL.format("$1", "$2", "$3", t="true", f="false"), camera_rows(cameras))
        await conn.copy_records_to_table("segments", records=segment_rows(cameras, days), columns=_cols(COLS))
        await conn.copy_records_to_table("incidents", records=incident_rows(cameras, incidents, days),
                                         columns=_cols(INCIDENT_COLS))
        await conn.copy_records_to_table("duty_sessions", records=duty_rows(),
                                         columns=["id", "username", "on_at_us", "off_at_us", "note"])
        await conn.copy_records_to_table("camera_faults", records=fault_rows(cameras), columns=_cols(FAULT_COLS))
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def timed(fn, runs: int) -> tuple[float, float, object]:
    """(first run s, median of the other runs s, last result)."""
    times, result = [], None
    for _ in range(runs + 1):
        start = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:]), result


async def measure(url: str, runs: int) -> dict:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine, audit_key=hashlib.sha256(b"bench.reports").digest())
    now = t0_us() + 366 * DAY_US
    out: dict = {}

    async def count() -> int:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT count(*) FROM incidents"))).scalar_one()

    async def pack_data():
        async with sessions() as s:
            return await build_tasking(s, WEEK, now=now)

    async def pack_pdf():
        pack = await pack_data()
        return await asyncio.to_thread(render.tasking_pdf, pack)

    async def day_data():  # the same queries over one day: the cost of the rows, not the code
        from controlroom.reports import tasking as tk

        async with sessions() as s:
            start = week_bounds(WEEK)[0] + 2 * DAY_US
            return await tk.q.by_category(s, start, start + DAY_US), await tk.q.by_camera(s, start, start + DAY_US)

    half = date(2026, 6, 1)

    async def stats_data():
        async with sessions() as s:
            return await build_stats(s, half, date(2026, 11, 30), FIRST_DAY, half - timedelta(days=1))

    async def stats_pdf():
        return await asyncio.to_thread(render.stats_pdf, await stats_data())

    for name, fn in (("count", count), ("day", day_data), ("pack_data", pack_data), ("pack_pdf", pack_pdf),
                     ("stats_data", stats_data), ("stats_pdf", stats_pdf)):
        out[name] = await timed(fn, runs)
    pack = out["pack_data"][2]
    out["pack_total"], out["pdf_bytes"] = pack.total, len(out["pack_pdf"][2])
    out["incidents"] = out["count"][2]
    out["stats_total"] = out["stats_data"][2].total
    out["availability"] = pack.availability_mean
    await engine.dispose()
    return out


def report(db: str, r: dict) -> None:
    base, day = r["count"][1], r["day"][1]
    print(f"{db}: {r['incidents']:,} incidents; baselines: count(*) {base * 1000:.1f} ms, one day's counts "
          f"{day * 1000:.1f} ms")
    for key, label, goal in (("pack_data", "tasking pack, page data", 2), ("pack_pdf", "tasking pack, PDF", 5),
                             ("stats_data", "statistics table, data", 2), ("stats_pdf", "statistics table, PDF", 5)):
        first, median, _ = r[key]
        print(f"{db}: {label}: {median * 1000:.0f} ms (first run {first * 1000:.0f} ms; goal < {goal} s; "
              f"{median / base:.0f}x count(*), {median / day:.1f}x one day)")
    print(f"{db}: the pack counted {r['pack_total']} incidents in {WEEK}, availability "
          f"{(r['availability'] or 0) * 100:.1f}%, PDF {r['pdf_bytes'] / 1024:.0f} KiB; the table "
          f"{r['stats_total'].current} against {r['stats_total'].previous} ({r['stats_total'].change_pct}%)")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=100)
    ap.add_argument("--incidents", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=["sqlite", "postgresql"])
    args = ap.parse_args()
    print(f"reports: {args.cameras} cameras, {args.incidents:,} incidents, {args.days} days of segments "
          f"(30 s in {WEEK}, 10 min elsewhere)")
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "bench.db"
            start = time.perf_counter()
            await fill_sqlite(path, args.cameras, args.incidents, args.days)
            print(f"sqlite: filled in {time.perf_counter() - start:.0f} s ({path.stat().st_size / 2**20:.0f} MiB)")
            report("sqlite", await measure(f"sqlite+aiosqlite:///{path}", args.runs))
    if args.only != "sqlite":
        name = f"controlroom_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
            start = time.perf_counter()
            await fill_pg(url, args.cameras, args.incidents, args.days)
            print(f"postgresql: filled in {time.perf_counter() - start:.0f} s")
            report("postgresql", await measure(url, args.runs))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
