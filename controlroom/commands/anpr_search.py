"""controlroom anpr search|journeys: justified, audited searches of ANPR reads.

Registered under the ``anpr`` command group (controlroom/commands/anpr.py calls
:func:`register_search`). Like the HTTP API, each search needs ``--reason`` and ``--reference``
and is audited as ``cli:<os user>`` with its terms and result count.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from anpr.journeys import find_journeys
from controlroom.commands.common import open_store, print_json, print_table
from controlroom.commands.users import cli_actor
from controlroom.settings import Settings
from controlroom.timefmt import LONDON, iso_to_us, us_to_iso
from storage import Invalid, audit
from storage.anpr.models import AnprRead
from storage.anpr.reads import ReadQuery, search_reads
from storage.db import transaction
from storage.inventory import get_camera


def register_search(anpr_sub: argparse._SubParsersAction) -> None:
    s = anpr_sub.add_parser("search", help="search reads by registration (wildcards * and ?), time and site")
    s.add_argument("vrm", help="registration or pattern, e.g. AB12*, ?B12CDE, * for all")
    _justified(s)
    s.add_argument("--from", dest="start", help="ISO 8601 with offset")
    s.add_argument("--to", dest="end", help="ISO 8601 with offset")
    s.add_argument("--site", action="append", default=[], help="site name (repeat)")
    s.add_argument("--camera", help="id or name")
    s.add_argument("--limit", type=int, default=1000)
    s.add_argument("--json", action="store_true")
    s.add_argument("--csv", type=Path, help="also write the results to this CSV file")
    s.set_defaults(func=cmd_search)

    j = anpr_sub.add_parser("journeys", help="vehicles read at one site and then another within a window")
    j.add_argument("--from-site", required=True)
    j.add_argument("--to-site", required=True)
    j.add_argument("--within-s", type=float, default=900)
    j.add_argument("--either-direction", action="store_true", help="also journeys from --to-site to --from-site")
    j.add_argument("--vrm", help="only this registration or pattern")
    j.add_argument("--from", dest="start")
    j.add_argument("--to", dest="end")
    _justified(j)
    j.add_argument("--json", action="store_true")
    j.set_defaults(func=cmd_journeys)


def _justified(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", required=True, help="why this search is made (audited)")
    p.add_argument("--reference", required=True, help="incident, crime or operation reference (audited)")


def _check(args: argparse.Namespace) -> None:
    if not args.reason.strip() or not args.reference.strip():
        raise Invalid("an ANPR search must state its reason and reference (the search is audited)")


def _range(args: argparse.Namespace) -> tuple[int | None, int | None]:
    return (iso_to_us(args.start, "--from") if args.start else None, iso_to_us(args.end, "--to") if args.end else None)


def _row(r: AnprRead) -> dict:
    return {"id": r.id, "vrm": r.vrm, "time": us_to_iso(r.read_us), "time_local": us_to_iso(r.read_us, LONDON),
            "site": r.site_name, "lane": r.lane, "direction": r.direction, "camera_id": r.camera_id,
            "confidence": round(r.confidence, 3), "plate_path": r.plate_path, "overview_path": r.overview_path}


async def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    _check(args)
    from_us, to_us = _range(args)
    who = cli_actor()
    async with open_store(settings) as st, transaction(st.sessions) as session:
        camera_id = (await get_camera(session, args.camera)).id if args.camera else None
        query = ReadQuery(pattern=args.vrm, from_us=from_us, to_us=to_us, sites=tuple(args.site),
                                camera_id=camera_id, limit=args.limit)
        reads = await search_reads(session, query)
        await audit.append(session, who, "anpr.export" if args.csv else "anpr.search", "anpr", reason=args.reason,
                           reference=args.reference, results=len(reads), **query.described())
    rows = [_row(r) for r in reads]
    if args.csv:
        with args.csv.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["id"])
            writer.writeheader()
            writer.writerows(rows)
        print(f"{len(rows)} reads written to {args.csv}", file=sys.stderr)
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["id", "vrm", "time_local", "site", "lane", "direction", "confidence"])
    return 0


async def cmd_journeys(settings: Settings, args: argparse.Namespace) -> int:
    _check(args)
    from_us, to_us = _range(args)
    who = cli_actor()
    async with open_store(settings) as st, transaction(st.sessions) as session:
        found = await find_journeys(session, args.from_site, args.to_site, args.within_s, from_us, to_us,
                                    args.vrm, args.either_direction)
        await audit.append(session, who, "anpr.journeys", "anpr", reason=args.reason, reference=args.reference,
                           from_site=args.from_site, to_site=args.to_site, within_s=args.within_s,
                           either_direction=args.either_direction, from_us=from_us, to_us=to_us, vrm=args.vrm,
                           results=len(found))
    rows = [{"vrm": j.vrm, "from_site": j.from_site, "to_site": j.to_site, "start_local": us_to_iso(j.start_us, LONDON),
             "end_local": us_to_iso(j.end_us, LONDON), "travel_s": round(j.travel_s, 1)} for j in found]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["vrm", "from_site", "to_site", "start_local", "travel_s"])
    return 0
