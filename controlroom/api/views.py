"""Views: named layouts and camera tours shared by site or team, and site maps with camera pins.

Routes::

    GET    /api/v1/views                    the layouts and tours the caller may use
    POST   /api/v1/views                    {name, kind, scope, site?, layout?, tiles?, steps?, dwell_s?, target?}
    PUT    /api/v1/views/{view}             the same body: replaces the view
    DELETE /api/v1/views/{view}
    GET    /api/v1/maps                     site plans with their pins (no picture)
    POST   /api/v1/maps?name=&site=         the body is the PNG or JPEG picture itself
    GET    /api/v1/maps/{map}/image         the picture
    PUT    /api/v1/maps/{map}/pins          {pins: [{camera, x, y}]}: x, y are fractions of the picture
    DELETE /api/v1/maps/{map}

Rights (docs/design/ui.md, "Views, tours and the map"): anyone with live view saves their own
views (``scope`` ``own``) and uses the shared ones; sharing a view with a site or the team, and
uploading maps and placing pins, need VIEWS_SHARE (supervisors). A view is changed or removed
by its owner, or, once shared, by any holder of VIEWS_SHARE.

Narrowing: a shared view shows only the cameras its viewer may see (another camera's tile is
empty, its tour step left out); a view shared with a site is listed to users of that site
only; a map of a site likewise, with the pins of the caller's cameras. A view or pin list may
only be saved with cameras the saver can see, and a view holding cameras the editor cannot see
is not theirs to change. Every change is audited in its transaction.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any, Literal

from aiohttp import web
from pydantic import Field, model_validator
from sqlalchemy import select

from controlroom.auth import actor, allowed_camera_ids, current_user
from controlroom.context import SESSIONS
from controlroom.contract import Body, Name, Query, RowId, body_of, query_of
from controlroom.errors import Forbidden
from controlroom.permissions import Permission, requires
from controlroom.timefmt import us_to_iso
from storage import Invalid, NotFound, audit
from storage import views as store
from storage.db import now_us, row_id, transaction
from storage.models import Camera, Site

routes = web.RouteTableDef()
LAYOUTS = (1, 4, 9, 16)
MAX_STEPS = 64
MAX_MAP_BYTES = 5 * 1024 * 1024  # a site plan, not a satellite mosaic
MAX_MAP_PIXELS = 40_000_000  # refused before decoding: a small file can claim a huge picture
MAX_PINS = 500
MAP_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}


class TourStep(Body):
    camera: RowId | None = None
    view: RowId | None = Field(None, description="a layout view shown whole for this step")

    @model_validator(mode="after")
    def one_of(self) -> TourStep:
        if (self.camera is None) == (self.view is None):
            raise ValueError("a tour step names a camera or a layout view, not both or neither")
        return self


class ViewSave(Body):
    name: Name
    kind: Literal["layout", "tour"] = "layout"
    scope: Literal["own", "site", "team"] = "own"
    site: RowId | None = Field(None, description="the site a view shared by site is for")
    layout: Literal[1, 4, 9, 16] = 4
    tiles: list[RowId | None] = Field(default_factory=list, max_length=16,
                                      description="camera of each tile, left to right, top to bottom")
    steps: list[TourStep] = Field(default_factory=list, max_length=MAX_STEPS)
    dwell_s: int = Field(10, ge=3, le=600, description="seconds each step of a tour is shown")
    target: Literal["tile", "grid"] = Field("grid", description="a tour runs in one tile or the whole grid")

    @model_validator(mode="after")
    def consistent(self) -> ViewSave:
        if self.scope == "site" and self.site is None:
            raise ValueError("site: a view shared by site names the site")
        if self.kind == "layout" and len(self.tiles) > self.layout:
            raise ValueError(f"tiles: a layout of {self.layout} tiles has at most {self.layout} cameras")
        if self.kind == "tour" and not self.steps:
            raise ValueError("steps: a tour needs at least one camera or layout")
        return self


class MapUpload(Query):
    name: Name
    site: RowId | None = None


class Pin(Body):
    camera: RowId
    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)


class PinsSave(Body):
    pins: list[Pin] = Field(max_length=MAX_PINS)


def _id(request: web.Request, name: str, what: str) -> int:
    value = row_id(request.match_info[name])
    if value is None:
        raise NotFound(f"no {what} {request.match_info[name][:40]!r}")
    return value


async def _site_cameras(session, site_id: int) -> set[int]:
    return set((await session.execute(select(Camera.id).where(Camera.site_id == site_id))).scalars())


async def _may_see_site(request: web.Request, session, site_id: int | None) -> bool:
    """Whether a view or map of ``site_id`` (None: of no site) is for this user."""
    allowed = await allowed_camera_ids(request)
    if allowed is None or site_id is None:
        return True
    return site_id in current_user(request).site_ids or bool(allowed & await _site_cameras(session, site_id))


def _cameras_of(spec: dict[str, Any]) -> set[int]:
    ids = {c for c in spec.get("tiles", []) if c}
    ids |= {s["camera"] for s in spec.get("steps", []) if s.get("camera")}
    return ids


def _narrowed(spec: dict[str, Any], allowed: frozenset[int] | None) -> dict[str, Any]:
    if allowed is None:
        return spec
    out = dict(spec)
    if "tiles" in out:
        out["tiles"] = [c if c in allowed else None for c in out["tiles"]]
    if "steps" in out:
        out["steps"] = [s for s in out["steps"] if not s.get("camera") or s["camera"] in allowed]
    return out


def view_json(v: store.View, allowed: frozenset[int] | None, sites: dict[int, str]) -> dict[str, Any]:
    return {"id": v.id, "name": v.name, "kind": v.kind, "owner": v.owner, "scope": v.scope,
            "site": v.site_id, "site_name": sites.get(v.site_id) if v.site_id else None,
            **_narrowed(v.spec, allowed), "updated": us_to_iso(v.updated_us)}


async def _site_names(session) -> dict[int, str]:
    return dict((await session.execute(select(Site.id, Site.name))).all())


@routes.get("/api/v1/views")
@requires(Permission.LIVE_VIEW)
async def list_views(request: web.Request) -> web.Response:
    """The caller's own views and the views shared with their site or the team; ``sites``: the
    sites the caller may share with (theirs)."""
    me, allowed = actor(request), await allowed_camera_ids(request)
    async with request.app[SESSIONS]() as session:
        shown = [v for v in await store.list_views(session)
                 if v.owner == me or v.scope == "team" or (v.scope == "site" and await _may_see_site(request, session, v.site_id))]
        sites = await _site_names(session)
        theirs = [{"id": i, "name": n} for i, n in sorted(sites.items(), key=lambda s: s[1])
                  if await _may_see_site(request, session, i)]
    return web.json_response({"views": [view_json(v, allowed, sites) for v in shown], "sites": theirs})


async def _checked_spec(request: web.Request, session, new: ViewSave) -> dict[str, Any]:
    """The view's content after the checks that need the database and the caller's rights."""
    user = current_user(request)
    if new.scope != "own" and not user.can(Permission.VIEWS_SHARE):
        raise Forbidden("sharing a view with a site or the team is for supervisors (views_share)")
    if new.site is not None and await session.get(Site, new.site) is None:
        raise Invalid(f"site: no site {new.site}")
    if new.scope == "site" and not await _may_see_site(request, session, new.site):
        raise Forbidden(f"site {new.site} is outside your sites")
    if new.kind == "layout":
        spec: dict[str, Any] = {"layout": new.layout, "tiles": list(new.tiles) + [None] * (new.layout - len(new.tiles))}
    else:
        spec = {"dwell_s": new.dwell_s, "target": new.target,
                "steps": [{"camera": s.camera} if s.camera else {"view": s.view} for s in new.steps]}
        for s in new.steps:
            if s.view is not None:
                layout = await session.get(store.View, s.view)
                if layout is None or layout.kind != "layout":
                    raise Invalid(f"steps: no layout view {s.view}")
    cameras = _cameras_of(spec)
    known = set((await session.execute(select(Camera.id).where(Camera.id.in_(sorted(cameras))))).scalars())
    if cameras - known:
        raise Invalid(f"no camera {min(cameras - known)}")
    allowed = await allowed_camera_ids(request)
    if allowed is not None and cameras - allowed:
        raise Forbidden(f"camera {min(cameras - allowed)} is outside your sites and cameras")
    return spec


@routes.post("/api/v1/views")
@requires(Permission.LIVE_VIEW, body=ViewSave, status=201)
async def add_view(request: web.Request) -> web.Response:
    new, who = body_of(request, ViewSave), actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        spec = await _checked_spec(request, session, new)
        now = now_us()
        view = store.View(name=new.name, kind=new.kind, owner=who, scope=new.scope,
                          site_id=new.site if new.scope == "site" else None, spec=spec, created_us=now, updated_us=now)
        session.add(view)
        await session.flush()
        await audit.append(session, who, "view.add", f"view:{view.id}", name=view.name, kind=view.kind,
                           scope=view.scope, site_id=view.site_id)
        sites = await _site_names(session)
    return web.json_response(view_json(view, await allowed_camera_ids(request), sites), status=201)


async def _editable(request: web.Request, session, view_id: int) -> store.View:
    view = await store.get_view(session, view_id)
    user = current_user(request)
    mine = view.owner == user.username
    if not mine and not await _visible(request, session, view):
        raise NotFound(f"no view {view_id}")
    if not mine and not (view.scope != "own" and user.can(Permission.VIEWS_SHARE)):
        raise Forbidden(f"view {view_id} is {view.owner}'s: only its owner or a supervisor changes a shared view")
    allowed = await allowed_camera_ids(request)
    if allowed is not None and _cameras_of(view.spec) - allowed:
        raise Forbidden(f"view {view_id} shows cameras outside your sites and cameras: ask its owner")
    return view


async def _visible(request: web.Request, session, view: store.View) -> bool:
    return view.scope == "team" or (view.scope == "site" and await _may_see_site(request, session, view.site_id))


@routes.put("/api/v1/views/{view}")
@requires(Permission.LIVE_VIEW, body=ViewSave)
async def replace_view(request: web.Request) -> web.Response:
    new, who = body_of(request, ViewSave), actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        view = await _editable(request, session, _id(request, "view", "view"))
        spec = await _checked_spec(request, session, new)
        view.name, view.kind, view.scope, view.spec = new.name, new.kind, new.scope, spec
        view.site_id, view.updated_us = (new.site if new.scope == "site" else None), now_us()
        await audit.append(session, who, "view.change", f"view:{view.id}", name=view.name, kind=view.kind,
                           scope=view.scope, site_id=view.site_id, owner=view.owner)
        sites = await _site_names(session)
    return web.json_response(view_json(view, await allowed_camera_ids(request), sites))


@routes.delete("/api/v1/views/{view}")
@requires(Permission.LIVE_VIEW)
async def remove_view(request: web.Request) -> web.Response:
    who = actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        view = await _editable(request, session, _id(request, "view", "view"))
        await session.delete(view)
        await audit.append(session, who, "view.remove", f"view:{view.id}", name=view.name, owner=view.owner)
    return web.json_response({"removed": view.id})


# --- site maps ------------------------------------------------------------------------------------

def map_json(m: store.SiteMap, allowed: frozenset[int] | None, sites: dict[int, str]) -> dict[str, Any]:
    pins = [p for p in m.pins if allowed is None or p["camera"] in allowed]
    return {"id": m.id, "name": m.name, "site": m.site_id, "site_name": sites.get(m.site_id) if m.site_id else None,
            "width": m.width, "height": m.height, "media_type": m.media_type, "pins": pins,
            "created_by": m.created_by, "updated": us_to_iso(m.updated_us)}


def decode_picture(raw: bytes) -> tuple[str, int, int]:
    """(media type, width, height) of a PNG or JPEG picture, decoded whole to prove it is one;
    Invalid with the reason otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as img:
            kind = img.format or ""
            if kind not in MAP_TYPES:
                raise Invalid(f"the map must be a PNG or JPEG picture, not {kind or 'this file'}")
            width, height = img.size
            if width * height > MAX_MAP_PIXELS:
                raise Invalid(f"the picture is {width}x{height}: at most {MAX_MAP_PIXELS // 1_000_000} megapixels")
            img.load()  # decodes every pixel: a truncated or corrupt file fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise Invalid(f"the file is not a readable PNG or JPEG picture ({type(exc).__name__})") from None
    return MAP_TYPES[kind], width, height


