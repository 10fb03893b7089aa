"""Redacting a subject access request's footage over HTTP: /api/v1/sar/requests/{id}/...

The ``sar`` right (supervisors, who handle data protection), refused to narrowed users like the
register (``cameras=every_camera``). A reviewer starts a job (``POST .../redact``), follows its
progress (``GET .../redaction``: jobs, with frames done and stage, and the marks; no footage
or personal data, so not a disclosure: the screen polls it), looks at any
frame of a window (``GET .../windows/{window}/frame.jpg?frame=N``, the recorded picture) with
the boxes found on it (``GET .../windows/{window}/boxes?frame=N``, once a job has analysed the
window), marks the requester or a false alarm, or adds a box by hand (``POST .../marks``),
runs the job again, and downloads the signed package (``GET .../redaction/{job}/package``).
Frames, boxes and packages disclose footage or personal data and are audited by the mechanism.
docs/design/lawful-use.md (Redaction).
"""

from __future__ import annotations

import asyncio
import subprocess
from typing import Literal

from aiohttp import web
from pydantic import Field

from cameras import children
from controlroom import disclosure, jobs
from controlroom.auth import actor, every_camera
from controlroom.context import REDACTION, SESSIONS, SETTINGS
from controlroom.contract import Body, Query, RowId, Text, body_of, query_of
from controlroom.evidence.plan import CameraWindow, build_plan
from controlroom.lawful import job_json, mark_json
from controlroom.permissions import Disclosure, Permission, Pixels, requires
from controlroom.redaction.engine import Analysis, Source, track_under
from controlroom.redaction.runner import Folders, analysis_path, package_path
from controlroom.timefmt import us_to_iso
from storage import Invalid, NotFound, audit, redaction, sar
from storage import jobs as queue_jobs
from storage.db import transaction
from storage.jobs import Job, JobState

routes = web.RouteTableDef()
PREFIX = "/api/v1/sar/requests/{id}"
MAX_FRAME = 10_000_000


class MarkNew(Body):
    """A reviewer's decision on one frame of one window (pixels of the recorded frame)."""

    window: RowId
    kind: Literal["requester", "keep", "add"] = Field(
        description="requester: the face under the box stays visible; keep: not a third party, "
                    "not obscured; add: obscure this box and follow it")
    frame: int = Field(ge=0, le=MAX_FRAME)
    x: int = Field(ge=0, le=100_000)
    y: int = Field(ge=0, le=100_000)
    w: int = Field(ge=4, le=100_000)
    h: int = Field(ge=4, le=100_000)
    until_frame: int | None = Field(None, ge=0, le=MAX_FRAME)
    note: Text = ""


class MarkGone(Body):
    mark: RowId


class FrameQuery(Query):
    frame: int = Field(0, ge=0, le=MAX_FRAME)


def _folders(request: web.Request) -> Folders:
    settings = request.app[SETTINGS]
    return Folders(settings.storage_root, settings.redaction_root)


async def _window(request: web.Request, session) -> tuple[sar.SubjectAccessRequest, int, CameraWindow]:
    s = await sar.get(session, request.match_info["id"])
    try:
        window_id = int(request.match_info["window"])
    except ValueError:
        raise NotFound("no such window") from None
    plan = await build_plan(session, s)
    for w, cam in zip(s.windows, plan, strict=True):
        if w.id == window_id:
            return s, window_id, cam
    raise NotFound(f"no window {window_id} in {s.reference}")


@routes.post(f"{PREFIX}/redact")
@requires(Permission.SAR, cameras=every_camera, status=201)
async def start(request: web.Request) -> web.Response:
    """Queue a redaction of every window with the marks as they are now."""
    async with transaction(request.app[SESSIONS]) as session:
        s = await sar.get(session, request.match_info["id"], for_update=True)
        job = await redaction.queue(session, s, by=actor(request))
        data = job_json(job)
    jobs.wake(request.app)  # this node's job runner takes it now (another node at its next poll)
    return web.json_response(data, status=201)


