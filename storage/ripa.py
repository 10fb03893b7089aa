"""RIPA authorisations: the register of directed surveillance (and, by type, CHIS) authorisations,
their reviews, renewals and cancellation, and the directed use of cameras linked to them.

The state of an authorisation is computed from its dates, never stored (:func:`state_of`):
``pending`` before it takes effect, ``live`` while in force, ``review_due`` once its next review
date has passed (still in force: only the authorising officer ends it), ``expired`` at its
expiry, ``cancelled`` once cancelled. A directed surveillance authorisation lasts three months
beginning with the day it was granted (RIPA 2000 s.43(3)(c)); a renewal extends it by three
months beginning with the day it would have expired (s.43(4)); CHIS lasts twelve months
(s.43(3)(b)). An authorisation may end earlier (the planned operation's end) but never later.
Every change appends its audit entry (``ripa.*``) in the caller's transaction. Times are UTC microseconds;
days and months are counted in Europe/London (storage.months). docs/design/lawful-use.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage import Invalid, NotFound, audit
from storage.db import Base, now_us
from storage.models import Camera, Site
from storage.months import local_date, months_beginning_with

DAY_US = 86_400 * 1_000_000
# The tables' ids are INTEGER (int4 on PostgreSQL): a larger number names no row, and binding it
# would be a driver error (found by tests/test_api_fuzz.py on PostgreSQL).
MAX_PK = 2**31 - 1


def pk(value: int | str) -> int | None:
    """A row id of these tables, or None when ``value`` cannot be one."""
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 10:
            return None
        value = int(value)
    return value if 0 < value <= MAX_PK else None


class Kind(enum.StrEnum):
    DIRECTED = "directed_surveillance"
    CHIS = "chis"  # covert human intelligence source: recorded, not otherwise supported


# How long each kind lasts and what a renewal adds, in calendar months (RIPA s.43(3)).
MONTHS = {Kind.DIRECTED: 3, Kind.CHIS: 12}


class State(enum.StrEnum):
    PENDING = "pending"
    LIVE = "live"
    REVIEW_DUE = "review_due"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


IN_FORCE = (State.LIVE, State.REVIEW_DUE)


class Authorisation(Base):
    __tablename__ = "ripa_authorisations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    authorising_officer: Mapped[str] = mapped_column(String(200))
    grounds: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)  # who is to be watched: description, not a verdict
    operation: Mapped[str] = mapped_column(Text, default="")  # what is planned, where
    camera_ids: Mapped[list[int]] = mapped_column(JSON, default=list)  # empty and no sites: any camera
    site_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    authorised_us: Mapped[int] = mapped_column(BigInteger)  # when it was granted
    start_us: Mapped[int] = mapped_column(BigInteger)  # when it takes effect
    expires_us: Mapped[int] = mapped_column(BigInteger, index=True)  # exclusive end
    next_review_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    renewals: Mapped[int] = mapped_column(Integer, default=0)
    created_us: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200))
    cancelled_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cancelled_by: Mapped[str] = mapped_column(String(200), default="")
    cancel_reason: Mapped[str] = mapped_column(Text, default="")
    # Alerts already raised, by key (``review:<due us>``, ``expiry:<us>``, ``expired:<us>``), so a
    # renewal or a new review date is alerted again and nothing twice.
    alerted: Mapped[list[str]] = mapped_column(JSON, default=list)
    events: Mapped[list[RipaEvent]] = relationship(
        back_populates="authorisation", cascade="all, delete-orphan", lazy="selectin", order_by="RipaEvent.id"
    )


class RipaEvent(Base):
    """A review, renewal or cancellation: who, when, what they wrote, the dates after it."""

    __tablename__ = "ripa_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    authorisation_id: Mapped[int] = mapped_column(ForeignKey("ripa_authorisations.id", ondelete="CASCADE"), index=True)
    at_us: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(20))  # review | renewal | cancellation
    by: Mapped[str] = mapped_column(String(200))
    officer: Mapped[str] = mapped_column(String(200), default="")  # the authorising officer who did it
    note: Mapped[str] = mapped_column(Text, default="")
    next_review_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expires_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    authorisation: Mapped[Authorisation] = relationship(back_populates="events")


class DirectedUse(Base):
    """An operator's directed use of a camera under an authorisation (e.g. following a person on a
    PTZ camera at police request): while open, that operator's PTZ actions on that camera are
    audited with the authorisation's reference."""

    __tablename__ = "ripa_directed_uses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    authorisation_id: Mapped[int] = mapped_column(ForeignKey("ripa_authorisations.id"), index=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"))
    operator: Mapped[str] = mapped_column(String(200), index=True)
    purpose: Mapped[str] = mapped_column(Text, default="")
    started_us: Mapped[int] = mapped_column(BigInteger)
    ended_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


