"""Live view over WebSocket (fragmented MP4 for Media Source Extensions) and JPEG snapshots.

``GET /api/v1/cameras/{camera}/live?stream=sub|main`` upgrades to a WebSocket. The server sends
one text message ``{"type": "init", "codec": "avc1.64001f", "mime": ..., "stream": ...}``, then
binary messages: the init segment, then fragments (moof+mdat) as they arrive. It ends with a
text message ``{"type": "end", "reason": ..., "code": ...}`` (camera lost: reconnect after a
pause) or ``{"type": "error", "error": ..., "code": ...}``. ``code`` says what happened in a word
the screen turns into the operator's language (``no_video``, ``ended``, ``stopping``, and for
a camera whose codec the browser cannot play: ``transcode_busy``, ``transcode_failed``,
``transcode_off``); the reason is for logs.

Codecs: the browser gets H.264 whatever the camera sends. A camera stream in another codec
(H.265, as most current cameras send by default) is served by the camera's H.264 sub stream when
it has one; otherwise by one transcoding upstream per camera (``<id>/h264``, reading the sub
stream if there is one, else the main), shared by all its viewers and stopped like any upstream
when the last one leaves; at most ``live.max_transcodes`` at once. A browser that says it plays
H.265 through MSE (``hevc=1``) gets the H.265 stream as it is. The codec of each camera stream is
learned from its first upstream's init segment and remembered by the hub. The init message says
``transcoded`` and which camera stream (``source``) the picture comes from.

A disabled camera is refused before the upgrade (409), as its snapshot is. The client sends
nothing but may close at any time.

All viewers of a camera stream share one upstream (cameras.live.LiveHub); a slow viewer is
skipped ahead to the next keyframe, never queued. Every start and stop is audited.

``GET /api/v1/cameras/{camera}/snapshot.jpg?stream=main`` decodes the newest keyframe of the
live stream (starting it if needed) to a JPEG: the download button and the fallback for a
browser without MSE. ``download=1`` makes it an attachment and audits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import Field

from cameras import CameraUnavailable, children
from cameras.live import LiveHub, Source, TranscodeFailed, TranscodeLimit, Upstream, Viewer, is_h264
from controlroom import disclosure, masking
from controlroom.auth import actor
from controlroom.context import AUDIT, KEYS, LIVE, MASKING, NODE, OPEN_SOCKETS, SESSIONS, SETTINGS
from controlroom.contract import Flag, Query, query_of
from controlroom.permissions import Disclosure, Permission, Pixels, requires
from controlroom.relay import relay_source
from storage import Invalid, inventory, nodes
from storage.inventory import credentialed_url
from storage.models import Camera

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

STREAMS = ("sub", "main")
SNAPSHOT_TIMEOUT_S = 10.0
# A snapshot is of the picture now: the upstream's newest fragment (one every 0.1 s, or a frame of
# a slow camera) at most this old.
SNAPSHOT_FRESH_S = 3.0
# Closing a WebSocket waits this long for the browser's answer to our close frame (aiohttp's
# default is 10 s, which a vanished browser makes every stop and every departure wait).
WS_CLOSE_TIMEOUT_S = 2.0


async def live_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = LiveHub(grace_s=app[SETTINGS].live.linger_s, max_transcodes=app[SETTINGS].live.max_transcodes)
    app[LIVE] = hub
    app[OPEN_SOCKETS] = weakref.WeakSet()
    yield
    await hub.close()


async def on_shutdown(app: web.Application) -> None:
    """End every live stream and close every WebSocket (live and alerts, code 1001 "going
    away"), so open views finish at once instead of holding up the stop."""
    if LIVE in app:
        await app[LIVE].close()
    sockets = list(app.get(OPEN_SOCKETS, ()))
    if sockets:
        # A browser that stopped reading blocks even the close frame: wait a bounded time, then
        # leave those to aiohttp's shutdown, which cancels their handlers and drops the connection.
        closing = [asyncio.create_task(_close_socket(ws)) for ws in sockets]
        _, late = await asyncio.wait(closing, timeout=WS_CLOSE_TIMEOUT_S)
        for task in late:
            task.cancel()
        if late:
            log.info("stopping: %d WebSocket(s) did not take the close frame; dropping them", len(late))


async def _close_socket(ws: web.WebSocketResponse) -> None:
    try:
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"service stopping")
    except (ConnectionError, RuntimeError) as exc:  # the browser went meanwhile
        log.debug("stopping: a WebSocket was gone before its close frame: %s", exc)


def open_socket(request: web.Request, ws: web.WebSocketResponse) -> None:
    """Register a prepared WebSocket, so that a stop closes it (see on_shutdown)."""
    request.app[OPEN_SOCKETS].add(ws)


