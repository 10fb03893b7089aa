"""Privacy masks applied by construction: one place decides that a response's pixels must be
masked for its user, and one place refuses a response that was not (issue 15, item 1;
docs/design/lawful-use.md, "Privacy masks").

A route that hands out pictures of cameras declares it: ``@requires(..., pixels=Pixels.LIVE)``
(the camera's live stream) or ``Pixels.RECORDED`` (anything recorded or kept). For such a route
and a user without the ``unmask`` right, :func:`masking_middleware` looks up the masks of every
camera the request reaches (``controlroom.auth.cameras_reached``: the ``{camera}`` in the path,
the route's camera resolver) before the handler runs, and after it:

- a picture the handler returns (``image/jpeg``, ``image/png``) is masked here, whatever the
  handler did (OpenCV fillPoly, ``cameras.masking.mask_picture``);
- any other answer (a video, a stream, a package) must have been masked by the handler, which
  takes the masks with :func:`video_mask` (the PNG for ``cameras.masking``'s ffmpeg filter) or
  :func:`due` and so promises to paint them. A response with masks due that no one took is
  refused (500, logged at ERROR) before its first byte: the middleware for returned responses,
  an ``on_response_prepare`` hook for streamed ones.

Masks the camera paints itself (pushed by ONVIF, ``applied_by == "camera"``) are already in its
live stream: for ``Pixels.LIVE`` they are not due. Recorded footage may predate the push, so for
``Pixels.RECORDED`` every mask is due.

The watch: a stream opened under one set of masks ends when the set changes (:meth:`Masking.changed`,
called by the API at once and by a loop every ``WATCH_S`` for changes made elsewhere, the CLI);
live viewers reconnect under the new set. ``tests/test_masks_walk.py`` walks every route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from cameras import masking as paint
from controlroom.auth import cameras_reached, current_user, route_of
from controlroom.background import watched
from controlroom.context import LIVE, MASKING, SESSIONS
from controlroom.errors import error_response
from controlroom.permissions import Permission, Pixels
from storage import masks

log = logging.getLogger(__name__)

WATCH_S = 2.0
PLAN = web.RequestKey("mask_plan", object)
PICTURES = ("image/jpeg", "image/png")


@dataclass(frozen=True)
class Active:
    """One camera's masks as they stand."""

    camera_id: int
    polygons: list[list[list[float]]]
    version: int
    applied_by: str
    camera_since_us: int | None = None
    camera_checked_us: int | None = None

    def painted_at_source(self, start_us: int, end_us: int | None) -> bool:
        """Was footage of this span recorded while the camera painted this set (storage.masks)?"""
        return masks.camera_painted(self.applied_by, self.camera_since_us, self.camera_checked_us, start_us, end_us)


@dataclass
class Plan:
    """What this response must carry: the masks due, by camera, and those the handler took."""

    pixels: Pixels = Pixels.RECORDED
    unmask: bool = False
    due: dict[int, Active] = field(default_factory=dict)
    taken: set[int] = field(default_factory=set)

    def missing(self) -> list[int]:
        return sorted(set(self.due) - self.taken)


class Masking:
    """The masks of one service: their pictures for ffmpeg, the streams open under them, the watch."""

    def __init__(self, sessions, folder: Path) -> None:
        self._sessions = sessions
        self.folder = folder
        self.versions: dict[int, int] = {}  # the versions the watch last saw (absent: no masks)
        self.painters: dict[int, str] = {}  # who paints each set, as the watch last saw it
        self._stops: dict[int, set[Callable[[], None]]] = {}
        self.on_change: list[Callable[[int], Awaitable[None]]] = []

    async def active(self, camera_ids: set[int], pixels: Pixels) -> dict[int, Active]:
        """The masks due on pictures of these cameras from ``pixels``."""
        if not camera_ids:
            return {}
        async with self._sessions() as session:
            found = {c: await masks.get(session, c) for c in camera_ids}
        return {c: Active(c, m.polygons, m.version, m.applied_by, m.camera_since_us, m.camera_checked_us)
                for c, m in found.items()
                if m is not None and not (pixels is Pixels.LIVE and m.applied_by == masks.CAMERA)}

    def png(self, active: Active) -> Path:
        """The mask picture of this version of a camera's masks (written once)."""
        path = self.folder / f"camera{active.camera_id}-v{active.version}.png"
        if not path.exists():
            paint.write_mask_png(active.polygons, path)
        return path

    @contextlib.contextmanager
    def streaming(self, camera_id: int, stop: Callable[[], None]) -> Iterator[None]:
        """While the block runs, ``stop()`` ends the stream when the camera's masks change."""
        self._stops.setdefault(camera_id, set()).add(stop)
        try:
            yield
        finally:
            self._stops.get(camera_id, set()).discard(stop)

    async def changed(self, camera_id: int, version: int | None) -> None:
        """A camera's masks changed (``version`` None: cleared): end every stream of it opened
        under the old set, live and recorded."""
        if self.versions.get(camera_id) == version:
            return
        if version is None:
            self.versions.pop(camera_id, None)
        else:
            self.versions[camera_id] = version
        for stop in list(self._stops.get(camera_id, ())):
            stop()
        for hook in self.on_change:
            await hook(camera_id)

    async def painter_changed(self, camera_id: int, applied_by: str) -> None:
        """The camera took its masks, or the service paints them again (drift, a new set): end
        its streams, so that viewers reconnect to the stream copy or the masked upstream."""
        if self.painters.get(camera_id) == applied_by:
            return
        self.painters[camera_id] = applied_by
        for stop in list(self._stops.get(camera_id, ())):
            stop()
        for hook in self.on_change:
            await hook(camera_id)

    async def watch_step(self) -> None:
        """Notice changes made by another process (the CLI, another node)."""
        async with self._sessions() as session:
            sets = await masks.all_sets(session)
        now = {c: m.version for c, m in sets.items()}
        for camera_id in sorted(set(now) | set(self.versions)):
            if now.get(camera_id) != self.versions.get(camera_id):
                log.info("camera %s: privacy masks changed (version %s -> %s): ending its streams", camera_id,
                         self.versions.get(camera_id), now.get(camera_id))
                await self.changed(camera_id, now.get(camera_id))
        for camera_id, m in sets.items():
            if self.painters.get(camera_id) != m.applied_by:
                if camera_id in self.painters:
                    log.info("camera %s: privacy masks now painted by the %s: ending its streams", camera_id,
                             m.applied_by)
                await self.painter_changed(camera_id, m.applied_by)