@routes.post(f"{PREFIX}/redaction/{{job}}/cancel")
@requires(Permission.SAR, cameras=every_camera)
async def cancel(request: web.Request) -> web.Response:
    """A queued job is cancelled at once; a running one is asked to stop (its heartbeat reads it
    within ``lawful.redaction_heartbeat_s``) and ends cancelled."""
    async with transaction(request.app[SESSIONS]) as session:
        s = await sar.get(session, request.match_info["id"])
        job = await _job(session, s, request.match_info["job"])
        if job.state not in (JobState.QUEUED.value, JobState.RUNNING.value):
            raise Invalid(f"redaction job {job.id} is {job.state}")
        job = await queue_jobs.cancel(session, job.id, "cancelled before it started")
        await audit.append(session, actor(request), "sar.redact_cancel", f"sar:{s.reference}", job=job.id)
        data = job_json(job)
    return web.json_response(data)


async def _job(session, s: sar.SubjectAccessRequest, raw: str) -> Job:
    if not (raw.isdigit() and len(raw) < 10):
        raise NotFound(f"no redaction job {raw[:20]!r} for {s.reference}")
    return await redaction.get_job(session, s.id, int(raw))


@routes.get(f"{PREFIX}/redaction")
@requires(Permission.SAR, cameras=every_camera)
async def status(request: web.Request) -> web.Response:
    """The request's redaction jobs (newest first, with progress) and the reviewers' marks: no
    footage and nothing of the requester or anyone filmed (boxes, frame numbers, staff names), so
    the screen may poll it while a job runs without filling the audit trail."""
    async with request.app[SESSIONS]() as session:
        s = await sar.get(session, request.match_info["id"])
        data = {"reference": s.reference, "jobs": [job_json(j) for j in await redaction.jobs_of(session, s.id)],
                "marks": [mark_json(m) for m in await redaction.marks(session, s.id)],
                "windows": [{"id": w.id, "camera": w.camera_id, "from_utc": us_to_iso(w.start_us),
                             "to_utc": us_to_iso(w.end_us)} for w in s.windows]}
    return web.json_response(data)


@routes.post(f"{PREFIX}/marks")
@requires(Permission.SAR, cameras=every_camera, body=MarkNew, status=201)
async def add_mark(request: web.Request) -> web.Response:
    body = body_of(request, MarkNew)
    async with transaction(request.app[SESSIONS]) as session:
        s = await sar.get(session, request.match_info["id"], for_update=True)
        mark = await redaction.add_mark(session, s, by=actor(request), window_id=body.window, kind=body.kind,
                                        frame=body.frame, box=(body.x, body.y, body.w, body.h),
                                        until_frame=body.until_frame, note=body.note)
        data = mark_json(mark)
    return web.json_response(data, status=201)


@routes.post(f"{PREFIX}/marks/remove")
@requires(Permission.SAR, cameras=every_camera, body=MarkGone)
async def remove_mark(request: web.Request) -> web.Response:
    mark_id = body_of(request, MarkGone).mark
    async with transaction(request.app[SESSIONS]) as session:
        s = await sar.get(session, request.match_info["id"], for_update=True)
        mark = await redaction.remove_mark(session, s, mark_id, by=actor(request))
        data = mark_json(mark)
    return web.json_response(data)


@routes.get(f"{PREFIX}/windows/{{window}}/boxes")
@requires(Permission.SAR, discloses=Disclosure.PERSONAL, action="sar.redaction_boxes", cameras=every_camera,
          query=FrameQuery)
