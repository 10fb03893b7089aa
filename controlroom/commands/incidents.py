"""controlroom incidents list|show|open|note|update|close and controlroom bookmarks list|add: the
occurrence book from the command line.

Every change is audited as ``cli:<os user>`` (storage.incidents appends the entry in the same
transaction), as the same change made over HTTP would be. Times are ISO 8601 with an offset;
cameras and sites are named by id or name.
"""

from __future__ import annotations

import argparse
from zoneinfo import ZoneInfo

from controlroom.commands.common import open_store, print_json, print_table
from controlroom.commands.users import cli_actor
from controlroom.incident_views import Names, bookmark_json, incident_json
from controlroom.settings import Settings
from controlroom.timefmt import iso_to_us
from storage import Invalid, NotFound
from storage.db import by_id_or_name, row_id, transaction
from storage.incidents import (
    CATEGORIES,
    OUTCOMES,
    STATUSES,
    TOLD,
    add_entry,
    close_incident,
    create_bookmark,
    get_incident,
    incident_holds,
    linked_requests,
    open_incident,
    search_bookmarks,
    search_incidents,
    update_incident,
)
from storage.inventory import get_camera
from storage.models import Site

LIST_COLUMNS = ["id", "occurred_at_local", "status", "category", "camera", "site", "police_reference", "outcome"]


def _time(text: str | None, field: str) -> int | None:
    return iso_to_us(text, field) if text else None


def _id(text: str, what: str) -> int:
    found = row_id(text)
    if found is None:
        raise NotFound(f"no {what} {text!r}")
    return found


