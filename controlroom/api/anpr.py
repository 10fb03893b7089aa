"""ANPR over HTTP: searches, journeys, images, hotlists, hits. Everything under /api/v1/anpr.

Searches (ANPR_SEARCH) state a ``reason`` and a ``reference`` (e.g. an incident or crime
number) or are refused with 400; each one is audited with its terms and result count:
- ``GET /reads?vrm=AB12*&from=&to=&site=&camera=&limit=&reason=&reference=``: reads, newest
  first, each with its image URLs (``vrm`` takes ``*`` for any run and ``?`` for one character);
- ``GET /reads.csv?...``: the same as CSV (audited as an export);
- ``GET /journeys?from_site=&to_site=&within_s=900&either_direction=1&from=&to=&vrm=&reason=&reference=``;
- ``GET /reads/{id}/plate.jpg`` and ``/overview.jpg``: the images.
Hits (ANPR_ALERTS): ``GET /hits?state=pending``, ``GET /hits/{id}``, ``POST /hits/{id}/confirm`` and
``/dismiss`` (``{"note": ...}``, recorded with who and when, audited), ``GET /hits/{id}/plate.jpg``.
Hotlists (HOTLIST_ADMIN): ``GET|POST /hotlists``, ``GET|PATCH|DELETE /hotlists/{id}``,
``POST /hotlists/{id}/entries``, ``DELETE /hotlists/{id}/entries/{entry}``,
``POST /hotlists/{id}/import?replace=0`` (a CSV body; 400 with per-line errors, nothing imported).
Images are only served through these permission-checked routes; a stored path that would
leave the ANPR folder is refused (storage.anpr.resolve_image).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field

from anpr.hotlist import HotlistImportError, import_csv, parse_entry
from anpr.journeys import Journey, find_journeys
from cameras import masking as paint
from controlroom import disclosure, masking
from controlroom.auth import actor, allowed_camera_ids
from controlroom.context import SESSIONS, SETTINGS
from controlroom.contract import (
    Body,
    Flag,
    Name,
    Query,
    Text,
    Time,
    body_of,
    limit,
    offset,
    query_of,
)
from controlroom.errors import error_response
from controlroom.permissions import Disclosure, Permission, Pixels, requires
from controlroom.timefmt import us_to_iso
from storage import Invalid, NotFound, audit
from storage.anpr import hits as hit_store
from storage.anpr import hotlists as hotlist_store
from storage.anpr import images as image_store
from storage.anpr import reads as read_store
from storage.anpr.models import AnprHit, AnprRead, HitState, Hotlist, HotlistEntry
from storage.db import row_id, transaction
from storage.inventory import get_camera
from storage.text import check_text

routes = web.RouteTableDef()
PREFIX = "/api/v1/anpr"
MAX_TEXT = 500
MAX_CSV_BYTES = 8 * 1024 * 1024
Reason = Annotated[str, Field(max_length=MAX_TEXT)]


class Justified(Query):
    """Every search states why (both are audited with it)."""

    reason: Reason | None = Field(None, description="why this search is made (required)")
    reference: Reason | None = Field(None, description="an incident or crime number (required)")


class ReadsQuery(Justified):
    vrm: Annotated[str, Field(max_length=20)] | None = Field(
        None, description="a registration, or a pattern with * and ? (required)")
    start_us: Time | None = Field(None, alias="from")
    end_us: Time | None = Field(None, alias="to")
    site: list[Name] = Field(default_factory=list, max_length=100)
    camera: Name | None = None
    limit: int = limit(1000, 10_000)
    offset: int = offset()


class JourneysQuery(Justified):
    from_site: Name | None = None
    to_site: Name | None = None
    within_s: float = Field(900, gt=0, le=7 * 86_400, description="longest travel time between the sites")
    either_direction: Flag = False
    start_us: Time | None = Field(None, alias="from")
    end_us: Time | None = Field(None, alias="to")
    vrm: Annotated[str, Field(max_length=20)] | None = None


class HitsQuery(Query):
    state: HitState | None = None
    limit: int = limit(200, 1000)


class HitDecision(Body):
    note: Text | None = None


class HotlistQuery(Query):
    all: Flag = Field(False, description="include removed and expired entries")


class HotlistNew(Body):
    name: Name
    description: Text = ""
    source: Annotated[str, Field(max_length=200)] = ""
    default_priority: int = Field(3, ge=hotlist_store.PRIORITY_MIN, le=hotlist_store.PRIORITY_MAX)


class HotlistChange(Body):
    name: Name | None = None
    description: Text | None = None
    source: Annotated[str, Field(max_length=200)] | None = None
    default_priority: int | None = Field(None, ge=hotlist_store.PRIORITY_MIN, le=hotlist_store.PRIORITY_MAX)
    enabled: bool | None = None


class EntryNew(Body):
    vrm: Annotated[str, Field(min_length=1, max_length=20)]
    reason: Text
    source: Annotated[str, Field(max_length=200)] | None = None
    priority: int | None = Field(None, ge=hotlist_store.PRIORITY_MIN, le=hotlist_store.PRIORITY_MAX)
    expires: Annotated[str, Field(max_length=40, description="ISO 8601 with an offset, or YYYY-MM-DD")]


class ImportQuery(Query):
    replace: Flag = Field(False, description="replace the hotlist's live entries")


# ---------------------------------------------------------------------------------------------
# Shapes


def read_json(r: AnprRead, tz: ZoneInfo, image_base: str | None = None) -> dict[str, Any]:
    base = image_base or f"{PREFIX}/reads/{r.id}"
    return {
        "id": r.id, "vrm": r.vrm, "raw_text": r.raw_text, "format": r.plate_format,
        "confidence": round(r.confidence, 4), "time": us_to_iso(r.read_us), "time_local": us_to_iso(r.read_us, tz),
        "read_us": r.read_us, "camera_id": r.camera_id, "site": r.site_name, "lane": r.lane,
        "direction": r.direction, "box": r.box, "frames": r.frames,
        "plate_url": f"{base}/plate.jpg" if r.plate_path else None,
        "overview_url": f"{base}/overview.jpg" if r.overview_path else None,
    }


def entry_json(e: HotlistEntry) -> dict[str, Any]:
    return {
        "id": e.id, "hotlist_id": e.hotlist_id, "vrm": e.pattern, "is_pattern": e.is_pattern, "reason": e.reason,
        "source": e.source, "priority": e.priority, "expires": us_to_iso(e.expires_us),
        "created": us_to_iso(e.created_us), "created_by": e.created_by, "removed": us_to_iso(e.removed_us),
        "removed_by": e.removed_by,
    }


def hotlist_json(h: Hotlist, live_entries: int | None = None) -> dict[str, Any]:
    out = {
        "id": h.id, "name": h.name, "description": h.description, "source": h.source,
        "default_priority": h.default_priority, "enabled": h.enabled, "created": us_to_iso(h.created_us),
        "created_by": h.created_by,
    }
    if live_entries is not None:
        out["live_entries"] = live_entries
    return out


def hit_json(hit: AnprHit, read: AnprRead, entry: HotlistEntry, hl: Hotlist,
             tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": hit.id, "state": hit.state, "at": us_to_iso(hit.at_us), "at_local": us_to_iso(hit.at_us, tz),
        "vrm": hit.vrm, "priority": hit.priority, "alert_id": hit.alert_id,
        "decided_by": hit.decided_by, "decided": us_to_iso(hit.decided_us), "note": hit.note,
        "hotlist": {"id": hl.id, "name": hl.name},
        "entry": {"id": entry.id, "vrm": entry.pattern, "reason": entry.reason, "source": entry.source,
                  "expires": us_to_iso(entry.expires_us)},
        "read": read_json(read, tz, image_base=f"{PREFIX}/hits/{hit.id}"),
    }


def journey_json(j: Journey, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "vrm": j.vrm, "from_site": j.from_site, "to_site": j.to_site, "from_read_id": j.from_read_id,
        "to_read_id": j.to_read_id, "start": us_to_iso(j.start_us), "end": us_to_iso(j.end_us),
        "start_local": us_to_iso(j.start_us, tz), "end_local": us_to_iso(j.end_us, tz),
        "travel_s": round(j.travel_s, 3),
    }


def _tz(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.app[SETTINGS].display_timezone)


# ---------------------------------------------------------------------------------------------
# Searches


def justification(query: Any) -> tuple[str, str]:
    """The search's reason and reference: both required, or Invalid (400)."""
    reason = (query.get("reason") or "").strip()
    reference = (query.get("reference") or "").strip()
    missing = [n for n, v in (("reason", reason), ("reference", reference)) if not v]
    if missing:
        raise Invalid(f"an ANPR search must state its {' and '.join(missing)} (the search is audited)")
    if len(reason) > MAX_TEXT or len(reference) > MAX_TEXT:
        raise Invalid(f"reason and reference must be at most {MAX_TEXT} characters")
    return reason, reference


