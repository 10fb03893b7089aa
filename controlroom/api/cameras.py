"""Cameras and their recordings over HTTP: /api/v1/cameras..."""

from __future__ import annotations

from aiohttp import web

from controlroom import disclosure
from controlroom.auth import actor, allowed_camera_ids
from controlroom.context import KEYS, SESSIONS, SETTINGS
from controlroom.errors import json_body
from controlroom.permissions import Disclosure, Permission, requires
from controlroom.timefmt import iso_to_us
from controlroom.views import camera_json, timeline_json
from storage import audit, inventory
from storage.catalogue import timeline
from storage.db import transaction

routes = web.RouteTableDef()


@routes.get("/api/v1/cameras")
@requires(Permission.INVENTORY_READ)
async def list_cameras(request: web.Request) -> web.Response:
    allowed = await allowed_camera_ids(request)  # None: every camera
    async with request.app[SESSIONS]() as session:
        sites = await inventory.site_names(session)
        cams = await inventory.list_cameras(session, site=request.query.get("site"))
    return web.json_response({"cameras": [camera_json(c, sites) for c in cams if allowed is None or c.id in allowed]})


@routes.get("/api/v1/cameras/{camera}")
@requires(Permission.INVENTORY_READ)
async def show_camera(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        sites = await inventory.site_names(session)
    return web.json_response(camera_json(cam, sites))


@routes.post("/api/v1/cameras")
@requires(Permission.ADMIN)
async def add_camera(request: web.Request) -> web.Response:
    spec = inventory.parse_spec(inventory.CameraSpec, await json_body(request))
    async with transaction(request.app[SESSIONS]) as session:
        cam = await inventory.add_camera(session, spec, request.app[KEYS])
        await audit.append(session, actor(request), "camera.add", f"camera:{cam.id}", name=cam.name)
        sites = await inventory.site_names(session)
    return web.json_response(camera_json(cam, sites), status=201)


@routes.patch("/api/v1/cameras/{camera}")
@requires(Permission.ADMIN)
async def update_camera(request: web.Request) -> web.Response:
    update = inventory.parse_spec(inventory.CameraUpdate, await json_body(request))
    async with transaction(request.app[SESSIONS]) as session:
        cam = await inventory.update_camera(session, request.match_info["camera"], update, request.app[KEYS])
        changed = sorted(update.model_dump(exclude_unset=True))
        await audit.append(session, actor(request), "camera.update", f"camera:{cam.id}", fields=changed)
        sites = await inventory.site_names(session)
    return web.json_response(camera_json(cam, sites))


@routes.get("/api/v1/cameras/{camera}/recordings")
@requires(Permission.PLAYBACK, discloses=Disclosure.RECORDINGS, action="recordings.list")
async def recordings(request: web.Request) -> web.Response:
    try:
        start, end = request.query["from"], request.query["to"]
    except KeyError as missing:
        raise web.HTTPBadRequest(text=f'{{"error": "query parameter {missing} is required"}}',
                                 content_type="application/json") from None
    from_us, to_us = iso_to_us(start, "from"), iso_to_us(end, "to")
    tz = request.app[SETTINGS].display_timezone
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        tl = await timeline(session, cam.id, from_us, to_us)
    disclosure.note(request, f"camera:{cam.id}", start=start, end=end)
    return web.json_response(timeline_json(tl, tz))