# --- rules (pure) ---------------------------------------------------------------------------

def state_of(auth: Authorisation, now: int) -> State:
    if auth.cancelled_us is not None and auth.cancelled_us <= now:
        return State.CANCELLED
    if now >= auth.expires_us:
        return State.EXPIRED
    if now < auth.start_us:
        return State.PENDING
    if auth.next_review_us is not None and now >= auth.next_review_us:
        return State.REVIEW_DUE
    return State.LIVE


def statutory_expiry(kind: Kind, authorised_us: int) -> int:
    """The latest exclusive end: ``MONTHS[kind]`` months beginning with the day it was granted."""
    return months_beginning_with(local_date(authorised_us), MONTHS[kind])


def renewed_expiry(kind: Kind, expires_us: int) -> int:
    """A renewal takes effect when the authorisation would have ceased (the day of its exclusive
    end) and lasts ``MONTHS[kind]`` months beginning with that day."""
    return months_beginning_with(local_date(expires_us), MONTHS[kind])


def covers_camera(auth: Authorisation, camera: Camera) -> bool:
    """Whether the authorisation names the camera, or its site, or names none (the whole network)."""
    if not auth.camera_ids and not auth.site_ids:
        return True
    return camera.id in (auth.camera_ids or []) or (camera.site_id is not None and camera.site_id in (auth.site_ids or []))


@dataclass(frozen=True)
class Due:
    """An alert the periodic check should raise: its key (raised once), kind and message."""

    key: str
    kind: str
    message: str


def dues(auth: Authorisation, now: int, *, review_warn_us: int, expiry_warn_us: int) -> list[Due]:
    """The alerts due for an authorisation at ``now`` that were not raised yet (pure)."""
    state = state_of(auth, now)
    if state == State.CANCELLED:
        return []
    out: list[Due] = []
    ref = auth.reference
    if state == State.EXPIRED:
        out.append(Due(f"expired:{auth.expires_us}", "ripa_expired",
                       f"RIPA authorisation {ref} has expired: directed use under it must stop"))
    else:
        if now >= auth.expires_us - expiry_warn_us:
            out.append(Due(f"expiry:{auth.expires_us}", "ripa_expiry",
                           f"RIPA authorisation {ref} expires soon: renew or cancel it"))
        if auth.next_review_us is not None and now >= auth.next_review_us - review_warn_us:
            overdue = now >= auth.next_review_us
            out.append(Due(f"review:{auth.next_review_us}", "ripa_review",
                           f"RIPA authorisation {ref}: review {'overdue' if overdue else 'due soon'}"))
    done = set(auth.alerted or [])
    return [d for d in out if d.key not in done]


# --- the register ---------------------------------------------------------------------------

async def _resolve_places(session: AsyncSession, cameras: list[int], sites: list[int]) -> None:
    for cid in cameras:
        if pk(cid) is None or await session.get(Camera, cid) is None:
            raise Invalid(f"cameras: no camera {cid}")
    for sid in sites:
        if pk(sid) is None or await session.get(Site, sid) is None:
            raise Invalid(f"sites: no site {sid}")


