"""ONVIF over HTTP: discover, adopt, PTZ, camera clocks and events; and the ONVIF background work.

Routes::

    POST /api/v1/discover                          {targets: [HOST[:PORT]], interfaces: [NAME], timeout_s}
    POST /api/v1/cameras/adopt                     {xaddr, username, password, name?, site?}
    GET  /api/v1/cameras/{camera}/ptz              status (position, moving)
    GET  /api/v1/cameras/{camera}/ptz/presets
    POST /api/v1/cameras/{camera}/ptz/move         {pan, tilt, zoom, timeout_s?} velocities
    POST /api/v1/cameras/{camera}/ptz/stop
    POST /api/v1/cameras/{camera}/ptz/goto         {preset}: token or name
    POST /api/v1/cameras/{camera}/ptz/presets      {name}: save the current position
    POST /api/v1/cameras/{camera}/ptz/home
    POST /api/v1/cameras/{camera}/clock/check
    POST /api/v1/cameras/{camera}/clock            set the camera's clock to ours
    GET  /api/v1/cameras/{camera}/events?from=&to=&kind=

Background work (cleanup contexts): :func:`onvif_ctx` (session pool, the Hello/Bye listener) and
:func:`onvif_background_ctx` (clock checks every ``cameras.clock_check_interval_s`` and PullPoint
subscriptions; appended after the recorders, so events start after the streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from cameras.onvif.clock import ClockWatcher
from cameras.onvif.discovery import Device, HelloListener, parse_target
from cameras.onvif.events import EventSubscriptions
from cameras.onvif.session import SessionPool
from controlroom import disclosure, onvif_actions
from controlroom.auth import actor, can_access_camera
from controlroom.background import watched
from controlroom.context import ALERTS, KEYS, MASKING, ONVIF, SESSIONS, SETTINGS, SUPERVISOR
from controlroom.contract import Body, Name, Query, Time, body_of, query_of
from controlroom.permissions import Disclosure, Permission, requires
from controlroom.views import camera_json
from storage import NotFound, inventory, masks
from storage.onvif import list_events

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
Address = Annotated[str, Field(max_length=500)]
Speed = Annotated[float, Field(ge=-1, le=1)]  # ONVIF's generic velocity space


class Discovery(Body):
    timeout_s: float = Field(3.0, gt=0, le=30)
    interfaces: list[Name] | Name | None = Field(None, max_length=32)
    targets: list[Address] | Address | None = Field(None, max_length=256)


class Adoption(Body):
    xaddr: Address = ""
    username: Annotated[str, Field(max_length=200)] = ""
    password: Annotated[str, Field(max_length=200)] = ""
    name: Name | None = None
    site: Name | None = None


class PtzMove(Body):
    pan: Speed = 0.0
    tilt: Speed = 0.0
    zoom: Speed = 0.0
    timeout_s: float | None = Field(None, gt=0, le=60)


class PtzPreset(Body):
    preset: Annotated[str, Field(min_length=1, max_length=200)]


class PtzPresetNew(Body):
    name: Name


class EventsQuery(Query):
    start_us: Time | None = Field(None, alias="from")
    end_us: Time | None = Field(None, alias="to")
    kind: Annotated[str, Field(max_length=200)] | None = None
INVENTORY_FOLLOW_S = 30.0
# How often the masks cameras paint are read back: footage recorded since the last read-back is
# masked by the service in playback (storage.masks.camera_painted), and a mask removed on the
# camera is found within this.
MASKS_CHECK_S = 30.0


@dataclass
class OnvifRuntime:
    pool: SessionPool
    clock: ClockWatcher
    events: EventSubscriptions | None = None
    hello: HelloListener | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def heard(self) -> dict[str, Device]:
        return dict(self.hello.devices) if self.hello is not None else {}

    def push_masks(self, app: web.Application, camera_id: int, *, clear: bool = False) -> asyncio.Task[None]:
        """Give the camera its new privacy masks (or take them back) in the background; the
        service paints the set meanwhile, and whatever the camera answers."""
        async def run() -> None:
            try:
                await onvif_actions.push_masks(app[SESSIONS], app[KEYS], self.pool, camera_id, clear=clear,
                                               timeout_s=app[SETTINGS].cameras.onvif_timeout_s)
                await painter_changed(app, camera_id)
            except Exception:  # logged with its context; the set stays with the service
                log.exception("camera %s: pushing its privacy masks failed; the service paints them", camera_id)

        task = asyncio.create_task(run(), name=f"masks-push-{camera_id}")
        self.tasks.append(task)
        task.add_done_callback(lambda t: t in self.tasks and self.tasks.remove(t))
        return task


async def _stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def onvif_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    cams = settings.cameras
    runtime = OnvifRuntime(
        pool=SessionPool(cams.onvif_timeout_s),
        clock=ClockWatcher(app[SESSIONS], app[KEYS], app[ALERTS], threshold_s=cams.clock_threshold_s,
                           interval_s=cams.clock_check_interval_s, timeout_s=cams.onvif_timeout_s),
    )
    if cams.discovery_interfaces or cams.discovery_listen:
        bind = parse_target(cams.discovery_listen) if cams.discovery_listen else None
        runtime.hello = HelloListener(interfaces=list(cams.discovery_interfaces), bind=bind)
        await runtime.hello.start()
    app[ONVIF] = runtime
    yield
    for task in list(runtime.tasks):  # mask pushes still under way (the background ones are gone)
        await _stop_task(task)
    if runtime.hello is not None:
        await runtime.hello.stop()
    await runtime.pool.close()


async def painter_changed(app: web.Application, camera_id: int) -> None:
    """End the camera's streams if who paints its masks changed (controlroom.masking)."""
    async with app[SESSIONS]() as session:
        row = await masks.get(session, camera_id)
    if row is not None:
        await app[MASKING].painter_changed(camera_id, row.applied_by)