def check_origin(request: web.Request) -> None:
    """Refuse cross-site WebSocket upgrades (the browser sends the session cookie anyway)."""
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        raise web.HTTPForbidden(text='{"error": "cross-origin request refused"}', content_type="application/json")


class LiveQuery(Query):
    stream: Literal["sub", "main"] = Field("sub", description="the camera's sub stream (smaller) or main stream")


class LiveViewQuery(LiveQuery):
    hevc: Flag = Field(False, description="the browser plays H.265 through MSE: send an H.265 stream as it is")


class SnapshotQuery(LiveQuery):
    download: Flag = Field(False, description="offer the picture as a file to save")


def stream_of(request: web.Request) -> str:
    return query_of(request, LiveQuery).stream


def upstream_stream(cam: Camera, stream: str) -> str:
    """The camera stream a request for ``stream`` actually reads: "sub" falls back to the
    main stream when the camera has none, and then shares the main stream's upstream (one
    RTSP session per camera stream, not per name asked for)."""
    return "sub" if stream == "sub" and cam.sub_url else "main"


def stream_url(cam: Camera, stream: str) -> str:
    url = cam.sub_url if stream == "sub" and cam.sub_url else cam.main_url
    if not url:
        raise Invalid(f"camera {cam.name!r} has no stream URL")
    return url


def source_factory(app: web.Application, camera_id: int, stream: str):
    """Reads the camera row when the upstream starts, so a changed password is picked up.

    In a cluster, a camera that another node records is read from that node's live relay
    (controlroom.relay): its one pull of the camera stream, never a session of our own."""

    async def make() -> Source:
        async with app[SESSIONS]() as session:
            cam = await inventory.get_camera(session, camera_id)
            holder = await nodes.recorder_of(session, camera_id) if NODE in app else None
        if holder is not None and holder[0] != app[NODE].node_id:
            node_id, relay_url = holder
            if not relay_url:
                raise CameraUnavailable(f"camera {camera_id}: its recording node {node_id} has no live relay")
            return relay_source(app[KEYS], relay_url, camera_id, upstream_stream(cam, stream))
        password = app[KEYS].decrypt(cam.password_enc)
        return Source(credentialed_url(stream_url(cam, stream), cam.username, password), (password,))

    return make


async def _camera(request: web.Request, stream: str) -> Camera:
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
    if not cam.enabled:  # an administrator took it out of service: no live video, not even a still
        raise web.HTTPConflict(text=json.dumps({"error": f"camera {cam.name!r} is disabled: no live video"}),
                               content_type="application/json")
    stream_url(cam, stream)  # fail early, before any upgrade
    return cam


def join(request: web.Request, cam: Camera, stream: str):
    hub = request.app[LIVE]
    actual = upstream_stream(cam, stream)
    return hub.join(f"{cam.id}/{actual}", source_factory(request.app, cam.id, actual))


def playable(codec: str, hevc_ok: bool) -> bool:
    return is_h264(codec) or (hevc_ok and codec.startswith(("hvc1", "hev1")))


def choose_upstream(hub: LiveHub, cam: Camera, stream: str, hevc_ok: bool) -> tuple[str, str, bool]:
    """(hub key, camera stream read, transcode?) for a viewer of ``stream``, from what the hub
    knows of the camera's codecs: the stream asked for while its codec is unknown or playable;
    else the H.264 sub stream; else one transcode per camera (of the sub stream, the cheaper)."""
    def known(name: str) -> str:
        return hub.learned_codec(f"{cam.id}/{name}", stream_url(cam, name))

    asked = upstream_stream(cam, stream)
    codec = known(asked)
    if not codec or playable(codec, hevc_ok):
        return f"{cam.id}/{asked}", asked, False
    if asked == "main" and cam.sub_url:
        sub = known("sub")
        if not sub or playable(sub, hevc_ok):
            return f"{cam.id}/sub", "sub", False
    return f"{cam.id}/h264", upstream_stream(cam, "sub"), True


