"""Camera health: the fault log and availability from the catalogue.

**Faults** (``camera_faults``) are opened by hand (``source`` is the user's name) or
automatically (``source`` ``"automatic"``: a camera off-air too long, a picture check failing).
A fault moves ``open`` -> ``reported`` (to the maintenance contractor, with their reference) ->
``repaired`` -> ``closed``; ``open``/``reported`` may go straight to ``repaired`` or ``closed``
(a false alarm is closed unrepaired), and a ``repaired`` fault that comes back is ``open``
again. Time to repair is ``repaired_at_us - opened_at_us``. A camera has at most one
unrepaired automatic fault of each kind (a partial unique index): the checks that raise them
run every few minutes and must not open a new fault each time. Every change is audited in the
same transaction.

**Availability** of a camera over a period is its recorded time (catalogued footage, not
garbage) over the elapsed time, both clipped to the period. Elapsed time ends now (the future is
not unavailable) and starts no earlier than the camera's first catalogued footage (a camera
added on Wednesday is not blamed for Monday); a period wholly before it has no availability
(None). Segments of one camera do not overlap (the recorder writes one run at a time and a
recovered segment lies in a gap, recording-store.md invariant 7); the sum is capped at the
elapsed time in case a recovery ever doubles a span. Gaps (the catalogue's record of spans
with nothing recorded, and why) are listed beside it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import Conflict, Invalid, NotFound, audit
from storage.db import Base, now_us
from storage.models import Camera, Gap, Segment, SegmentState
from storage.weeks import LONDON, week_days

AUTOMATIC = "automatic"
SYSTEM_ACTOR = "system:health"


class FaultKind(enum.StrEnum):
    OFFLINE = "offline"
    BLURRED = "blurred"
    DARK = "dark"
    COVERED = "covered"
    MOVED = "moved"
    OTHER = "other"


class FaultStatus(enum.StrEnum):
    OPEN = "open"
    REPORTED = "reported"
    REPAIRED = "repaired"
    CLOSED = "closed"


UNREPAIRED = (FaultStatus.OPEN.value, FaultStatus.REPORTED.value)
TRANSITIONS = {
    FaultStatus.OPEN: {FaultStatus.REPORTED, FaultStatus.REPAIRED, FaultStatus.CLOSED},
    FaultStatus.REPORTED: {FaultStatus.REPAIRED, FaultStatus.CLOSED},
    FaultStatus.REPAIRED: {FaultStatus.CLOSED, FaultStatus.OPEN},
    FaultStatus.CLOSED: set(),
}


class CameraFault(Base):
    __tablename__ = "camera_faults"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(200))  # "automatic" or the user who opened it
    opened_at_us: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text, default="")
    contractor_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=FaultStatus.OPEN.value)
    repaired_at_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    closed_at_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        Index("ix_camera_faults_camera_opened", "camera_id", "opened_at_us"),
        Index("ix_camera_faults_status", "status"),
        # One unrepaired automatic fault per camera and kind (migration 0011).
        Index("uq_camera_faults_automatic", "camera_id", "kind", unique=True,
              sqlite_where=(source == AUTOMATIC) & status.in_(UNREPAIRED),
              postgresql_where=(source == AUTOMATIC) & status.in_(UNREPAIRED)),
    )

    @property
    def time_to_repair_us(self) -> int | None:
        return None if self.repaired_at_us is None else self.repaired_at_us - self.opened_at_us

    def to_dict(self) -> dict:
        return {"id": self.id, "camera_id": self.camera_id, "kind": self.kind, "source": self.source,
                "opened_at_us": self.opened_at_us, "description": self.description,
                "contractor_ref": self.contractor_ref, "status": self.status,
                "repaired_at_us": self.repaired_at_us, "closed_at_us": self.closed_at_us,
                "time_to_repair_us": self.time_to_repair_us}


def _kind(kind: str) -> FaultKind:
    try:
        return FaultKind(kind)
    except ValueError:
        raise Invalid(f"fault kind {kind!r}: one of {', '.join(k.value for k in FaultKind)}") from None


def _status(status: str) -> FaultStatus:
    try:
        return FaultStatus(status)
    except ValueError:
        raise Invalid(f"fault status {status!r}: one of {', '.join(s.value for s in FaultStatus)}") from None


async def get_fault(session: AsyncSession, fault_id: int) -> CameraFault:
    fault = await session.get(CameraFault, fault_id)
    if fault is None:
        raise NotFound(f"no fault {fault_id}")
    return fault


async def open_fault(session: AsyncSession, by: str, camera_id: int, kind: str, description: str = "",
                     *, contractor_ref: str | None = None, at_us: int | None = None) -> CameraFault:
    """A fault opened by hand by ``by``. Audited."""
    if by == AUTOMATIC or not by.strip():
        raise Invalid("a fault opened by hand needs the user who opened it")
    if await session.get(Camera, camera_id) is None:
        raise NotFound(f"no camera {camera_id}")
    fault = CameraFault(camera_id=camera_id, kind=_kind(kind).value, source=by, description=description,
                        opened_at_us=now_us() if at_us is None else at_us, contractor_ref=contractor_ref or None,
                        status=FaultStatus.OPEN.value)
    session.add(fault)
    await session.flush()
    await audit.append(session, by, "fault.open", f"fault:{fault.id}", camera_id=camera_id, kind=fault.kind,
                       description=description, contractor_ref=fault.contractor_ref)
    return fault


async def open_automatic(session: AsyncSession, camera_id: int, kind: str, description: str,
                         *, at_us: int | None = None) -> tuple[CameraFault, bool]:
    """The camera's unrepaired automatic fault of ``kind``, opened now if there is none:
    (fault, opened). Audited when opened (actor ``system:health``)."""
    kind = _kind(kind).value
    existing = await unrepaired_automatic(session, camera_id, kind)
    if existing is not None:
        return existing, False
    fault = CameraFault(camera_id=camera_id, kind=kind, source=AUTOMATIC, description=description,
                        opened_at_us=now_us() if at_us is None else at_us, status=FaultStatus.OPEN.value)
    session.add(fault)
    await session.flush()
    await audit.append(session, SYSTEM_ACTOR, "fault.open", f"fault:{fault.id}", camera_id=camera_id, kind=kind,
                       description=description, automatic=True)
    return fault, True


async def unrepaired_automatic(session: AsyncSession, camera_id: int, kind: str) -> CameraFault | None:
    return await session.scalar(select(CameraFault).where(
        CameraFault.camera_id == camera_id, CameraFault.kind == kind, CameraFault.source == AUTOMATIC,
        CameraFault.status.in_(UNREPAIRED)))


async def repair_automatic(session: AsyncSession, camera_id: int, kind: str, note: str = "",
                           *, at_us: int | None = None) -> CameraFault | None:
    """The condition behind an automatic fault has cleared (the camera is back, the picture
    passes): mark its fault repaired. None if there was none. Audited."""
    fault = await unrepaired_automatic(session, camera_id, kind)
    if fault is None:
        return None
    return await set_status(session, SYSTEM_ACTOR, fault.id, FaultStatus.REPAIRED.value, note=note, at_us=at_us)


async def set_status(session: AsyncSession, by: str, fault_id: int, status: str, *, note: str = "",
                     at_us: int | None = None) -> CameraFault:
    """Move a fault to ``status`` (see TRANSITIONS); Conflict if it may not. Audited."""
    fault = await get_fault(session, fault_id)
    new, old = _status(status), FaultStatus(fault.status)
    if new == old:
        raise Conflict(f"fault {fault_id} is already {old.value}")
    if new not in TRANSITIONS[old]:
        raise Conflict(f"fault {fault_id} is {old.value}: it cannot become {new.value}")
    at = now_us() if at_us is None else at_us
    if new is FaultStatus.OPEN and fault.source == AUTOMATIC and \
            await unrepaired_automatic(session, fault.camera_id, fault.kind) is not None:
        raise Conflict(f"camera {fault.camera_id} already has an unrepaired automatic {fault.kind} fault")
    fault.status = new.value
    if new is FaultStatus.REPAIRED:
        fault.repaired_at_us = max(at, fault.opened_at_us)
    elif new is FaultStatus.CLOSED:
        fault.closed_at_us = at
    elif new is FaultStatus.OPEN:
        fault.repaired_at_us = None  # it came back: the repair did not hold
    await session.flush()
    await audit.append(session, by, f"fault.{new.value}", f"fault:{fault.id}", camera_id=fault.camera_id,
                       kind=fault.kind, previous=old.value, note=note)
    return fault


async def update_fault(session: AsyncSession, by: str, fault_id: int, *, contractor_ref: str | None = None,
                       description: str | None = None) -> CameraFault:
    """Set the contractor's reference or the description. A closed fault is kept as it was."""
    fault = await get_fault(session, fault_id)
    if fault.status == FaultStatus.CLOSED.value:
        raise Conflict(f"fault {fault_id} is closed")
    changes = {}
    if contractor_ref is not None and contractor_ref != (fault.contractor_ref or ""):
        changes["contractor_ref"] = [fault.contractor_ref, contractor_ref or None]
        fault.contractor_ref = contractor_ref or None
    if description is not None and description != fault.description:
        changes["description"] = [fault.description, description]
        fault.description = description
    if changes:
        await session.flush()
        await audit.append(session, by, "fault.update", f"fault:{fault.id}", camera_id=fault.camera_id,
                           changes=changes)
    return fault


