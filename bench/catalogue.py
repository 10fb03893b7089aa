"""Catalogue at scale: 100 cameras x 31 days of 30 s segments (8.9 M rows).

Figures: the timeline of one camera-day (p50/p95 ms over warm pages; goal p95 < 20 ms) on SQLite
and on PostgreSQL, against the baseline of the same rows fetched as plain tuples; and a
retention sweep of one day's expired segments of all cameras while timeline queries run
alongside (their p99; goal < 100 ms).

    .venv/bin/python -m bench.catalogue [--days 31] [--cameras 100] [--only sqlite|postgresql]

A filled catalogue is kept, named by the schema revision, the size and the fill code: the SQLite
file under /tmp/controlroom-bench-catalogue/, the PostgreSQL one as the template database
bench_catalogue_<name> (drop it to reclaim its few GiB). Each run works on a copy (the
sweep deletes rows), so a rerun skips the fill (minutes); a new migration changes the name.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from storage.catalogue import timeline
from storage.db import make_engine, make_sessionmaker
from storage.migrate import head_revision, upgrade
from storage.retention import DAY_US, run_retention

SEG_US = 30_000_000
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CACHE_DIR = Path(tempfile.gettempdir()) / "controlroom-bench-catalogue"


def rows(cameras: int, days: int, t0: int):
    # In time order across the cameras, as the recorders commit them: a camera-day's rows are
    # spread over the whole day's part of the table, not side by side.
    per_day = DAY_US // SEG_US
    for i in range(days * per_day):
        start = t0 + i * SEG_US
        for cam in range(1, cameras + 1):
            yield (cam, start, start + SEG_US, 15_000_000, "0" * 64,
                   f"{cam}/{start}_{start + SEG_US}.mkv", "h264", 1920, 1080, "ok", None, False)


COLS = "camera_id, start_us, end_us, bytes, sha256, path, codec, width, height, state, clock_offset_s, clock_flag"


async def fill_sqlite(path: Path, cameras: int, days: int, t0: int) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    await engine.dispose()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.executemany("INSERT INTO cameras (id, name, position, kind, main_url, sub_url, snapshot_url, onvif_xaddr, username, password_enc, enabled, recording, notes, lane, direction, state, state_reason, clock_flag, ptz, extra) VALUES (?, ?, '', 'fixed', '', '', '', '', '', '', 1, 1, '', '', '', 'recording', '', 0, 0, '{}')",
                    [(c, f"cam {c}") for c in range(1, cameras + 1)])
    con.executemany(f"INSERT INTO segments ({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows(cameras, days, t0))
    con.commit()
    con.execute("ANALYZE")
    con.close()


def cache_name(cameras: int, days: int, t0: int, fill) -> str:
    code = hashlib.sha256((inspect.getsource(rows) + inspect.getsource(fill)).encode()).hexdigest()[:8]
    return f"rev{head_revision()}_{cameras}x{days}_t{t0 // 1_000_000}_fill{code}"


async def cached_sqlite(cameras: int, days: int, t0: int) -> Path:
    """The filled catalogue for this schema and size, built once (into a temporary name, then
    renamed, so a concurrent or interrupted run never sees half a file)."""
    path = CACHE_DIR / f"{cache_name(cameras, days, t0, fill_sqlite)}.db"
    if path.exists():
        print(f"sqlite: reusing {path}")
        return path
    CACHE_DIR.mkdir(exist_ok=True)
    partial = path.with_suffix(f".partial{os.getpid()}")
    start = time.perf_counter()
    await fill_sqlite(partial, cameras, days, t0)
    con = sqlite3.connect(partial)
    con.execute("PRAGMA journal_mode=DELETE")  # fold the WAL into the file, so it is one file
    con.close()
    os.replace(partial, path)
    print(f"sqlite: filled {path} in {time.perf_counter() - start:.0f} s ({path.stat().st_size / 2**30:.1f} GiB)")
    return path


async def fill_pg(url: str, cameras: int, days: int, t0: int) -> None:
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await conn.executemany("INSERT INTO cameras (id, name, position, kind, main_url, sub_url, snapshot_url, onvif_xaddr, username, password_enc, enabled, recording, notes, lane, direction, state, state_reason, clock_flag, ptz, extra) VALUES ($1, $2, '', 'fixed', '', '', '', '', '', '', true, true, '', '', '', 'recording', '', false, false, '{}')",
                               [(c, f"cam {c}") for c in range(1, cameras + 1)])
        await conn.copy_records_to_table("segments", records=rows(cameras, days, t0), columns=[c.strip() for c in COLS.split(",")])
        # What autovacuum does for the segments table every 10,000 inserts (migration 0008), so
        # that index-only scans need not visit the table.
        await conn.execute("VACUUM ANALYZE segments")
    finally:
        await conn.close()


async def copy_of_cached_pg(admin: asyncpg.Connection, name: str, cameras: int, days: int, t0: int) -> None:
    """Create database ``name`` as a copy of the filled catalogue, filling that first if need be
    (into a temporary name, then renamed, so an interrupted fill is never taken for a cache)."""
    cache = f"bench_catalogue_{cache_name(cameras, days, t0, fill_pg)}"
    assert len(cache) <= 63, cache  # PostgreSQL would cut a longer name short
    if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", cache):
        partial = f"{cache}_{os.getpid() % 10**6}"  # a fill of its own, if two runs fill at once
        await admin.execute(f'CREATE DATABASE "{partial}"')
        start = time.perf_counter()
        await fill_pg(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{partial}", cameras, days, t0)
        await admin.execute(f'ALTER DATABASE "{partial}" RENAME TO "{cache}"')
        print(f"postgresql: filled {cache} in {time.perf_counter() - start:.0f} s")
    else:
        print(f"postgresql: reusing {cache}")
    # FILE_COPY: a file copy and a checkpoint, instead of writing the whole copy through the WAL.
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{cache}" STRATEGY FILE_COPY')


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def measure(url: str, cameras: int, days: int, t0: int, sweep: bool) -> dict:
    engine = make_engine(url)
    # The sweep audits what it deletes; a throwaway database needs only some key to chain with.
    sessions = make_sessionmaker(engine, audit_key=hashlib.sha256(b"bench.catalogue").digest())
    day0 = t0 + (days // 2) * DAY_US
    timings, base = [], []
    for i in range(60):
        cam = 1 + (i * 37) % cameras
        # Warm this camera-day's pages first, so neither the timeline nor the baseline query
        # after it is charged for reading the disk (an operator's camera-day is read repeatedly).
        async with sessions() as s:
            await timeline(s, cam, day0, day0 + DAY_US)
        start = time.perf_counter()
        async with sessions() as s:
            tl = await timeline(s, cam, day0, day0 + DAY_US)
        timings.append((time.perf_counter() - start) * 1000)
        assert len(tl.segments) >= DAY_US // SEG_US
        start = time.perf_counter()
        async with engine.connect() as conn:
            from sqlalchemy import text

            await conn.execute(text("SELECT id, start_us, end_us, bytes, sha256, path FROM segments WHERE camera_id = :c AND start_us >= :a AND start_us < :b ORDER BY start_us"),
                               {"c": cam, "a": day0, "b": day0 + DAY_US})
        base.append((time.perf_counter() - start) * 1000)
    result = {
        "timeline_p50_ms": statistics.median(timings[5:]), "timeline_p95_ms": pct(timings[5:], 95),
        "baseline_p95_ms": pct(base[5:], 95),
    }
    if sweep:
        # One day of all cameras becomes expired: retention of `days - 1` days at the end.
        now = t0 + 32 * DAY_US  # with 31-day retention, exactly day 0 has expired
        during: list[float] = []
        done = asyncio.Event()

        async def query_loop() -> None:
            i = 0
            while not done.is_set():
                cam = 1 + (i * 13) % cameras
                i += 1
                start = time.perf_counter()
                async with sessions() as s:
                    await timeline(s, cam, day0, day0 + DAY_US // 24)
                during.append((time.perf_counter() - start) * 1000)
                await asyncio.sleep(0.01)

        task = asyncio.create_task(query_loop())
        with tempfile.TemporaryDirectory() as root:
            start = time.perf_counter()
            res = await run_retention(sessions, Path(root), default_days=31, floor_bytes=0, now=now, free_bytes=10**13)
            result["sweep_s"] = time.perf_counter() - start
        done.set()
        await task
        result["sweep_deleted"] = res.deleted
        result["queries_during_sweep"] = len(during)
        result["query_p99_during_sweep_ms"] = pct(during, 99)
    await engine.dispose()
    return result


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=100)
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--only", choices=["sqlite", "postgresql"])
    args = ap.parse_args()
    t0 = 1_790_000_000 * 1_000_000
    n = args.cameras * args.days * (DAY_US // SEG_US)
    print(f"catalogue: {args.cameras} cameras x {args.days} days = {n:,} segments of 30 s")
    if args.only != "postgresql":
        cached = await cached_sqlite(args.cameras, args.days, t0)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "bench.db"
            shutil.copyfile(cached, path)
            r = await measure(f"sqlite+aiosqlite:///{path}", args.cameras, args.days, t0, sweep=True)
            report("sqlite", r)
    if args.only != "sqlite":
        name = f"controlroom_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await copy_of_cached_pg(admin, name, args.cameras, args.days, t0)
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
            report("postgresql", await measure(url, args.cameras, args.days, t0, sweep=True))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


def report(name: str, r: dict) -> None:
    print(f"{name}: camera-day timeline p50 {r['timeline_p50_ms']:.1f} ms, p95 {r['timeline_p95_ms']:.1f} ms "
          f"(goal < 20 ms; plain driver query p95 {r['baseline_p95_ms']:.1f} ms, ratio {r['timeline_p95_ms'] / r['baseline_p95_ms']:.2f}x)")
    if "sweep_s" in r:
        print(f"{name}: retention sweep of {r['sweep_deleted']:,} expired segments took {r['sweep_s']:.1f} s; "
              f"{r['queries_during_sweep']} timeline queries meanwhile, p99 {r['query_p99_during_sweep_ms']:.1f} ms (goal < 100 ms)")


if __name__ == "__main__":
    asyncio.run(main())