async def connect(request: web.Request, cam: Camera, stream: str, hevc_ok: bool,
                  mask: masking.Active | None = None) -> tuple[Upstream, Viewer]:
    """Join the upstream that gives this browser a picture it can play, once it has its init
    segment. Raises CameraUnavailable (TranscodeLimit when no transcoding slot is free).
    ``mask``: the privacy masks due, painted in by one masked upstream per camera stream and
    mask version (H.264, shared by every viewer without ``unmask``)."""
    hub = request.app[LIVE]
    if mask is not None:
        actual = upstream_stream(cam, stream)
        up, viewer = await hub.join(f"{cam.id}/{actual}/masked-v{mask.version}",
                                    source_factory(request.app, cam.id, actual),
                                    mask_png=request.app[MASKING].png(mask))
        try:
            await up.wait_ready()
        except CameraUnavailable as exc:
            hub.leave(up, viewer)
            log.warning("camera %s: painting its privacy masks gave no picture: %s; ffmpeg: %s", cam.id, exc,
                        " | ".join(up.stderr_tail) or "-")
            raise TranscodeFailed(f"camera {cam.id}: painting its privacy masks failed ({exc})") from exc
        except BaseException:
            hub.leave(up, viewer)
            raise
        return up, viewer
    for _ in range(3):  # at most: the asked stream, the sub stream, the transcode
        key, actual, transcode = choose_upstream(hub, cam, stream, hevc_ok)
        up, viewer = await hub.join(key, source_factory(request.app, cam.id, actual), transcode=transcode)
        try:
            await up.wait_ready()
        except CameraUnavailable as exc:
            hub.leave(up, viewer)
            if transcode:
                log.warning("camera %s: transcoding for the browser gave no picture: %s; ffmpeg: %s", cam.id, exc,
                            " | ".join(up.stderr_tail) or "-")
                raise TranscodeFailed(f"camera {cam.id}: converting its video for the browser failed ({exc})") from exc
            raise
        except BaseException:
            hub.leave(up, viewer)
            raise
        if transcode:
            return up, viewer
        hub.learn_codec(key, stream_url(cam, actual), up.codec)
        if playable(up.codec, hevc_ok):
            return up, viewer
        log.info("camera %s: stream %s sends %s, which browsers cannot play through MSE; looking further",
                 cam.id, actual, up.codec)
        hub.leave(up, viewer, linger=False)
    raise CameraUnavailable(f"camera {cam.id}: no playable stream found")  # pragma: no cover


def unavailable_code(exc: CameraUnavailable, request: web.Request, cam: Camera) -> str:
    """The screen's word for why there is no picture (see the module docstring)."""
    if isinstance(exc, TranscodeLimit):
        return "transcode_off" if request.app[SETTINGS].live.max_transcodes == 0 else "transcode_busy"
    if isinstance(exc, TranscodeFailed):
        return "transcode_failed"
    return "stopping" if request.app[LIVE].closed else "no_video"


@routes.get("/api/v1/cameras/{camera}/live")
@requires(Permission.LIVE_VIEW, discloses=Disclosure.FOOTAGE, action="live.start", query=LiveViewQuery, produces="",
          status=101, pixels=Pixels.LIVE)
async def live_ws(request: web.Request) -> web.StreamResponse:
    check_origin(request)
    query = query_of(request, LiveViewQuery)
    stream = query.stream
    cam = await _camera(request, stream)
    who = actor(request)
    mask = masking.due(request, cam.id)  # painted in by the masked upstream (connect)
    ws = web.WebSocketResponse(heartbeat=20.0, timeout=WS_CLOSE_TIMEOUT_S)
    disclosure.note(request, f"camera:{cam.id}", stream=stream, masked=mask is not None)
    try:
        await ws.prepare(request)  # writes the live.start entry first (controlroom.disclosure)
    except ConnectionError:
        return ws  # the browser left before the upgrade completed (a tile changed meanwhile)
    open_socket(request, ws)
    send_timeout_s = request.app[SETTINGS].live.send_timeout_s
    started = time.monotonic()
    try:
        up, viewer = await connect(request, cam, stream, query.hevc, mask)
    except CameraUnavailable as exc:  # no picture: say why, in a word the screen translates
        code = unavailable_code(exc, request, cam)
        with contextlib.suppress(ConnectionError, RuntimeError):
            if code == "stopping":
                await ws.send_json({"type": "end", "reason": str(exc), "code": code})
            else:
                await ws.send_json({"type": "error", "error": str(exc), "code": code})
        await ws.close(code=WSCloseCode.GOING_AWAY if code == "stopping" else WSCloseCode.OK)
        await request.app[AUDIT].append(who, "live.stop", f"camera:{cam.id}", stream=stream, duration_s=0.0,
                                        skipped_fragments=0)
        return ws
    closer = asyncio.create_task(_wait_client_close(ws, viewer))
    sent_bytes = 0
    try:
        source = upstream_stream(cam, stream if mask else "sub") if up.transcode else up.key.split("/", 1)[1]
        await ws.send_json({"type": "init", "camera": cam.id, "stream": stream, "codec": up.codec,
                            "mime": f'video/mp4; codecs="{up.codec}"', "transcoded": up.transcode,
                            "source": source, "masked": mask is not None})
        assert viewer.init is not None
        await ws.send_bytes(viewer.init)
        while (chunk := await viewer.next_chunk()) is not None:
            # A browser that takes nothing for send_timeout_s is gone (closed laptop, dropped
            # network): without this bound, its handler and the upstream would wait for TCP to
            # give up, many minutes later.
            async with asyncio.timeout(send_timeout_s):
                await ws.send_bytes(chunk)
            sent_bytes += len(chunk)
        if not ws.closed and viewer.end_reason != "client left":
            async with asyncio.timeout(send_timeout_s):
                await ws.send_json({"type": "end", "reason": viewer.end_reason, "code": "ended"})
    except TimeoutError:
        log.info("camera %s: live viewer %s took nothing for %gs; disconnected", cam.id, who, send_timeout_s)
    except (ConnectionError, RuntimeError):
        pass  # the browser went away mid-send (reset, or lost while waiting on back-pressure)
    finally:
        request.app[LIVE].leave(up, viewer)
        closer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closer
        await close_or_drop(request, ws)
        await request.app[AUDIT].append(who, "live.stop", f"camera:{cam.id}", stream=stream,
                                        duration_s=round(time.monotonic() - started, 1),
                                        skipped_fragments=viewer.skipped_fragments)
    return ws


