"""controlroom recordings list, retention run, holds add|list|release."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from controlroom.commands.common import open_store, print_json, print_table
from controlroom.settings import Settings
from controlroom.timefmt import iso_to_us, us_to_iso
from controlroom.views import timeline_json
from storage import Invalid, audit, inventory
from storage.catalogue import timeline
from storage.db import transaction
from storage.holds import add_hold, list_holds, release_hold
from storage.retention import run_retention

CLI_ACTOR = "cli"


def register(sub: argparse._SubParsersAction) -> None:
    rec = sub.add_parser("recordings", help="recorded segments and gaps")
    rs = rec.add_subparsers(dest="recordings_command", required=True)
    ls = rs.add_parser("list", help="segments and gaps of a camera in a time range")
    ls.add_argument("--camera", required=True, help="id or name")
    ls.add_argument("--from", dest="start", help="ISO 8601 with offset (default: an hour ago)")
    ls.add_argument("--to", dest="end", help="ISO 8601 with offset (default: now)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    ret = sub.add_parser("retention", help="delete footage past its retention")
    rts = ret.add_subparsers(dest="retention_command", required=True)
    run = rts.add_parser("run", help="run retention once")
    run.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_retention)

    holds = sub.add_parser("holds", help="holds that keep footage past retention")
    hs = holds.add_subparsers(dest="holds_command", required=True)
    add = hs.add_parser("add", help="place a hold")
    add.add_argument("--reason", required=True)
    add.add_argument("--owner", required=True)
    add.add_argument("--review", required=True, help="review date, ISO 8601 (e.g. 2027-01-31T00:00Z)")
    add.add_argument("--camera", action="append", default=[], help="id or name (repeat); none: all cameras")
    add.add_argument("--from", dest="start", required=True)
    add.add_argument("--to", dest="end", required=True)
    add.add_argument("--reference", default="")
    add.set_defaults(func=cmd_hold_add)
    hl = hs.add_parser("list", help="list holds")
    hl.add_argument("--all", action="store_true", help="include released holds")
    hl.add_argument("--json", action="store_true")
    hl.set_defaults(func=cmd_hold_list)
    rel = hs.add_parser("release", help="release a hold")
    rel.add_argument("hold_id", type=int)
    rel.add_argument("--by", required=True, help="who releases it")
    rel.set_defaults(func=cmd_hold_release)


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    from_us = iso_to_us(args.start, "--from") if args.start else int((now - timedelta(hours=1)).timestamp() * 1e6)
    to_us = iso_to_us(args.end, "--to") if args.end else int(now.timestamp() * 1e6)
    async with open_store(settings) as store, transaction(store.sessions) as session:
        cam = await inventory.get_camera(session, args.camera)
        data = timeline_json(await timeline(session, cam.id, from_us, to_us), settings.display_timezone)
        await audit.append(session, CLI_ACTOR, "recordings.list", f"camera:{cam.id}",
                           start=us_to_iso(from_us), end=us_to_iso(to_us))
    if args.json:
        print_json(data)
    else:
        print_table(data["segments"], ["start_local", "end_local", "duration_s", "bytes", "state", "path"])
        for g in data["gaps"]:
            print(f"gap {g['start']} .. {g['end'] or 'now'}: {g['reason']}")
    return 0


async def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store:
        result = await run_retention(
            store.sessions, settings.storage_root, default_days=settings.retention.default_days,
            floor_bytes=settings.retention.free_space_floor_bytes, dry_run=args.dry_run, actor=CLI_ACTOR,
        )
    if args.json:
        print_json(result.__dict__)
    else:
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {result.deleted} segments, {result.bytes} bytes (receipt {result.receipt_id})")
        for row in result.summary:
            print(f"  camera {row['camera_id']}: {row['segments']} segments, {row['bytes']} bytes ({row['reason']})")
        if result.below_floor:
            print("ALARM: free space is below the floor; the disk does not cover the retention period")
    return 0


async def cmd_hold_add(settings: Settings, args: argparse.Namespace) -> int:
    start, end = iso_to_us(args.start, "--from"), iso_to_us(args.end, "--to")
    async with open_store(settings) as store, transaction(store.sessions) as session:
        cams = [(await inventory.get_camera(session, c)).id for c in args.camera] or [None]
        hold = await add_hold(session, reason=args.reason, owner=args.owner, review_us=iso_to_us(args.review, "--review"),
                              windows=[(c, start, end) for c in cams], reference=args.reference)
        await audit.append(session, CLI_ACTOR, "hold.add", f"hold:{hold.id}", reason=args.reason, owner=args.owner,
                           cameras=cams, start=args.start, end=args.end)
    print(f"hold {hold.id} placed")
    return 0


def hold_json(h) -> dict:
    return {
        "id": h.id, "reason": h.reason, "owner": h.owner, "reference": h.reference,
        "review": us_to_iso(h.review_us), "created": us_to_iso(h.created_us), "released": us_to_iso(h.released_us),
        "windows": [{"camera_id": w.camera_id, "from": us_to_iso(w.start_us), "to": us_to_iso(w.end_us)} for w in h.windows],
    }


async def cmd_hold_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, store.sessions() as session:
        rows = [hold_json(h) for h in await list_holds(session, include_released=args.all)]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["id", "owner", "review", "released", "reason"])
    return 0


async def cmd_hold_release(settings: Settings, args: argparse.Namespace) -> int:
    if not args.by.strip():
        raise Invalid("--by must name who releases the hold")
    async with open_store(settings) as store, transaction(store.sessions) as session:
        hold = await release_hold(session, args.hold_id, args.by)
        await audit.append(session, CLI_ACTOR, "hold.release", f"hold:{hold.id}", by=args.by)
    print(f"hold {hold.id} released")
    return 0