async def masking_ctx(app: web.Application) -> AsyncIterator[None]:
    """After the live hub: the mask pictures' folder and the watch loop."""
    with tempfile.TemporaryDirectory(prefix="controlroom-masks-") as folder:
        m = app[MASKING] = Masking(app[SESSIONS], Path(folder))
        async with app[SESSIONS]() as session:
            sets = await masks.all_sets(session)
            m.versions = {c: s.version for c, s in sets.items()}
            m.painters = {c: s.applied_by for c, s in sets.items()}

        async def end_live(camera_id: int) -> None:
            await app[LIVE].end_camera(camera_id)

        m.on_change.append(end_live)
        # A failing watch is a /healthz note (controlroom.background): streams would outlive a change.
        loop = watched(app, "privacy_masks", WATCH_S, m.watch_step, what="privacy mask watch", log=log)
        task = asyncio.create_task(loop.run(), name="privacy-mask-watch")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _plan(request: web.Request) -> Plan:
    plan = request.get(PLAN)
    if not isinstance(plan, Plan):
        spec = route_of(request)
        raise RuntimeError(f"{request.method} {request.path}: asks for privacy masks but declares no pixels= "
                           f"({spec.permission if spec else 'no route'})")
    return plan


async def reach(request: web.Request, camera_ids: set[int]) -> None:
    """Cameras the handler found that the request did not name (a one-time link's package):
    their masks are due too."""
    plan = _plan(request)
    if not plan.unmask:
        plan.due.update(await request.app[MASKING].active(set(camera_ids) - set(plan.due), plan.pixels))


def due(request: web.Request, camera_id: int) -> Active | None:
    """The masks the handler must paint on this camera's pictures (None: none for this user);
    taking them is the handler's promise to paint them."""
    plan = _plan(request)
    active = plan.due.get(camera_id)
    if active is not None:
        plan.taken.add(camera_id)
    return active


def video_mask(request: web.Request, camera_id: int,
               footage: tuple[int, int | None] | None = None) -> Path | None:
    """The mask picture for ``cameras.masking``'s ffmpeg filter (None: stream copy is fine).

    ``footage``: the span (start, end; end None while it grows) of recorded footage the answer
    copies. Footage the camera recorded while it painted this very set carries the masks at
    source (storage.masks.camera_painted): it is copied as it is; any other is painted here."""
    active = due(request, camera_id)
    if active is None or (footage is not None and active.painted_at_source(*footage)):
        return None
    return request.app[MASKING].png(active)


def _refuse(request: web.Request, plan: Plan) -> str:
    message = (f"{request.method} {request.path}: privacy masks of camera(s) {plan.missing()} were not applied; "
               "refused rather than send unmasked pixels")
    log.error("%s", message)
    return message


@web.middleware
async def masking_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    spec = route_of(request)
    if spec is None or spec.pixels is None:
        return await handler(request)
    plan = Plan(spec.pixels, Permission.UNMASK in current_user(request).permissions)
    if not plan.unmask:
        plan.due = await request.app[MASKING].active(await cameras_reached(request, spec), spec.pixels)
    request[PLAN] = plan
    response = await handler(request)
    if response.prepared or response.status >= 300 or not plan.missing():
        return response
    if isinstance(response, web.Response) and response.content_type in PICTURES and len(plan.missing()) == 1:
        active = plan.due[plan.missing()[0]]
        assert isinstance(response.body, bytes)
        try:
            response.body = await asyncio.to_thread(paint.mask_picture, response.body, active.polygons,
                                                    response.content_type)
        except ValueError as exc:
            log.error("%s %s: %s; refused", request.method, request.path, exc)
            return error_response(500, "the picture could not be masked; refused")
        plan.taken.add(active.camera_id)
        return response
    return error_response(500, _refuse(request, plan))


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    plan = request.get(PLAN)
    if isinstance(plan, Plan) and response.status < 300 and plan.missing():
        raise RuntimeError(_refuse(request, plan))


def install(app: web.Application) -> None:
    """The hook for streamed responses; installed before the disclosure's, so that a refused
    stream is not recorded as disclosed."""
    app.on_response_prepare.append(_on_prepare)
