"""The occurrence book over HTTP: incidents under /api/v1/incidents, bookmarks under /api/v1/bookmarks.

Operators (INCIDENTS) open incidents, add entries, change an open incident, link evidence
requests, ask for a hold on its footage and make bookmarks; supervisors (INCIDENT_CLOSE) close
incidents, after which the record is append-only: a change answers 409 and a correction is a new
entry (storage.incidents, docs/design/operations.md).

- ``GET /incidents/vocabulary``: categories, outcomes and who-was-told, with their labels;
- ``GET /incidents?from=&to=&category=&camera=&site=&status=&q=&limit=&offset=``: newest first;
- ``POST /incidents`` ``{"category", "camera"?, "occurred_at"?, "site"?, "location"?, "told"?,
  "police_reference"?, "outcome"?, "summary"?}`` (201): time defaults to now;
- ``GET|PATCH /incidents/{incident}``; ``POST /incidents/{incident}/entries`` ``{"text", "kind"}``;
  ``POST /incidents/{incident}/close`` ``{"outcome"?, "note"?}``;
  ``POST /incidents/{incident}/evidence`` ``{"request"}``;
  ``POST /incidents/{incident}/hold`` ``{"before_minutes", "after_minutes", "review"?}``;
- ``GET /bookmarks?camera=&from=&to=&q=&incident=&limit=``; ``POST /bookmarks`` ``{"camera",
  "at", "to"?, "note"?, "incident"?}``; ``POST /bookmarks/{bookmark}/attach`` ``{"incident"}``.

Incidents and bookmark notes describe people, so reading them is a disclosure of personal data
(audited by controlroom.disclosure). A user narrowed to some cameras sees incidents on those
cameras and the camera-less ones they opened themselves; another camera's incident answers 403
(the route's resolver), a camera-less one of someone else's 404.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import ConfigDict, Field

from controlroom import disclosure
from controlroom.auth import actor, allowed_camera_ids, can_access_camera, current_user
from controlroom.context import SESSIONS, SETTINGS
from controlroom.contract import (
    Body,
    Name,
    Query,
    RowId,
    Text,
    Time,
    body_of,
    limit,
    offset,
    query_of,
)
from controlroom.incident_views import Names, bookmark_json, incident_json, vocabulary
from controlroom.permissions import Disclosure, Permission, requires
from storage import Invalid, NotFound, inventory
from storage.db import by_id_or_name, now_us, row_id, transaction
from storage.evidence import EvidenceRequest
from storage.incidents import (
    CATEGORIES,
    OUTCOMES,
    STATUSES,
    TOLD,
    Bookmark,
    Incident,
    add_entry,
    attach_bookmark,
    close_incident,
    create_bookmark,
    get_incident,
    hold_footage,
    incident_holds,
    is_visible,
    link_evidence,
    linked_requests,
    open_incident,
    search_bookmarks,
    search_incidents,
    set_bookmark_note,
    update_incident,
)
from storage.models import Site

routes = web.RouteTableDef()
PREFIX = "/api/v1/incidents"
BOOKMARKS = "/api/v1/bookmarks"
MINUTE_US = 60_000_000
DAY = 86_400 * 1_000_000

Category = Literal[tuple(CATEGORIES)]  # type: ignore[valid-type]
Outcome = Literal[tuple(OUTCOMES)]  # type: ignore[valid-type]
Told = Literal[tuple(TOLD)]  # type: ignore[valid-type]
Status = Literal[tuple(STATUSES)]  # type: ignore[valid-type]
Reference = Annotated[str, Field(max_length=100)]


class IncidentsQuery(Query):
    start_us: Time | None = Field(None, alias="from", description="happened at or after")
    end_us: Time | None = Field(None, alias="to", description="happened before")
    category: Category | None = None
    camera: Name | None = Field(None, description="a camera's id or name")
    site: Name | None = Field(None, description="a site's id or name")
    status: Status | None = None
    q: Annotated[str, Field(max_length=200)] | None = Field(None, description="words in the location, summary or police reference")
    limit: int = limit(100, 1000)
    offset: int = offset()


class IncidentNew(Body):
    category: Category
    occurred_at_us: Time | None = Field(None, alias="occurred_at", description="when it happened (default now)")
    camera: Name | RowId | None = Field(None, description="the camera's id or name")
    site: Name | RowId | None = Field(None, description="the site's id or name (default: the camera's)")
    location: Text = ""
    told: list[Told] = Field(default_factory=list, max_length=len(TOLD))
    police_reference: Reference | None = None
    outcome: Outcome | None = None
    summary: Text = ""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class IncidentChange(Body):
    category: Category | None = None
    occurred_at_us: Time | None = Field(None, alias="occurred_at")
    camera: Name | RowId | None = None
    site: Name | RowId | None = None
    location: Text | None = None
    told: list[Told] | None = Field(None, max_length=len(TOLD))
    police_reference: Reference | None = None
    outcome: Outcome | None = None
    summary: Text | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EntryNew(Body):
    text: Annotated[str, Field(min_length=1, max_length=2000)]
    kind: Literal["note", "correction"] = "note"


class Closing(Body):
    outcome: Outcome | None = Field(None, description="required unless the incident has one")
    note: Text = ""


class EvidenceLink(Body):
    request: RowId = Field(description="the evidence request's id")


class HoldAsk(Body):
    before_minutes: int = Field(60, ge=0, le=7 * 24 * 60)
    after_minutes: int = Field(60, ge=0, le=7 * 24 * 60)
    review_us: Time | None = Field(None, alias="review", description="when to review the hold (default: the "
                                                                      "evidence hold review period)")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BookmarksQuery(Query):
    camera: Name | None = Field(None, description="a camera's id or name")
    start_us: Time | None = Field(None, alias="from")
    end_us: Time | None = Field(None, alias="to")
    q: Annotated[str, Field(max_length=200)] | None = Field(None, description="words in the note")
    incident: RowId | None = None
    limit: int = limit(200, 2000)
    offset: int = offset()


class BookmarkNew(Body):
    camera: Name | RowId = Field(description="the camera's id or name")
    start_us: Time = Field(alias="at", description="the moment, or the start of the span")
    end_us: Time | None = Field(None, alias="to", description="the end of a span (none for a moment)")
    note: Text = ""
    incident: RowId | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Attach(Body):
    incident: RowId


class BookmarkNote(Body):
    note: Text


# --- helpers --------------------------------------------------------------------------------

def _tz(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.app[SETTINGS].display_timezone)


def _incident_id(request: web.Request) -> int:
    raw = request.match_info["incident"]
    found = row_id(raw)
    if found is None:
        raise NotFound(f"no incident {raw[:40]!r}")
    return found


async def _incident_cameras(request: web.Request) -> set[int] | None:
    """The camera of the incident in the path (narrowing, controlroom.auth)."""
    found = row_id(request.match_info["incident"])
    async with request.app[SESSIONS]() as session:
        inc = await session.get(Incident, found) if found else None
    if inc is None:
        return None
    return {inc.camera_id} if inc.camera_id is not None else set()


async def _bookmark_cameras(request: web.Request) -> set[int] | None:
    found = row_id(request.match_info["bookmark"])
    async with request.app[SESSIONS]() as session:
        mark = await session.get(Bookmark, found) if found else None
    return {mark.camera_id} if mark is not None else None


async def _visible_incident(request: web.Request, session, incident_id: int, *, for_update: bool = False) -> Incident:
    """The incident, or NotFound when the caller may not see it (a camera-less incident of
    someone else's, for a narrowed user: the middleware has checked the camera)."""
    inc = await get_incident(session, incident_id, for_update=for_update)
    if not is_visible(inc, await allowed_camera_ids(request), actor(request)):
        raise NotFound(f"no incident {incident_id}")
    return inc


async def _camera(request: web.Request, session, ref: str | int, field: str = "camera") -> int:
    """A camera named in a body, by id or name; one outside a narrowed user's cameras is as if absent."""
    try:
        cam = await inventory.get_camera(session, str(ref))
    except NotFound:
        cam = None
    if cam is None or not await can_access_camera(request, cam.id):
        raise Invalid(f"{field}: no camera {str(ref)[:60]}")
    return cam.id


async def _site(session, ref: str | int, field: str = "site") -> int:
    try:
        return (await by_id_or_name(session, Site, ref, "site")).id
    except NotFound:
        raise Invalid(f"{field}: no site {str(ref)[:60]}") from None


async def _detail(request: web.Request, session, inc: Incident) -> dict[str, Any]:
    allowed = await allowed_camera_ids(request)
    return incident_json(inc, await Names.load(session), _tz(request), entries=True,
                         evidence=await linked_requests(session, inc.id), holds=await incident_holds(session, inc.id),
                         bookmarks=await search_bookmarks(session, incident_id=inc.id, cameras=allowed))


# --- incidents ------------------------------------------------------------------------------

@routes.get(f"{PREFIX}/vocabulary")
@requires(Permission.INCIDENTS)
async def incident_vocabulary(request: web.Request) -> web.Response:
    """The categories, outcomes and who-was-told choices, with their labels."""
    return web.json_response(vocabulary())


@routes.get(PREFIX)
@requires(Permission.INCIDENTS, discloses=Disclosure.PERSONAL, action="incidents.list", query=IncidentsQuery)
async def list_incidents(request: web.Request) -> web.Response:
    q = query_of(request, IncidentsQuery)
    allowed = await allowed_camera_ids(request)
    async with request.app[SESSIONS]() as session:
        camera_id = (await inventory.get_camera(session, q.camera)).id if q.camera else None
        site_id = await _site(session, q.site) if q.site else None
        rows = await search_incidents(session, from_us=q.start_us, to_us=q.end_us, category=q.category,
                                      camera_id=camera_id, site_id=site_id, status=q.status, text=q.q,
                                      cameras=allowed, user=actor(request), limit=q.limit, offset=q.offset)
        names = await Names.load(session)
    tz = _tz(request)
    disclosure.note(request, "incidents", count=len(rows), category=q.category, camera=camera_id, status=q.status)
    return web.json_response({"incidents": [incident_json(i, names, tz) for i in rows]})


@routes.post(PREFIX)
@requires(Permission.INCIDENTS, body=IncidentNew, status=201)
async def new_incident(request: web.Request) -> web.Response:
    """Open an incident; its camera brings its site, and the time defaults to now."""
    new = body_of(request, IncidentNew)
    async with transaction(request.app[SESSIONS]) as session:
        camera_id = await _camera(request, session, new.camera) if new.camera is not None else None
        site_id = await _site(session, new.site) if new.site is not None else None
        inc = await open_incident(
            session, by=actor(request), category=new.category, occurred_at_us=new.occurred_at_us, camera_id=camera_id,
            site_id=site_id, location=new.location, told=new.told, police_reference=new.police_reference,
            outcome=new.outcome, summary=new.summary)
        data = await _detail(request, session, inc)
    return web.json_response(data, status=201)


@routes.get(f"{PREFIX}/{{incident}}")
@requires(Permission.INCIDENTS, discloses=Disclosure.PERSONAL, action="incidents.view", cameras=_incident_cameras)
async def show_incident(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        inc = await _visible_incident(request, session, _incident_id(request))
        data = await _detail(request, session, inc)
    disclosure.note(request, f"incident:{inc.id}")
    return web.json_response(data)


@routes.patch(f"{PREFIX}/{{incident}}")
@requires(Permission.INCIDENTS, cameras=_incident_cameras, body=IncidentChange)
async def change_incident(request: web.Request) -> web.Response:
    """Change an open incident's fields (409 once it is closed: add a correction instead)."""
    change = body_of(request, IncidentChange)
    fields = change.model_dump(exclude_unset=True, exclude={"camera", "site"})
    async with transaction(request.app[SESSIONS]) as session:
        inc = await _visible_incident(request, session, _incident_id(request), for_update=True)
        if "camera" in change.model_fields_set:
            fields["camera_id"] = await _camera(request, session, change.camera) if change.camera is not None else None
        if "site" in change.model_fields_set:
            fields["site_id"] = await _site(session, change.site) if change.site is not None else None
        if "category" in fields and fields["category"] is None:
            raise Invalid("category: cannot be removed")
        if "told" in fields and fields["told"] is None:
            fields["told"] = []
        for text_field in ("location", "summary"):
            if text_field in fields and fields[text_field] is None:
                fields[text_field] = ""
        if "occurred_at_us" in fields and fields["occurred_at_us"] is None:
            raise Invalid("occurred_at: cannot be removed")
        inc = await update_incident(session, inc.id, by=actor(request), **fields)
        data = await _detail(request, session, inc)
    return web.json_response(data)


@routes.post(f"{PREFIX}/{{incident}}/entries")
@requires(Permission.INCIDENTS, cameras=_incident_cameras, body=EntryNew, status=201)
async def new_entry(request: web.Request) -> web.Response:
    """Add a note or a correction to the running log (open or closed)."""
    entry = body_of(request, EntryNew)
    async with transaction(request.app[SESSIONS]) as session:
        inc = await _visible_incident(request, session, _incident_id(request))
        await add_entry(session, inc.id, by=actor(request), text=entry.text, kind=entry.kind)
        data = await _detail(request, session, inc)
    return web.json_response(data, status=201)


@routes.post(f"{PREFIX}/{{incident}}/close")
@requires(Permission.INCIDENT_CLOSE, cameras=_incident_cameras, body=Closing)
async def close(request: web.Request) -> web.Response:
    """Close an incident (supervisors): it needs an outcome; from now on it is append-only."""
    closing = body_of(request, Closing)
    async with transaction(request.app[SESSIONS]) as session:
        inc = await _visible_incident(request, session, _incident_id(request), for_update=True)
        inc = await close_incident(session, inc.id, by=actor(request), outcome=closing.outcome, note=closing.note)
        data = await _detail(request, session, inc)
    return web.json_response(data)


@routes.post(f"{PREFIX}/{{incident}}/evidence")
@requires(Permission.INCIDENTS, cameras=_incident_cameras, body=EvidenceLink, status=201)
async def link_request(request: web.Request) -> web.Response:
    """Link an evidence request the caller can see (their own, or any for a supervisor) whose
    cameras are all theirs; any other is as if absent."""
    link = body_of(request, EvidenceLink)
    user = current_user(request)
    allowed = await allowed_camera_ids(request)
    async with transaction(request.app[SESSIONS]) as session:
        inc = await _visible_incident(request, session, _incident_id(request))
        req = await session.get(EvidenceRequest, link.request)
        if req is None or (not user.can(Permission.APPROVE) and req.requested_by != user.username) or (
                allowed is not None and not {w.camera_id for w in req.windows} <= allowed):
            raise Invalid(f"request: no evidence request {link.request}")
        await link_evidence(session, inc.id, req.id, by=actor(request))
        data = await _detail(request, session, inc)
    return web.json_response(data, status=201)


@routes.post(f"{PREFIX}/{{incident}}/hold")
@requires(Permission.INCIDENTS, cameras=_incident_cameras, body=HoldAsk, status=201)
async def hold(request: web.Request) -> web.Response:
    """Ask retention to keep the footage of the incident's camera around the time it happened
    (a hold with a reason, an owner and a review date, like an evidence request's)."""
    ask = body_of(request, HoldAsk)
    review_us = ask.review_us or now_us() + request.app[SETTINGS].evidence.hold_review_days * DAY
    async with transaction(request.app[SESSIONS]) as session:
        inc = await _visible_incident(request, session, _incident_id(request))
        await hold_footage(session, inc.id, by=actor(request), review_us=review_us,
                           before_us=ask.before_minutes * MINUTE_US, after_us=ask.after_minutes * MINUTE_US)
        data = await _detail(request, session, inc)
    return web.json_response(data, status=201)


# --- bookmarks ------------------------------------------------------------------------------

@routes.get(BOOKMARKS)
@requires(Permission.INCIDENTS, discloses=Disclosure.PERSONAL, action="bookmarks.list", query=BookmarksQuery)
async def list_bookmarks(request: web.Request) -> web.Response:
    q = query_of(request, BookmarksQuery)
    allowed = await allowed_camera_ids(request)
    async with request.app[SESSIONS]() as session:
        camera_id = (await inventory.get_camera(session, q.camera)).id if q.camera else None
        rows = await search_bookmarks(session, camera_id=camera_id, from_us=q.start_us, to_us=q.end_us, text=q.q,
                                      incident_id=q.incident, cameras=allowed, limit=q.limit, offset=q.offset)
        names = await Names.load(session)
    disclosure.note(request, "bookmarks", count=len(rows), camera=camera_id)
    tz = _tz(request)
    return web.json_response({"bookmarks": [bookmark_json(b, names, tz) for b in rows]})


@routes.post(BOOKMARKS)
@requires(Permission.INCIDENTS, body=BookmarkNew, status=201)
async def new_bookmark(request: web.Request) -> web.Response:
    """Bookmark a moment (``at``) or a span (``at`` to ``to``) of one camera's timeline."""
    new = body_of(request, BookmarkNew)
    async with transaction(request.app[SESSIONS]) as session:
        camera_id = await _camera(request, session, new.camera)
        if new.incident is not None:
            try:
                await _visible_incident(request, session, new.incident)
            except NotFound:
                raise Invalid(f"incident: no incident {new.incident}") from None
        mark = await create_bookmark(session, by=actor(request), camera_id=camera_id, start_us=new.start_us,
                                     end_us=new.end_us, note=new.note, incident_id=new.incident)
        data = bookmark_json(mark, await Names.load(session), _tz(request))
    return web.json_response(data, status=201)


def _bookmark_id(request: web.Request) -> int:
    raw = request.match_info["bookmark"]
    found = row_id(raw)
    if found is None:
        raise NotFound(f"no bookmark {raw[:40]!r}")
    return found


@routes.patch(f"{BOOKMARKS}/{{bookmark}}")
@requires(Permission.INCIDENTS, cameras=_bookmark_cameras, body=BookmarkNote)
async def bookmark_note(request: web.Request) -> web.Response:
    """Write the note of a bookmark made a moment ago with one key press (its maker only: 409 otherwise)."""
    note = body_of(request, BookmarkNote).note
    async with transaction(request.app[SESSIONS]) as session:
        mark = await set_bookmark_note(session, _bookmark_id(request), note, by=actor(request))
        data = bookmark_json(mark, await Names.load(session), _tz(request))
    return web.json_response(data)


@routes.post(f"{BOOKMARKS}/{{bookmark}}/attach")
@requires(Permission.INCIDENTS, cameras=_bookmark_cameras, body=Attach)
async def attach(request: web.Request) -> web.Response:
    """Attach a bookmark to an incident (409 if it belongs to another already)."""
    bookmark_id = _bookmark_id(request)
    target = body_of(request, Attach)
    async with transaction(request.app[SESSIONS]) as session:
        try:
            inc = await _visible_incident(request, session, target.incident)
        except NotFound:
            raise Invalid(f"incident: no incident {target.incident}") from None
        mark = await attach_bookmark(session, bookmark_id, inc.id, by=actor(request))
        data = bookmark_json(mark, await Names.load(session), _tz(request))
    return web.json_response(data)
