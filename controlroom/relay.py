"""Live view relayed from the recording node (docs/design/cluster.md, "Live view on any node").

A camera's RTSP sessions are scarce, so in a cluster only the node that holds a camera's recorder
lease pulls its streams. Every recorder node runs a small internal HTTP listener (``cluster.
relay_host``/``relay_port``, bound to the site's internal network, never the public one; its URL
is in the node's ``nodes`` row, ``relay_url``): ``GET /live/{camera}/{stream}`` answers with the
fragmented MP4 of that camera stream from the node's own live hub (init segment, the current
group of pictures, then every fragment), shared with its own viewers: one pull of each camera
stream for the whole cluster.

Another node's live hub reads that URL instead of the camera's (``relay_source``): its ffmpeg
remuxes it (or paints the privacy masks, or transcodes) exactly as it would the camera's RTSP.
The relay serves the camera's own pixels: masks are painted by the node that knows the viewer.

The credential is a secret derived from the key file every node shares (``relay_token``), sent
as HTTP basic auth (in the URL, which stays out of ffmpeg's argv: cameras.rtsp.InputList). A
node that does not hold the camera's lease (any more) answers 409, and the asking node's
viewer is told there is no picture; it reconnects and finds the new holder.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import socket
from typing import Any

from aiohttp import web

from cameras import CameraUnavailable
from cameras.live import Source
from controlroom.context import KEYS, LIVE, NODE, SETTINGS
from storage.keys import Keys

log = logging.getLogger(__name__)

RELAY_USER = "node"
MAIN_APP = web.AppKey("main_app", web.Application)
TOKEN = web.AppKey("relay_token", str)
STREAMS = ("main", "sub")


def relay_token(keys: Keys) -> str:
    """The relay's shared secret: derived from the key file (the same on every node)."""
    return hmac.new(keys.audit_mac_key, b"controlroom live relay v1", hashlib.sha256).hexdigest()


def relay_source(keys: Keys, relay_url: str, camera_id: int, stream: str) -> Source:
    """Where a node that does not record ``camera_id`` reads its live ``stream``: the
    recording node's relay. The token is scrubbed from anything ffmpeg prints."""
    token = relay_token(keys)
    scheme, _, rest = relay_url.partition("://")
    return Source(f"{scheme}://{RELAY_USER}:{token}@{rest}/live/{camera_id}/{stream}", (token,))


def _authorised(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user.encode(), RELAY_USER.encode()) & hmac.compare_digest(password.encode(),
                                                                                       token.encode())


async def relay_live(request: web.Request) -> web.StreamResponse:
    """One camera stream's fMP4, from this node's live hub, for another node's live hub."""
    from controlroom.api.live import source_factory  # the public live view's: imports this module

    app = request.app[MAIN_APP]
    if not _authorised(request, request.app[TOKEN]):
        # ffmpeg sends its basic credentials only when challenged: the first ask of each pull
        # comes here without them (not logged: it is every pull's first request).
        if "Authorization" in request.headers:
            log.warning("live relay: refused a request with a wrong credential from %s", request.remote)
        raise web.HTTPUnauthorized(text="the cluster's relay credential is required",
                                   headers={"WWW-Authenticate": 'Basic realm="controlroom live relay"'})
    stream = request.match_info["stream"]
    try:
        camera_id = int(request.match_info["camera"])
    except ValueError:
        raise web.HTTPNotFound(text="no such camera") from None
    keeper = app[NODE]
    if stream not in STREAMS or camera_id not in keeper.held or LIVE not in app:
        raise web.HTTPConflict(text=f"node {keeper.node_id} does not record camera {camera_id}")
    hub = app[LIVE]
    up, viewer = await hub.join(f"{camera_id}/{stream}", source_factory(app, camera_id, stream))
    try:
        try:
            await up.wait_ready()
        except CameraUnavailable as exc:
            raise web.HTTPServiceUnavailable(text=f"camera {camera_id}: {exc}") from None
        response = web.StreamResponse(headers={"Content-Type": "video/mp4", "Cache-Control": "no-store"})
        await response.prepare(request)
        assert viewer.init is not None
        await response.write(viewer.init)
        while (chunk := await viewer.next_chunk()) is not None:
            if camera_id not in keeper.held:  # moved or taken over: the other node reconnects to the new holder
                log.info("camera %s: relay ended, node %s does not record it any more", camera_id, keeper.node_id)
                break
            await response.write(chunk)
        return response
    except (ConnectionError, RuntimeError):
        return web.Response(status=204)  # the other node went away: nothing more to send
    finally:
        hub.leave(up, viewer)


def advertised(settings: Any, port: int) -> str:
    cluster = settings.cluster
    host = cluster.relay_advertise_host or cluster.relay_host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{host}:{port}"


class RelayServer:
    """This node's relay listener: :meth:`start` returns its URL for the other nodes (port 0:
    the port the system gave); :meth:`stop` closes it."""

    def __init__(self, app: web.Application) -> None:
        internal = web.Application()
        internal[MAIN_APP], internal[TOKEN] = app, relay_token(app[KEYS])
        internal.router.add_get("/live/{camera}/{stream}", relay_live)
        self.settings = app[SETTINGS]
        self.runner = web.AppRunner(internal, handle_signals=False, access_log=None, shutdown_timeout=1)

    async def start(self) -> str:
        cluster = self.settings.cluster
        await self.runner.setup()
        site = web.TCPSite(self.runner, cluster.relay_host, cluster.relay_port)
        await site.start()
        port = self.runner.addresses[0][1] if self.runner.addresses else cluster.relay_port
        url = advertised(self.settings, port)
        log.info("live relay: serving the live view of this node's cameras to the other nodes on %s", url)
        return url

    async def stop(self) -> None:
        await self.runner.cleanup()