async def check_masks_pass(app: web.Application) -> None:
    """Reconcile every ONVIF camera's privacy masks with the camera (onvif_actions.check_masks)."""
    runtime = app[ONVIF]
    done = await onvif_actions.check_all_masks(app[SESSIONS], app[KEYS], runtime.pool,
                                               timeout_s=app[SETTINGS].cameras.onvif_timeout_s)
    for camera_id in done:
        await painter_changed(app, camera_id)


async def onvif_background_ctx(app: web.Application) -> AsyncIterator[None]:
    """Clock checks and PullPoint subscriptions. Appended after the recorder context, so events
    start after the streams (some cameras slow down while serving event subscriptions)."""
    settings = app[SETTINGS]
    runtime = app[ONVIF]
    clock = runtime.clock
    runtime.tasks.append(asyncio.create_task(watched(app, "camera_clocks", clock.interval_s, clock.run_once,
                                                     what="camera clock check pass", log=log).run(),
                                             name="onvif-clock"))
    # Privacy masks the cameras paint: reconciled at start, then every MASKS_CHECK_S.
    runtime.tasks.append(asyncio.create_task(watched(
        app, "camera_masks", MASKS_CHECK_S, lambda: check_masks_pass(app),
        what="privacy masks: reconciling the cameras' own", log=log).run(), name="onvif-masks"))
    if settings.cameras.events:
        events = runtime.events = EventSubscriptions(app[SESSIONS], app[KEYS],
                                                     timeout_s=settings.cameras.onvif_timeout_s)
        await events.start()

        # Cameras adopted from the CLI (another process) get their subscription within this.
        runtime.tasks.append(asyncio.create_task(watched(
            app, "onvif_events", INVENTORY_FOLLOW_S, events.reload, what="events: following the inventory", log=log,
            wait_first=True).run(), name="onvif-events-inventory"))
    yield
    for task in runtime.tasks:
        await _stop_task(task)
    runtime.tasks.clear()
    if runtime.events is not None:
        await runtime.events.stop()
        runtime.events = None


def _runtime(request: web.Request) -> OnvifRuntime | None:
    return request.app.get(ONVIF)


