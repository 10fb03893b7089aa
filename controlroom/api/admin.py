"""What the administration screens need beyond the camera, user and audit routes: sites, legal
holds and the system's health in detail.

Routes::

    GET  /api/v1/sites                      sites with their camera counts (administrators)
    POST /api/v1/sites                      {name, location?, notes?}
    GET  /api/v1/holds?all=1                holds (supervisors: HOLDS); released ones with all=1
    POST /api/v1/holds                      {reason, reference?, review, from, to, cameras: [id]}
    POST /api/v1/holds/{hold}/release
    GET  /api/v1/system                     disks, recorders, database, retention settings (administrators)

A hold keeps footage past retention (storage/holds.py): its owner is the supervisor who places
it. A narrowed supervisor places and sees holds on their own cameras only; a hold on every
camera is for un-narrowed supervisors. Every change is audited in the same transaction.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import func, select, text

from controlroom import disclosure
from controlroom.auth import actor, allowed_camera_ids
from controlroom.context import SESSIONS, SETTINGS, SUPERVISOR
from controlroom.contract import Body, Flag, Name, Query, RowId, Text, Time, body_of, query_of
from controlroom.errors import Forbidden
from controlroom.permissions import Disclosure, Permission, requires
from controlroom.timefmt import us_to_iso
from storage import Invalid, NotFound, audit, holds, inventory, nodes
from storage.db import transaction
from storage.models import Camera, Hold, Site

routes = web.RouteTableDef()
DB_TIMEOUT_S = 2.0  # as /healthz: a database slower than this is reported, not waited for


class SiteCreate(Body):
    name: Name
    location: Text = ""
    notes: Text = ""


class HoldsQuery(Query):
    all: Flag = Field(False, description="include released holds")


class HoldCreate(Body):
    reason: Text = Field(min_length=1)
    reference: Name | None = None
    review_us: Time = Field(alias="review", description="when the hold is to be reviewed")
    start_us: Time = Field(alias="from")
    end_us: Time = Field(alias="to")
    cameras: list[RowId] = Field(default_factory=list, max_length=1000,
                                 description="camera ids; none means every camera")


def hold_json(h: Hold, names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": h.id, "reason": h.reason, "owner": h.owner, "reference": h.reference,
        "review": us_to_iso(h.review_us), "created": us_to_iso(h.created_us),
        "released": us_to_iso(h.released_us), "released_by": h.released_by,
        "windows": [{"camera_id": w.camera_id, "camera": names.get(w.camera_id) if w.camera_id else None,
                     "from": us_to_iso(w.start_us), "to": us_to_iso(w.end_us)} for w in h.windows],
    }


def _within(h: Hold, allowed: frozenset[int] | None) -> bool:
    """Whether every window of the hold is on a camera the user may reach."""
    return allowed is None or all(w.camera_id is not None and w.camera_id in allowed for w in h.windows)


def _hold_id(request: web.Request) -> int:
    ref = request.match_info["hold"]
    if not ref.isascii() or not ref.isdigit() or len(ref) > 18:
        raise NotFound(f"no hold {ref!r}")
    return int(ref)


async def _hold_cameras(request: web.Request) -> set[int] | None:
    """The cameras a hold covers (every camera for a window without one); None: no such hold."""
    try:
        hold_id = _hold_id(request)
    except NotFound:
        return None
    async with request.app[SESSIONS]() as session:
        hold = await session.get(Hold, hold_id)
        if hold is None:
            return None
        if any(w.camera_id is None for w in hold.windows):
            return set((await session.execute(select(Camera.id))).scalars())
        return {w.camera_id for w in hold.windows if w.camera_id is not None}


@routes.get("/api/v1/sites")
@requires(Permission.ADMIN)
async def list_sites(request: web.Request) -> web.Response:
    """The sites; to a narrowed user, only the sites of the cameras they may reach, counting those."""
    allowed = await allowed_camera_ids(request)
    counted = select(Camera.site_id, func.count()).group_by(Camera.site_id)
    if allowed is not None:
        counted = counted.where(Camera.id.in_(allowed))
    async with request.app[SESSIONS]() as session:
        sites = await inventory.list_sites(session)
        counts = dict((await session.execute(counted)).all())
    return web.json_response({"sites": [
        {"id": s.id, "name": s.name, "location": s.location, "notes": s.notes, "cameras": counts.get(s.id, 0)}
        for s in sites if allowed is None or s.id in counts]})


@routes.post("/api/v1/sites")
@requires(Permission.ADMIN, body=SiteCreate, status=201)
async def add_site(request: web.Request) -> web.Response:
    spec = body_of(request, SiteCreate)
    async with transaction(request.app[SESSIONS]) as session:
        if await session.scalar(select(func.count()).where(Site.name == spec.name)):
            raise Invalid(f"name: a site named {spec.name!r} already exists")
        site = await inventory.add_site(session, inventory.SiteSpec(name=spec.name, location=spec.location,
                                                                   notes=spec.notes))
        await audit.append(session, actor(request), "site.add", f"site:{site.id}", name=site.name)
    return web.json_response({"id": site.id, "name": site.name, "location": site.location, "notes": site.notes,
                              "cameras": 0}, status=201)


@routes.get("/api/v1/holds")
@requires(Permission.HOLDS, discloses=Disclosure.PERSONAL, action="hold.list", query=HoldsQuery)
async def list_holds(request: web.Request) -> web.Response:
    """Holds with their reason, owner and reference (a crime or request reference): a work
    record that can name people, so reading it is audited."""
    allowed = await allowed_camera_ids(request)
    async with request.app[SESSIONS]() as session:
        rows = await holds.list_holds(session, include_released=query_of(request, HoldsQuery).all)
        names = await _camera_names(session)
    shown = [hold_json(h, names) for h in rows if _within(h, allowed)]
    disclosure.note(request, "holds", returned=len(shown))
    return web.json_response({"holds": shown})


async def _camera_names(session) -> dict[int, str]:
    return dict((await session.execute(select(Camera.id, Camera.name))).all())


@routes.post("/api/v1/holds")
@requires(Permission.HOLDS, body=HoldCreate, status=201)
async def place_hold(request: web.Request) -> web.Response:
    new = body_of(request, HoldCreate)
    if new.end_us <= new.start_us:
        raise Invalid("to: the end must be after the start")
    allowed = await allowed_camera_ids(request)
    if allowed is not None and (not new.cameras or set(new.cameras) - allowed):
        raise Forbidden("a hold may cover only the cameras you are limited to")
    async with transaction(request.app[SESSIONS]) as session:
        names = await _camera_names(session)
        unknown = sorted(set(new.cameras) - set(names))
        if unknown:
            raise NotFound(f"cameras: no camera {', '.join(map(str, unknown))}")
        windows = [(c, new.start_us, new.end_us) for c in sorted(set(new.cameras))] or [(None, new.start_us, new.end_us)]
        hold = await holds.add_hold(session, reason=new.reason, owner=actor(request), review_us=new.review_us,
                                    windows=windows, reference=new.reference or "")
        await audit.append(session, actor(request), "hold.add", f"hold:{hold.id}", reason=new.reason,
                           owner=hold.owner, cameras=sorted(set(new.cameras)) or None,
                           start=us_to_iso(new.start_us), end=us_to_iso(new.end_us), reference=hold.reference)
        body = hold_json(hold, names)
    return web.json_response(body, status=201)


@routes.post("/api/v1/holds/{hold}/release")
@requires(Permission.HOLDS, cameras=_hold_cameras)
async def release_hold(request: web.Request) -> web.Response:
    hold_id = _hold_id(request)
    async with transaction(request.app[SESSIONS]) as session:
        hold = await holds.release_hold(session, hold_id, actor(request))
        await audit.append(session, actor(request), "hold.release", f"hold:{hold.id}", by=actor(request))
        body = hold_json(hold, await _camera_names(session))
    return web.json_response(body)


def _disk_usage(root: Path, floor_bytes: int) -> dict[str, Any]:
    """Space on the disk that holds ``root`` (measured at its nearest existing folder: the
    recordings folder is made by the first recorder)."""
    where = root
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    out: dict[str, Any] = {"total_bytes": usage.total, "used_bytes": usage.used, "free_bytes": usage.free,
                           "low": usage.free < floor_bytes}
    if where != root:
        out["problem"] = "the folder does not exist yet (nothing recorded)"
    return out


async def _database(request: web.Request) -> dict[str, Any]:
    started = time.monotonic()
    try:
        async with asyncio.timeout(DB_TIMEOUT_S), request.app[SESSIONS]() as session:
            await session.execute(text("SELECT 1"))
            dialect = session.get_bind().dialect.name
            version = await session.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception as exc:  # noqa: BLE001 - reported on the screen, not raised
        return {"ok": False, "problem": f"the database did not answer: {type(exc).__name__}"}
    return {"ok": True, "dialect": dialect, "schema": version, "answer_ms": round((time.monotonic() - started) * 1000, 1)}


@routes.get("/api/v1/system")
@requires(Permission.ADMIN)
async def system(request: web.Request) -> web.Response:
    """The disks, the recorders, the nodes of the cluster (one, ``local`` or its id, on a single
    machine: state running, lost or stopped, leases held), the database and the retention
    settings, for the administrator's system screen (the public /healthz gives the verdict only)."""
    settings = request.app[SETTINGS]
    supervisor = request.app.get(SUPERVISOR)
    root = settings.storage_root
    disk: dict[str, Any] = {"name": "recordings", "path": str(root), "floor_bytes": settings.retention.free_space_floor_bytes}
    try:
        disk |= await asyncio.to_thread(_disk_usage, root, settings.retention.free_space_floor_bytes)
    except OSError as exc:
        disk |= {"problem": f"cannot read the disk: {exc.strerror}", "low": None}
    allowed = await allowed_camera_ids(request)
    recorders: list[dict[str, Any]] = []
    node_rows: list[dict[str, Any]] = []
    db = await _database(request)
    if db["ok"]:
        async with request.app[SESSIONS]() as session:
            cams = await inventory.list_cameras(session)
            sites = await inventory.site_names(session)
            found = await nodes.list_nodes(session, settings.cluster.lease_ttl_s)
            now = await nodes.db_now_us(session)
        node_rows = [{
            "id": n.id, "roles": list(n.roles), "state": n.state, "host": n.host, "pid": n.pid,
            "cameras": n.cameras, "capacity": n.capacity, "anpr_cameras": n.anpr_cameras,
            "anpr_capacity": n.anpr_capacity, "last_heartbeat": us_to_iso(n.heartbeat_us),
            "heartbeat_s_ago": round((now - n.heartbeat_us) / 1e6, 1),
        } for n in found]
        running = supervisor.recorders if supervisor is not None else {}
        problems = supervisor.problems if supervisor is not None else {}
        for cam in cams:
            if allowed is not None and cam.id not in allowed:
                continue
            recorders.append({
                "camera_id": cam.id, "camera": cam.name, "site": sites.get(cam.site_id) if cam.site_id else None,
                "enabled": cam.enabled, "recording": cam.recording, "running": cam.id in running,
                "state": cam.state, "state_reason": cam.state_reason, "last_segment": us_to_iso(cam.last_segment_us),
                "problem": problems.get(cam.id), "retention_days": cam.retention_days,
            })
    return web.json_response({
        "disks": [disk],
        "database": db,
        "recorders": recorders,
        "nodes": node_rows,
        "recording_supervised": supervisor is not None,
        "notes": [{"component": k, "reason": v} for k, v in sorted((supervisor.notes if supervisor else {}).items())],
        "retention": {"default_days": settings.retention.default_days,
                      "free_space_floor_bytes": settings.retention.free_space_floor_bytes},
    })