async def create(
    session: AsyncSession,
    *,
    by: str,
    reference: str,
    kind: Kind | str,
    authorising_officer: str,
    grounds: str,
    subject: str,
    authorised_us: int,
    operation: str = "",
    camera_ids: list[int] | None = None,
    site_ids: list[int] | None = None,
    start_us: int | None = None,
    expires_us: int | None = None,
    next_review_us: int | None = None,
    review_interval_days: int = 28,
) -> Authorisation:
    """Record an authorisation. ``expires_us`` defaults to the statutory expiry and may not be
    later; ``next_review_us`` defaults to ``review_interval_days`` after it takes effect (or the
    expiry, if sooner)."""
    try:
        kind = Kind(kind)
    except ValueError:
        raise Invalid(f"kind: one of {', '.join(k.value for k in Kind)}") from None
    for name, value in (("reference", reference), ("authorising_officer", authorising_officer),
                        ("grounds", grounds), ("subject", subject)):
        if not str(value).strip():
            raise Invalid(f"{name}: required")
    reference = reference.strip()
    if (await session.execute(select(Authorisation.id).where(Authorisation.reference == reference))).first():
        raise Invalid(f"reference: {reference!r} is already in the register")
    camera_ids, site_ids = sorted(set(camera_ids or [])), sorted(set(site_ids or []))
    await _resolve_places(session, camera_ids, site_ids)
    start = authorised_us if start_us is None else start_us
    latest = statutory_expiry(kind, authorised_us)
    expiry = latest if expires_us is None else expires_us
    if start < authorised_us:
        raise Invalid("start: an authorisation cannot take effect before it was granted")
    if expiry > latest:
        raise Invalid(f"expires: at most {MONTHS[kind]} months beginning with the day it was granted")
    if expiry <= start:
        raise Invalid("expires: must be after the start")
    review = next_review_us if next_review_us is not None else min(start + review_interval_days * DAY_US, expiry)
    if review < start:
        raise Invalid("review: the first review cannot be before the start")
    auth = Authorisation(
        reference=reference, kind=kind.value, authorising_officer=authorising_officer.strip(),
        grounds=grounds.strip(), subject=subject.strip(), operation=operation.strip(),
        camera_ids=camera_ids, site_ids=site_ids, authorised_us=authorised_us, start_us=start,
        expires_us=expiry, next_review_us=review, created_us=now_us(), created_by=by, alerted=[], events=[],
    )
    session.add(auth)
    await session.flush()
    await audit.append(session, by, "ripa.create", f"ripa:{auth.reference}", kind=kind.value,
                       officer=auth.authorising_officer, cameras=camera_ids, sites=site_ids,
                       start_us=start, expires_us=expiry, next_review_us=review)
    return auth


async def get(session: AsyncSession, ref: int | str, *, for_update: bool = False) -> Authorisation:
    """By id (digits) or reference."""
    query = select(Authorisation)
    row = pk(ref)
    if row is not None:
        query = query.where((Authorisation.id == row) | (Authorisation.reference == str(ref)))
    else:
        query = query.where(Authorisation.reference == str(ref))
    if for_update:
        query = query.with_for_update()
    auth = (await session.execute(query)).scalars().first()
    if auth is None:
        raise NotFound(f"no RIPA authorisation {str(ref)[:100]!r}")
    return auth


async def list_all(session: AsyncSession, *, in_force_only: bool = False) -> list[Authorisation]:
    rows = list((await session.execute(select(Authorisation).order_by(Authorisation.expires_us))).scalars())
    if in_force_only:
        now = now_us()
        rows = [a for a in rows if state_of(a, now) in IN_FORCE]
    return rows


def _still_open(auth: Authorisation, what: str) -> None:
    state = state_of(auth, now_us())
    if state in (State.CANCELLED, State.EXPIRED):
        raise Invalid(f"RIPA authorisation {auth.reference} is {state.value}; it cannot be {what}")