async def list_faults(session: AsyncSession, *, camera_id: int | None = None, unrepaired_only: bool = False,
                      start_us: int | None = None, end_us: int | None = None, limit: int = 500) -> list[CameraFault]:
    """Faults, newest first; ``start_us``/``end_us``: those open at some time in the period
    (opened before its end, not yet repaired or closed at its start)."""
    query = select(CameraFault).order_by(CameraFault.opened_at_us.desc(), CameraFault.id.desc()).limit(limit)
    if camera_id is not None:
        query = query.where(CameraFault.camera_id == camera_id)
    if unrepaired_only:
        query = query.where(CameraFault.status.in_(UNREPAIRED))
    if end_us is not None:
        query = query.where(CameraFault.opened_at_us < end_us)
    if start_us is not None:
        ended = func.coalesce(CameraFault.repaired_at_us, CameraFault.closed_at_us)
        query = query.where(ended.is_(None) | (ended > start_us))
    return list((await session.execute(query)).scalars())


# --- availability -------------------------------------------------------------------------

@dataclass
class Availability:
    """One camera over one period: recorded and elapsed microseconds (see the module)."""

    camera_id: int
    start_us: int
    end_us: int
    recorded_us: int = 0
    elapsed_us: int = 0

    @property
    def ratio(self) -> float | None:
        return None if self.elapsed_us <= 0 else min(1.0, self.recorded_us / self.elapsed_us)

    def to_dict(self) -> dict:
        return {"start_us": self.start_us, "end_us": self.end_us, "recorded_us": self.recorded_us,
                "elapsed_us": self.elapsed_us, "availability": None if self.ratio is None else round(self.ratio, 5)}


