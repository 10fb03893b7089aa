"""The occurrence book: incidents, their running logs, bookmarks on cameras' timelines.

An incident is what an operator saw and did: when it happened (``occurred_at_us``, which may be
long before it was logged when it was found later in footage), where (site, camera, free text),
its category, who was told, the police reference and the outcome, and a running log of
timestamped entries. Times are integer UTC microseconds.

Rules (docs/design/operations.md):

- Append-only once closed. A closed incident's row never changes again and is never deleted;
  entries are never changed or deleted at all. Corrections are new entries (kind
  ``correction``). This is enforced here, for every way in, by a flush check
  (:func:`_closed_incidents_do_not_change`) that raises :class:`IncidentClosed`.
- Closing is a supervisor's act (the API's ``INCIDENT_CLOSE`` right) and needs an outcome.
- Every change is audited in its own transaction (``incident.*``, ``bookmark.*``), so the
  change and its audit entry commit together or not at all.
- Evidence requests link to incidents through ``incident_evidence`` (many to many: one
  incident may need several requests, and one request may serve several incidents).
- An incident asks for a hold on its footage through storage.holds (reference
  ``incident:<id>``); closing the incident does not release it (footage kept for a court case
  outlives the log entry), the hold's review date does.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    event,
    func,
    or_,
    select,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from storage import Conflict, Invalid, NotFound, audit
from storage.db import Base, now_us
from storage.holds import add_hold
from storage.models import Camera, Hold, Site

# The seed's categories, in the order the control room's forms show them (the council's Table 1
# splits anti-social behaviour three ways: personal, nuisance, environmental).
CATEGORIES: dict[str, str] = {
    "asb_personal": "ASB: personal",
    "asb_nuisance": "ASB: nuisance",
    "asb_environmental": "ASB: environmental",
    "shoplifting": "Shoplifting",
    "violence": "Violence",
    "criminal_damage": "Criminal damage",
    "drugs": "Drugs",
    "vehicle_crime": "Vehicle crime",
    "missing_vulnerable": "Missing or vulnerable person",
    "public_order": "Public order",
    "other": "Other",
}

OUTCOMES: dict[str, str] = {
    "arrest_assisted": "Arrest assisted",
    "offender_identified": "Offender identified",
    "police_attended": "Police attended",
    "no_further_action": "No further action",
}

# Who the operator told.
TOLD: dict[str, str] = {
    "police": "Police",
    "radio": "Shopwatch/Pubwatch radio",
    "ambulance": "Ambulance",
    "council": "Council services",
}

STATUSES = ("open", "closed")
ENTRY_KINDS = ("note", "correction", "status", "link")
# Kinds a person writes; 'status' and 'link' entries are written by the book itself.
WRITTEN_KINDS = ("note", "correction")

# An incident cannot have happened in the future; allow for clocks a little apart (a browser's
# idea of "now" sent with the form).
FUTURE_SLACK_US = 5 * 60 * 1_000_000
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US


class IncidentClosed(Conflict):
    """The incident is closed: its record is append-only (add an entry instead)."""


class Incident(Base):
    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at_us: Mapped[int] = mapped_column(BigInteger)
    opened_at_us: Mapped[int] = mapped_column(BigInteger)
    opened_by: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="open")
    closed_at_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    category: Mapped[str] = mapped_column(String(32))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), nullable=True)
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id"), nullable=True)
    location: Mapped[str] = mapped_column(Text, default="")
    told: Mapped[list[str]] = mapped_column(JSON, default=list)
    police_reference: Mapped[str | None] = mapped_column(String(100), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    entries: Mapped[list[IncidentEntry]] = relationship(
        lazy="selectin", order_by="IncidentEntry.id", viewonly=True)

    __table_args__ = (
        Index("ix_incidents_occurred", "occurred_at_us"),
        Index("ix_incidents_camera_occurred", "camera_id", "occurred_at_us"),
        Index("ix_incidents_status", "status"),
    )


class IncidentEntry(Base):
    """One line of an incident's running log. Never changed or deleted."""

    __tablename__ = "incident_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    at_us: Mapped[int] = mapped_column(BigInteger)
    author: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)