async def review(session: AsyncSession, auth: Authorisation, *, by: str, officer: str, note: str,
                 next_review_us: int | None) -> RipaEvent:
    """Record a review by the authorising officer and set the next review date (None: none
    before expiry)."""
    _still_open(auth, "reviewed")
    if not note.strip() or not officer.strip():
        raise Invalid("a review needs the reviewing officer and a note of the outcome")
    if next_review_us is not None and not now_us() < next_review_us <= auth.expires_us:
        raise Invalid("next_review: must be after now and no later than the expiry")
    auth.next_review_us = next_review_us
    event = RipaEvent(at_us=now_us(), kind="review", by=by, officer=officer.strip(), note=note.strip(),
                      next_review_us=next_review_us, expires_us=auth.expires_us)
    auth.events.append(event)
    await session.flush()
    await audit.append(session, by, "ripa.review", f"ripa:{auth.reference}", officer=event.officer,
                       next_review_us=next_review_us)
    return event


async def renew(session: AsyncSession, auth: Authorisation, *, by: str, officer: str, note: str,
                next_review_us: int | None = None, review_interval_days: int = 28) -> RipaEvent:
    """Renew before expiry: the expiry moves on by the kind's period beginning with the day it
    would have ceased (RIPA s.43(4))."""
    _still_open(auth, "renewed")
    if not note.strip() or not officer.strip():
        raise Invalid("a renewal needs the authorising officer and the reasons")
    new_expiry = renewed_expiry(Kind(auth.kind), auth.expires_us)
    review_at = next_review_us if next_review_us is not None else min(
        auth.expires_us + review_interval_days * DAY_US, new_expiry)
    if not now_us() < review_at <= new_expiry:
        raise Invalid("next_review: must be after now and no later than the new expiry")
    auth.expires_us, auth.next_review_us, auth.renewals = new_expiry, review_at, auth.renewals + 1
    event = RipaEvent(at_us=now_us(), kind="renewal", by=by, officer=officer.strip(), note=note.strip(),
                      next_review_us=review_at, expires_us=new_expiry)
    auth.events.append(event)
    await session.flush()
    await audit.append(session, by, "ripa.renew", f"ripa:{auth.reference}", officer=event.officer,
                       expires_us=new_expiry, next_review_us=review_at, renewals=auth.renewals)
    return event


async def cancel(session: AsyncSession, auth: Authorisation, *, by: str, officer: str, reason: str) -> RipaEvent:
    """Cancel (the surveillance is no longer necessary or proportionate); open directed uses end."""
    _still_open(auth, "cancelled")
    if not reason.strip() or not officer.strip():
        raise Invalid("a cancellation needs the authorising officer and a reason")
    now = now_us()
    auth.cancelled_us, auth.cancelled_by, auth.cancel_reason = now, by, reason.strip()
    event = RipaEvent(at_us=now, kind="cancellation", by=by, officer=officer.strip(), note=reason.strip(),
                      expires_us=auth.expires_us)
    auth.events.append(event)
    ended = []
    for use in await open_uses(session, authorisation_id=auth.id):
        use.ended_us = now
        ended.append(use.id)
    await session.flush()
    await audit.append(session, by, "ripa.cancel", f"ripa:{auth.reference}", officer=event.officer,
                       reason=event.note, ended_uses=ended)
    return event


async def mark_alerted(session: AsyncSession, auth: Authorisation, keys: list[str]) -> None:
    auth.alerted = sorted(set(auth.alerted or []) | set(keys))
    await session.flush()


# --- directed use ---------------------------------------------------------------------------

async def open_uses(session: AsyncSession, *, operator: str | None = None, authorisation_id: int | None = None,
                    camera_id: int | None = None) -> list[DirectedUse]:
    query = select(DirectedUse).where(DirectedUse.ended_us.is_(None)).order_by(DirectedUse.id)
    if operator is not None:
        query = query.where(DirectedUse.operator == operator)
    if authorisation_id is not None:
        query = query.where(DirectedUse.authorisation_id == authorisation_id)
    if camera_id is not None:
        query = query.where(DirectedUse.camera_id == camera_id)
    return list((await session.execute(query)).scalars())


