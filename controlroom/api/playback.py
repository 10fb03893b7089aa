"""Playback of recorded footage, remuxed (never transcoded) to fragmented MP4.

Two steps, so that the browser knows how media time maps to wall-clock time:

1. ``GET /api/v1/cameras/{camera}/playback?at=ISO`` (audited ``playback.start``) returns a
   *plan*: the run of recorded pieces that covers ``at`` (or the next recording after it, if
   ``at`` falls in a gap), as ``pieces`` with ``start_us``/``end_us`` and ``media_offset_s``
   (where each piece begins in the media timeline), ``offset_s`` (the media time of ``at``) and
   ``stream_url``.
2. ``GET /api/v1/cameras/{camera}/playback/stream.mp4?start_us=...`` streams the run as
   fragmented MP4: ``ffmpeg -f concat -i <list> -c copy -movflags frag_keyframe+empty_moov``.
   The browser feeds it to Media Source Extensions and reads it only as fast as it plays, so
   TCP back-pressure keeps ffmpeg (and memory) idle while the operator watches. A run recorded
   in H.265 (which browsers mostly cannot decode through MSE) is re-encoded to H.264 on the fly
   instead (libx264 ultrafast), paced the same way; the response says so (``X-Transcoded``).

What a run is, including the segment the recorder is writing now in ``incoming/`` (that is
how "20 s ago" plays although segments are 30 s long), is the catalogue's answer:
:func:`storage.catalogue.find_run`, given the recorder's probe of a growing file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field

from cameras import children
from cameras import masking as paint
from cameras.recorder import media_duration_s
from controlroom import disclosure, masking
from controlroom.context import MASKING, PLAYBACK_PROCS, SESSIONS, SETTINGS
from controlroom.contract import Query, Time, query_of
from controlroom.permissions import Disclosure, Permission, Pixels, requires
from controlroom.timefmt import LATEST_US, us_to_iso
from storage import NotFound, inventory
from storage.catalogue import Piece, find_run, media_offset_s, open_run, run_starting
from storage.db import now_us

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


class PlanQuery(Query):
    at_us: Time = Field(alias="at", description="the moment to play from (ISO 8601 with offset)")


class StreamQuery(Query):
    start_us: int = Field(ge=0, lt=LATEST_US, description="the plan's start_us (UTC microseconds)")


def piece_json(piece: Piece, tz: ZoneInfo) -> dict:
    end = piece.end_us
    return {
        "start_us": piece.start_us, "end_us": end, "growing": end is None,
        "start": us_to_iso(piece.start_us), "start_local": us_to_iso(piece.start_us, tz),
        "media_offset_s": round(piece.media_offset_s, 6),
    }


def concat_list(paths: list[str]) -> str:
    lines = ["ffconcat version 1.0"]
    for path in paths:
        escaped = path.replace("'", "'\\''")
        lines.append(f"file '{escaped}'")
    return "\n".join(lines) + "\n"


# A recording in another codec than H.264 is re-encoded for the browser (see the module doc).
TRANSCODE_ARGS = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-pix_fmt", "yuv420p",
                  "-force_key_frames", "expr:gte(t,n_forced*2)"]


async def video_codec(fd: int) -> str:
    """The video codec of an open recorded file ("h264", "hevc"; "" if ffprobe cannot tell)."""
    proc = await children.spawn(
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name",
        "-of", "csv=p=0", f"/proc/self/fd/{fd}", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, pass_fds=[fd])
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        await children.end(proc)
    return out.decode().strip()


def remux_args(list_path: Path, transcode: bool = False, mask_png: Path | None = None) -> list[str]:
    """Stream copy to fragmented MP4; re-encoded when the codec needs it or privacy masks are
    painted in (``mask_png``, cameras.masking)."""
    video = ["-map", "0:v:0"]
    if mask_png is not None:
        video = [*paint.ffmpeg_args(mask_png), "-map", "[masked]"]
        transcode = True
    return ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
            "-f", "concat", "-safe", "0", "-i", str(list_path),
            *video, *(TRANSCODE_ARGS if transcode else ["-c", "copy"]), "-f", "mp4",
            "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-frag_duration", "1000000",
            "pipe:1"]


class Remuxes(set):
    """The running playback remux processes; ``stopping`` once the service stops."""

    stopping = False


async def playback_ctx(app: web.Application) -> AsyncIterator[None]:
    app[PLAYBACK_PROCS] = Remuxes()
    yield


async def on_shutdown(app: web.Application) -> None:
    """Stop every playback remux, so open streams end instead of holding up shutdown."""
    procs = app.get(PLAYBACK_PROCS)
    if procs is None:
        return
    procs.stopping = True
    for proc in list(procs):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


@routes.get("/api/v1/cameras/{camera}/playback")
@requires(Permission.PLAYBACK, discloses=Disclosure.RECORDINGS, action="playback.start", query=PlanQuery)
async def plan(request: web.Request) -> web.Response:
    at_us = query_of(request, PlanQuery).at_us
    settings = request.app[SETTINGS]
    tz = ZoneInfo(settings.display_timezone)
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        pieces = await find_run(session, settings.storage_root, cam.id, at_us, media_duration_s)
    disclosure.note(request, f"camera:{cam.id}", at=us_to_iso(at_us), found=bool(pieces))
    if not pieces:
        raise NotFound(f"camera {cam.name!r} has no recording at or after {us_to_iso(at_us, tz)}")
    start_us = pieces[0].start_us
    last = pieces[-1]
    return web.json_response({
        "camera": cam.id,
        "at": us_to_iso(at_us), "at_local": us_to_iso(at_us, tz),
        "start_us": start_us, "start": us_to_iso(start_us), "start_local": us_to_iso(start_us, tz),
        "end_us": last.end_us, "growing": last.end_us is None,
        "offset_s": round(media_offset_s(pieces, at_us), 6),
        "in_gap": at_us < start_us,
        "pieces": [piece_json(p, tz) for p in pieces],
        "stream_url": f"/api/v1/cameras/{cam.id}/playback/stream.mp4?start_us={start_us}",
        "now_us": now_us(),
    })


@routes.get("/api/v1/cameras/{camera}/playback/stream.mp4")
@requires(Permission.PLAYBACK, discloses=Disclosure.FOOTAGE, action="playback.stream", query=StreamQuery,
          produces="video/mp4", pixels=Pixels.RECORDED)
async def stream(request: web.Request) -> web.StreamResponse:
    start_us = query_of(request, StreamQuery).start_us
    root = request.app[SETTINGS].storage_root
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        # Every file opened now, ffmpeg handed the descriptors (catalogue.open_run).
        cam_id = cam.id
        pieces, fds = await open_run(lambda: run_starting(session, root, cam_id, start_us, media_duration_s))
    if not pieces:
        raise NotFound("that recording is no longer available")
    with tempfile.TemporaryDirectory(prefix="playback-") as tmp, contextlib.ExitStack() as closing:
        for fd in fds:
            closing.callback(os.close, fd)
        list_path = Path(tmp) / "run.ffconcat"
        list_path.write_text(concat_list([f"/proc/self/fd/{fd}" for fd in fds]))
        # One remux per open stream, killed when the player goes, when the service stops
        # (on_shutdown) and, by the kernel, if the service dies.
        transcode = await video_codec(fds[0]) not in ("h264", "")
        mask_png = masking.video_mask(request, cam.id, (pieces[0].start_us, pieces[-1].end_us))
        proc = await children.spawn(
            *remux_args(list_path, transcode, mask_png), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, pass_fds=fds,
        )
        procs = request.app[PLAYBACK_PROCS]
        procs.add(proc)
        response = web.StreamResponse(headers={
            "Content-Type": "video/mp4", "Cache-Control": "no-store",
            "X-Media-Start-Us": str(pieces[0].start_us), "X-Transcoded": "1" if transcode or mask_png else "0",
            "X-Masked": "1" if mask_png else "0",
        })
        disclosure.note(request, f"camera:{cam.id}", start=us_to_iso(pieces[0].start_us), pieces=len(pieces))
        # A change of the camera's masks ends this stream (the player asks again, under the new set).
        closing.enter_context(request.app[MASKING].streaming(cam.id, lambda: _kill(proc)))
        try:
            await response.prepare(request)  # writes the playback.stream entry first
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(256 * 1024):
                await response.write(chunk)
            await proc.wait()
            if proc.returncode and not request.app[PLAYBACK_PROCS].stopping:
                err = await proc.stderr.read() if proc.stderr else b""
                log.warning("camera %s: playback remux exited %s: %s", cam.id, proc.returncode,
                            err.decode(errors="replace")[-300:])
            await response.write_eof()
        except ConnectionError:  # reset, or lost while waiting on back-pressure (aiohttp: a plain one)
            pass  # the player went away (a seek, or the operator left): stop remuxing
        finally:
            await children.end(proc)
            procs.discard(proc)  # after the reaping: an empty set means no remux is left
    return response


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
