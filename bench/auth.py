"""Cost of access control and of the audit chain.

1. The authentication + authorisation middleware per request (goal: under 0.5 ms at p99):
   - in process: the middleware around a trivial handler, against the handler alone, as wall
     time and as this thread's CPU time (which a loaded machine's preemption does not inflate);
   - over HTTP on loopback: the same route in the real app, against an app without the
     middleware (so the figure includes cookie parsing and everything else the app adds).
   Cases: a cookie session GET, a cookie session POST (CSRF check), an API token GET.
2. Audit appends per second (goal: at least 2,000/s), on SQLite and PostgreSQL:
   - one per transaction, against a plain insert of the same row in the same kind of
     transaction (how actions that change the database append);
   - group commit, the app's path (storage.audit.AuditWriter) with --tasks (50) concurrent
     callers each waiting for its entry, against the same writer doing a plain insert of the
     same rows (same queue, same batches, no lock, no head, no chain link), and against the
     chain as it was before issue 11 (the same append_many, chained with plain SHA-256 instead
     of HMAC-SHA-256); plus the CPU cost of one entry's MAC against its plain SHA-256.

    .venv/bin/python -m bench.auth [--requests 3000] [--appends 3000] [--only sqlite|postgresql]
                                   [--seconds 5] [--tasks 50] [--skip-middleware]

Bounded: each append phase stops after --seconds (5); about a minute in all.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from aiohttp import ClientSession, web
from aiohttp.test_utils import make_mocked_request
from sqlalchemy import MetaData, Table, insert

from controlroom.app import create_app
from controlroom.auth import COOKIE, CSRF_HEADER, auth_middleware
from controlroom.context import AUTH, SESSIONS
from controlroom.errors import error_middleware
from controlroom.permissions import Permission, requires
from controlroom.settings import load_settings
from storage import accounts, audit
from storage.audit import AuditEntry, entry_hash
from storage.db import Base, make_engine, make_sessionmaker, now_us, transaction
from storage.migrate import upgrade

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PASSWORD = "benchmark password 1"
DETAILS = {"camera": 12, "reason": "incident 2026/123", "from": "2026-11-28T10:00:00Z"}
PLAIN_SEQ = 10_000_000  # the one-per-transaction baseline's rows, far above the chain, deleted after it


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.3f} ms  p99 {pct(values, 0.99) * 1000:.3f} ms"


OK = web.json_response({"ok": True})


@requires(Permission.LIVE_VIEW)
async def bench_handler(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def add_bench_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/bench", bench_handler)
    app.router.add_post("/api/v1/bench", bench_handler)


async def _login(app: web.Application) -> tuple[str, str, str]:
    hashed = await asyncio.to_thread(accounts.hash_password, PASSWORD)
    async with transaction(app[SESSIONS]) as session:
        user = await accounts.create_user(session, "bench", "operator", hashed)
        token, _ = await accounts.create_token(session, "bench", user, ["live_view"], now_us() + 3600_000_000, "bench")
    result = await app[AUTH].login("bench", PASSWORD, None, "127.0.0.1")
    return result.token, result.csrf_token, token


async def in_process(app: web.Application, cookie: str, csrf: str, token: str, n: int) -> None:
    cases = {
        "session GET": ("GET", {"Cookie": f"{COOKIE}={cookie}"}),
        "session POST": ("POST", {"Cookie": f"{COOKIE}={cookie}", CSRF_HEADER: csrf}),
        "token GET": ("GET", {"Authorization": f"Bearer {token}"}),
    }

    async def handler(request: web.Request) -> web.StreamResponse:
        return OK

    for name, (method, headers) in cases.items():
        requests = []
        for _ in range(2 * n):
            req = make_mocked_request(method, "/api/v1/bench", headers=headers, app=app)
            match = await app.router.resolve(req)
            match.add_app(app)
            req._match_info = match  # what aiohttp's request handler does before the middlewares
            requests.append(req)
        for req in requests[:50]:  # warm the session/token cache
            await auth_middleware(req, handler)
        base, full, base_cpu, full_cpu = [], [], [], []
        for i in range(n):  # interleaved, so drift in machine load hits both alike
            req_a, req_b = requests[2 * i], requests[2 * i + 1]
            c0, t0 = time.thread_time(), time.perf_counter()
            await handler(req_a)
            c1, t1 = time.thread_time(), time.perf_counter()
            resp = await auth_middleware(req_b, handler)
            c2, t2 = time.thread_time(), time.perf_counter()
            assert resp is OK, resp
            base.append(t1 - t0)
            full.append(t2 - t1)
            base_cpu.append(c1 - c0)
            full_cpu.append(c2 - c1)
        cost = [f - b for f, b in zip(full, base, strict=True)]
        cost_cpu = [f - b for f, b in zip(full_cpu, base_cpu, strict=True)]
        print(f"  in process, {name:12s}: handler alone {ms(base)}; with auth {ms(full)}; "
              f"auth cost wall p50 {statistics.median(cost) * 1e6:.1f} us, p99 {pct(cost, 0.99) * 1e6:.1f} us; "
              f"CPU p50 {statistics.median(cost_cpu) * 1e6:.1f} us, p99 {pct(cost_cpu, 0.99) * 1e6:.1f} us")


async def over_http(auth_url: str, bare_url: str, cookie: str, csrf: str, token: str, n: int) -> None:
    cases = {
        "session GET": ("GET", {"Cookie": f"{COOKIE}={cookie}"}),
        "session POST": ("POST", {"Cookie": f"{COOKIE}={cookie}", CSRF_HEADER: csrf}),
        "token GET": ("GET", {"Authorization": f"Bearer {token}"}),
    }
    async with ClientSession() as http:
        for name, (method, headers) in cases.items():
            timings: dict[str, list[float]] = {"auth": [], "bare": []}
            for _ in range(20):
                for url in (auth_url, bare_url):
                    async with http.request(method, url, headers=headers) as r:
                        await r.read()
            for _ in range(n):
                for key, url in (("auth", auth_url), ("bare", bare_url)):
                    t0 = time.perf_counter()
                    async with http.request(method, url, headers=headers) as r:
                        await r.read()
                        assert r.status == 200, (key, r.status)
                    timings[key].append(time.perf_counter() - t0)
            extra50 = (statistics.median(timings["auth"]) - statistics.median(timings["bare"])) * 1000
            extra99 = (pct(timings["auth"], 0.99) - pct(timings["bare"], 0.99)) * 1000
            print(f"  over HTTP,  {name:12s}: no-auth app {ms(timings['bare'])}; app {ms(timings['auth'])}; "
                  f"difference p50 {extra50:+.3f} ms, p99 {extra99:+.3f} ms")


async def middleware_bench(n: int) -> None:
    print(f"auth middleware, {n} requests per case (goal: p99 cost under 0.5 ms)")
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(Path(tmp) / "data", environ={}).with_overrides(**{"http.port": 0, "mqtt.enabled": False})
        app = create_app(settings, record=False)
        add_bench_routes(app)
        bare = web.Application(middlewares=[error_middleware])
        add_bench_routes(bare)
        runners = [web.AppRunner(app, handle_signals=False), web.AppRunner(bare, handle_signals=False)]
        urls = []
        for runner in runners:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/bench")
        try:
            cookie, csrf, token = await _login(app)
            await in_process(app, cookie, csrf, token, n)
            await over_http(urls[0], urls[1], cookie, csrf, token, min(max(n // 3, 200), 1000))
        finally:
            for runner in reversed(runners):
                await runner.cleanup()


# The group-commit baseline's rows go to a table of the same shape (columns, indexes), so its
# inserts and their cleanup leave the audit table, and its head lookups, untouched.
PLAIN_TABLE = Table("audit_bench_plain", MetaData(naming_convention=Base.metadata.naming_convention),
                    *(c._copy() for c in AuditEntry.__table__.columns))
COLUMNS = [c.name for c in PLAIN_TABLE.columns if c.name != "id"]


def _unkeyed(_key: bytes, e: audit.NewEntry, seq: int, prev: str) -> audit.WrittenEntry:
    return audit.WrittenEntry(seq, e.at_us, e.actor, e.action, e.target, e.details, prev,
                              entry_hash(seq, e.at_us, e.actor, e.action, e.target, e.details, prev))


class UnkeyedWriter(audit.AuditWriter):
    """The chain before issue 11: the same append_many, each entry chained with plain SHA-256.
    Its entries are deleted after each round (append_bench), so the chain still verifies."""

    async def write(self, session, pending):
        keyed, audit._chained = audit._chained, _unkeyed  # nothing else appends during its round
        try:
            return await audit.append_many(session, pending)
        finally:
            audit._chained = keyed


def mac_cost_us(rounds: int = 50_000) -> tuple[float, float]:
    """CPU microseconds per entry: (HMAC-SHA-256, plain SHA-256) of the same canonical entry."""
    key, body = os.urandom(32), '{"camera":12,"from":"2026-11-28T10:00:00Z","reason":"incident 2026/123"}'
    out = []
    for rule in (lambda i: audit.entry_mac(key, i, 1, "operator1", "playback.start", "camera:12", body, audit.GENESIS),
                 lambda i: entry_hash(i, 1, "operator1", "playback.start", "camera:12", body, audit.GENESIS)):
        c0 = time.process_time()
        for i in range(rounds):
            rule(i)
        out.append((time.process_time() - c0) / rounds * 1e6)
    return out[0], out[1]


class PlainWriter(audit.AuditWriter):
    """The baseline for group commit: the same queue, batches and transactions as the app's
    writer, but a plain insert of the rows (hashed the same way) without the chain's lock, its
    read of the head, or the prev_hash link."""

    next_seq = 0

    async def write(self, session, pending):
        rows = []
        for e in pending:
            PlainWriter.next_seq += 1
            seq = PlainWriter.next_seq
            rows.append(audit.WrittenEntry(seq, e.at_us, e.actor, e.action, e.target, e.details, audit.GENESIS,
                                           entry_hash(seq, e.at_us, e.actor, e.action, e.target, e.details, audit.GENESIS)))
        await session.execute(insert(PLAIN_TABLE), [{c: getattr(r, c) for c in COLUMNS} for r in rows])
        return rows


async def producers(writer: audit.AuditWriter, tasks: int, budget_s: float) -> tuple[int, float, float, list[float], int]:
    """``tasks`` concurrent callers, each appending one entry and waiting for it, as request
    handlers do, until ``budget_s``: (entries, seconds, CPU seconds, per-append latencies,
    batches committed)."""
    latencies: list[float] = []
    writer.start()
    c0, t0 = time.process_time(), time.perf_counter()

    async def producer(k: int) -> None:
        while time.perf_counter() - t0 < budget_s:
            a = time.perf_counter()
            await writer.append(f"operator{k}", "playback.start", f"camera:{k % 16}", **DETAILS)
            latencies.append(time.perf_counter() - a)

    await asyncio.gather(*(producer(k) for k in range(tasks)))
    await writer.close()
    return len(latencies), time.perf_counter() - t0, time.process_time() - c0, latencies, writer.batches


async def append_bench(name: str, url: str, n: int, budget_s: float, tasks: int) -> None:
    engine = make_engine(url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine, audit_key=os.urandom(32))  # a throwaway database's key
    try:
        for _ in range(20):  # warm the pool and the statement caches
            async with transaction(sessions) as session:
                await audit.append(session, "bench", "warm.up", "camera:12", **DETAILS)

        # 1. One entry per transaction, each waited for in turn (the old way for every action;
        #    still how actions that change the database append, atomically with their change).
        # Baseline: the same row, hashed the same way, but no lock and no read of the head.
        c0, t0 = time.process_time(), time.perf_counter()
        done = 0
        for i in range(n):
            if time.perf_counter() - t0 > budget_s:
                break
            done += 1
            async with transaction(sessions) as session:
                at = now_us()
                body = '{"camera":12,"from":"2026-11-28T10:00:00Z","reason":"incident 2026/123"}'
                await session.execute(insert(AuditEntry).values(
                    seq=PLAIN_SEQ + i, at_us=at, actor="operator1", action="playback.start", target="camera:12",
                    details=body, prev_hash="0" * 64,
                    hash=entry_hash(i, at, "operator1", "playback.start", "camera:12", body, "0" * 64)))
        plain = done / (time.perf_counter() - t0)
        plain_cpu = done / (time.process_time() - c0)
        async with transaction(sessions) as session:
            await session.execute(AuditEntry.__table__.delete().where(AuditEntry.seq >= PLAIN_SEQ))
        c0, t0 = time.process_time(), time.perf_counter()
        done = 0
        while done < n and time.perf_counter() - t0 < budget_s:
            async with transaction(sessions) as session:
                await audit.append(session, "operator1", "playback.start", "camera:12", **DETAILS)
            done += 1
        chained = done / (time.perf_counter() - t0)
        chained_cpu = done / (time.process_time() - c0)
        print(f"  {name:10s}: one per transaction: plain insert {plain:7.0f}/s; audit append {chained:7.0f}/s "
              f"({chained / plain:.2f} of plain); per second of this process's CPU: plain {plain_cpu:7.0f}/s, "
              f"append {chained_cpu:7.0f}/s")

        # 2. Group commit, the app's path for views, searches and refusals: `tasks` concurrent
        #    callers through AuditWriter.append, against PlainWriter (same batching, plain rows).
        #    Two rounds each, alternating, so drift in the machine's load hits both alike.
        async with engine.begin() as conn:
            await conn.run_sync(PLAIN_TABLE.metadata.create_all)
        totals = {"plain": [0, 0.0, 0.0, [], 0], "unkeyed": [0, 0.0, 0.0, [], 0], "chained": [0, 0.0, 0.0, [], 0]}
        for _ in range(2):
            for kind, make in (("plain", PlainWriter), ("unkeyed", UnkeyedWriter), ("chained", audit.AuditWriter)):
                async with sessions() as session:
                    before = (await audit.head(session))[0]
                result = await producers(make(sessions), tasks, budget_s / 3)
                if kind == "unkeyed":  # take its entries out of the keyed chain again
                    async with transaction(sessions) as session:
                        await session.execute(AuditEntry.__table__.delete().where(AuditEntry.seq > before))
                    audit._HEADS.clear()
                t = totals[kind]
                for k in (0, 1, 2, 4):
                    t[k] += result[k]
                t[3].extend(result[3])
        rate = {k: t[0] / t[1] for k, t in totals.items()}
        batch = {k: t[0] / max(t[4], 1) for k, t in totals.items()}
        async with sessions() as session:
            report = await audit.verify_chain(session)
        assert report.ok, report
        print(f"  {'':10s}  group commit, {tasks} concurrent callers: plain insert {rate['plain']:7.0f}/s; "
              f"audit append {rate['chained']:7.0f}/s ({rate['chained'] / rate['plain']:.2f} of plain; goal 2,000/s: "
              f"{'met' if rate['chained'] >= 2000 else 'NOT met'}); chain of {report.entries} verified")
        print(f"  {'':10s}  keyed chain against the unkeyed chain of before (same run): {rate['unkeyed']:7.0f}/s unkeyed, "
              f"{rate['chained']:7.0f}/s keyed ({rate['chained'] / rate['unkeyed']:.2f}); per CPU second: unkeyed "
              f"{totals['unkeyed'][0] / totals['unkeyed'][2]:7.0f}/s, keyed {totals['chained'][0] / totals['chained'][2]:7.0f}/s")
        print(f"  {'':10s}  mean batch: plain {batch['plain']:.1f}, audit {batch['chained']:.1f} entries per transaction")
        print(f"  {'':10s}  latency per append (caller waits for the commit): plain {ms(totals['plain'][3])}; "
              f"audit {ms(totals['chained'][3])}; per second of this process's CPU: plain "
              f"{totals['plain'][0] / totals['plain'][2]:7.0f}/s, append {totals['chained'][0] / totals['chained'][2]:7.0f}/s")
    finally:
        await engine.dispose()


async def audit_bench(n: int, only: str | None, budget_s: float, tasks: int) -> None:
    print(f"audit appends, up to {n} one-entry transactions or {budget_s:g} s per phase (goal: at least 2,000/s)")
    mac_us, sha_us = mac_cost_us()
    print(f"  one entry's chain value, CPU: HMAC-SHA-256 {mac_us:.2f} us, plain SHA-256 {sha_us:.2f} us")
    if only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            await append_bench("SQLite", f"sqlite+aiosqlite:///{tmp}/bench.db", n, budget_s, tasks)
    if only in (None, "postgresql"):
        name = f"controlroom_bench_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(PG_ADMIN)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        try:
            await append_bench("PostgreSQL", f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", n, budget_s, tasks)
        finally:
            conn = await asyncpg.connect(PG_ADMIN)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.auth")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--seconds", type=float, default=5, help="time budget of each append phase")
    parser.add_argument("--tasks", type=int, default=50, help="concurrent callers for group commit")
    parser.add_argument("--skip-middleware", action="store_true", help="only the audit appends")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if not args.skip_middleware:
        await middleware_bench(args.requests)
    await audit_bench(args.appends, args.only, args.seconds, args.tasks)


if __name__ == "__main__":
    asyncio.run(main())
