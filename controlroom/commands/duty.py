"""controlroom duty on|off|status|week and controlroom rota list|add|update|remove.

Monitoring hours from the command line (storage.duty): a person's duty is signed on and off
for their account (``USER``), audited as ``cli:<os user>``; the rota's windows are in local
time (``--day mon --from 08:00 --to 16:00``).
"""

from __future__ import annotations

import argparse
import re

from controlroom.commands.common import open_store, print_json, print_table
from controlroom.commands.users import cli_actor
from controlroom.permissions import Permission, role_permissions
from controlroom.settings import Settings
from controlroom.timefmt import us_to_iso
from storage import Invalid, NotFound, accounts, duty
from storage.db import now_us, transaction
from storage.weeks import week_of

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minute(text: str) -> int:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if not m or int(m[1]) > 24 or int(m[2]) > 59 or (int(m[1]) == 24 and int(m[2])):
        raise argparse.ArgumentTypeError(f"{text!r}: a local time HH:MM (24:00 is midnight at the end)")
    return int(m[1]) * 60 + int(m[2])


def _day(text: str) -> int:
    if text.lower()[:3] not in DAYS:
        raise argparse.ArgumentTypeError(f"{text!r}: a day, mon..sun")
    return DAYS.index(text.lower()[:3])


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("duty", help="monitoring hours: sign on and off duty, who is on, a week's staffed hours")
    ds = d.add_subparsers(dest="duty_command", required=True)
    on = ds.add_parser("on", help="sign a user on duty")
    on.add_argument("user")
    on.add_argument("--note", default="")
    on.set_defaults(func=cmd_on)
    off = ds.add_parser("off", help="sign a user off duty")
    off.add_argument("user")
    off.set_defaults(func=cmd_off)
    st = ds.add_parser("status", help="who is on duty now")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    wk = ds.add_parser("week", help="staffed hours of a week against the target and the rota")
    wk.add_argument("--week", help="ISO week, e.g. 2026-W48 (default: this week)")
    wk.add_argument("--json", action="store_true")
    wk.set_defaults(func=cmd_week)

    r = sub.add_parser("rota", help="the planned weekly coverage (local time)")
    rs = r.add_subparsers(dest="rota_command", required=True)
    ls = rs.add_parser("list", help="the rota's windows")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_rota_list)
    add = rs.add_parser("add", help="add a window, e.g. --day mon --from 08:00 --to 16:00 --operators 2")
    add.add_argument("--day", type=_day, required=True)
    add.add_argument("--from", dest="start", type=_minute, required=True)
    add.add_argument("--to", dest="end", type=_minute, required=True)
    add.add_argument("--operators", type=int, default=1)
    add.set_defaults(func=cmd_rota_add)
    up = rs.add_parser("update", help="change a window")
    up.add_argument("id", type=int)
    up.add_argument("--day", type=_day)
    up.add_argument("--from", dest="start", type=_minute)
    up.add_argument("--to", dest="end", type=_minute)
    up.add_argument("--operators", type=int)
    up.set_defaults(func=cmd_rota_update)
    rm = rs.add_parser("remove", help="remove a window")
    rm.add_argument("id", type=int)
    rm.set_defaults(func=cmd_rota_remove)


async def _watcher(session, username: str) -> None:
    user = await accounts.find_user(session, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    if Permission.LIVE_VIEW not in role_permissions(user.role):
        raise Invalid(f"{username} is a {user.role}: only operators and supervisors go on duty")


async def cmd_on(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        await _watcher(session, args.user)
        d = await duty.sign_on(session, args.user, args.note, by=cli_actor())
    print(f"{args.user} on duty from {us_to_iso(d.on_at_us)}")
    return 0


async def cmd_off(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        d = await duty.sign_off(session, args.user, by=cli_actor())
    print(f"{args.user} off duty at {us_to_iso(d.off_at_us)} ({(d.off_at_us - d.on_at_us) / duty.HOUR_US:.2f} h)")
    return 0


async def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        rows = await duty.on_duty(session)
    now = now_us()
    data = [{"user": d.username, "since": us_to_iso(d.on_at_us), "hours": round((now - d.on_at_us) / duty.HOUR_US, 2),
             "note": d.note} for d in rows]
    if args.json:
        print_json(data)
    elif not data:
        print("nobody is on duty: the cameras are not being monitored")
    else:
        print_table(data, ["user", "since", "hours", "note"])
    return 0


async def cmd_week(settings: Settings, args: argparse.Namespace) -> int:
    week = args.week or week_of(now_us(), settings.display_timezone)
    async with open_store(settings) as st, st.sessions() as session:
        cov = await duty.week_coverage(session, week, target_hours=settings.health.target_hours,
                                       tz_name=settings.display_timezone)
    if args.json:
        print_json(cov.to_dict())
        return 0
    print(f"week {week}: {cov.hours_in_week:g} hours")
    print(f"  staffed      {cov.staffed_hours:8.2f} h (target {cov.target_hours:g} h)")
    print(f"  unmonitored  {cov.unmonitored_hours:8.2f} h in {len(cov.unmonitored)} intervals")
    print(f"  planned      {cov.planned_hours:8.2f} h ({cov.planned_operator_hours:g} operator-hours), "
          f"{cov.planned_staffed_hours:.2f} h of them staffed")
    print(f"  operator-hours on duty {cov.operator_hours:.2f}; outside the rota {cov.unplanned_staffed_hours:.2f} h")
    return 0


def _window_row(w: duty.RotaWindow) -> dict:
    return {"id": w.id, "day": DAYS[w.weekday], "from": f"{w.start_minute // 60:02d}:{w.start_minute % 60:02d}",
            "to": f"{w.end_minute // 60:02d}:{w.end_minute % 60:02d}", "operators": w.operators}


async def cmd_rota_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        rows = [_window_row(w) for w in await duty.list_rota(session)]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["id", "day", "from", "to", "operators"])
    return 0


async def cmd_rota_add(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        w = await duty.add_window(session, cli_actor(), weekday=args.day, start_minute=args.start,
                                  end_minute=args.end, operators=args.operators)
    print(f"rota window {w.id} added")
    return 0


async def cmd_rota_update(settings: Settings, args: argparse.Namespace) -> int:
    changes = {k: v for k, v in (("weekday", args.day), ("start_minute", args.start), ("end_minute", args.end),
                                 ("operators", args.operators)) if v is not None}
    async with open_store(settings) as st, transaction(st.sessions) as session:
        await duty.update_window(session, cli_actor(), args.id, **changes)
    print(f"rota window {args.id} updated")
    return 0


async def cmd_rota_remove(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        await duty.remove_window(session, cli_actor(), args.id)
    print(f"rota window {args.id} removed")
    return 0
