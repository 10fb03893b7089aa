"""controlroom hotlists add|add-entry|import|list|remove: ANPR hotlists from the command line.

Every change is audited as ``cli:<os user>``, as the same change made over HTTP would be.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anpr.hotlist import HotlistImportError, import_csv, parse_entry
from controlroom.commands.common import open_store, print_json, print_table
from controlroom.commands.users import cli_actor
from controlroom.settings import Settings
from controlroom.timefmt import us_to_iso
from storage import Invalid, audit
from storage.anpr.hotlists import (
    add_entries,
    add_hotlist,
    get_hotlist,
    list_entries,
    list_hotlists,
    remove_entry,
    remove_hotlist,
)
from storage.anpr.models import HotlistEntry
from storage.db import transaction


def register(sub: argparse._SubParsersAction) -> None:
    hot = sub.add_parser("hotlists", help="ANPR hotlists: registrations or patterns of interest")
    hs = hot.add_subparsers(dest="hotlists_command", required=True)

    add = hs.add_parser("add", help="create a hotlist")
    add.add_argument("name")
    add.add_argument("--source", default="", help="default source of its entries (e.g. PNC)")
    add.add_argument("--description", default="")
    add.add_argument("--priority", type=int, default=3, help="default priority, 1 (most urgent) to 5")
    add.set_defaults(func=cmd_add)

    entry = hs.add_parser("add-entry", help="add a registration or pattern (AB12*, ?B12CDE) to a hotlist")
    entry.add_argument("hotlist", help="id or name")
    entry.add_argument("vrm")
    entry.add_argument("--reason", required=True)
    entry.add_argument("--expires", required=True, help="ISO 8601 with offset, or YYYY-MM-DD (end of that day, London)")
    entry.add_argument("--source", default="", help="default: the hotlist's")
    entry.add_argument("--priority", type=int, help="default: the hotlist's")
    entry.set_defaults(func=cmd_add_entry)

    imp = hs.add_parser("import", help="import entries from CSV (vrm,reason,source,priority,expires)")
    imp.add_argument("hotlist", help="id or name")
    imp.add_argument("file", type=Path, help="CSV file, or - for standard input")
    imp.add_argument("--replace", action="store_true", help="the file replaces the hotlist's live entries")
    imp.set_defaults(func=cmd_import)

    ls = hs.add_parser("list", help="list hotlists, or one hotlist's entries")
    ls.add_argument("hotlist", nargs="?", help="id or name: list its entries")
    ls.add_argument("--all", action="store_true", help="include expired and removed entries")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    rm = hs.add_parser("remove", help="remove an entry, or a hotlist that never produced a hit")
    rm.add_argument("hotlist", help="id or name")
    rm.add_argument("--entry", type=int, help="remove only this entry (id)")
    rm.set_defaults(func=cmd_remove)


async def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    who = cli_actor()
    async with open_store(settings) as st, transaction(st.sessions) as session:
        hl = await add_hotlist(session, args.name, description=args.description, source=args.source,
                                     default_priority=args.priority, created_by=who)
        await audit.append(session, who, "hotlist.add", f"hotlist:{hl.id}", name=hl.name, source=hl.source)
    print(f"hotlist {hl.id} {hl.name!r} created")
    return 0


async def cmd_add_entry(settings: Settings, args: argparse.Namespace) -> int:
    who = cli_actor()
    async with open_store(settings) as st, transaction(st.sessions) as session:
        hl = await get_hotlist(session, args.hotlist)
        spec = parse_entry({"vrm": args.vrm, "reason": args.reason, "source": args.source,
                            "priority": args.priority, "expires": args.expires}, hl)
        (entry,) = await add_entries(session, hl.id, [spec], created_by=who)
        await audit.append(session, who, "hotlist.entry.add", f"hotlist:{hl.id}", entry_id=entry.id, vrm=entry.pattern,
                           reason=entry.reason, source=entry.source, expires_us=entry.expires_us)
    print(f"entry {entry.id} {entry.pattern} added to {hl.name!r}, expires {us_to_iso(entry.expires_us)}")
    return 0


async def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if str(args.file) == "-" else args.file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"{args.file}: cannot read it ({exc})") from None
    who = cli_actor()
    try:
        async with open_store(settings) as st, transaction(st.sessions) as session:
            hl = await get_hotlist(session, args.hotlist)
            result = await import_csv(session, hl, text, who, replace=args.replace)
            await audit.append(session, who, "hotlist.import", f"hotlist:{hl.id}", added=result.added,
                               replaced=result.replaced, file=str(args.file))
    except HotlistImportError as exc:
        print(f"controlroom: {args.file}: {len(exc.errors)} bad line(s); nothing was imported", file=sys.stderr)
        for line, message in exc.errors:
            print(f"  {args.file}:{line}: {message}", file=sys.stderr)
        return 1
    print(f"imported {result.added} entries into {hl.name!r}" + (f", replacing {result.replaced}" if args.replace else ""))
    return 0


def _entry_row(e: HotlistEntry) -> dict:
    return {"id": e.id, "vrm": e.pattern, "priority": e.priority, "expires": us_to_iso(e.expires_us),
            "source": e.source, "reason": e.reason, "removed": us_to_iso(e.removed_us)}


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        if args.hotlist:
            hl = await get_hotlist(session, args.hotlist)
            rows = [_entry_row(e) for e in await list_entries(session, hl.id, include_inactive=args.all)]
            columns = ["id", "vrm", "priority", "expires", "source", "reason"] + (["removed"] if args.all else [])
        else:
            rows = [{"id": h.id, "name": h.name, "source": h.source, "enabled": h.enabled, "live_entries": n,
                     "default_priority": h.default_priority} for h, n in await list_hotlists(session)]
            columns = ["id", "name", "source", "enabled", "live_entries", "default_priority"]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, columns)
    return 0


async def cmd_remove(settings: Settings, args: argparse.Namespace) -> int:
    who = cli_actor()
    async with open_store(settings) as st, transaction(st.sessions) as session:
        hl = await get_hotlist(session, args.hotlist)
        if args.entry is not None:
            entry = await remove_entry(session, hl.id, args.entry, who)
            await audit.append(session, who, "hotlist.entry.remove", f"hotlist:{hl.id}", entry_id=entry.id,
                               vrm=entry.pattern)
            print(f"entry {entry.id} {entry.pattern} removed from {hl.name!r}")
        else:
            await remove_hotlist(session, hl.id)
            await audit.append(session, who, "hotlist.remove", f"hotlist:{hl.id}", name=hl.name)
            print(f"hotlist {hl.id} {hl.name!r} removed")
    return 0