async def _read_query(request: web.Request, session) -> read_store.ReadQuery:
    q = query_of(request, ReadsQuery)
    vrm = (q.vrm or "").strip()
    if not vrm:
        raise Invalid("vrm is required: a registration, or a pattern with * and ? (e.g. AB12*, ?B12CDE)")
    camera_id = None
    if q.camera:
        camera_id = (await get_camera(session, q.camera)).id
    return read_store.ReadQuery(pattern=vrm, from_us=q.start_us, to_us=q.end_us, sites=tuple(s for s in q.site if s),
                           camera_id=camera_id, limit=q.limit, offset=q.offset,
                           allowed_camera_ids=await allowed_camera_ids(request))


async def _search(request: web.Request) -> list[AnprRead]:
    reason, reference = justification(query_of(request, ReadsQuery).model_dump())
    async with request.app[SESSIONS]() as session:
        query = await _read_query(request, session)
        reads = await read_store.search_reads(session, query)
    disclosure.note(request, "anpr", reason=reason, reference=reference, results=len(reads), **query.described())
    return reads


async def _read_cameras(request: web.Request) -> set[int] | None:
    """The camera of the read in the path (narrowing, controlroom.auth)."""
    read_id = row_id(request.match_info["read"])
    async with request.app[SESSIONS]() as session:
        read = await session.get(AnprRead, read_id) if read_id else None
    return {read.camera_id} if read is not None and read.camera_id is not None else None