class IncidentEvidence(Base):
    """An evidence request linked to an incident."""

    __tablename__ = "incident_evidence"
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("evidence_requests.id"), primary_key=True, index=True)
    linked_at_us: Mapped[int] = mapped_column(BigInteger)
    linked_by: Mapped[str] = mapped_column(String(200))


class Bookmark(Base):
    """A moment (``end_us == start_us``) or span on one camera's timeline, with a note."""

    __tablename__ = "bookmarks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text, default="")
    made_by: Mapped[str] = mapped_column(String(200))
    made_at_us: Mapped[int] = mapped_column(BigInteger)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), nullable=True, index=True)

    __table_args__ = (Index("ix_bookmarks_camera_start", "camera_id", "start_us"),)


# --- the append-only rule -------------------------------------------------------------------

def _loaded(obj: Any, attr: str) -> Any:
    """The value ``attr`` had when ``obj`` was loaded (before this flush's changes)."""
    history = sa_inspect(obj).attrs[attr].history
    if history.deleted:
        return history.deleted[0]
    return history.unchanged[0] if history.unchanged else None


@event.listens_for(Session, "before_flush")
def _closed_incidents_do_not_change(session: Session, _context: object, _instances: object) -> None:
    """Refuse, whatever the caller, a change to a closed incident and any change to an entry,
    and the deletion of either: the occurrence book is append-only."""
    for obj in session.dirty:
        if isinstance(obj, Incident) and session.is_modified(obj) and _loaded(obj, "status") == "closed":
            raise IncidentClosed(f"incident {obj.id} is closed; add an entry (a correction) instead")
        if isinstance(obj, IncidentEntry) and session.is_modified(obj):
            raise IncidentClosed(f"incident entry {obj.id} cannot be changed; add a correction instead")
    for obj in session.deleted:
        if isinstance(obj, (Incident, IncidentEntry)):
            raise IncidentClosed(f"{type(obj).__tablename__} rows are never deleted")


# --- validation -----------------------------------------------------------------------------

def _category(value: str) -> str:
    if value not in CATEGORIES:
        raise Invalid(f"category: {value!r} is not one of {', '.join(CATEGORIES)}")
    return value


