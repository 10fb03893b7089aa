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
   TCP back-pressure keeps ffmpeg (and memory) idle while the operator watches.

A run is catalogued segments joined while the gap between them is at most ``JOIN_GAP_US``,
capped at ``MAX_RUN_US``, and, when it reaches the newest catalogued segment, the segment the
recorder is writing now in ``<root>/<camera>/incoming/`` (Matroska is readable while it is
written). That is how "20 s ago" plays although segments are 30 s long. The growing file's start
is the end of the segment before it (the recorder closes one segment exactly where the next
begins); for the first segment of a recorder run, its modification time minus its media
duration so far (as the recorder will catalogue it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cameras import children
from cameras.recorder import probe
from controlroom import disclosure
from controlroom.context import PLAYBACK_PROCS, SESSIONS, SETTINGS
from controlroom.contract import Query, Time, query_of
from controlroom.permissions import Disclosure, Permission, requires
from controlroom.timefmt import LATEST_US, us_to_iso
from storage import NotFound, inventory
from storage.catalogue import incoming_dir, safe_path
from storage.db import now_us
from storage.models import Segment, SegmentState

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

JOIN_GAP_US = 1_500_000  # segments closer than this play as one run (keyframe-cut boundaries)
MAX_RUN_US = 15 * 60 * 1_000_000  # one stream covers at most this much; the player asks again
_INCOMING_NAME = re.compile(r"(\d{8}T\d{6})Z\.mkv$")


class PlanQuery(Query):
    at_us: Time = Field(alias="at", description="the moment to play from (ISO 8601 with offset)")


class StreamQuery(Query):
    start_us: int = Field(ge=0, lt=LATEST_US, description="the plan's start_us (UTC microseconds)")


@dataclass(frozen=True)
class Piece:
    path: Path
    start_us: int
    end_us: int | None  # None: the file being written now
    media_offset_s: float = 0.0

    def json(self, tz: ZoneInfo) -> dict:
        end = self.end_us
        return {
            "start_us": self.start_us, "end_us": end, "growing": end is None,
            "start": us_to_iso(self.start_us), "start_local": us_to_iso(self.start_us, tz),
            "media_offset_s": round(self.media_offset_s, 6),
        }


async def incoming_start_us(path: Path, last_end_us: int | None) -> int | None:
    """When the file being written began (see the module docstring)."""
    match = _INCOMING_NAME.search(path.name)
    named_us = None
    if match:
        named_us = int(datetime.strptime(match[1], "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp() * 1e6)
    if last_end_us is not None and (named_us is None or abs(named_us - last_end_us) < 3_000_000):
        return last_end_us
    # The first segment of a recorder run: its name has whole seconds only, so measure it as
    # the recorder will when it closes it (the time now minus its media duration so far).
    mtime_us = int((await asyncio.to_thread(path.stat)).st_mtime * 1e6)
    duration_s, *_ = await probe(path)
    if duration_s > 0:
        return mtime_us - int(duration_s * 1e6)
    return named_us


def newest_incoming(root: Path, camera_id: int) -> Path | None:
    folder = incoming_dir(root, camera_id)
    try:
        files = [p for p in folder.iterdir() if p.suffix == ".mkv" and p.stat().st_size > 0]
    except FileNotFoundError:
        return None
    return max(files, key=lambda p: p.stat().st_mtime, default=None)


async def find_run(session: AsyncSession, root: Path, camera_id: int, at_us: int) -> list[Piece]:
    """The pieces of the run that contains ``at_us``, or the next run after it ([] if none)."""
    rows = (await session.execute(
        select(Segment).where(
            Segment.camera_id == camera_id, Segment.end_us > at_us,
            Segment.start_us < at_us + MAX_RUN_US, Segment.state != SegmentState.GARBAGE.value,
        ).order_by(Segment.start_us).limit(200)
    )).scalars().all()
    pieces: list[Piece] = []
    media_s = 0.0
    for seg in rows:
        if pieces:
            prev_end = pieces[-1].end_us or 0
            if seg.start_us - prev_end > JOIN_GAP_US or seg.start_us - pieces[0].start_us > MAX_RUN_US:
                return pieces
        pieces.append(Piece(safe_path(root, seg.path), seg.start_us, seg.end_us, media_s))
        media_s += (seg.end_us - seg.start_us) / 1e6
    # The run reached the newest catalogued segment (or there is none after at_us): the file
    # being written may continue it.
    newest_end = await session.scalar(
        select(Segment.end_us).where(Segment.camera_id == camera_id).order_by(Segment.end_us.desc()).limit(1)
    )
    if pieces and pieces[-1].end_us != newest_end:
        return pieces
    growing = await asyncio.to_thread(newest_incoming, root, camera_id)
    if growing is None:
        return pieces
    start = await incoming_start_us(growing, newest_end)
    if start is None:
        return pieces
    if pieces and start - (pieces[-1].end_us or 0) > JOIN_GAP_US:
        return pieces
    if not pieces and start > at_us + MAX_RUN_US:
        return pieces
    pieces.append(Piece(growing, start, None, media_s))
    return pieces


def concat_list(paths: list[str]) -> str:
    lines = ["ffconcat version 1.0"]
    for path in paths:
        escaped = path.replace("'", "'\\''")
        lines.append(f"file '{escaped}'")
    return "\n".join(lines) + "\n"


def run_from(pieces: list[Piece], start_us: int) -> list[Piece]:
    """The pieces of a run from the one that starts at ``start_us`` (as a plan named it).

    A segment that ends within JOIN_GAP_US after ``start_us`` cannot be that first piece
    (segments are longer): it is an earlier one that the recorder's clock estimate made
    overlap by a few milliseconds. Media offsets are made relative to the new first piece.
    """
    while len(pieces) > 1 and pieces[0].end_us is not None and pieces[0].end_us <= start_us + JOIN_GAP_US:
        pieces = pieces[1:]
    if not pieces:
        return []
    base = pieces[0].media_offset_s
    return [Piece(p.path, p.start_us, p.end_us, p.media_offset_s - base) for p in pieces]


def remux_args(list_path: Path) -> list[str]:
    return ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
            "-f", "concat", "-safe", "0", "-i", str(list_path),
            "-map", "0:v:0", "-c", "copy", "-f", "mp4",
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
        pieces = await find_run(session, settings.storage_root, cam.id, at_us)
    disclosure.note(request, f"camera:{cam.id}", at=us_to_iso(at_us), found=bool(pieces))
    if not pieces:
        raise NotFound(f"camera {cam.name!r} has no recording at or after {us_to_iso(at_us, tz)}")
    start_us = pieces[0].start_us
    offset_s = 0.0
    for piece in pieces:
        if piece.end_us is None or piece.end_us > at_us:
            offset_s = piece.media_offset_s + max(0, at_us - piece.start_us) / 1e6
            break
    last = pieces[-1]
    return web.json_response({
        "camera": cam.id,
        "at": us_to_iso(at_us), "at_local": us_to_iso(at_us, tz),
        "start_us": start_us, "start": us_to_iso(start_us), "start_local": us_to_iso(start_us, tz),
        "end_us": last.end_us, "growing": last.end_us is None,
        "offset_s": round(offset_s, 6),
        "in_gap": at_us < start_us,
        "pieces": [p.json(tz) for p in pieces],
        "stream_url": f"/api/v1/cameras/{cam.id}/playback/stream.mp4?start_us={start_us}",
        "now_us": now_us(),
    })


@routes.get("/api/v1/cameras/{camera}/playback/stream.mp4")
@requires(Permission.PLAYBACK, discloses=Disclosure.FOOTAGE, action="playback.stream", query=StreamQuery,
          produces="video/mp4")
async def stream(request: web.Request) -> web.StreamResponse:
    start_us = query_of(request, StreamQuery).start_us
    root = request.app[SETTINGS].storage_root
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        # The plan's start is a piece's start; tolerate the growing file having been
        # catalogued meanwhile (its catalogued start can differ by a few milliseconds).
        pieces = run_from(await find_run(session, root, cam.id, start_us + 1), start_us)
    # The growing file's estimated start moves a little as it grows; there is only one.
    if not pieces or (abs(pieces[0].start_us - start_us) > JOIN_GAP_US and pieces[0].end_us is not None):
        raise NotFound("that recording is no longer available")
    # Open every file now and hand ffmpeg the descriptors: the recorder may rename the growing
    # file into the store (or retention unlink a segment) before ffmpeg reaches it.
    fds: list[int] = []
    try:
        for piece in pieces:
            fds.append(await asyncio.to_thread(os.open, piece.path, os.O_RDONLY))
    except FileNotFoundError:
        for fd in fds:
            os.close(fd)
        raise NotFound("that recording is no longer available") from None
    with tempfile.TemporaryDirectory(prefix="playback-") as tmp, contextlib.ExitStack() as closing:
        for fd in fds:
            closing.callback(os.close, fd)
        list_path = Path(tmp) / "run.ffconcat"
        list_path.write_text(concat_list([f"/proc/self/fd/{fd}" for fd in fds]))
        # One remux per open stream, killed when the player goes, when the service stops
        # (on_shutdown) and, by the kernel, if the service dies.
        proc = await children.spawn(
            *remux_args(list_path), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, pass_fds=fds,
        )
        procs = request.app[PLAYBACK_PROCS]
        procs.add(proc)
        response = web.StreamResponse(headers={
            "Content-Type": "video/mp4", "Cache-Control": "no-store",
            "X-Media-Start-Us": str(pieces[0].start_us),
        })
        disclosure.note(request, f"camera:{cam.id}", start=us_to_iso(pieces[0].start_us), pieces=len(pieces))
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
        except ConnectionResetError:
            pass  # the player went away (a seek, or the operator left): stop remuxing
        finally:
            procs.discard(proc)
            await children.end(proc)
    return response