async def close_or_drop(request: web.Request, ws: web.WebSocketResponse) -> None:
    """Close a WebSocket; drop the connection if even the close frame cannot be sent (a
    browser that stopped reading blocks it for as long as TCP keeps the connection)."""
    try:
        async with asyncio.timeout(WS_CLOSE_TIMEOUT_S):
            await ws.close()
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
    except Exception as exc:  # noqa: BLE001 - the browser went meanwhile: nothing to close
        log.debug("live: closing a WebSocket failed: %s", exc)


async def _wait_client_close(ws: web.WebSocketResponse, viewer) -> None:
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break
    viewer.close("client left")


def _fresh(up: Upstream) -> bool:
    """Whether the upstream is delivering now: its newest fragment came within SNAPSHOT_FRESH_S."""
    last = up.last_fragment
    return last is not None and time.monotonic() - last.received_s <= SNAPSHOT_FRESH_S


async def snapshot_jpeg(up: Upstream, timeout_s: float = SNAPSHOT_TIMEOUT_S) -> bytes:
    """Decode the newest keyframe fragment of a running upstream to JPEG (one frame), only while
    the upstream delivers: a camera that stopped sending is not pictured by its last keyframe
    (its upstream lingers until its stall timeout, and the picture check would judge the old view)."""
    await up.wait_ready(timeout_s)
    deadline = time.monotonic() + timeout_s
    while (frag := up.keyframe_fragment()) is None or not _fresh(up):
        if up.ended or time.monotonic() > deadline:
            why = "no keyframe" if frag is None else f"no video for over {SNAPSHOT_FRESH_S:g}s"
            raise CameraUnavailable(f"camera stream {up.key}: {why} within {timeout_s:g}s")
        await asyncio.sleep(0.1)
    assert up.init is not None
    proc = await children.spawn(
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "mp4", "-i", "pipe:0",
        "-frames:v", "1", "-q:v", "3", "-f", "image2", "-c:v", "mjpeg", "pipe:1",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(up.init + frag.data), timeout_s)
    finally:
        await children.end(proc)  # timed out or cancelled: the decoder goes too
    if proc.returncode != 0 or not out:
        log.warning("camera %s: snapshot decode failed: %s", up.key, err.decode(errors="replace")[-300:])
        raise CameraUnavailable(f"camera stream {up.key}: could not decode a frame")
    return out


@routes.get("/api/v1/cameras/{camera}/snapshot.jpg")
@requires(Permission.LIVE_VIEW, discloses=Disclosure.FOOTAGE, action="live.snapshot", query=SnapshotQuery,
          produces="image/jpeg", pixels=Pixels.LIVE)
async def snapshot(request: web.Request) -> web.Response:
    stream = stream_of(request)
    cam = await _camera(request, stream)
    up, viewer = await join(request, cam, stream)
    try:
        jpeg = await snapshot_jpeg(up)
    finally:
        request.app[LIVE].leave(up, viewer)
    headers = {"Cache-Control": "no-store"}
    download = query_of(request, SnapshotQuery).download
    if download:
        taken = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers["Content-Disposition"] = f'attachment; filename="camera{cam.id}-{taken}.jpg"'
    disclosure.note(request, f"camera:{cam.id}", stream=stream, download=download)
    return web.Response(body=jpeg, content_type="image/jpeg", headers=headers)
