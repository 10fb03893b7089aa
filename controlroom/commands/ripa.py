"""controlroom ripa add|list|show|review|renew|cancel|report: the RIPA register from the command line.

Every change is audited as ``cli:<os user>`` (storage.ripa appends the entry in the same
transaction). ``report`` writes the IPCO inspection report (JSON or CSV) of a period.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, timedelta
from pathlib import Path

from controlroom.commands.common import open_store, print_json, print_table
from controlroom.commands.users import cli_actor
from controlroom.lawful import authorisation_json, report_csv, ripa_report, use_json
from controlroom.settings import Settings
from controlroom.timefmt import iso_to_us
from storage import Invalid, inventory, ripa
from storage.db import transaction
from storage.months import day_start_us


def when(text: str, field: str, *, end_of_day: bool = False) -> int:
    """ISO 8601 with an offset, or YYYY-MM-DD: 00:00 London that day (``end_of_day``: the next)."""
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise Invalid(f"{field}: {text!r} is not a date") from None
        return day_start_us(day + timedelta(days=1) if end_of_day else day)
    return iso_to_us(text, field)


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise Invalid(f"{text!r}: a comma-separated list of ids") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ripa", help="RIPA authorisations: the register and the IPCO report")
    rs = p.add_subparsers(dest="ripa_command", required=True)

    add = rs.add_parser("add", help="record an authorisation as granted")
    add.add_argument("reference")
    add.add_argument("--kind", default="directed_surveillance", choices=[k.value for k in ripa.Kind])
    add.add_argument("--officer", required=True, help="the authorising officer")
    add.add_argument("--grounds", required=True)
    add.add_argument("--subject", required=True, help="description of the person to be watched")
    add.add_argument("--operation", default="")
    add.add_argument("--cameras", default="", help="camera ids, comma-separated (none: any camera)")
    add.add_argument("--sites", default="", help="site ids, comma-separated")
    add.add_argument("--authorised", required=True, help="when granted: ISO 8601 with offset, or YYYY-MM-DD")
    add.add_argument("--start", help="when it takes effect (default: when granted)")
    add.add_argument("--expires", help="an earlier end than the statutory period")
    add.add_argument("--next-review", help="the first review (default: after the review interval)")
    add.set_defaults(func=cmd_add)

    ls = rs.add_parser("list", help="the register, with each authorisation's state")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    show = rs.add_parser("show", help="one authorisation with its reviews, renewals and directed uses")
    show.add_argument("reference")
    show.set_defaults(func=cmd_show)

    for name, helptext in (("review", "record a review"), ("renew", "renew for a further period"),
                           ("cancel", "cancel (no longer necessary or proportionate)")):
        c = rs.add_parser(name, help=helptext)
        c.add_argument("reference")
        c.add_argument("--officer", required=True)
        c.add_argument("--note", required=True, help="the outcome, the reasons, or why it is cancelled")
        if name != "cancel":
            c.add_argument("--next-review", help="ISO 8601 with offset, or YYYY-MM-DD")
        c.set_defaults(func=cmd_change, change=name)

    use = rs.add_parser("use", help="directed use of a camera under an authorisation (links `controlroom ptz` moves)")
    us = use.add_subparsers(dest="use_command", required=True)
    start = us.add_parser("start", help="open a directed use: your PTZ moves on the camera carry the reference")
    start.add_argument("reference")
    start.add_argument("camera", help="id or name")
    start.add_argument("--purpose", default="", help="e.g. following the subject at the request of DC Smith")
    start.set_defaults(func=cmd_use_start)
    end = us.add_parser("end", help="end one of your directed uses")
    end.add_argument("use", type=int)
    end.set_defaults(func=cmd_use_end)
    uls = us.add_parser("list", help="your open directed uses")
    uls.set_defaults(func=cmd_use_list)

    rep = rs.add_parser("report", help="the report for an IPCO inspection of a period")
    rep.add_argument("--from", dest="start", required=True, help="ISO 8601 with offset, or YYYY-MM-DD")
    rep.add_argument("--to", dest="end", required=True, help="ISO 8601 with offset, or YYYY-MM-DD (inclusive)")
    rep.add_argument("--format", choices=["json", "csv"], default="json")
    rep.add_argument("--output", type=Path, help="write to this file (default: standard output)")
    rep.set_defaults(func=cmd_report)


async def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        auth = await ripa.create(
            session, by=cli_actor(), reference=args.reference, kind=args.kind, authorising_officer=args.officer,
            grounds=args.grounds, subject=args.subject, operation=args.operation,
            camera_ids=_ints(args.cameras), site_ids=_ints(args.sites),
            authorised_us=when(args.authorised, "--authorised"),
            start_us=when(args.start, "--start") if args.start else None,
            expires_us=when(args.expires, "--expires", end_of_day=True) if args.expires else None,
            next_review_us=when(args.next_review, "--next-review") if args.next_review else None,
            review_interval_days=settings.lawful.ripa_review_interval_days,
        )
        data = authorisation_json(auth)
    print(f"authorisation {data['reference']} recorded: {data['state']}, expires {data['expires']['local']}")
    return 0


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        rows = [authorisation_json(a) for a in await ripa.list_all(session)]
    if args.json:
        print_json(rows)
        return 0
    print_table([{"reference": r["reference"], "kind": r["kind"], "state": r["state"],
                  "officer": r["authorising_officer"], "next_review": r["next_review"]["local"],
                  "expires": r["expires"]["local"]} for r in rows],
                ["reference", "kind", "state", "officer", "next_review", "expires"])
    return 0


async def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        auth = await ripa.get(session, args.reference)
        print_json(authorisation_json(auth))
    return 0


async def cmd_change(settings: Settings, args: argparse.Namespace) -> int:
    who = cli_actor()
    async with open_store(settings) as st, transaction(st.sessions) as session:
        auth = await ripa.get(session, args.reference, for_update=True)
        nxt = when(args.next_review, "--next-review") if getattr(args, "next_review", None) else None
        if args.change == "review":
            await ripa.review(session, auth, by=who, officer=args.officer, note=args.note, next_review_us=nxt)
        elif args.change == "renew":
            await ripa.renew(session, auth, by=who, officer=args.officer, note=args.note, next_review_us=nxt,
                             review_interval_days=settings.lawful.ripa_review_interval_days)
        else:
            await ripa.cancel(session, auth, by=who, officer=args.officer, reason=args.note)
        data = authorisation_json(auth)
    print(f"authorisation {data['reference']}: {args.change} recorded; now {data['state']}, "
          f"expires {data['expires']['local']}")
    return 0


async def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    start, end = when(args.start, "--from"), when(args.end, "--to", end_of_day=True)
    if end <= start:
        raise Invalid("--to must be after --from")
    async with open_store(settings) as st, st.sessions() as session:
        report = await ripa_report(session, start, end)
    if args.format == "csv":
        text = report_csv(report)
    else:
        text = json.dumps(report, indent=2, default=str) + "\n"
    if args.output:
        args.output.write_text(text)
        print(f"{len(report['authorisations'])} authorisations written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


async def cmd_use_start(settings: Settings, args: argparse.Namespace) -> int:
    who = cli_actor()
    async with open_store(settings) as st, transaction(st.sessions) as session:
        auth = await ripa.get(session, args.reference)
        cam = await inventory.get_camera(session, args.camera)
        use = await ripa.start_use(session, auth, cam, operator=who, purpose=args.purpose)
        print(f"directed use {use.id} of camera {cam.name!r} under {auth.reference} opened for {who}")
    return 0


async def cmd_use_end(settings: Settings, args: argparse.Namespace) -> int:
    who = cli_actor()
    async with open_store(settings) as st, transaction(st.sessions) as session:
        use = await ripa.end_use(session, args.use, by=who, operator=who)
        print(f"directed use {use.id} ended")
    return 0


async def cmd_use_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        rows = []
        for u in await ripa.open_uses(session, operator=cli_actor()):
            auth = await session.get(ripa.Authorisation, u.authorisation_id)
            rows.append(use_json(u, auth.reference if auth else ""))
    print_table([{**r, "started": r["started"]["local"]} for r in rows],
                ["id", "reference", "camera_id", "started", "purpose"])
    return 0
