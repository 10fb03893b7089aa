"""Privacy masks over HTTP: /api/v1/cameras/{camera}/masks (issue 15, item 1).

- ``GET .../masks``: the camera's polygons (normalised 0..1), who set them, when, why, the
  version and who paints them (``service`` or ``camera``); ``{"polygons": []}`` when none.
- ``PUT .../masks`` ``{"polygons": [[[x, y], ...], ...], "reason": ...}`` (administrators):
  replace them (audited ``masks.set``); streams opened under the old set end at once.
- ``POST .../masks/clear`` ``{"reason": ...}`` (administrators): remove them (``masks.clear``).
- ``GET .../masks/snapshot.jpg`` (administrators, who have no live view): the picture the editor
  draws on, with the masks already in force painted in (an administrator has no ``unmask``).

How masks are applied to every picture: controlroom.masking; docs/design/lawful-use.md.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from controlroom import disclosure
from controlroom.api.live import _camera, join, snapshot_jpeg
from controlroom.auth import actor, allowed_camera_ids
from controlroom.context import LIVE, MASKING, ONVIF, SESSIONS
from controlroom.contract import Body, Text, body_of
from controlroom.permissions import Disclosure, Permission, Pixels, requires
from controlroom.timefmt import us_to_iso
from storage import inventory, masks
from storage.db import transaction

routes = web.RouteTableDef()
PREFIX = "/api/v1/cameras/{camera}/masks"

Point = Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=2, max_length=2)]
Polygon = Annotated[list[Point], Field(min_length=3, max_length=masks.MAX_POINTS)]


class MasksNew(Body):
    polygons: list[Polygon] = Field(min_length=1, max_length=masks.MAX_POLYGONS,
                                    description="each a list of [x, y], fractions of the picture from its top left")
    reason: Text = Field(min_length=1, description="why (kept in the audit trail)")


class MasksClear(Body):
    reason: Text = Field(min_length=1, description="why (kept in the audit trail)")


def masks_json(camera_id: int, row: masks.MaskSet | None) -> dict:
    if row is None:
        return {"camera": camera_id, "polygons": [], "version": 0}
    return {"camera": camera_id, "polygons": row.polygons, "reason": row.reason, "set_by": row.set_by,
            "set_us": row.set_us, "version": row.version, "applied_by": row.applied_by,
            "camera_state": row.camera_state,
            "camera_since": us_to_iso(row.camera_since_us) if row.camera_since_us else None,
            "camera_checked": us_to_iso(row.camera_checked_us) if row.camera_checked_us else None}


def _push(request: web.Request, camera_id: int, *, clear: bool = False) -> None:
    """An ONVIF camera is given the new set to paint (or its old one taken back) meanwhile."""
    runtime = request.app.get(ONVIF)
    if runtime is not None:
        runtime.push_masks(request.app, camera_id, clear=clear)


async def changed(request: web.Request, camera_id: int, version: int | None) -> None:
    await request.app[MASKING].changed(camera_id, version)


@routes.get(PREFIX)
@requires(Permission.INVENTORY_READ)
async def show(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        row = await masks.get(session, cam.id)
        return web.json_response(masks_json(cam.id, row))


@routes.put(PREFIX)
@requires(Permission.ADMIN, body=MasksNew)
async def put(request: web.Request) -> web.Response:
    body = body_of(request, MasksNew)
    async with transaction(request.app[SESSIONS]) as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        row = await masks.set_masks(session, cam, body.polygons, reason=body.reason, by=actor(request))
        shown = masks_json(cam.id, row)
    await changed(request, cam.id, shown["version"])
    _push(request, cam.id)
    return web.json_response(shown)


@routes.post(PREFIX + "/clear")
@requires(Permission.ADMIN, body=MasksClear)
async def clear(request: web.Request) -> web.Response:
    body = body_of(request, MasksClear)
    async with transaction(request.app[SESSIONS]) as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        await masks.clear(session, cam, reason=body.reason, by=actor(request))
    await changed(request, cam.id, None)
    _push(request, cam.id, clear=True)  # an ONVIF camera with Media2 stops painting them
    return web.json_response(masks_json(cam.id, None))


@routes.get("/api/v1/health/masks")
@requires(Permission.FAULTS)
async def health(request: web.Request) -> web.Response:
    """Camera health, privacy masks: per camera with masks, who paints them (the camera, over
    ONVIF Media2, or the service) and why (``camera_state``: unsupported, unreachable, drift)."""
    allowed = await allowed_camera_ids(request)
    async with request.app[SESSIONS]() as session:
        sets = await masks.all_sets(session)
    return web.json_response({"cameras": [
        {k: v for k, v in masks_json(cid, row).items() if k not in ("polygons", "reason")}
        for cid, row in sorted(sets.items()) if allowed is None or cid in allowed]})


@routes.get(PREFIX + "/snapshot.jpg")
@requires(Permission.ADMIN, discloses=Disclosure.FOOTAGE, action="masks.snapshot", produces="image/jpeg",
          pixels=Pixels.LIVE)
async def snapshot(request: web.Request) -> web.Response:
    cam = await _camera(request, "sub")  # the masks in force are painted on the picture by controlroom.masking
    up, viewer = await join(request, cam, "sub")
    try:
        jpeg = await snapshot_jpeg(up)
    finally:
        request.app[LIVE].leave(up, viewer)
    disclosure.note(request, f"camera:{cam.id}", stream="sub", editor=True)
    return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})