def register(sub: argparse._SubParsersAction) -> None:
    inc = sub.add_parser("incidents", help="the occurrence book: incidents and their logs")
    isub = inc.add_subparsers(dest="incidents_command", required=True)

    ls = isub.add_parser("list", help="incidents, newest first")
    ls.add_argument("--from", dest="start", help="happened at or after (ISO 8601 with offset)")
    ls.add_argument("--to", dest="end", help="happened before")
    ls.add_argument("--category", choices=list(CATEGORIES))
    ls.add_argument("--camera", help="id or name")
    ls.add_argument("--site", help="id or name")
    ls.add_argument("--status", choices=list(STATUSES))
    ls.add_argument("--search", help="words in the location, summary or police reference")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    show = isub.add_parser("show", help="one incident with its log")
    show.add_argument("incident", help="id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)

    new = isub.add_parser("open", help="open an incident")
    new.add_argument("category", choices=list(CATEGORIES))
    new.add_argument("--at", help="when it happened (default now)")
    new.add_argument("--camera", help="id or name")
    new.add_argument("--site", help="id or name (default: the camera's)")
    new.add_argument("--location", default="")
    new.add_argument("--told", action="append", default=[], choices=list(TOLD), help="repeat for each")
    new.add_argument("--police-reference")
    new.add_argument("--summary", default="")
    new.set_defaults(func=cmd_open)

    note = isub.add_parser("note", help="add a note (or --correction) to an incident's log")
    note.add_argument("incident", help="id")
    note.add_argument("text")
    note.add_argument("--correction", action="store_true", help="a correction (the way to correct a closed one)")
    note.set_defaults(func=cmd_note)

    upd = isub.add_parser("update", help="change an open incident (a closed one is append-only)")
    upd.add_argument("incident", help="id")
    upd.add_argument("--category", choices=list(CATEGORIES))
    upd.add_argument("--police-reference")
    upd.add_argument("--outcome", choices=list(OUTCOMES))
    upd.add_argument("--location")
    upd.add_argument("--summary")
    upd.set_defaults(func=cmd_update)

    close = isub.add_parser("close", help="close an incident (it needs an outcome)")
    close.add_argument("incident", help="id")
    close.add_argument("--outcome", choices=list(OUTCOMES))
    close.add_argument("--note", default="")
    close.set_defaults(func=cmd_close)

    bm = sub.add_parser("bookmarks", help="bookmarks on cameras' timelines")
    bsub = bm.add_subparsers(dest="bookmarks_command", required=True)
    bls = bsub.add_parser("list", help="bookmarks, newest first")
    bls.add_argument("--camera", help="id or name")
    bls.add_argument("--from", dest="start")
    bls.add_argument("--to", dest="end")
    bls.add_argument("--search", help="words in the note")
    bls.add_argument("--incident", type=int)
    bls.add_argument("--limit", type=int, default=200)
    bls.add_argument("--json", action="store_true")
    bls.set_defaults(func=cmd_bookmarks_list)
    badd = bsub.add_parser("add", help="bookmark a moment (or a span with --to)")
    badd.add_argument("camera", help="id or name")
    badd.add_argument("at", help="ISO 8601 with offset")
    badd.add_argument("--to", dest="end")
    badd.add_argument("--note", default="")
    badd.add_argument("--incident", type=int)
    badd.set_defaults(func=cmd_bookmarks_add)


def _tz(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.display_timezone)


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        camera_id = (await get_camera(session, args.camera)).id if args.camera else None
        site_id = (await by_id_or_name(session, Site, args.site, "site")).id if args.site else None
        rows = await search_incidents(session, from_us=_time(args.start, "--from"), to_us=_time(args.end, "--to"),
                                      category=args.category, camera_id=camera_id, site_id=site_id,
                                      status=args.status, text=args.search, limit=args.limit)
        names = await Names.load(session)
    data = [incident_json(i, names, _tz(settings)) for i in rows]
    if args.json:
        print_json(data)
    else:
        print_table(data, LIST_COLUMNS)
    return 0


async def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        inc = await get_incident(session, _id(args.incident, "incident"))
        data = incident_json(inc, await Names.load(session), _tz(settings), entries=True,
                             evidence=await linked_requests(session, inc.id), holds=await incident_holds(session, inc.id),
                             bookmarks=await search_bookmarks(session, incident_id=inc.id))
    if args.json:
        print_json(data)
        return 0
    print(f"incident {data['id']} ({data['status']}): {data['category_label']}, {data['occurred_at_local']}")
    for key in ("camera", "site", "location", "police_reference", "outcome_label", "summary"):
        if data.get(key):
            print(f"  {key}: {data[key]}")
    if data["told_labels"]:
        print(f"  told: {', '.join(data['told_labels'])}")
    for e in data["entries"]:
        print(f"  {e['at_local']}  {e['author']}  [{e['kind']}] {e['text']}")
    return 0


async def cmd_open(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        camera_id = (await get_camera(session, args.camera)).id if args.camera else None
        site_id = (await by_id_or_name(session, Site, args.site, "site")).id if args.site else None
        inc = await open_incident(session, by=cli_actor(), category=args.category, occurred_at_us=_time(args.at, "--at"),
                                  camera_id=camera_id, site_id=site_id, location=args.location, told=args.told,
                                  police_reference=args.police_reference, summary=args.summary)
    print(f"incident {inc.id} opened: {CATEGORIES[inc.category]}")
    return 0


async def cmd_note(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        entry = await add_entry(session, _id(args.incident, "incident"), by=cli_actor(), text=args.text,
                                kind="correction" if args.correction else "note")
    print(f"entry {entry.id} added to incident {entry.incident_id}")
    return 0


async def cmd_update(settings: Settings, args: argparse.Namespace) -> int:
    changes = {k: getattr(args, k) for k in ("category", "police_reference", "outcome", "location", "summary")
               if getattr(args, k) is not None}
    if not changes:
        raise Invalid("nothing to change: give --category, --police-reference, --outcome, --location or --summary")
    async with open_store(settings) as st, transaction(st.sessions) as session:
        inc = await update_incident(session, _id(args.incident, "incident"), by=cli_actor(), **changes)
    print(f"incident {inc.id} changed: {', '.join(sorted(changes))}")
    return 0


async def cmd_close(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        inc = await close_incident(session, _id(args.incident, "incident"), by=cli_actor(), outcome=args.outcome,
                                   note=args.note)
    print(f"incident {inc.id} closed: {OUTCOMES[inc.outcome]}")
    return 0


async def cmd_bookmarks_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        camera_id = (await get_camera(session, args.camera)).id if args.camera else None
        rows = await search_bookmarks(session, camera_id=camera_id, from_us=_time(args.start, "--from"),
                                      to_us=_time(args.end, "--to"), text=args.search, incident_id=args.incident,
                                      limit=args.limit)
        names = await Names.load(session)
    data = [bookmark_json(b, names, _tz(settings)) for b in rows]
    if args.json:
        print_json(data)
    else:
        print_table(data, ["id", "camera", "start_local", "end_local", "made_by", "incident_id", "note"])
    return 0


async def cmd_bookmarks_add(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        camera = await get_camera(session, args.camera)
        mark = await create_bookmark(session, by=cli_actor(), camera_id=camera.id, start_us=iso_to_us(args.at, "at"),
                                     end_us=_time(args.end, "--to"), note=args.note, incident_id=args.incident)
    print(f"bookmark {mark.id} on {camera.name}")
    return 0