async def start_use(session: AsyncSession, auth: Authorisation, camera: Camera, *, operator: str,
                    purpose: str = "") -> DirectedUse:
    """Open a directed use: only under an authorisation in force that covers the camera. An
    operator has at most one open use per camera (the earlier one ends)."""
    state = state_of(auth, now_us())
    if state not in IN_FORCE:
        raise Invalid(f"RIPA authorisation {auth.reference} is {state.value}: directed use needs a live one")
    if not covers_camera(auth, camera):
        raise Invalid(f"RIPA authorisation {auth.reference} does not cover camera {camera.name!r}")
    now = now_us()
    for old in await open_uses(session, operator=operator, camera_id=camera.id):
        old.ended_us = now
        await audit.append(session, operator, "ripa.use_end", f"camera:{camera.id}", directed_use=old.id,
                           replaced=True, ripa=(await session.get(Authorisation, old.authorisation_id)).reference)
    use = DirectedUse(authorisation_id=auth.id, camera_id=camera.id, operator=operator, purpose=purpose.strip(),
                      started_us=now)
    session.add(use)
    await session.flush()
    await audit.append(session, operator, "ripa.use_start", f"camera:{camera.id}", ripa=auth.reference,
                       directed_use=use.id, purpose=use.purpose)
    return use


async def end_use(session: AsyncSession, use_id: int, *, by: str, operator: str | None = None) -> DirectedUse:
    """End a directed use (``operator`` set: only one of theirs; someone else's is NotFound)."""
    use = await session.get(DirectedUse, use_id) if pk(use_id) is not None else None
    if use is None or (operator is not None and use.operator != operator):
        raise NotFound(f"no directed use {use_id}")
    if use.ended_us is not None:
        raise Invalid(f"directed use {use_id} has already ended")
    use.ended_us = now_us()
    await session.flush()
    auth = await session.get(Authorisation, use.authorisation_id)
    await audit.append(session, by, "ripa.use_end", f"camera:{use.camera_id}", directed_use=use.id,
                       ripa=auth.reference if auth else None)
    return use


async def audit_link(session: AsyncSession, operator: str, camera_id: int) -> dict[str, Any]:
    """What a PTZ audit entry carries while the operator has a directed use open on the camera:
    the authorisation's reference and the use, and ``ripa_outside: true`` when the authorisation
    is no longer (or not yet) in force: an action outside its window, flagged in the trail."""
    uses = await open_uses(session, operator=operator, camera_id=camera_id)
    if not uses:
        return {}
    use = uses[-1]
    auth = await session.get(Authorisation, use.authorisation_id)
    assert auth is not None
    state = state_of(auth, now_us())
    link: dict[str, Any] = {"ripa": auth.reference, "directed_use": use.id}
    if state not in IN_FORCE:
        link.update(ripa_outside=True, ripa_state=state.value)
    return link


async def live_reference(session: AsyncSession, reference: str) -> Authorisation | None:
    """The authorisation with this reference if it is in force now, else None."""
    auth = (await session.execute(select(Authorisation).where(Authorisation.reference == reference.strip()))).scalars().first()
    return auth if auth is not None and state_of(auth, now_us()) in IN_FORCE else None


async def request_warning(session: AsyncSession, directed_surveillance: bool, reference: str) -> str | None:
    """The warning a supervisor sees on a police request that cites surveillance of a named person
    (flagged ``directed_surveillance``, or naming an authorisation) without one in force now;
    None when there is nothing to warn of. docs/design/lawful-use.md states the rule."""
    reference = (reference or "").strip()
    if not directed_surveillance and not reference:
        return None
    if not reference:
        return ("The request cites surveillance of a named person but names no RIPA authorisation: directed "
                "surveillance needs one (RIPA 2000 s.28). Ask for the reference before approving.")
    auth = (await session.execute(select(Authorisation).where(Authorisation.reference == reference))).scalars().first()
    if auth is None:
        return f"RIPA authorisation {reference!r} is not in the register: check it before approving."
    state = state_of(auth, now_us())
    if state not in IN_FORCE:
        return f"RIPA authorisation {reference!r} is {state.value}, not live: directed surveillance under it is not authorised."
    return None


async def uses_of(session: AsyncSession, authorisation_id: int) -> list[DirectedUse]:
    """Every directed use under an authorisation, open or ended, oldest first."""
    return list((await session.execute(select(DirectedUse).where(DirectedUse.authorisation_id == authorisation_id)
                                       .order_by(DirectedUse.id))).scalars())