async def _visible_map(request: web.Request, session, map_id: int) -> store.SiteMap:
    site_map = await store.get_map(session, map_id)
    if not await _may_see_site(request, session, site_map.site_id):
        raise NotFound(f"no map {map_id}")
    return site_map


@routes.get("/api/v1/maps")
@requires(Permission.LIVE_VIEW)
async def list_maps(request: web.Request) -> web.Response:
    allowed = await allowed_camera_ids(request)
    async with request.app[SESSIONS]() as session:
        shown = [m for m in await store.list_maps(session) if await _may_see_site(request, session, m.site_id)]
        sites = await _site_names(session)
    return web.json_response({"maps": [map_json(m, allowed, sites) for m in shown]})


@routes.post("/api/v1/maps")
@requires(Permission.VIEWS_SHARE, query=MapUpload, status=201)
async def add_map(request: web.Request) -> web.Response:
    params, who = query_of(request, MapUpload), actor(request)
    if request.content_length and request.content_length > MAX_MAP_BYTES:
        raise Invalid(f"the picture is larger than {MAX_MAP_BYTES // (1024 * 1024)} MB")
    raw = await request.read()
    if not raw:
        raise Invalid("send the PNG or JPEG picture as the request's body")
    if len(raw) > MAX_MAP_BYTES:
        raise Invalid(f"the picture is larger than {MAX_MAP_BYTES // (1024 * 1024)} MB")
    media_type, width, height = await asyncio.to_thread(decode_picture, raw)
    async with transaction(request.app[SESSIONS]) as session:
        if params.site is not None:
            if await session.get(Site, params.site) is None:
                raise Invalid(f"site: no site {params.site}")
            if not await _may_see_site(request, session, params.site):
                raise Forbidden(f"site {params.site} is outside your sites")
        now = now_us()
        site_map = store.SiteMap(name=params.name, site_id=params.site, media_type=media_type, width=width,
                                 height=height, image=raw, pins=[], created_by=who, created_us=now, updated_us=now)
        session.add(site_map)
        await session.flush()
        await audit.append(session, who, "map.add", f"map:{site_map.id}", name=site_map.name, site_id=site_map.site_id,
                           bytes=len(raw), width=width, height=height)
        sites = await _site_names(session)
    return web.json_response(map_json(site_map, await allowed_camera_ids(request), sites), status=201)