async def _hit_cameras(request: web.Request) -> set[int] | None:
    """The camera of the hit in the path (narrowing, controlroom.auth)."""
    hit_id = row_id(request.match_info["hit"])
    async with request.app[SESSIONS]() as session:
        hit = await session.get(AnprHit, hit_id) if hit_id else None
        read = await session.get(AnprRead, hit.read_id) if hit is not None else None
    return {read.camera_id} if read is not None and read.camera_id is not None else None


@routes.get(f"{PREFIX}/reads")
@requires(Permission.ANPR_SEARCH, discloses=Disclosure.PLATES, action="anpr.search", query=ReadsQuery)
async def search(request: web.Request) -> web.Response:
    reads = await _search(request)
    tz = _tz(request)
    return web.json_response({"count": len(reads), "reads": [read_json(r, tz) for r in reads]})


CSV_FIELDS = ["id", "vrm", "time", "time_local", "site", "lane", "direction", "camera_id", "confidence",
              "format", "raw_text", "plate_url", "overview_url"]


@routes.get(f"{PREFIX}/reads.csv")
@requires(Permission.ANPR_SEARCH, discloses=Disclosure.PLATES, action="anpr.export", query=ReadsQuery,
          produces="text/csv")
async def search_csv(request: web.Request) -> web.Response:
    reads = await _search(request)
    tz = _tz(request)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for r in reads:
        writer.writerow(read_json(r, tz))
    return web.Response(
        text=out.getvalue(), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="anpr-reads.csv"', "Cache-Control": "no-store"},
    )


@routes.get(f"{PREFIX}/journeys")
@requires(Permission.ANPR_SEARCH, discloses=Disclosure.PLATES, action="anpr.journeys", query=JourneysQuery)
async def journeys(request: web.Request) -> web.Response:
    q = query_of(request, JourneysQuery)
    reason, reference = justification(q.model_dump())
    from_site, to_site = (q.from_site or "").strip(), (q.to_site or "").strip()
    if not from_site or not to_site:
        raise Invalid("from_site and to_site are required")
    within_s, either, from_us, to_us = q.within_s, q.either_direction, q.start_us, q.end_us
    vrm = (q.vrm or "").strip() or None
    async with request.app[SESSIONS]() as session:
        found = await find_journeys(session, from_site, to_site, within_s, from_us, to_us, vrm, either,
                                    allowed_camera_ids=await allowed_camera_ids(request))
    disclosure.note(request, "anpr", reason=reason, reference=reference, from_site=from_site, to_site=to_site,
                    within_s=within_s, either_direction=either, from_us=from_us, to_us=to_us, vrm=vrm,
                    results=len(found))
    tz = _tz(request)
    return web.json_response({"count": len(found), "journeys": [journey_json(j, tz) for j in found]})


