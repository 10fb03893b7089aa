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
leave the ANPR folder is refused (storage.anpr.images.resolve_image).
"""

from __future__ import annotations

import csv
import io
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from anpr.hotlist import HotlistImportError, import_csv, parse_entry
from anpr.journeys import Journey, find_journeys
from controlroom import disclosure
from controlroom.auth import actor, allowed_camera_ids
from controlroom.context import SESSIONS, SETTINGS
from controlroom.errors import as_id, error_response, json_body
from controlroom.permissions import Disclosure, Permission, requires
from controlroom.timefmt import iso_to_us, us_to_iso
from storage import Invalid, NotFound, audit
from storage.anpr import hits as hit_store
from storage.anpr import hotlists as hotlist_store
from storage.anpr import images as image_store
from storage.anpr import reads as read_store
from storage.anpr.models import AnprHit, AnprRead, HitState, Hotlist, HotlistEntry
from storage.db import transaction
from storage.inventory import get_camera

routes = web.RouteTableDef()
PREFIX = "/api/v1/anpr"
MAX_TEXT = 500
MAX_CSV_BYTES = 8 * 1024 * 1024


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


def _int(query: Any, name: str, default: int) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise Invalid(f"{name} must be a whole number") from None


def _range(query: Any) -> tuple[int | None, int | None]:
    start, end = query.get("from"), query.get("to")
    return (iso_to_us(start, "from") if start else None, iso_to_us(end, "to") if end else None)


async def _read_query(request: web.Request, session) -> read_store.ReadQuery:
    q = request.query
    vrm = (q.get("vrm") or "").strip()
    if not vrm:
        raise Invalid("vrm is required: a registration, or a pattern with * and ? (e.g. AB12*, ?B12CDE)")
    from_us, to_us = _range(q)
    camera_id = None
    if q.get("camera"):
        camera_id = (await get_camera(session, q["camera"])).id
    return read_store.ReadQuery(
        pattern=vrm, from_us=from_us, to_us=to_us, sites=tuple(s for s in q.getall("site", []) if s),
        camera_id=camera_id, limit=_int(q, "limit", 1000), offset=_int(q, "offset", 0),
        allowed_camera_ids=await allowed_camera_ids(request))


async def _search(request: web.Request) -> list[AnprRead]:
    reason, reference = justification(request.query)
    async with request.app[SESSIONS]() as session:
        query = await _read_query(request, session)
        reads = await read_store.search_reads(session, query)
    disclosure.note(request, "anpr", reason=reason, reference=reference, results=len(reads), **query.described())
    return reads


async def _read_cameras(request: web.Request) -> set[int] | None:
    """The camera of the read in the path (narrowing, controlroom.auth)."""
    read_id = as_id(request.match_info["read"])
    async with request.app[SESSIONS]() as session:
        read = await session.get(AnprRead, read_id) if read_id else None
    return {read.camera_id} if read is not None and read.camera_id is not None else None


async def _hit_cameras(request: web.Request) -> set[int] | None:
    """The camera of the hit in the path (narrowing, controlroom.auth)."""
    hit_id = as_id(request.match_info["hit"])
    async with request.app[SESSIONS]() as session:
        hit = await session.get(AnprHit, hit_id) if hit_id else None
        read = await session.get(AnprRead, hit.read_id) if hit is not None else None
    return {read.camera_id} if read is not None and read.camera_id is not None else None


@routes.get(f"{PREFIX}/reads")
@requires(Permission.ANPR_SEARCH, discloses=Disclosure.PLATES, action="anpr.search")
async def search(request: web.Request) -> web.Response:
    reads = await _search(request)
    tz = _tz(request)
    return web.json_response({"count": len(reads), "reads": [read_json(r, tz) for r in reads]})


CSV_FIELDS = ["id", "vrm", "time", "time_local", "site", "lane", "direction", "camera_id", "confidence",
              "format", "raw_text", "plate_url", "overview_url"]


@routes.get(f"{PREFIX}/reads.csv")
@requires(Permission.ANPR_SEARCH, discloses=Disclosure.PLATES, action="anpr.export")
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
@requires(Permission.ANPR_SEARCH, discloses=Disclosure.PLATES, action="anpr.journeys")
async def journeys(request: web.Request) -> web.Response:
    q = request.query
    reason, reference = justification(q)
    from_site, to_site = (q.get("from_site") or "").strip(), (q.get("to_site") or "").strip()
    if not from_site or not to_site:
        raise Invalid("from_site and to_site are required")
    try:
        within_s = float(q.get("within_s") or 900)
    except ValueError:
        raise Invalid("within_s must be a number of seconds") from None
    either = q.get("either_direction", "0").lower() in ("1", "true", "yes")
    from_us, to_us = _range(q)
    vrm = (q.get("vrm") or "").strip() or None
    async with request.app[SESSIONS]() as session:
        found = await find_journeys(session, from_site, to_site, within_s, from_us, to_us, vrm, either,
                                    allowed_camera_ids=await allowed_camera_ids(request))
    disclosure.note(request, "anpr", reason=reason, reference=reference, from_site=from_site, to_site=to_site,
                    within_s=within_s, either_direction=either, from_us=from_us, to_us=to_us, vrm=vrm,
                    results=len(found))
    tz = _tz(request)
    return web.json_response({"count": len(found), "journeys": [journey_json(j, tz) for j in found]})


def _image_response(request: web.Request, read: AnprRead, which: str) -> web.FileResponse:
    disclosure.note(request, f"anpr_read:{read.id}", image=which, vrm=read.vrm, camera_id=read.camera_id)
    rel = read.plate_path if which == "plate" else read.overview_path
    path = image_store.resolve_image(request.app[SETTINGS].anpr_root, rel)
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg", "Cache-Control": "private, no-store"})


def _id(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    found = as_id(raw)
    if found is None:
        raise NotFound(f"no {name} {raw[:40]!r}")
    return found


@routes.get(PREFIX + "/reads/{read}/{image:plate|overview}.jpg")
@requires(Permission.ANPR_SEARCH, discloses=Disclosure.IMAGES, action="anpr.image", cameras=_read_cameras)
async def read_image(request: web.Request) -> web.StreamResponse:
    async with request.app[SESSIONS]() as session:
        read = await read_store.get_read(session, _id(request, "read"))
    return _image_response(request, read, request.match_info["image"])


# ---------------------------------------------------------------------------------------------
# Hits


async def _hit_row(session, hit_id: int):
    hit = await hit_store.get_hit(session, hit_id)
    read = await read_store.get_read(session, hit.read_id)
    entry = await session.get(HotlistEntry, hit.entry_id)
    hl = await session.get(Hotlist, hit.hotlist_id)
    return hit, read, entry, hl


@routes.get(f"{PREFIX}/hits")
@requires(Permission.ANPR_ALERTS, discloses=Disclosure.PLATES, action="anpr.hits")
async def list_hits(request: web.Request) -> web.Response:
    state = request.query.get("state") or None
    limit = min(max(_int(request.query, "limit", 200), 1), 1000)
    async with request.app[SESSIONS]() as session:
        rows = await hit_store.list_hits(session, state=state, limit=limit,
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
@requires(Permission.ANPR_ALERTS, cameras=_hit_cameras)
async def decide_hit(request: web.Request) -> web.Response:
    body = await json_body(request) if request.can_read_body else {}
    note = str(body.get("note") or "").strip()
    if len(note) > 2000:
        raise Invalid("note must be at most 2000 characters")
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
@requires(Permission.ANPR_ALERTS, discloses=Disclosure.IMAGES, action="anpr.hit.image", cameras=_hit_cameras)
async def hit_image(request: web.Request) -> web.StreamResponse:
    async with request.app[SESSIONS]() as session:
        hit = await hit_store.get_hit(session, _id(request, "hit"))
        read = await read_store.get_read(session, hit.read_id)
    return _image_response(request, read, request.match_info["image"])


# ---------------------------------------------------------------------------------------------
# Hotlists


@routes.get(f"{PREFIX}/hotlists")
@requires(Permission.HOTLIST_ADMIN)
async def list_hotlists(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        rows = await hotlist_store.list_hotlists(session)
    return web.json_response({"hotlists": [hotlist_json(h, n) for h, n in rows]})


@routes.post(f"{PREFIX}/hotlists")
@requires(Permission.HOTLIST_ADMIN)
async def add_hotlist(request: web.Request) -> web.Response:
    body = await json_body(request)
    unknown = set(body) - {"name", "description", "source", "default_priority"}
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    who = actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        hl = await hotlist_store.add_hotlist(
            session, str(body.get("name") or ""), description=str(body.get("description") or ""),
            source=str(body.get("source") or ""), default_priority=body.get("default_priority", 3),
            created_by=who)
        await audit.append(session, who, "hotlist.add", f"hotlist:{hl.id}", name=hl.name, source=hl.source)
    return web.json_response(hotlist_json(hl, 0), status=201)


@routes.get(PREFIX + "/hotlists/{hotlist}")
@requires(Permission.HOTLIST_ADMIN)
async def show_hotlist(request: web.Request) -> web.Response:
    include = request.query.get("all") == "1"
    async with request.app[SESSIONS]() as session:
        hl = await hotlist_store.get_hotlist(session, request.match_info["hotlist"])
        entries = await hotlist_store.list_entries(session, hl.id, include_inactive=include)
    out = hotlist_json(hl)
    out["entries"] = [entry_json(e) for e in entries]
    return web.json_response(out)


@routes.patch(PREFIX + "/hotlists/{hotlist}")
@requires(Permission.HOTLIST_ADMIN)
async def update_hotlist(request: web.Request) -> web.Response:
    body = await json_body(request)
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
@requires(Permission.HOTLIST_ADMIN)
async def add_entry(request: web.Request) -> web.Response:
    body = await json_body(request)
    unknown = set(body) - {"vrm", "reason", "source", "priority", "expires"}
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
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
@requires(Permission.HOTLIST_ADMIN)
async def import_entries(request: web.Request) -> web.Response:
    if request.content_length and request.content_length > MAX_CSV_BYTES:
        raise Invalid(f"the CSV file is larger than {MAX_CSV_BYTES} bytes")
    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the CSV file is not UTF-8 text") from None
    replace = request.query.get("replace", "0").lower() in ("1", "true", "yes")
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