async def boxes(request: web.Request) -> web.Response:
    """What the last analysis found on ``frame`` (each with its track and whether it is obscured),
    the marks on the window, and the window's frame count; ``analysed: false`` before any job."""
    frame = query_of(request, FrameQuery).frame
    async with request.app[SESSIONS]() as session:
        s, window_id, cam = await _window(request, session)
        marks = await redaction.marks(session, s.id, window_id)
    path = analysis_path(_folders(request), s.id, cam, window_id, request.app[REDACTION].options)
    analysis = await asyncio.to_thread(Analysis.load, path)
    out: dict = {"window": window_id, "frame": frame, "analysed": analysis is not None,
                 "marks": [mark_json(m) for m in marks], "boxes": []}
    if analysis is not None:
        pad = analysis.options.get("pad_frames", 0)
        visible = {}
        for m in marks:
            if m.kind in ("requester", "keep"):
                t = track_under(analysis, m.frame, (m.x, m.y, m.w, m.h), pad)
                if t is not None:
                    visible[t.id] = m.kind
        out.update(frames=analysis.frames, fps=analysis.fps, width=analysis.width, height=analysis.height,
                   at_utc=us_to_iso(analysis.wall_us(frame)))
        for t in analysis.tracks:
            b = t.box_at(frame, pad)
            if b is not None:
                out["boxes"].append({"track": t.id, "kind": t.kind, "box": list(b),
                                     "obscured": t.id not in visible, "marked": visible.get(t.id)})
    disclosure.note(request, f"sar:{s.reference}")
    return web.json_response(out)


def _frame_jpeg(source: Source, frame: int) -> bytes:
    at_s = source.cut.seek_us / 1e6 + frame / source.fps
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-ss", f"{at_s:.6f}", "-f", "concat", "-safe", "0",
         "-i", str(source.concat), "-frames:v", "1", "-q:v", "4", "-f", "mjpeg", "pipe:1"],
        capture_output=True, timeout=60, check=False, preexec_fn=children.bind_to_parent())
    source.concat.unlink(missing_ok=True)
    if out.returncode != 0 or not out.stdout:
        raise Invalid(f"frame {frame}: not in the window's footage")
    return out.stdout


@routes.get(f"{PREFIX}/windows/{{window}}/frame.jpg")
@requires(Permission.SAR, discloses=Disclosure.FOOTAGE, action="sar.redaction_frame", cameras=every_camera,
          query=FrameQuery, produces="image/jpeg", pixels=Pixels.RECORDED)
async def frame_jpeg(request: web.Request) -> web.Response:
    """The recorded picture of frame ``frame`` of the window (for review; not redacted)."""
    frame = query_of(request, FrameQuery).frame
    async with request.app[SESSIONS]() as session:
        s, window_id, cam = await _window(request, session)
    work = request.app[SETTINGS].redaction_root / str(s.id) / "frames"
    try:
        source = await asyncio.to_thread(Source, cam, request.app[SETTINGS].storage_root, work)
    except Exception as exc:
        raise Invalid(f"window {window_id}: {exc}") from None
    data = await asyncio.to_thread(_frame_jpeg, source, frame)
    disclosure.note(request, f"sar:{s.reference}", window=window_id, frame=frame)
    return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


@routes.get(f"{PREFIX}/redaction/{{job}}/package")
@requires(Permission.SAR, discloses=Disclosure.FOOTAGE, action="sar.redaction_download", cameras=every_camera,
          produces="application/zip", pixels=Pixels.RECORDED)
async def download(request: web.Request) -> web.StreamResponse:
    async with request.app[SESSIONS]() as session:
        s = await sar.get(session, request.match_info["id"])
        job = await _job(session, s, request.match_info["job"])
    made = job_json(job)
    if job.state != JobState.DONE.value or not made["package"]:
        raise Invalid(f"redaction job {job.id} is {job.state}: no package")
    path = package_path(_folders(request), s.id, made["package"].removesuffix(".zip"))
    if not path.is_file():
        raise NotFound(f"the package of redaction job {job.id} is no longer on disk")
    disclosure.note(request, f"sar:{s.reference}", job=job.id, manifest_sha256=made["manifest_sha256"])
    return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{made["package"]}"',
                                           "Content-Type": "application/zip", "Cache-Control": "no-store"})
