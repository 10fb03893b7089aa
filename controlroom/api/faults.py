"""Camera health over HTTP: the fault log, availability, picture checks.

- ``GET /api/v1/faults?camera=&open=1``: faults, newest first (``open``: not yet repaired).
- ``POST /api/v1/cameras/{camera}/faults`` (``{"kind", "description", "contractor_ref"}``):
  a fault reported by hand.
- ``PATCH /api/v1/faults/{fault}`` (``{"status", "contractor_ref", "description", "note"}``):
  the contractor's reference, reported / repaired / closed (storage.health.TRANSITIONS; a
  change the fault's state does not allow is 409).
- ``GET /api/v1/health/availability?week=2026-W48``: each camera's recorded share of the week
  and of each local day, with its gaps (storage.health.week_availability).
- ``GET /api/v1/health/pictures``: each camera's last picture check (measures and verdict).
- ``DELETE /api/v1/cameras/{camera}/picture-reference``: forget the reference view (after a
  camera was re-aimed on purpose); the next picture that passes becomes the new one.

Rights: ``faults`` (operators, supervisors, administrators) to see and to report a fault;
``faults_manage`` (supervisors, administrators) to manage faults and reference views. What
these answer is about cameras (states, numbers, the contractor's reference), not footage or
members of the public; lists are cut to the caller's cameras (narrowing).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field
from sqlalchemy import select

from controlroom.api.duty import Week
from controlroom.auth import actor, allowed_camera_ids
from controlroom.camera_health import CAMERA_HEALTH
from controlroom.context import SESSIONS, SETTINGS
from controlroom.contract import Body, Flag, Name, Query, Text, body_of, limit, query_of
from controlroom.permissions import Permission, requires
from controlroom.timefmt import us_to_iso
from storage import NotFound, health, inventory
from storage.db import now_us, row_id, transaction
from storage.health import FaultKind, FaultStatus
from storage.models import Camera
from storage.weeks import week_of

routes = web.RouteTableDef()


class FaultsQuery(Query):
    camera: Name | None = Field(None, description="one camera, by id or name")
    open: Flag = Field(False, description="only faults not yet repaired or closed")
    limit: int = limit(200, 1000)


class NewFault(Body):
    kind: FaultKind
    description: Text = ""
    contractor_ref: str | None = Field(None, max_length=200)


class FaultChange(Body):
    status: FaultStatus | None = None
    contractor_ref: str | None = Field(None, max_length=200)
    description: Text | None = None
    note: Text = ""


class AvailabilityQuery(Query):
    week: Week | None = None


def _tz(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.app[SETTINGS].display_timezone)


def fault_json(request: web.Request, fault: health.CameraFault, names: dict[int, str]) -> dict[str, Any]:
    out = fault.to_dict()
    out["camera"] = names.get(fault.camera_id)
    for name in ("opened", "repaired", "closed"):
        us = getattr(fault, f"{name}_at_us")
        out[name], out[f"{name}_local"] = us_to_iso(us), us_to_iso(us, _tz(request))
    ttr = fault.time_to_repair_us
    out["time_to_repair_hours"] = None if ttr is None else round(ttr / 3_600_000_000, 2)
    return out


async def _names(session) -> dict[int, str]:
    return dict((await session.execute(select(Camera.id, Camera.name))).all())


@routes.get("/api/v1/faults")
@requires(Permission.FAULTS, query=FaultsQuery)
async def list_faults(request: web.Request) -> web.Response:
    params = query_of(request, FaultsQuery)
    allowed = await allowed_camera_ids(request)
    async with request.app[SESSIONS]() as session:
        camera_id = (await inventory.get_camera(session, params.camera)).id if params.camera else None
        faults = await health.list_faults(session, camera_id=camera_id, unrepaired_only=params.open,
                                          limit=params.limit)
        names = await _names(session)
    faults = [f for f in faults if allowed is None or f.camera_id in allowed]
    return web.json_response({"faults": [fault_json(request, f, names) for f in faults]})


@routes.post("/api/v1/cameras/{camera}/faults")
@requires(Permission.FAULTS, body=NewFault, status=201)
async def open_fault(request: web.Request) -> web.Response:
    body = body_of(request, NewFault)
    async with transaction(request.app[SESSIONS]) as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
        fault = await health.open_fault(session, actor(request), cam.id, body.kind.value, body.description,
                                        contractor_ref=body.contractor_ref)
        names = {cam.id: cam.name}
    return web.json_response(fault_json(request, fault, names), status=201)


def _fault_id(request: web.Request) -> int | None:
    return row_id(request.match_info["fault"])


async def _fault_cameras(request: web.Request) -> set[int] | None:
    """The camera of the fault in the path (narrowing, controlroom.auth)."""
    fault_id = _fault_id(request)
    async with request.app[SESSIONS]() as session:
        fault = await session.get(health.CameraFault, fault_id) if fault_id else None
    return {fault.camera_id} if fault is not None else None


@routes.patch("/api/v1/faults/{fault}")
@requires(Permission.FAULTS_MANAGE, cameras=_fault_cameras, body=FaultChange)
async def change_fault(request: web.Request) -> web.Response:
    body = body_of(request, FaultChange)
    fault_id = _fault_id(request)
    if fault_id is None:
        raise NotFound(f"no fault {request.match_info['fault'][:40]!r}")
    who = actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        fault = await health.get_fault(session, fault_id)
        if body.contractor_ref is not None or body.description is not None:
            fault = await health.update_fault(session, who, fault_id, contractor_ref=body.contractor_ref,
                                              description=body.description)
        if body.status is not None:
            fault = await health.set_status(session, who, fault_id, body.status.value, note=body.note)
        names = await _names(session)
    return web.json_response(fault_json(request, fault, names))


@routes.get("/api/v1/health/availability")
@requires(Permission.FAULTS, query=AvailabilityQuery)
async def availability(request: web.Request) -> web.Response:
    tz_name = request.app[SETTINGS].display_timezone
    week = query_of(request, AvailabilityQuery).week or week_of(now_us(), tz_name)
    allowed = await allowed_camera_ids(request)
    async with request.app[SESSIONS]() as session:
        rows = await health.week_availability(session, week, tz_name=tz_name,
                                              camera_ids=None if allowed is None else sorted(allowed))
    tz = _tz(request)
    cameras = []
    for row in rows:
        item = row.to_dict()
        for period in item["periods"]:
            period["date"] = us_to_iso(period["start_us"], tz)[:10]
        cameras.append(item)
    return web.json_response({"week": week, "cameras": cameras})


@routes.get("/api/v1/health/pictures")
@requires(Permission.FAULTS)
async def pictures(request: web.Request) -> web.Response:
    allowed = await allowed_camera_ids(request)
    checks = request.app[CAMERA_HEALTH].checks
    return web.json_response({"checks": [
        {**record.to_dict(), **{"at": us_to_iso(record.at_us), "at_local": us_to_iso(record.at_us, _tz(request))}}
        for cam_id, record in sorted(checks.items()) if allowed is None or cam_id in allowed]})


@routes.delete("/api/v1/cameras/{camera}/picture-reference")
@requires(Permission.FAULTS_MANAGE)
async def reset_reference(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        cam = await inventory.get_camera(session, request.match_info["camera"])
    existed = await request.app[CAMERA_HEALTH].clear_reference(cam.id, actor(request))
    return web.json_response({"camera_id": cam.id, "had_reference": existed})
