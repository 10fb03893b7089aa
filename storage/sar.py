"""Subject access requests (UK GDPR Art. 15, DPA 2018): the register, the statutory deadline,
the footage windows and their hold.

A request moves through these states (and no others)::

    awaiting_identity -> open -> disclosed | refused | withdrawn
                      \\-> refused | withdrawn

The deadline is one calendar month from the day the clock starts (the day the request is
received, or, if identity still had to be verified, the day it was), extendable once by two
further months with a reason (Art. 12(3)); see storage.months for the calendar rule. The
footage of a request is its windows (camera, from, to: ``sar_windows``, to which redaction
attaches later); while the request is not closed, one hold (reference ``sar:<id>``) keeps every
window past retention. Closing releases it. Every change appends its audit entry (``sar.*``) in the
caller's transaction. docs/design/lawful-use.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage import Invalid, NotFound, audit
from storage.db import Base, now_us
from storage.holds import add_hold, release_hold
from storage.models import Camera, Hold, HoldWindow
from storage.months import local_date, month_deadline
from storage.ripa import pk

DAY_US = 86_400 * 1_000_000
MONTHS = 1  # Art. 12(3): without undue delay and within one month of receipt
EXTENSION_MONTHS = 2  # "extended by two further months where necessary"


class SarState(enum.StrEnum):
    AWAITING_IDENTITY = "awaiting_identity"
    OPEN = "open"
    DISCLOSED = "disclosed"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


CLOSED = (SarState.DISCLOSED, SarState.REFUSED, SarState.WITHDRAWN)
TRANSITIONS: dict[SarState, set[SarState]] = {
    SarState.AWAITING_IDENTITY: {SarState.OPEN, SarState.REFUSED, SarState.WITHDRAWN},
    SarState.OPEN: {SarState.DISCLOSED, SarState.REFUSED, SarState.WITHDRAWN},
    SarState.DISCLOSED: set(),
    SarState.REFUSED: set(),
    SarState.WITHDRAWN: set(),
}


class SubjectAccessRequest(Base):
    __tablename__ = "sars"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(40), unique=True, default="")  # SAR-<year>-<id>
    created_us: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200))
    requester_name: Mapped[str] = mapped_column(String(200))
    requester_contact: Mapped[str] = mapped_column(Text, default="")  # address, e-mail, telephone
    received_us: Mapped[int] = mapped_column(BigInteger)  # when the request arrived
    identity_method: Mapped[str] = mapped_column(Text, default="")  # how identity was verified
    identity_verified_by: Mapped[str] = mapped_column(String(200), default="")
    identity_verified_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    description: Mapped[str] = mapped_column(Text)  # of themselves and their clothing
    places_times: Mapped[str] = mapped_column(Text)  # where and when, in their words
    state: Mapped[str] = mapped_column(String(20), default=SarState.AWAITING_IDENTITY.value, index=True)
    clock_start_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    deadline_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)  # exclusive end
    extended_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    extended_by: Mapped[str] = mapped_column(String(200), default="")
    extension_reason: Mapped[str] = mapped_column(Text, default="")
    closed_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    closed_by: Mapped[str] = mapped_column(String(200), default="")
    outcome: Mapped[str] = mapped_column(Text, default="")  # what was disclosed, or why not
    exemption: Mapped[str] = mapped_column(Text, default="")  # cited when refused (DPA 2018 Sch. 2-4)
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"), nullable=True)
    alerted: Mapped[list[str]] = mapped_column(JSON, default=list)  # reminder keys already raised
    windows: Mapped[list[SarWindow]] = relationship(
        back_populates="sar", cascade="all, delete-orphan", lazy="selectin", order_by="SarWindow.id"
    )


class SarWindow(Base):
    """Footage found for a request: a camera and a time range (redaction attaches to these)."""

    __tablename__ = "sar_windows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sar_id: Mapped[int] = mapped_column(ForeignKey("sars.id", ondelete="CASCADE"), index=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    added_by: Mapped[str] = mapped_column(String(200))
    added_us: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text, default="")
    sar: Mapped[SubjectAccessRequest] = relationship(back_populates="windows")


# --- rules (pure) ---------------------------------------------------------------------------

def deadline_for(clock_start_us: int, extended: bool) -> int:
    return month_deadline(local_date(clock_start_us), MONTHS + (EXTENSION_MONTHS if extended else 0))


@dataclass(frozen=True)
class SarDue:
    key: str
    kind: str
    message: str


def dues(sar: SubjectAccessRequest, now: int, *, remind_us: int) -> list[SarDue]:
    """Reminders due at ``now`` not raised yet: ``remind_us`` before the deadline, and overdue."""
    if SarState(sar.state) in CLOSED or sar.deadline_us is None:
        return []
    out = []
    if now >= sar.deadline_us:
        out.append(SarDue(f"overdue:{sar.deadline_us}", "sar_overdue",
                          f"Subject access request {sar.reference} is past its statutory deadline"))
    elif now >= sar.deadline_us - remind_us:
        out.append(SarDue(f"due:{sar.deadline_us}", "sar_due",
                          f"Subject access request {sar.reference}: the statutory deadline is near"))
    done = set(sar.alerted or [])
    return [d for d in out if d.key not in done]


# --- the register ---------------------------------------------------------------------------

def _move(sar: SubjectAccessRequest, to: SarState) -> None:
    current = SarState(sar.state)
    if to not in TRANSITIONS[current]:
        raise Invalid(f"subject access request {sar.reference} is {current.value}; it cannot become {to.value}")
    sar.state = to.value


def _start_clock(sar: SubjectAccessRequest, at_us: int) -> None:
    sar.clock_start_us = at_us
    sar.deadline_us = deadline_for(at_us, sar.extended_us is not None)


async def create(session: AsyncSession, *, by: str, requester_name: str, description: str, places_times: str,
                 received_us: int, requester_contact: str = "", identity_method: str = "") -> SubjectAccessRequest:
    """Record a request. With ``identity_method`` (how identity was verified) the request is open
    and its clock starts on the day it was received; without, it waits for identity."""
    for name, value in (("requester_name", requester_name), ("description", description),
                        ("places_times", places_times)):
        if not value.strip():
            raise Invalid(f"{name}: required")
    now = now_us()
    if received_us > now:
        raise Invalid("received: a request cannot be received in the future")
    sar = SubjectAccessRequest(
        created_us=now, created_by=by, requester_name=requester_name.strip(),
        requester_contact=requester_contact.strip(), received_us=received_us, description=description.strip(),
        places_times=places_times.strip(), state=SarState.AWAITING_IDENTITY.value, alerted=[], windows=[],
    )
    session.add(sar)
    await session.flush()
    sar.reference = f"SAR-{local_date(now).year}-{sar.id:06d}"
    if identity_method.strip():
        sar.identity_method, sar.identity_verified_by, sar.identity_verified_us = identity_method.strip(), by, now
        sar.state = SarState.OPEN.value
        _start_clock(sar, received_us)
    await session.flush()
    await audit.append(session, by, "sar.create", f"sar:{sar.reference}", state=sar.state,
                       deadline_us=sar.deadline_us)
    return sar


async def verify_identity(session: AsyncSession, sar: SubjectAccessRequest, *, by: str, method: str) -> None:
    """Identity verified now: the request opens and its clock starts today (the ICO: the time
    limit runs from receipt of the information needed to confirm identity)."""
    if not method.strip():
        raise Invalid("method: say how identity was verified")
    _move(sar, SarState.OPEN)
    now = now_us()
    sar.identity_method, sar.identity_verified_by, sar.identity_verified_us = method.strip(), by, now
    _start_clock(sar, max(now, sar.received_us))
    await session.flush()
    await audit.append(session, by, "sar.verify", f"sar:{sar.reference}", method=sar.identity_method,
                       deadline_us=sar.deadline_us)


async def extend(session: AsyncSession, sar: SubjectAccessRequest, *, by: str, reason: str) -> None:
    """Extend by two further months (once, with a reason: complex or numerous requests)."""
    if sar.state != SarState.OPEN.value:
        raise Invalid(f"subject access request {sar.reference} is {sar.state}; only an open one is extended")
    if sar.extended_us is not None:
        raise Invalid(f"subject access request {sar.reference} was already extended")
    if not reason.strip():
        raise Invalid("reason: an extension needs a reason, given to the requester")
    sar.extended_us, sar.extended_by, sar.extension_reason = now_us(), by, reason.strip()
    assert sar.clock_start_us is not None
    _start_clock(sar, sar.clock_start_us)
    await session.flush()
    await audit.append(session, by, "sar.extend", f"sar:{sar.reference}", reason=sar.extension_reason,
                       deadline_us=sar.deadline_us)


async def add_window(session: AsyncSession, sar: SubjectAccessRequest, *, by: str, camera_id: int, start_us: int,
                     end_us: int, max_window_us: int, hold_review_us: int, note: str = "") -> SarWindow:
    """Add footage to the request and to its hold (placed with the first window)."""
    if SarState(sar.state) in CLOSED:
        raise Invalid(f"subject access request {sar.reference} is {sar.state}")
    if end_us <= start_us:
        raise Invalid("the window must end after it starts")
    if end_us - start_us > max_window_us:
        raise Invalid(f"a window may last at most {max_window_us // 3_600_000_000} hours")
    if start_us > now_us():
        raise Invalid("the window starts in the future")
    if await session.get(Camera, camera_id) is None:
        raise Invalid(f"no camera {camera_id}")
    window = SarWindow(camera_id=camera_id, start_us=start_us, end_us=end_us, added_by=by, added_us=now_us(),
                       note=note.strip())
    sar.windows.append(window)
    if sar.hold_id is None:
        hold = await add_hold(session, reason=f"subject access request {sar.reference}: footage of the requester",
                              owner=by, review_us=hold_review_us, windows=[(camera_id, start_us, end_us)],
                              reference=f"sar:{sar.id}")
        sar.hold_id = hold.id
    else:
        session.add(HoldWindow(hold_id=sar.hold_id, camera_id=camera_id, start_us=start_us, end_us=end_us))
    await session.flush()
    await audit.append(session, by, "sar.window_add", f"sar:{sar.reference}", camera=camera_id, start_us=start_us,
                       end_us=end_us, hold=sar.hold_id)
    return window


async def remove_window(session: AsyncSession, sar: SubjectAccessRequest, window_id: int, *, by: str) -> SarWindow:
    """Take a window off the request (not the requester after all) and off its hold."""
    if SarState(sar.state) in CLOSED:
        raise Invalid(f"subject access request {sar.reference} is {sar.state}")
    window = next((w for w in sar.windows if w.id == window_id), None)
    if window is None:
        raise NotFound(f"no window {window_id} in {sar.reference}")
    if sar.hold_id is not None:
        held = (await session.execute(select(HoldWindow).where(
            HoldWindow.hold_id == sar.hold_id, HoldWindow.camera_id == window.camera_id,
            HoldWindow.start_us == window.start_us, HoldWindow.end_us == window.end_us).limit(1))).scalars().first()
        if held is not None:
            await session.delete(held)
    sar.windows.remove(window)
    await session.flush()
    await audit.append(session, by, "sar.window_remove", f"sar:{sar.reference}", camera=window.camera_id,
                       start_us=window.start_us, end_us=window.end_us)
    return window


async def close(session: AsyncSession, sar: SubjectAccessRequest, *, by: str, to: SarState | str, outcome: str,
                exemption: str = "") -> None:
    """Disclosed, refused (citing the exemption) or withdrawn; the hold is released."""
    to = SarState(to)
    if to not in CLOSED:
        raise Invalid(f"state: closing means {', '.join(s.value for s in CLOSED)}")
    if not outcome.strip():
        raise Invalid("outcome: say what was disclosed, or why not")
    if to == SarState.REFUSED and not exemption.strip():
        raise Invalid("exemption: a refusal cites the exemption relied on (e.g. DPA 2018 Sch. 2 para 2)")
    _move(sar, to)
    sar.closed_us, sar.closed_by, sar.outcome, sar.exemption = now_us(), by, outcome.strip(), exemption.strip()
    if sar.hold_id is not None:
        hold = await session.get(Hold, sar.hold_id)
        if hold is not None and hold.released_us is None:
            await release_hold(session, hold.id, by)
    await session.flush()
    await audit.append(session, by, "sar.close", f"sar:{sar.reference}", state=sar.state, exemption=sar.exemption,
                       hold=sar.hold_id)


async def get(session: AsyncSession, ref: int | str, *, for_update: bool = False) -> SubjectAccessRequest:
    """By id (digits) or reference (SAR-2026-000001)."""
    query = select(SubjectAccessRequest)
    if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):
        row = pk(ref)
        if row is None:
            raise NotFound(f"no subject access request {str(ref)[:60]!r}")
        query = query.where(SubjectAccessRequest.id == row)
    else:
        query = query.where(SubjectAccessRequest.reference == ref)
    if for_update:
        query = query.with_for_update()
    sar = (await session.execute(query)).scalars().first()
    if sar is None:
        raise NotFound(f"no subject access request {str(ref)[:60]!r}")
    return sar


async def list_all(session: AsyncSession, *, open_only: bool = False) -> list[SubjectAccessRequest]:
    query = select(SubjectAccessRequest).order_by(SubjectAccessRequest.id.desc())
    if open_only:
        query = query.where(SubjectAccessRequest.state.not_in([s.value for s in CLOSED]))
    return list((await session.execute(query)).scalars())


async def mark_alerted(session: AsyncSession, sar: SubjectAccessRequest, keys: list[str]) -> None:
    sar.alerted = sorted(set(sar.alerted or []) | set(keys))
    await session.flush()
