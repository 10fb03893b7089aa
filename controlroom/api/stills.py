"""A still and a short clip from playback, for a bulletin or a handover (issue 14, item 2).

- ``GET /api/v1/cameras/{camera}/still.png?at=ISO`` (audited ``playback.still``): the recorded
  frame at ``at`` as PNG, the frame's own size, with the camera, the local time and its UTC
  offset, and the UTC time burnt in by ffmpeg's drawtext, so a printed bulletin says what it
  shows and when.
- ``GET /api/v1/cameras/{camera}/clip.mp4?from=ISO&to=ISO`` (audited ``playback.clip``): at most
  :data:`MAX_CLIP_S` of catalogued footage as an MP4, made exactly as an evidence package's
  working copy is (``controlroom.evidence.working``: stream copy, a timestamp subtitle track per
  second), so it starts at the keyframe at or before ``from``.

Both are handed to the person who asked, in the building. Anything that leaves the building goes
through the evidence workflow (a request, a decision, a signed package with its custody log);
the screens say so beside these buttons.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field, model_validator

from cameras import children
from cameras import masking as paint
from cameras.recorder import media_duration_s
from controlroom import disclosure, masking
from controlroom.context import SESSIONS, SETTINGS
from controlroom.contract import Query, Time, query_of
from controlroom.evidence.plan import CameraWindow, SegmentRef
from controlroom.evidence.working import make_working_copy
from controlroom.permissions import Disclosure, Permission, Pixels, requires
from controlroom.timefmt import us_to_iso
from storage import NotFound, inventory
from storage.catalogue import Piece, find_run, open_run, timeline
from storage.db import now_us
from storage.models import Site

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
MAX_CLIP_S = 300  # a handover clip, not an export: longer footage goes through the evidence workflow
STILL_TIMEOUT_S = 30.0
CLIP_TIMEOUT_S = 120.0


class StillQuery(Query):
    at_us: Time = Field(alias="at", description="the moment shown (ISO 8601 with offset)")


class ClipQuery(Query):
    start_us: Time = Field(alias="from", description="the clip's start (ISO 8601 with offset)")
    end_us: Time = Field(alias="to", description=f"the clip's end, at most {MAX_CLIP_S} s after its start")

    @model_validator(mode="after")
    def _span(self) -> ClipQuery:
        if self.end_us <= self.start_us:
            raise ValueError("to must be after from")
        if self.end_us - self.start_us > MAX_CLIP_S * 1_000_000:
            raise ValueError(f"a clip is at most {MAX_CLIP_S // 60} minutes; longer footage goes through an "
                             "evidence request")
        return self


def stamp_lines(camera: str, at_us: int, tz: ZoneInfo) -> list[str]:
    """What a still says about itself: the camera, the local time with its UTC offset, the UTC time."""
    utc = datetime.fromtimestamp(at_us // 1_000_000, UTC).replace(microsecond=at_us % 1_000_000)
    local = utc.astimezone(tz)
    offset = local.strftime("%z")
    ms = f"{local.microsecond // 1000:03d}"
    return [
        camera,
        f"{local:%d/%m/%Y %H:%M:%S}.{ms} {local.tzname()} (UTC{offset[:3]}:{offset[3:]})",
        f"{utc:%Y-%m-%d %H:%M:%S}.{ms} UTC",
    ]


def still_args(fd: int, seek_s: float, text_path: Path, mask_png: Path | None = None) -> list[str]:
    # Input -ss decodes from the keyframe before and drops frames up to the moment: the frame
    # shown is the first at or after ``at``. Text in a file: nothing in a camera's name needs escaping.
    # Privacy masks (``mask_png``, cameras.masking) are painted first, the stamp over them.
    text = (f"drawtext=fontfile={FONT}:textfile={text_path}:fontcolor=white:fontsize=max(12\\,h/30)"
            ":line_spacing=4:box=1:boxcolor=black@0.8:boxborderw=6:x=8:y=h-th-14")
    picture = ["-map", "0:v:0", "-vf", text]
    if mask_png is not None:
        picture = ["-i", str(mask_png), "-filter_complex", f"{paint.filter_complex()};[masked]{text}[out]",
                   "-map", "[out]"]
    return ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
            "-ss", f"{seek_s:.6f}", "-i", f"/proc/self/fd/{fd}",
            *picture, "-frames:v", "1", "-f", "image2", "-c:v", "png", "pipe:1"]


@routes.get("/api/v1/cameras/{camera}/still.png")
@requires(Permission.EXPORT, discloses=Disclosure.FOOTAGE, action="playback.still", query=StillQuery,
          produces="image/png", pixels=Pixels.RECORDED)
async def still(request: web.Request) -> web.Response:
    at_us = query_of(request, StillQuery).at_us
    settings = request.app[SETTINGS]
    tz = ZoneInfo(settings.display_timezone)
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        site = await session.get(Site, cam.site_id) if cam.site_id else None
        cam_id = cam.id

        async def lookup() -> list[Piece]:
            pieces = await find_run(session, settings.storage_root, cam_id, at_us, media_duration_s)
            return [p for p in pieces if p.start_us <= at_us < (p.end_us if p.end_us is not None else now_us())][:1]

        found, fds = await open_run(lookup)
    if not found:
        raise NotFound(f"camera {cam.name!r} has no recording at {us_to_iso(at_us, tz)}")
    piece, fd = found[0], fds[0]
    label = f"Camera {cam.id} {cam.name}" + (f" - {site.name}" if site else "")
    try:
        with tempfile.TemporaryDirectory(prefix="still-") as tmp:
            text_path = Path(tmp) / "stamp.txt"
            text_path.write_text("\n".join(stamp_lines(label, at_us, tz)), encoding="utf-8")
            mask_png = masking.video_mask(request, cam.id)
            proc = await children.spawn(*still_args(fd, (at_us - piece.start_us) / 1e6, text_path, mask_png),
                                        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                        stderr=asyncio.subprocess.PIPE, pass_fds=[fd])
            try:
                async with asyncio.timeout(STILL_TIMEOUT_S):
                    png, err = await proc.communicate()
            finally:
                await children.end(proc)
    finally:
        os.close(fd)
    if proc.returncode or not png.startswith(b"\x89PNG"):
        log.warning("camera %s: still at %s failed (ffmpeg %s): %s", cam.id, us_to_iso(at_us), proc.returncode,
                    err.decode(errors="replace")[-300:])
        raise NotFound(f"no picture of camera {cam.name!r} could be read at {us_to_iso(at_us, tz)}")
    disclosure.note(request, f"camera:{cam.id}", at=us_to_iso(at_us), bytes=len(png))
    name = f"cam{cam.id}-{datetime.fromtimestamp(at_us / 1e6, tz):%Y%m%d-%H%M%S}.png"
    return web.Response(body=png, content_type="image/png", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


@routes.get("/api/v1/cameras/{camera}/clip.mp4")
@requires(Permission.EXPORT, discloses=Disclosure.FOOTAGE, action="playback.clip", query=ClipQuery,
          produces="video/mp4", pixels=Pixels.RECORDED)
async def clip(request: web.Request) -> web.Response:
    params = query_of(request, ClipQuery)
    settings = request.app[SETTINGS]
    tz = ZoneInfo(settings.display_timezone)
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        site = await session.get(Site, cam.site_id) if cam.site_id else None
        tl = await timeline(session, cam.id, params.start_us, params.end_us)
    segs = [SegmentRef(s.id, s.path, s.start_us, s.end_us, s.bytes, s.sha256, s.state, s.clock_offset_s,
                       s.clock_flag) for s in tl.segments]
    if not segs:
        raise NotFound(f"camera {cam.name!r} has no catalogued recording from {us_to_iso(params.start_us, tz)} "
                       f"to {us_to_iso(params.end_us, tz)} (the last half minute is catalogued when its segment "
                       "closes)")
    window = CameraWindow(
        camera_id=cam.id, name=cam.name, site=site.name if site else "", site_location=site.location if site else "",
        position=cam.position, kind=cam.kind, start_us=params.start_us, end_us=params.end_us,
        camera_clock_offset_s=cam.clock_offset_s, camera_clock_checked_us=cam.clock_checked_us,
        camera_clock_flag=cam.clock_flag, segments=segs)
    cancel = threading.Event()
    mask_png = masking.video_mask(request, cam.id, (min(s.start_us for s in segs), max(s.end_us for s in segs)))
    with tempfile.TemporaryDirectory(prefix="clip-") as tmp:
        try:
            made = await asyncio.to_thread(make_working_copy, window, settings.storage_root, Path(tmp), cancel,
                                           timeout_s=CLIP_TIMEOUT_S, mask_png=mask_png)
        except asyncio.CancelledError:
            cancel.set()  # the asker went away: ffmpeg is killed by the waiting thread
            raise
        if made is None:
            raise NotFound(f"camera {cam.name!r} has no recording in that window")
        mp4, _srt, cut = made
        body = await asyncio.to_thread(mp4.read_bytes)
    recorded_s = sum(p.out_end_us - p.out_start_us for p in cut.pieces) / 1e6
    disclosure.note(request, f"camera:{cam.id}", start=us_to_iso(params.start_us), end=us_to_iso(params.end_us),
                    recorded_s=round(recorded_s, 3), bytes=len(body))
    name = f"{window.slug}-{datetime.fromtimestamp(params.start_us / 1e6, tz):%Y%m%d-%H%M%S}.mp4"
    return web.Response(body=body, content_type="video/mp4", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store",
        "X-Recorded-S": f"{recorded_s:.3f}"})