def _strings(value: list[str] | str | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


@routes.post("/api/v1/discover")
@requires(Permission.ADMIN, body=Discovery)
async def discover(request: web.Request) -> web.Response:
    body = body_of(request, Discovery)
    timeout_s = body.timeout_s
    runtime = _runtime(request)
    # Multicast only out of interfaces named in the request or in the settings (none by default).
    interfaces = _strings(body.interfaces) or list(request.app[SETTINGS].cameras.discovery_interfaces)
    devices = await onvif_actions.discover_devices(
        request.app[SESSIONS], targets=_strings(body.targets), interfaces=interfaces,
        timeout_s=timeout_s, heard=runtime.heard() if runtime else None,
    )
    return web.json_response({"devices": devices})


@routes.post("/api/v1/cameras/adopt")
@requires(Permission.ADMIN, body=Adoption, status=201)
async def adopt_camera(request: web.Request) -> web.Response:
    body = body_of(request, Adoption)
    settings = request.app[SETTINGS]
    cam, facts = await onvif_actions.adopt_camera(
        request.app[SESSIONS], request.app[KEYS], request.app[ALERTS], settings, actor(request),
        xaddr=body.xaddr, username=body.username, password=body.password, name=body.name, site=body.site,
    )
    supervisor = request.app.get(SUPERVISOR)
    if supervisor is not None and hasattr(supervisor, "reload"):
        await supervisor.reload()  # start recording it now, not at the next periodic reload
    runtime = _runtime(request)
    if runtime is not None and runtime.events is not None:
        await runtime.events.reload()
    if runtime is not None:  # a re-adopted camera with masks set takes them now
        runtime.push_masks(request.app, cam.id)
    async with request.app[SESSIONS]() as session:
        sites = await inventory.site_names(session)
    return web.json_response({"camera": camera_json(cam, sites), "onvif": onvif_actions.facts_json(facts)},
                             status=201)


async def _ptz(request: web.Request, action: str, **params: Any) -> web.Response:
    runtime = _runtime(request)

    async def allowed(camera_id: int) -> bool:
        return await can_access_camera(request, camera_id)

    result = await onvif_actions.ptz_call(
        request.app[SESSIONS], request.app[KEYS], runtime.pool if runtime else None, actor(request),
        request.match_info["camera"], action, request_timeout_s=request.app[SETTINGS].cameras.onvif_timeout_s,
        allowed=allowed, **params,
    )
    return web.json_response(result if isinstance(result, dict) else {"presets": result})


@routes.get("/api/v1/cameras/{camera}/ptz")
@requires(Permission.PTZ)
async def ptz_status(request: web.Request) -> web.Response:
    return await _ptz(request, "status")


@routes.get("/api/v1/cameras/{camera}/ptz/presets")
@requires(Permission.PTZ)
async def ptz_presets(request: web.Request) -> web.Response:
    return await _ptz(request, "presets")


@routes.post("/api/v1/cameras/{camera}/ptz/move")
@requires(Permission.PTZ, body=PtzMove)
async def ptz_move(request: web.Request) -> web.Response:
    body = body_of(request, PtzMove)
    return await _ptz(request, "move", pan=body.pan, tilt=body.tilt, zoom=body.zoom, timeout_s=body.timeout_s)


@routes.post("/api/v1/cameras/{camera}/ptz/stop")
@requires(Permission.PTZ)
async def ptz_stop(request: web.Request) -> web.Response:
    return await _ptz(request, "stop")


@routes.post("/api/v1/cameras/{camera}/ptz/goto")
@requires(Permission.PTZ, body=PtzPreset)
async def ptz_goto(request: web.Request) -> web.Response:
    return await _ptz(request, "goto", preset=body_of(request, PtzPreset).preset)


@routes.post("/api/v1/cameras/{camera}/ptz/presets")
@requires(Permission.PTZ, body=PtzPresetNew, status=200)
async def ptz_set_preset(request: web.Request) -> web.Response:
    return await _ptz(request, "set_preset", name=body_of(request, PtzPresetNew).name)


@routes.post("/api/v1/cameras/{camera}/ptz/home")
@requires(Permission.PTZ)
async def ptz_home(request: web.Request) -> web.Response:
    return await _ptz(request, "home")


@routes.post("/api/v1/cameras/{camera}/clock/check")
@requires(Permission.ADMIN)
async def clock_check(request: web.Request) -> web.Response:
    result = await onvif_actions.check_clock(request.app[SESSIONS], request.app[KEYS], request.app[ALERTS],
                                             request.app[SETTINGS], request.match_info["camera"])
    return web.json_response(result)


@routes.post("/api/v1/cameras/{camera}/clock")
@requires(Permission.ADMIN)
async def clock_set(request: web.Request) -> web.Response:
    result = await onvif_actions.set_clock(request.app[SESSIONS], request.app[KEYS], request.app[ALERTS],
                                           request.app[SETTINGS], actor(request), request.match_info["camera"])
    return web.json_response(result)


@routes.get("/api/v1/cameras/{camera}/events")
@requires(Permission.PLAYBACK, discloses=Disclosure.EVENTS, action="events.list", query=EventsQuery)
async def camera_events(request: web.Request) -> web.Response:
    q = request.query
    params = query_of(request, EventsQuery)
    from_us, to_us = params.start_us, params.end_us
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        if not await can_access_camera(request, cam.id):
            raise NotFound(f"no camera {request.match_info['camera']!r}")
        events = await list_events(session, cam.id, from_us=from_us, to_us=to_us, kind=q.get("kind"))
    disclosure.note(request, f"camera:{cam.id}", start=q.get("from"), end=q.get("to"), kind=q.get("kind"),
                    results=len(events))
    return web.json_response({"events": [e.to_dict() for e in events]})