@routes.get("/api/v1/maps/{map}/image")
@requires(Permission.LIVE_VIEW, produces="image/*")  # PNG or JPEG, as uploaded
async def map_image(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        site_map = await _visible_map(request, session, _id(request, "map", "map"))
        body, media_type = site_map.image, site_map.media_type
    return web.Response(body=body, content_type=media_type, headers={"Cache-Control": "private, max-age=300"})


@routes.put("/api/v1/maps/{map}/pins")
@requires(Permission.VIEWS_SHARE, body=PinsSave)
async def place_pins(request: web.Request) -> web.Response:
    """Replaces the pins of the caller's cameras; pins of cameras outside a narrowed caller's
    sites stay where they were."""
    new, who = body_of(request, PinsSave), actor(request)
    allowed = await allowed_camera_ids(request)
    cameras = [p.camera for p in new.pins]
    if len(set(cameras)) != len(cameras):
        raise Invalid("pins: a camera is pinned once per map")
    async with transaction(request.app[SESSIONS]) as session:
        site_map = await _visible_map(request, session, _id(request, "map", "map"))
        known = set((await session.execute(select(Camera.id).where(Camera.id.in_(sorted(set(cameras)))))).scalars())
        if set(cameras) - known:
            raise Invalid(f"pins: no camera {min(set(cameras) - known)}")
        if allowed is not None and set(cameras) - allowed:
            raise Forbidden(f"camera {min(set(cameras) - allowed)} is outside your sites and cameras")
        kept = [p for p in site_map.pins if allowed is not None and p["camera"] not in allowed]
        site_map.pins = kept + [{"camera": p.camera, "x": round(p.x, 5), "y": round(p.y, 5)} for p in new.pins]
        site_map.updated_us = now_us()
        await audit.append(session, who, "map.pins", f"map:{site_map.id}", name=site_map.name, pins=len(site_map.pins))
        sites = await _site_names(session)
        out = map_json(site_map, allowed, sites)
    return web.json_response(out)


@routes.delete("/api/v1/maps/{map}")
@requires(Permission.VIEWS_SHARE)
async def remove_map(request: web.Request) -> web.Response:
    who = actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        site_map = await _visible_map(request, session, _id(request, "map", "map"))
        allowed = await allowed_camera_ids(request)
        if allowed is not None and {p["camera"] for p in site_map.pins} - allowed:
            raise Forbidden(f"map {site_map.id} has pins of cameras outside your sites and cameras")
        await session.delete(site_map)
        await audit.append(session, who, "map.remove", f"map:{site_map.id}", name=site_map.name)
    return web.json_response({"removed": site_map.id})
