"""controlroom sar add|list|show|verify|extend|add-window|close: the subject access request register
from the command line; sar redact|redaction|mark|unmark: redacting its footage (controlroom.redaction). Every change is audited as ``cli:<os user>`` (storage.sar appends the
entry in the same transaction)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket

from controlroom.commands.common import open_store, print_json, print_table
from controlroom.commands.ripa import when
from controlroom.commands.users import cli_actor
from controlroom.context import REDACTION, SESSIONS
from controlroom.jobs import JobRunner, run_redaction
from controlroom.lawful import job_json, mark_json, sar_json
from controlroom.redaction.runner import Folders, Redactor, package_path
from controlroom.settings import Settings
from storage import Invalid, inventory, redaction, sar
from storage.db import now_us, transaction
from storage.jobs import JobState
from storage.redaction import REDACTION_KIND


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sar", help="subject access requests: the register, deadlines and footage windows")
    ss = p.add_subparsers(dest="sar_command", required=True)

    add = ss.add_parser("add", help="record a request as received")
    add.add_argument("requester", help="the requester's name")
    add.add_argument("--contact", default="")
    add.add_argument("--received", required=True, help="ISO 8601 with offset, or YYYY-MM-DD")
    add.add_argument("--identity", default="", help="how identity was verified (empty: not yet)")
    add.add_argument("--description", required=True, help="of themselves and their clothing")
    add.add_argument("--places-times", required=True, help="where and when, in their words")
    add.set_defaults(func=cmd_add)

    ls = ss.add_parser("list", help="the register, deadlines first")
    ls.add_argument("--open", action="store_true", help="only requests not yet closed")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    show = ss.add_parser("show", help="one request (JSON)")
    show.add_argument("reference", help="id or SAR-YYYY-NNNNNN")
    show.set_defaults(func=cmd_show)

    ver = ss.add_parser("verify", help="identity verified: the statutory clock starts today")
    ver.add_argument("reference")
    ver.add_argument("--method", required=True)
    ver.set_defaults(func=cmd_verify)

    ext = ss.add_parser("extend", help="extend the deadline by two further months")
    ext.add_argument("reference")
    ext.add_argument("--reason", required=True)
    ext.set_defaults(func=cmd_extend)

    win = ss.add_parser("add-window", help="add footage (camera, from, to) to the request and its hold")
    win.add_argument("reference")
    win.add_argument("camera", help="id or name")
    win.add_argument("--from", dest="start", required=True)
    win.add_argument("--to", dest="end", required=True)
    win.add_argument("--note", default="")
    win.set_defaults(func=cmd_window)

    close = ss.add_parser("close", help="disclosed, refused (with --exemption) or withdrawn")
    close.add_argument("reference")
    close.add_argument("state", choices=[s.value for s in sar.CLOSED])
    close.add_argument("--outcome", required=True)
    close.add_argument("--exemption", default="")
    close.set_defaults(func=cmd_close)

    red = ss.add_parser("redact", help="redact every window (faces, plates, marks) into a signed package")
    red.add_argument("reference")
    red.add_argument("--no-wait", action="store_true", help="only queue it (the service runs it)")
    red.set_defaults(func=cmd_redact)

    st = ss.add_parser("redaction", help="the request's redaction jobs and marks (JSON)")
    st.add_argument("reference")
    st.set_defaults(func=cmd_redaction)

    mark = ss.add_parser("mark", help="on one frame of a window: the requester, not a third party, or a box to obscure")
    mark.add_argument("reference")
    mark.add_argument("window", type=int, help="the window's id (sar show)")
    mark.add_argument("kind", choices=redaction.MARK_KINDS)
    mark.add_argument("--frame", type=int, required=True, help="frame number in the window, from 0")
    mark.add_argument("--box", required=True, help="X,Y,W,H in pixels of the recorded frame")
    mark.add_argument("--until", type=int, default=None, help="add: follow the box no further than this frame")
    mark.add_argument("--note", default="")
    mark.set_defaults(func=cmd_mark)

    unmark = ss.add_parser("unmark", help="remove a mark")
    unmark.add_argument("reference")
    unmark.add_argument("mark", type=int)
    unmark.set_defaults(func=cmd_unmark)


def _line(data: dict) -> str:
    return f"{data['reference']}: {data['state']}, deadline {data['deadline_day'] or '(identity not verified)'}"


async def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        s = await sar.create(session, by=cli_actor(), requester_name=args.requester, requester_contact=args.contact,
                             received_us=when(args.received, "--received"),
                             identity_method=args.identity, description=args.description,
                             places_times=args.places_times)
        print(_line(sar_json(s)))
    return 0


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        rows = [sar_json(s) for s in await sar.list_all(session, open_only=args.open)]
    if args.json:
        print_json(rows)
        return 0
    rows.sort(key=lambda r: (r["deadline"]["utc"] is None, r["deadline"]["utc"] or ""))
    print_table([{**r, "windows": len(r["windows"])} for r in rows],
                ["reference", "state", "requester_name", "deadline_day", "days_left", "extended", "windows"])
    return 0


async def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        print_json(sar_json(await sar.get(session, args.reference)))
    return 0


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        s = await sar.get(session, args.reference, for_update=True)
        await sar.verify_identity(session, s, by=cli_actor(), method=args.method)
        print(_line(sar_json(s)))
    return 0


async def cmd_extend(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        s = await sar.get(session, args.reference, for_update=True)
        await sar.extend(session, s, by=cli_actor(), reason=args.reason)
        print(_line(sar_json(s)))
    return 0


async def cmd_window(settings: Settings, args: argparse.Namespace) -> int:
    lawful = settings.lawful
    async with open_store(settings) as st, transaction(st.sessions) as session:
        s = await sar.get(session, args.reference, for_update=True)
        cam = await inventory.get_camera(session, args.camera)
        w = await sar.add_window(session, s, by=cli_actor(), camera_id=cam.id, start_us=when(args.start, "--from"),
                                 end_us=when(args.end, "--to"), note=args.note,
                                 max_window_us=int(lawful.sar_max_window_hours * 3_600_000_000),
                                 hold_review_us=now_us() + lawful.sar_hold_review_days * sar.DAY_US)
        print(f"{s.reference}: window {w.id} on camera {cam.name!r} added and held (hold {s.hold_id})")
    return 0


async def cmd_close(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        s = await sar.get(session, args.reference, for_update=True)
        await sar.close(session, s, by=cli_actor(), to=args.state, outcome=args.outcome, exemption=args.exemption)
        print(_line(sar_json(s)))
    return 0


async def cmd_redact(settings: Settings, args: argparse.Namespace) -> int:
    """Queue the job; then (unless --no-wait) take queued redaction jobs from the job queue here,
    as a node of its own, until it has ended; a job a service node took meanwhile is waited for."""
    async with open_store(settings) as st:
        async with transaction(st.sessions) as session:
            s = await sar.get(session, args.reference, for_update=True)
            job = await redaction.queue(session, s, by=cli_actor())
            sar_id, reference, job_id = s.id, s.reference, job.id
        print(f"{reference}: redaction job {job_id} queued")
        if args.no_wait:
            return 0
        folders = Folders(settings.storage_root, settings.redaction_root)
        redactor = Redactor(st.sessions, st.keys, folders, heartbeat_s=settings.lawful.redaction_heartbeat_s,
                            plates=settings.lawful.redaction_plates)
        runner = JobRunner({SESSIONS: st.sessions, REDACTION: redactor},
                           f"{socket.gethostname()[:60]}-sar-{os.getpid()}", ttl_s=settings.cluster.lease_ttl_s,
                           beat_s=settings.cluster.heartbeat_s, renew_self=False,
                           kinds={REDACTION_KIND: run_redaction})
        while True:
            async with st.sessions() as session:
                job = await redaction.get_job(session, sar_id, job_id)
            if job.state not in (JobState.QUEUED.value, JobState.RUNNING.value):
                break
            if await runner.run_once() is None:
                await asyncio.sleep(1)  # running on a service node: wait for it
    made = job_json(job)
    if job.state != JobState.DONE.value:
        print(f"{reference}: redaction job {job_id} {job.state}: {job.error}")
        return 1
    path = package_path(folders, sar_id, made["package"].removesuffix(".zip"))
    print(f"{reference}: redacted package {path} ({made['obscured']} obscured, {made['left_visible']} left visible)")
    return 0


async def cmd_redaction(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        s = await sar.get(session, args.reference)
        print_json({"reference": s.reference, "jobs": [job_json(j) for j in await redaction.jobs_of(session, s.id)],
                    "marks": [mark_json(m) for m in await redaction.marks(session, s.id)]})
    return 0


async def cmd_mark(settings: Settings, args: argparse.Namespace) -> int:
    try:
        x, y, w, h = (int(v) for v in args.box.split(","))
    except ValueError:
        raise Invalid("--box: four whole numbers X,Y,W,H") from None
    async with open_store(settings) as st, transaction(st.sessions) as session:
        s = await sar.get(session, args.reference, for_update=True)
        m = await redaction.add_mark(session, s, by=cli_actor(), window_id=args.window, kind=args.kind,
                                     frame=args.frame, box=(x, y, w, h), until_frame=args.until, note=args.note)
        print(f"{s.reference}: mark {m.id} ({m.kind}) on window {m.window_id}, frame {m.frame}")
    return 0


async def cmd_unmark(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        s = await sar.get(session, args.reference, for_update=True)
        m = await redaction.remove_mark(session, s, args.mark, by=cli_actor())
        print(f"{s.reference}: mark {m.id} removed")
    return 0