def _outcome(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value not in OUTCOMES:
        raise Invalid(f"outcome: {value!r} is not one of {', '.join(OUTCOMES)}")
    return value


def _told(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v not in TOLD:
            raise Invalid(f"told: {v!r} is not one of {', '.join(TOLD)}")
        if v not in out:
            out.append(v)
    return [t for t in TOLD if t in out]  # one order, whatever the caller's


def _occurred(value: int) -> int:
    if value > now_us() + FUTURE_SLACK_US:
        raise Invalid("occurred_at: an incident cannot have happened in the future")
    return value


def _reference(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


async def _place(session: AsyncSession, camera_id: int | None, site_id: int | None) -> tuple[int | None, int | None]:
    """Check the camera and site exist; a camera without a site given brings its own site."""
    if camera_id is not None:
        camera = await session.get(Camera, camera_id)
        if camera is None:
            raise Invalid(f"camera: no camera {camera_id}")
        if site_id is None:
            site_id = camera.site_id
    if site_id is not None and await session.get(Site, site_id) is None:
        raise Invalid(f"site: no site {site_id}")
    return camera_id, site_id


def _text(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise Invalid(f"{what}: cannot be empty")
    return value


# --- incidents ------------------------------------------------------------------------------

async def _entry(session: AsyncSession, incident_id: int, by: str, kind: str, text: str) -> IncidentEntry:
    entry = IncidentEntry(incident_id=incident_id, at_us=now_us(), author=by, kind=kind, text=text)
    session.add(entry)
    await session.flush()
    incident = await session.get(Incident, incident_id)  # from the identity map: keep its log current
    if incident is not None:
        await session.refresh(incident, ["entries"])
    return entry


async def open_incident(
    session: AsyncSession,
    *,
    by: str,
    category: str,
    occurred_at_us: int | None = None,
    camera_id: int | None = None,
    site_id: int | None = None,
    location: str = "",
    told: Iterable[str] = (),
    police_reference: str | None = None,
    outcome: str | None = None,
    summary: str = "",
) -> Incident:
    """Open an incident (time defaults to now; a camera brings its site) and audit it."""
    now = now_us()
    camera_id, site_id = await _place(session, camera_id, site_id)
    incident = Incident(
        occurred_at_us=_occurred(now if occurred_at_us is None else occurred_at_us), opened_at_us=now,
        opened_by=by, status="open", category=_category(category), site_id=site_id, camera_id=camera_id,
        location=location.strip(), told=_told(told), police_reference=_reference(police_reference),
        outcome=_outcome(outcome), summary=summary.strip(),
    )
    session.add(incident)
    await session.flush()
    await _entry(session, incident.id, by, "status", f"opened: {CATEGORIES[incident.category]}")
    await audit.append(session, by, "incident.open", f"incident:{incident.id}", category=incident.category,
                       camera=camera_id, site=site_id, occurred_at_us=incident.occurred_at_us)
    return incident


async def get_incident(session: AsyncSession, incident_id: int, *, for_update: bool = False) -> Incident:
    query = select(Incident).where(Incident.id == incident_id).execution_options(populate_existing=True)
    if for_update:
        query = query.with_for_update()
    incident = (await session.execute(query)).scalar_one_or_none()
    if incident is None:
        raise NotFound(f"no incident {incident_id}")
    return incident


async def add_entry(session: AsyncSession, incident_id: int, *, by: str, text: str, kind: str = "note") -> IncidentEntry:
    """Add a note or a correction to the running log: allowed open or closed (the log is how a
    closed incident is corrected)."""
    if kind not in WRITTEN_KINDS:
        raise Invalid(f"kind: {kind!r} is not one of {', '.join(WRITTEN_KINDS)}")
    incident = await get_incident(session, incident_id)
    entry = await _entry(session, incident.id, by, kind, _text(text, "text"))
    await audit.append(session, by, f"incident.{kind}", f"incident:{incident.id}", entry=entry.id,
                       closed=incident.status == "closed")
    return entry


# What update_incident may change, and how each is checked.
EDITABLE = ("occurred_at_us", "category", "site_id", "camera_id", "location", "told", "police_reference",
            "outcome", "summary")


async def update_incident(session: AsyncSession, incident_id: int, *, by: str, **changes: Any) -> Incident:
    """Change an open incident's fields; each change is written to its log and audited. A
    closed incident raises :class:`IncidentClosed` (add a correction entry instead)."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise Invalid(f"cannot change: {', '.join(sorted(unknown))}")
    incident = await get_incident(session, incident_id, for_update=True)
    if incident.status == "closed":
        raise IncidentClosed(f"incident {incident.id} is closed; add an entry (a correction) instead")
    if "camera_id" in changes or "site_id" in changes:
        camera_id = changes.get("camera_id", incident.camera_id)
        site_id = changes["site_id"] if "site_id" in changes else (None if "camera_id" in changes else incident.site_id)
        changes["camera_id"], changes["site_id"] = await _place(session, camera_id, site_id)
    checks = {"occurred_at_us": _occurred, "category": _category, "outcome": _outcome, "told": _told,
              "police_reference": _reference, "location": str.strip, "summary": str.strip}
    changed: dict[str, Any] = {}
    for name, value in changes.items():
        value = checks[name](value) if name in checks else value
        if getattr(incident, name) != value:
            changed[name] = [getattr(incident, name), value]
            setattr(incident, name, value)
    if changed:
        await session.flush()
        await _entry(session, incident.id, by, "status", "changed " + ", ".join(sorted(changed)))
        await audit.append(session, by, "incident.update", f"incident:{incident.id}", changes=changed)
    return incident


async def close_incident(session: AsyncSession, incident_id: int, *, by: str, outcome: str | None = None,
                         note: str = "") -> Incident:
    """Close (a supervisor's act): the incident needs an outcome, given now or before. From now
    on its record is append-only."""
    incident = await get_incident(session, incident_id, for_update=True)
    if incident.status == "closed":
        raise IncidentClosed(f"incident {incident.id} is already closed")
    outcome = _outcome(outcome) or incident.outcome
    if outcome is None:
        raise Invalid(f"outcome: incident {incident.id} needs an outcome to close ({', '.join(OUTCOMES)})")
    incident.outcome = outcome
    incident.status, incident.closed_at_us, incident.closed_by = "closed", now_us(), by
    await session.flush()
    text = f"closed: {OUTCOMES[outcome]}" + (f". {note.strip()}" if note.strip() else "")
    await _entry(session, incident.id, by, "status", text)
    await audit.append(session, by, "incident.close", f"incident:{incident.id}", outcome=outcome)
    return incident


async def link_evidence(session: AsyncSession, incident_id: int, request_id: int, *, by: str) -> IncidentEvidence:
    """Link an evidence request to an incident (open or closed: a link is an addition)."""
    from storage.evidence import EvidenceRequest  # evidence imports holds; keep this module light

    incident = await get_incident(session, incident_id)
    req = await session.get(EvidenceRequest, request_id)
    if req is None:
        raise Invalid(f"request: no evidence request {request_id}")
    if await session.get(IncidentEvidence, (incident.id, request_id)) is not None:
        raise Conflict(f"evidence request {request_id} is already linked to incident {incident.id}")
    link = IncidentEvidence(incident_id=incident.id, request_id=request_id, linked_at_us=now_us(), linked_by=by)
    session.add(link)
    await session.flush()
    await _entry(session, incident.id, by, "link", f"evidence request {request_id} ({req.exhibit_ref})")
    await audit.append(session, by, "incident.link_evidence", f"incident:{incident.id}", request=request_id)
    return link


async def linked_requests(session: AsyncSession, incident_id: int) -> list[int]:
    rows = await session.execute(select(IncidentEvidence.request_id).where(IncidentEvidence.incident_id == incident_id)
                                 .order_by(IncidentEvidence.request_id))
    return list(rows.scalars())


def hold_reference(incident_id: int) -> str:
    return f"incident:{incident_id}"


async def hold_footage(
    session: AsyncSession, incident_id: int, *, by: str, review_us: int, before_us: int = HOUR_US,
    after_us: int = HOUR_US, camera_ids: Collection[int] | None = None,
) -> Hold:
    """Ask retention to keep the incident's footage: a hold (storage.holds) from ``before_us``
    before it happened to ``after_us`` after, on its camera (or ``camera_ids``)."""
    incident = await get_incident(session, incident_id)
    cameras = list(camera_ids) if camera_ids else ([incident.camera_id] if incident.camera_id is not None else [])
    if not cameras:
        raise Invalid(f"incident {incident.id} names no camera: say which cameras' footage to hold")
    names = []
    for c in cameras:
        camera = await session.get(Camera, c)
        if camera is None:
            raise Invalid(f"camera: no camera {c}")
        names.append(camera.name)
    if before_us < 0 or after_us < 0 or before_us + after_us <= 0:
        raise Invalid("a hold needs a time range: before and after cannot both be zero")
    if review_us <= now_us():
        raise Invalid("review: the hold's review date must be in the future")
    start, end = incident.occurred_at_us - before_us, incident.occurred_at_us + after_us
    hold = await add_hold(
        session, reason=f"incident {incident.id} ({CATEGORIES[incident.category]})", owner=by,
        review_us=review_us, windows=[(c, start, end) for c in cameras], reference=hold_reference(incident.id),
    )
    await _entry(session, incident.id, by, "link", f"hold {hold.id} on the footage of {', '.join(names)}")
    await audit.append(session, by, "incident.hold", f"incident:{incident.id}", hold=hold.id, cameras=cameras,
                       start_us=start, end_us=end, review_us=review_us)
    return hold


async def incident_holds(session: AsyncSession, incident_id: int) -> list[Hold]:
    rows = await session.execute(select(Hold).where(Hold.reference == hold_reference(incident_id)).order_by(Hold.id))
    return list(rows.scalars())


def visible_to(cameras: Collection[int] | None, user: str | None) -> Any:
    """The narrowing rule as a condition (None: no narrowing): an incident is seen by a user
    narrowed to ``cameras`` when its camera is one of them; an incident on no camera only by
    the user who opened it (it may name anything, so it is not everyone's)."""
    if cameras is None:
        return None
    return or_(Incident.camera_id.in_(list(cameras)),
               Incident.camera_id.is_(None) & (Incident.opened_by == (user or "")))


def is_visible(incident: Incident, cameras: Collection[int] | None, user: str | None) -> bool:
    """:func:`visible_to` for one loaded incident."""
    if cameras is None:
        return True
    if incident.camera_id is None:
        return incident.opened_by == user
    return incident.camera_id in cameras


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_incidents(
    session: AsyncSession,
    *,
    from_us: int | None = None,
    to_us: int | None = None,
    category: str | None = None,
    camera_id: int | None = None,
    site_id: int | None = None,
    status: str | None = None,
    text: str | None = None,
    cameras: Collection[int] | None = None,
    user: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Incident]:
    """Incidents, newest first by when they happened, filtered by time [from, to), category,
    camera, site, status and words in the location, summary or police reference. ``cameras``
    narrows to those cameras (:func:`visible_to`)."""
    query = select(Incident)
    if from_us is not None:
        query = query.where(Incident.occurred_at_us >= from_us)
    if to_us is not None:
        query = query.where(Incident.occurred_at_us < to_us)
    if category is not None:
        query = query.where(Incident.category == _category(category))
    if camera_id is not None:
        query = query.where(Incident.camera_id == camera_id)
    if site_id is not None:
        query = query.where(Incident.site_id == site_id)
    if status is not None:
        if status not in STATUSES:
            raise Invalid(f"status: {status!r} is not one of {', '.join(STATUSES)}")
        query = query.where(Incident.status == status)
    if text:
        like = _like(text.strip())
        query = query.where(or_(Incident.summary.ilike(like, escape="\\"), Incident.location.ilike(like, escape="\\"),
                                Incident.police_reference.ilike(like, escape="\\")))
    narrowing = visible_to(cameras, user)
    if narrowing is not None:
        query = query.where(narrowing)
    query = query.order_by(Incident.occurred_at_us.desc(), Incident.id.desc()).limit(limit).offset(offset)
    return list((await session.execute(query)).scalars())


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Incident.status, func.count()).group_by(Incident.status))
    return {s: 0 for s in STATUSES} | {s: n for s, n in rows}


# --- bookmarks ------------------------------------------------------------------------------

async def create_bookmark(
    session: AsyncSession, *, by: str, camera_id: int, start_us: int, end_us: int | None = None, note: str = "",
    incident_id: int | None = None,
) -> Bookmark:
    """A bookmark at a moment (``end_us`` None) or over a span of one camera's timeline."""
    camera = await session.get(Camera, camera_id)
    if camera is None:
        raise Invalid(f"camera: no camera {camera_id}")
    end_us = start_us if end_us is None else end_us
    if end_us < start_us:
        raise Invalid("end: a bookmark cannot end before it starts")
    if start_us > now_us() + FUTURE_SLACK_US:
        raise Invalid("start: a bookmark cannot be in the future")
    if end_us - start_us > DAY_US:
        raise Invalid("a bookmark spans at most 24 hours")
    if incident_id is not None:
        await get_incident(session, incident_id)
    mark = Bookmark(camera_id=camera_id, start_us=start_us, end_us=end_us, note=note.strip(), made_by=by,
                    made_at_us=now_us(), incident_id=incident_id)
    session.add(mark)
    await session.flush()
    if incident_id is not None:
        await _entry(session, incident_id, by, "link", f"bookmark {mark.id} on {camera.name}")
    await audit.append(session, by, "bookmark.create", f"bookmark:{mark.id}", camera=camera_id, start_us=start_us,
                       end_us=end_us, incident=incident_id)
    return mark


async def get_bookmark(session: AsyncSession, bookmark_id: int) -> Bookmark:
    mark = await session.get(Bookmark, bookmark_id)
    if mark is None:
        raise NotFound(f"no bookmark {bookmark_id}")
    return mark


async def set_bookmark_note(session: AsyncSession, bookmark_id: int, note: str, *, by: str) -> Bookmark:
    """Change a bookmark's note (made with one key press, the note often comes a moment later).
    Only its maker may: the note is theirs."""
    mark = await get_bookmark(session, bookmark_id)
    if mark.made_by != by:
        raise Conflict(f"bookmark {mark.id} is {mark.made_by}'s: only they can change its note")
    if mark.note != note.strip():
        mark.note = note.strip()
        await session.flush()
        await audit.append(session, by, "bookmark.note", f"bookmark:{mark.id}")
    return mark


async def attach_bookmark(session: AsyncSession, bookmark_id: int, incident_id: int, *, by: str) -> Bookmark:
    """Attach a bookmark to an incident (open or closed: the link is an addition). A bookmark
    belongs to one incident; attaching it elsewhere is a conflict."""
    mark = await get_bookmark(session, bookmark_id)
    incident = await get_incident(session, incident_id)
    if mark.incident_id == incident.id:
        return mark
    if mark.incident_id is not None:
        raise Conflict(f"bookmark {mark.id} is already attached to incident {mark.incident_id}")
    mark.incident_id = incident.id
    await session.flush()
    camera = await session.get(Camera, mark.camera_id)
    await _entry(session, incident.id, by, "link", f"bookmark {mark.id} on {camera.name if camera else mark.camera_id}")
    await audit.append(session, by, "bookmark.attach", f"bookmark:{mark.id}", incident=incident.id)
    return mark


async def search_bookmarks(
    session: AsyncSession,
    *,
    camera_id: int | None = None,
    from_us: int | None = None,
    to_us: int | None = None,
    text: str | None = None,
    incident_id: int | None = None,
    made_by: str | None = None,
    cameras: Collection[int] | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[Bookmark]:
    """Bookmarks that overlap [from, to) (a moment at ``from`` counts), newest first; ``text``
    searches the note; ``cameras`` narrows to those cameras."""
    query = select(Bookmark)
    if camera_id is not None:
        query = query.where(Bookmark.camera_id == camera_id)
    if from_us is not None:
        query = query.where(Bookmark.end_us >= from_us)
    if to_us is not None:
        query = query.where(Bookmark.start_us < to_us)
    if text:
        query = query.where(Bookmark.note.ilike(_like(text.strip()), escape="\\"))
    if incident_id is not None:
        query = query.where(Bookmark.incident_id == incident_id)
    if made_by is not None:
        query = query.where(Bookmark.made_by == made_by)
    if cameras is not None:
        query = query.where(Bookmark.camera_id.in_(list(cameras)))
    query = query.order_by(Bookmark.start_us.desc(), Bookmark.id.desc()).limit(limit).offset(offset)
    return list((await session.execute(query)).scalars())
