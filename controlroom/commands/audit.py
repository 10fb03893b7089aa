"""controlroom audit verify|export|anchor

``verify`` checks the whole MAC chain, the signed anchor file (security.audit_anchor_file) and
any copies given with ``--anchor`` (e.g. received over MQTT), and the legacy digests in
<data_dir>/audit-digests; it names the first bad entry and exits 1 when anything is wrong.
``export`` writes JSON lines (one entry per line, with the MACs and canonical details: the links
can be re-checked by anyone, the MACs by whoever holds the key file). ``anchor`` (alias
``digest``) anchors the head now.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from controlroom.commands.common import open_store, print_json
from controlroom.commands.users import cli_actor
from controlroom.settings import Settings
from controlroom.timefmt import iso_to_us
from storage import audit
from storage.db import transaction


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="the tamper-evident audit trail")
    s = p.add_subparsers(dest="audit_command", required=True)

    v = s.add_parser("verify", help="check the chain and the digests; exit 1 if broken")
    v.add_argument("--json", action="store_true")
    v.add_argument("--anchor", dest="anchors", action="append", type=Path, default=[],
                   help="also check this copy of an anchor (repeatable), e.g. one kept off the machine")
    v.set_defaults(func=cmd_verify)

    e = s.add_parser("export", help="write entries as JSON lines")
    e.add_argument("--from", dest="start", help="ISO 8601 time with offset (inclusive)")
    e.add_argument("--to", dest="end", help="ISO 8601 time with offset (exclusive)")
    e.add_argument("--output", "-o", type=Path, help="file to write (default: standard output)")
    e.set_defaults(func=cmd_export)

    d = s.add_parser("anchor", aliases=["digest"], help="anchor the chain head now (the signed anchor file)")
    d.set_defaults(func=cmd_anchor)


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, store.sessions() as session:
        report = await audit.verify_all(session, store.keys, settings.audit_anchor_file, settings.audit_digest_dir,
                                        args.anchors)
    if args.json:
        print_json({
            "ok": report.ok, "entries": report.chain.entries, "head_hash": report.chain.head_hash,
            "anchors_checked": report.anchors_checked, "digests_checked": report.digests_checked,
            "first_bad_seq": report.first_bad_seq, "problems": report.problems,
        })
    elif report.ok:
        print(f"audit trail intact: {report.chain.entries} entries, {report.anchors_checked} anchors, "
              f"{report.digests_checked} legacy digests, head {report.chain.head_hash}")
    else:
        print(f"AUDIT TRAIL BROKEN: first bad entry {report.first_bad_seq}", file=sys.stderr)
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
    return 0 if report.ok else 1


async def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from_us = iso_to_us(args.start, "--from") if args.start else None
    to_us = iso_to_us(args.end, "--to") if args.end else None
    out = args.output.open("w") if args.output else sys.stdout
    count = 0
    try:
        async with open_store(settings) as store:
            async with store.sessions() as session:
                async for entry in audit.entries(session, from_us, to_us):
                    out.write(json.dumps(audit.entry_json(entry), ensure_ascii=False, sort_keys=True) + "\n")
                    count += 1
            async with transaction(store.sessions) as session:
                await audit.append(session, cli_actor(), "audit.export", "audit", start=args.start, end=args.end,
                                   entries=count)
    finally:
        if args.output:
            out.close()
    print(f"exported {count} entries", file=sys.stderr)
    return 0


async def cmd_anchor(settings: Settings, args: argparse.Namespace) -> int:
    path = settings.audit_anchor_file
    async with open_store(settings) as store:
        try:
            result = await audit.write_anchor(store.sessions, store.keys, path)
        except audit.AnchorError as exc:
            print(f"AUDIT TRAIL BROKEN: {exc}", file=sys.stderr)
            return 1
    if result.warning:
        print(f"warning: {result.warning}", file=sys.stderr)
    print(f"{'wrote' if result.written else 'unchanged'} {path} (entry {result.anchor.seq})")
    return 0