async def _image_response(request: web.Request, read: AnprRead, which: str) -> web.Response:
    """The picture as bytes (small): an overview is masked by controlroom.masking like any
    picture; a plate crop, whose place in the overview the masks are drawn on, here."""
    disclosure.note(request, f"anpr_read:{read.id}", image=which, vrm=read.vrm, camera_id=read.camera_id)
    root = request.app[SETTINGS].anpr_root
    rel = read.plate_path if which == "plate" else read.overview_path
    body = await asyncio.to_thread(image_store.resolve_image(root, rel).read_bytes)
    mask = masking.due(request, read.camera_id) if which == "plate" and read.camera_id is not None else None
    if mask is not None:
        overview = None
        if read.overview_path:
            with contextlib.suppress(NotFound):
                overview = await asyncio.to_thread(image_store.resolve_image(root, read.overview_path).read_bytes)
        body = await asyncio.to_thread(paint.mask_crop, body, overview, read.box or [], mask.polygons)
    return web.Response(body=body, content_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


def _id(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    found = row_id(raw)
    if found is None:
        raise NotFound(f"no {name} {raw[:40]!r}")
    return found


@routes.get(PREFIX + "/reads/{read}/{image:plate|overview}.jpg")
@requires(Permission.ANPR_SEARCH, discloses=Disclosure.IMAGES, action="anpr.image", cameras=_read_cameras,
          produces="image/jpeg", pixels=Pixels.RECORDED)
async def read_image(request: web.Request) -> web.StreamResponse:
    async with request.app[SESSIONS]() as session:
        read = await read_store.get_read(session, _id(request, "read"))
    return await _image_response(request, read, request.match_info["image"])


# ---------------------------------------------------------------------------------------------
# Hits


async def _hit_row(session, hit_id: int):
    hit = await hit_store.get_hit(session, hit_id)
    read = await read_store.get_read(session, hit.read_id)
    entry = await session.get(HotlistEntry, hit.entry_id)
    hl = await session.get(Hotlist, hit.hotlist_id)
    return hit, read, entry, hl


@routes.get(f"{PREFIX}/hits")
@requires(Permission.ANPR_ALERTS, discloses=Disclosure.PLATES, action="anpr.hits", query=HitsQuery)
async def list_hits(request: web.Request) -> web.Response:
    q = query_of(request, HitsQuery)
    state = q.state.value if q.state else None
    async with request.app[SESSIONS]() as session:
        rows = await hit_store.list_hits(session, state=state, limit=q.limit,
                                     allowed_camera_ids=await allowed_camera_ids(request))
    disclosure.note(request, "anpr", state=state, results=len(rows))
    tz = _tz(request)
    return web.json_response({"hits": [hit_json(*row, tz) for row in rows]})


@routes.get(PREFIX + "/hits/{hit}")
@requires(Permission.ANPR_ALERTS, discloses=Disclosure.PLATES, action="anpr.hit.view", cameras=_hit_cameras)
async def show_hit(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        row = await _hit_row(session, _id(request, "hit"))
    disclosure.note(request, f"anpr_hit:{row[0].id}", vrm=row[0].vrm)
    return web.json_response(hit_json(*row, _tz(request)))


@routes.post(PREFIX + "/hits/{hit}/{decision:confirm|dismiss}")
@requires(Permission.ANPR_ALERTS, cameras=_hit_cameras, body=HitDecision)
async def decide_hit(request: web.Request) -> web.Response:
    note = (body_of(request, HitDecision).note or "").strip()
    decision = request.match_info["decision"]
    state = HitState.CONFIRMED if decision == "confirm" else HitState.DISMISSED
    who = actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        hit = await hit_store.decide_hit(session, _id(request, "hit"), state, who, note)
        await audit.append(session, who, f"anpr.hit.{decision}", f"anpr_hit:{hit.id}", vrm=hit.vrm,
                           read_id=hit.read_id, entry_id=hit.entry_id, note=note)
        row = await _hit_row(session, hit.id)
    return web.json_response(hit_json(*row, _tz(request)))


@routes.get(PREFIX + "/hits/{hit}/{image:plate|overview}.jpg")
@requires(Permission.ANPR_ALERTS, discloses=Disclosure.IMAGES, action="anpr.hit.image", cameras=_hit_cameras,
          produces="image/jpeg", pixels=Pixels.RECORDED)
async def hit_image(request: web.Request) -> web.StreamResponse:
    async with request.app[SESSIONS]() as session:
        hit = await hit_store.get_hit(session, _id(request, "hit"))
        read = await read_store.get_read(session, hit.read_id)
    return await _image_response(request, read, request.match_info["image"])


# ---------------------------------------------------------------------------------------------
# Hotlists


@routes.get(f"{PREFIX}/hotlists")
@requires(Permission.HOTLIST_ADMIN)
async def list_hotlists(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        rows = await hotlist_store.list_hotlists(session)
    return web.json_response({"hotlists": [hotlist_json(h, n) for h, n in rows]})


@routes.post(f"{PREFIX}/hotlists")
@requires(Permission.HOTLIST_ADMIN, body=HotlistNew, status=201)
async def add_hotlist(request: web.Request) -> web.Response:
    new = body_of(request, HotlistNew)
    who = actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        hl = await hotlist_store.add_hotlist(session, new.name, description=new.description, source=new.source,
                                     default_priority=new.default_priority, created_by=who)
        await audit.append(session, who, "hotlist.add", f"hotlist:{hl.id}", name=hl.name, source=hl.source)
    return web.json_response(hotlist_json(hl, 0), status=201)


@routes.get(PREFIX + "/hotlists/{hotlist}")
@requires(Permission.HOTLIST_ADMIN, query=HotlistQuery)
async def show_hotlist(request: web.Request) -> web.Response:
    include = query_of(request, HotlistQuery).all
    async with request.app[SESSIONS]() as session:
        hl = await hotlist_store.get_hotlist(session, request.match_info["hotlist"])
        entries = await hotlist_store.list_entries(session, hl.id, include_inactive=include)
    out = hotlist_json(hl)
    out["entries"] = [entry_json(e) for e in entries]
    return web.json_response(out)


@routes.patch(PREFIX + "/hotlists/{hotlist}")
@requires(Permission.HOTLIST_ADMIN, body=HotlistChange)
async def update_hotlist(request: web.Request) -> web.Response:
    body = body_of(request, HotlistChange).model_dump(exclude_unset=True, exclude_none=True)
    who = actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        hl = await hotlist_store.update_hotlist(session, request.match_info["hotlist"], **body)
        await audit.append(session, who, "hotlist.update", f"hotlist:{hl.id}", fields=sorted(body))
    return web.json_response(hotlist_json(hl))


@routes.delete(PREFIX + "/hotlists/{hotlist}")
@requires(Permission.HOTLIST_ADMIN)
async def remove_hotlist(request: web.Request) -> web.Response:
    who = actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        hl = await hotlist_store.remove_hotlist(session, request.match_info["hotlist"])
        await audit.append(session, who, "hotlist.remove", f"hotlist:{hl.id}", name=hl.name)
    return web.json_response({"removed": hl.id})


@routes.post(PREFIX + "/hotlists/{hotlist}/entries")
@requires(Permission.HOTLIST_ADMIN, body=EntryNew, status=201)
async def add_entry(request: web.Request) -> web.Response:
    body = body_of(request, EntryNew).model_dump(exclude_none=True)
    who = actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        hl = await hotlist_store.get_hotlist(session, request.match_info["hotlist"])
        (entry,) = await hotlist_store.add_entries(session, hl.id, [parse_entry(body, hl)], created_by=who)
        await audit.append(session, who, "hotlist.entry.add", f"hotlist:{hl.id}", entry_id=entry.id,
                           vrm=entry.pattern, reason=entry.reason, source=entry.source, expires_us=entry.expires_us)
    return web.json_response(entry_json(entry), status=201)


@routes.delete(PREFIX + "/hotlists/{hotlist}/entries/{entry}")
@requires(Permission.HOTLIST_ADMIN)
async def remove_entry(request: web.Request) -> web.Response:
    who = actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        hl = await hotlist_store.get_hotlist(session, request.match_info["hotlist"])
        entry = await hotlist_store.remove_entry(session, hl.id, _id(request, "entry"), who)
        await audit.append(session, who, "hotlist.entry.remove", f"hotlist:{hl.id}", entry_id=entry.id,
                           vrm=entry.pattern)
    return web.json_response(entry_json(entry))


@routes.post(PREFIX + "/hotlists/{hotlist}/import")
@requires(Permission.HOTLIST_ADMIN, query=ImportQuery)
async def import_entries(request: web.Request) -> web.Response:
    if request.content_length and request.content_length > MAX_CSV_BYTES:
        raise Invalid(f"the CSV file is larger than {MAX_CSV_BYTES} bytes")
    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the CSV file is not UTF-8 text") from None
    check_text(text, "the CSV file")
    replace = query_of(request, ImportQuery).replace
    who = actor(request)
    try:
        async with transaction(request.app[SESSIONS]) as session:
            hl = await hotlist_store.get_hotlist(session, request.match_info["hotlist"])
            result = await import_csv(session, hl, text, who, replace=replace)
            await audit.append(session, who, "hotlist.import", f"hotlist:{hl.id}", added=result.added,
                               replaced=result.replaced)
    except HotlistImportError as exc:
        return error_response(400, str(exc), errors=[{"line": n, "error": m} for n, m in exc.errors])
    return web.json_response({"added": result.added, "replaced": result.replaced})
