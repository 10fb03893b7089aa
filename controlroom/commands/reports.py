"""controlroom reports tasking|stats: the weekly tasking pack and the statistics table as files.

``tasking --week 2026-W48 --pdf FILE [--csv FILE] [--json FILE]`` writes the supervisor's pack
(it names operators and plates: the command is audited as ``reports.tasking``, like the API);
``stats --from DATE --to DATE --compare-from DATE --compare-to DATE --csv FILE [--pdf FILE]``
the statistics table (local dates, both ends included). Without any file, a summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import date
from pathlib import Path

from controlroom.commands.common import open_store
from controlroom.commands.users import cli_actor
from controlroom.reports import render
from controlroom.reports.stats import build_stats
from controlroom.reports.tasking import build_tasking, last_week
from controlroom.settings import Settings
from storage import Invalid, audit
from storage.db import transaction


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date such as 2026-04-01") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reports", help="the weekly tasking pack and the statistics table")
    s = p.add_subparsers(dest="reports_command", required=True)

    t = s.add_parser("tasking", help="the weekly tasking pack (supervisor edition)")
    t.add_argument("--week", help="ISO week in local time, e.g. 2026-W48 (default: last week)")
    t.add_argument("--pdf", type=Path, help="write the PDF here")
    t.add_argument("--csv", type=Path, help="write the CSV here")
    t.add_argument("--json", type=Path, help="write the JSON here")
    t.set_defaults(func=cmd_tasking)

    st = s.add_parser("stats", help="incidents by category against a comparison period (Table 1)")
    st.add_argument("--from", dest="from_date", type=_date, required=True, help="first local date")
    st.add_argument("--to", dest="to_date", type=_date, required=True, help="last local date (included)")
    st.add_argument("--compare-from", type=_date, required=True, help="first local date compared against")
    st.add_argument("--compare-to", type=_date, required=True, help="last local date compared against (included)")
    st.add_argument("--csv", type=Path, help="write the CSV here")
    st.add_argument("--pdf", type=Path, help="write the PDF here")
    st.set_defaults(func=cmd_stats)


def _write(path: Path | None, data: bytes | str) -> None:
    if path is None:
        return
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", newline="")
    else:
        path.write_bytes(data)
    print(f"wrote {path}")


async def cmd_tasking(settings: Settings, args: argparse.Namespace) -> int:
    tz = settings.display_timezone
    week = args.week or last_week(tz_name=tz)
    async with open_store(settings) as store:
        async with store.sessions() as session:
            pack = await build_tasking(session, week, tz_name=tz, target_hours=settings.health.target_hours)
        formats = [f for f in ("pdf", "csv", "json") if getattr(args, f) is not None]
        async with transaction(store.sessions) as session:
            await audit.append(session, cli_actor(), "reports.tasking", f"tasking:{week}", week=week, via="cli",
                               format=",".join(formats) or "summary", incidents=pack.total, disclosed="personal")
    if args.pdf:
        _write(args.pdf, await asyncio.to_thread(render.tasking_pdf, pack))
    if args.csv:
        _write(args.csv, render.tasking_csv(pack))
    if args.json:
        _write(args.json, json.dumps(pack.to_dict(), indent=2))
    print(f"{week}: {pack.total} incidents (week before {pack.previous_total}); "
          + ", ".join(f"{c.label} {c.count}" for c in pack.by_category if c.count))
    return 0


async def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    if not (args.csv or args.pdf):
        raise Invalid("give --csv FILE and/or --pdf FILE")
    async with open_store(settings) as store, store.sessions() as session:
        table = await build_stats(session, args.from_date, args.to_date, args.compare_from, args.compare_to,
                                  tz_name=settings.display_timezone)
    _write(args.csv, render.stats_csv(table))
    if args.pdf:
        _write(args.pdf, await asyncio.to_thread(render.stats_pdf, table))
    pct = table.total.change_pct
    print(f"{table.total.current} incidents against {table.total.previous} "
          f"({'n/a' if pct is None else f'{pct:+.1f}%'})")
    return 0