@dataclass
class CameraAvailability:
    camera_id: int
    name: str
    total: Availability
    periods: list[Availability] = field(default_factory=list)  # e.g. one per day
    gaps: list[tuple[int, int, str]] = field(default_factory=list)  # (start_us, end_us, reason), clipped

    def to_dict(self) -> dict:
        return {"camera_id": self.camera_id, "name": self.name, **self.total.to_dict(),
                "periods": [p.to_dict() for p in self.periods],
                "gaps": [{"start_us": s, "end_us": e, "reason": r} for s, e, r in self.gaps]}


_LOOKBACK_US = 15 * 60 * 1_000_000  # segments are at most a few minutes long (catalogue.timeline)


def _greatest(dialect: str, a, b):
    return func.max(a, b) if dialect == "sqlite" else func.greatest(a, b)


def _least(dialect: str, a, b):
    return func.min(a, b) if dialect == "sqlite" else func.least(a, b)


async def availability(session: AsyncSession, periods: Sequence[tuple[int, int]], *,
                       camera_ids: Sequence[int] | None = None, now: int | None = None) -> list[CameraAvailability]:
    """Availability of each camera (all, or ``camera_ids``) over consecutive ``periods``
    (e.g. the days of a week), and over their whole span. One query for the segments: the
    covering index (camera_id, start_us, end_us, state) is read once per camera."""
    if not periods:
        raise Invalid("availability needs at least one period")
    for s, e in periods:
        if e <= s:
            raise Invalid("each period must end after it starts")
    now = now_us() if now is None else now
    span_start, span_end = min(s for s, _ in periods), max(e for _, e in periods)
    cam_query = select(Camera.id, Camera.name,
                       select(func.min(Segment.start_us)).where(Segment.camera_id == Camera.id,
                                                               Segment.state != SegmentState.GARBAGE.value)
                       .scalar_subquery()).order_by(Camera.id)
    if camera_ids is not None:
        cam_query = cam_query.where(Camera.id.in_(list(camera_ids)))
    cams = (await session.execute(cam_query)).all()
    if not cams:
        return []
    dialect = session.get_bind().dialect.name
    sums = []
    for s, e in periods:
        overlap = _least(dialect, Segment.end_us, literal(e)) - _greatest(dialect, Segment.start_us, literal(s))
        sums.append(func.sum(_greatest(dialect, overlap, literal(0))))
    rows = (await session.execute(
        select(Segment.camera_id, *sums)
        .where(Segment.camera_id.in_([c[0] for c in cams]),
               Segment.start_us >= span_start - _LOOKBACK_US, Segment.start_us < span_end,
               Segment.end_us > span_start, Segment.state != SegmentState.GARBAGE.value)
        .group_by(Segment.camera_id)
    )).all()
    recorded = {row[0]: [int(v or 0) for v in row[1:]] for row in rows}
    gap_rows = (await session.execute(
        select(Gap.camera_id, Gap.start_us, Gap.end_us, Gap.reason)
        .where(Gap.camera_id.in_([c[0] for c in cams]), Gap.start_us < span_end)
        .where(Gap.end_us.is_(None) | (Gap.end_us > span_start)).order_by(Gap.camera_id, Gap.start_us)
    )).all()
    gaps: dict[int, list[tuple[int, int, str]]] = {}
    for cam_id, gs, ge, reason in gap_rows:
        end = min(span_end, now if ge is None else ge)
        if end > max(gs, span_start):
            gaps.setdefault(cam_id, []).append((max(gs, span_start), end, reason))
    out = []
    for cam_id, name, first_us in cams:
        per = []
        for i, (s, e) in enumerate(periods):
            begin = s if first_us is None else max(s, first_us)
            elapsed = max(0, min(e, now) - begin) if first_us is not None else 0
            rec = min(recorded.get(cam_id, [0] * len(periods))[i], elapsed)
            per.append(Availability(cam_id, s, e, rec, elapsed))
        total = Availability(cam_id, span_start, span_end, sum(p.recorded_us for p in per),
                             sum(p.elapsed_us for p in per))
        out.append(CameraAvailability(cam_id, name, total, per, gaps.get(cam_id, [])))
    return out


async def week_availability(session: AsyncSession, week: str, *, tz_name: str = LONDON,
                            camera_ids: Sequence[int] | None = None, now: int | None = None) -> list[CameraAvailability]:
    """Availability of each camera over an ISO week (local time), per local day and in total."""
    return await availability(session, [(s, e) for _, s, e in week_days(week, tz_name)],
                              camera_ids=camera_ids, now=now)
