"""Cameras and their recordings over HTTP: /api/v1/cameras..."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import Field

from controlroom import disclosure
from controlroom.auth import actor, allowed_camera_ids
from controlroom.context import KEYS, SESSIONS, SETTINGS, SUPERVISOR
from controlroom.contract import Name, Query, Time, body_of, query_of
from controlroom.permissions import Disclosure, Permission, requires
from controlroom.views import camera_json, timeline_json
from storage import audit, inventory
from storage.catalogue import timeline
from storage.db import transaction

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


class CameraListQuery(Query):
    site: Name | None = Field(None, description="only the cameras of this site")


class TimelineQuery(Query):
    start_us: Time = Field(alias="from")
    end_us: Time = Field(alias="to")


async def _reload_recorders(request: web.Request) -> None:
    """Start or stop recorders to match the change at once; if that fails, the periodic reload
    (which shows its failure on /healthz) does it later: the change itself is already saved."""
    supervisor = request.app.get(SUPERVISOR)
    if supervisor is not None:
        try:
            await supervisor.reload()
        except Exception:  # noqa: BLE001 - logged; the periodic reload retries and reports
            log.exception("recorders not reloaded after a camera change")


@routes.get("/api/v1/cameras")
@requires(Permission.INVENTORY_READ, query=CameraListQuery)
async def list_cameras(request: web.Request) -> web.Response:
    allowed = await allowed_camera_ids(request)  # None: every camera
    async with request.app[SESSIONS]() as session:
        sites = await inventory.site_names(session)
        cams = await inventory.list_cameras(session, site=query_of(request, CameraListQuery).site)
    return web.json_response({"cameras": [camera_json(c, sites) for c in cams if allowed is None or c.id in allowed]})


@routes.get("/api/v1/cameras/{camera}")
@requires(Permission.INVENTORY_READ)
async def show_camera(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        sites = await inventory.site_names(session)
    return web.json_response(camera_json(cam, sites))


@routes.post("/api/v1/cameras")
@requires(Permission.ADMIN, body=inventory.CameraSpec, status=201)
async def add_camera(request: web.Request) -> web.Response:
    spec = body_of(request, inventory.CameraSpec)
    async with transaction(request.app[SESSIONS]) as session:
        cam = await inventory.add_camera(session, spec, request.app[KEYS])
        await audit.append(session, actor(request), "camera.add", f"camera:{cam.id}", name=cam.name)
        sites = await inventory.site_names(session)
    await _reload_recorders(request)
    return web.json_response(camera_json(cam, sites), status=201)


@routes.patch("/api/v1/cameras/{camera}")
@requires(Permission.ADMIN, body=inventory.CameraUpdate)
async def update_camera(request: web.Request) -> web.Response:
    update = body_of(request, inventory.CameraUpdate)
    async with transaction(request.app[SESSIONS]) as session:
        cam = await inventory.update_camera(session, request.match_info["camera"], update, request.app[KEYS])
        changed = sorted(update.model_dump(exclude_unset=True))
        await audit.append(session, actor(request), "camera.update", f"camera:{cam.id}", fields=changed)
        sites = await inventory.site_names(session)
    await _reload_recorders(request)  # a disabled camera stops recording now, not at the next reload
    return web.json_response(camera_json(cam, sites))


@routes.get("/api/v1/cameras/{camera}/recordings")
@requires(Permission.PLAYBACK, discloses=Disclosure.RECORDINGS, action="recordings.list", query=TimelineQuery)
async def recordings(request: web.Request) -> web.Response:
    params = query_of(request, TimelineQuery)
    start, end = request.query["from"], request.query["to"]
    from_us, to_us = params.start_us, params.end_us
    tz = request.app[SETTINGS].display_timezone
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        tl = await timeline(session, cam.id, from_us, to_us)
    disclosure.note(request, f"camera:{cam.id}", start=start, end=end)
    return web.json_response(timeline_json(tl, tz))
