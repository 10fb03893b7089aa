"""controlroom faults list|open|update|reset-reference|set-reference, controlroom health availability.

The camera fault log and availability from the command line (storage.health); changes are
audited as ``cli:<os user>``.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from controlroom.camera_health import CameraHealth
from controlroom.commands.common import open_store, print_json, print_table
from controlroom.commands.users import cli_actor
from controlroom.settings import Settings
from controlroom.timefmt import us_to_iso
from storage import health, inventory
from storage.db import now_us, transaction
from storage.health import FaultKind, FaultStatus
from storage.weeks import week_of


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("faults", help="the camera fault log: list, report, update")
    fs = f.add_subparsers(dest="faults_command", required=True)
    ls = fs.add_parser("list", help="faults, newest first")
    ls.add_argument("--camera", help="id or name")
    ls.add_argument("--open", action="store_true", help="only those not yet repaired or closed")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    op = fs.add_parser("open", help="report a fault by hand")
    op.add_argument("camera", help="id or name")
    op.add_argument("kind", choices=[k.value for k in FaultKind])
    op.add_argument("--description", default="")
    op.add_argument("--contractor-ref")
    op.set_defaults(func=cmd_open)
    up = fs.add_parser("update", help="contractor's reference, description or status of a fault")
    up.add_argument("id", type=int)
    up.add_argument("--status", choices=[s.value for s in FaultStatus])
    up.add_argument("--contractor-ref")
    up.add_argument("--description")
    up.add_argument("--note", default="")
    up.set_defaults(func=cmd_update)
    ref = fs.add_parser("reset-reference", help="forget a camera's reference view (the next good picture replaces it)")
    ref.add_argument("camera", help="id or name")
    ref.set_defaults(func=cmd_reset_reference)
    setref = fs.add_parser("set-reference", help="make a picture (JPEG or PNG) a camera's reference view")
    setref.add_argument("camera", help="id or name")
    setref.add_argument("file", type=Path)
    setref.set_defaults(func=cmd_set_reference)

    h = sub.add_parser("health", help="camera health: availability from the recordings")
    hs = h.add_subparsers(dest="health_command", required=True)
    av = hs.add_parser("availability", help="each camera's recorded share of a week, per local day")
    av.add_argument("--week", help="ISO week, e.g. 2026-W48 (default: this week)")
    av.add_argument("--json", action="store_true")
    av.set_defaults(func=cmd_availability)


def _row(f: health.CameraFault, names: dict[int, str]) -> dict:
    ttr = f.time_to_repair_us
    return {"id": f.id, "camera": names.get(f.camera_id, f.camera_id), "kind": f.kind, "status": f.status,
            "source": f.source, "opened": us_to_iso(f.opened_at_us), "contractor_ref": f.contractor_ref or "",
            "repair_hours": "" if ttr is None else f"{ttr / 3_600_000_000:.1f}", "description": f.description}


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        cam_id = (await inventory.get_camera(session, args.camera)).id if args.camera else None
        faults = await health.list_faults(session, camera_id=cam_id, unrepaired_only=args.open)
        names = {c.id: c.name for c in await inventory.list_cameras(session)}
    if args.json:
        print_json([f.to_dict() for f in faults])
    else:
        print_table([_row(f, names) for f in faults],
                    ["id", "camera", "kind", "status", "source", "opened", "contractor_ref", "repair_hours", "description"])
    return 0


async def cmd_open(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        cam = await inventory.get_camera(session, args.camera)
        fault = await health.open_fault(session, cli_actor(), cam.id, args.kind, args.description,
                                        contractor_ref=args.contractor_ref)
    print(f"fault {fault.id} opened on {cam.name}")
    return 0


async def cmd_update(settings: Settings, args: argparse.Namespace) -> int:
    who = cli_actor()
    async with open_store(settings) as st, transaction(st.sessions) as session:
        fault = await health.get_fault(session, args.id)
        if args.contractor_ref is not None or args.description is not None:
            fault = await health.update_fault(session, who, args.id, contractor_ref=args.contractor_ref,
                                              description=args.description)
        if args.status:
            fault = await health.set_status(session, who, args.id, args.status, note=args.note)
    print(f"fault {fault.id}: {fault.status}")
    return 0


async def cmd_reset_reference(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st:
        async with st.sessions() as session:
            cam = await inventory.get_camera(session, args.camera)
        checker = CameraHealth(st.sessions, None, settings.health, settings.data_dir / "picture-references", None)
        existed = await checker.clear_reference(cam.id, cli_actor())
    print(f"{cam.name}: reference view {'forgotten' if existed else 'was not set'}; the next good picture becomes it")
    return 0


async def cmd_set_reference(settings: Settings, args: argparse.Namespace) -> int:
    data = await asyncio.to_thread(args.file.read_bytes)
    async with open_store(settings) as st:
        async with st.sessions() as session:
            cam = await inventory.get_camera(session, args.camera)
        checker = CameraHealth(st.sessions, None, settings.health, settings.data_dir / "picture-references", None)
        await checker.set_reference(cam.id, data, cli_actor())
    print(f"{cam.name}: reference view set from {args.file}")
    return 0


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


async def cmd_availability(settings: Settings, args: argparse.Namespace) -> int:
    week = args.week or week_of(now_us(), settings.display_timezone)
    async with open_store(settings) as st, st.sessions() as session:
        rows = await health.week_availability(session, week, tz_name=settings.display_timezone)
    if args.json:
        print_json({"week": week, "cameras": [r.to_dict() for r in rows]})
        return 0
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    table = []
    for r in rows:
        row = {"camera": r.name, "week": _pct(r.total.ratio),
               "gap_hours": f"{sum(e - s for s, e, _ in r.gaps) / 3_600_000_000:.1f}"}
        row.update({d: _pct(p.ratio) for d, p in zip(days, r.periods, strict=True)})
        table.append(row)
    print(f"availability, week {week} (recorded time / elapsed time)")
    print_table(table, ["camera", "week", *days, "gap_hours"])
    return 0
