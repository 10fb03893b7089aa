"""Evidence for the police: requests and their windows, states, export jobs, the disclosure
register, the chain of custody, one-time download links.

A request moves through these states (and no others)::

    submitted -> approved -> exporting -> ready -> downloaded -> closed
              \\-> refused -> closed        (exporting -> approved again on failure or cancel)

Submitting places a hold at once (reference ``evidence:<id>``) so retention keeps the footage
while the request is pending; closing releases it. Times are integer UTC microseconds.
The custody log is hash-chained per request and each entry may carry a signature made by the
caller's signer (the service key), so an exported ``custody.jsonl`` can be checked on its own.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage import Invalid, NotFound, jobs
from storage.db import Base, now_us
from storage.holds import add_hold, release_hold
from storage.models import Camera, Hold

DAY_US = 86_400 * 1_000_000
EXPORT_KIND = "evidence.export"  # the kind of job (storage.jobs) that runs an export
GENESIS = "0" * 64


class RequestState(enum.StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REFUSED = "refused"
    EXPORTING = "exporting"
    READY = "ready"
    DOWNLOADED = "downloaded"
    CLOSED = "closed"


# Every allowed move; anything else is refused with Invalid.
TRANSITIONS: dict[RequestState, set[RequestState]] = {
    RequestState.SUBMITTED: {RequestState.APPROVED, RequestState.REFUSED, RequestState.CLOSED},
    RequestState.APPROVED: {RequestState.EXPORTING, RequestState.CLOSED},
    RequestState.REFUSED: {RequestState.CLOSED},
    RequestState.EXPORTING: {RequestState.READY, RequestState.APPROVED, RequestState.CLOSED},
    RequestState.READY: {RequestState.DOWNLOADED, RequestState.EXPORTING, RequestState.CLOSED},
    RequestState.DOWNLOADED: {RequestState.DOWNLOADED, RequestState.CLOSED},
    RequestState.CLOSED: set(),
}


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EvidenceRequest(Base):
    __tablename__ = "evidence_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_us: Mapped[int] = mapped_column(BigInteger)
    requested_by: Mapped[str] = mapped_column(String(200), index=True)  # the account that submitted
    officer_name: Mapped[str] = mapped_column(String(200))
    collar_number: Mapped[str] = mapped_column(String(50))
    force: Mapped[str] = mapped_column(String(200))
    crime_reference: Mapped[str] = mapped_column(String(200))
    offence: Mapped[str] = mapped_column(Text)
    necessity: Mapped[str] = mapped_column(Text)
    lawful_basis: Mapped[str] = mapped_column(Text)
    authorised_by: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default=RequestState.SUBMITTED.value)
    exhibit_ref: Mapped[str] = mapped_column(String(100), default="")
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"), nullable=True)
    decided_by: Mapped[str] = mapped_column(String(200), default="")
    decided_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    closed_by: Mapped[str] = mapped_column(String(200), default="")
    closed_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    close_reason: Mapped[str] = mapped_column(Text, default="")
    review_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # What the catalogue says about the windows (gaps, clock flags, missing footage), refreshed
    # at submission and again by the export: shown to the approver, never hidden.
    findings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    package_path: Mapped[str] = mapped_column(String(500), default="")  # relative to the export dir
    manifest_sha256: Mapped[str] = mapped_column(String(64), default="")
    package_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # The request cites surveillance of a named person (RIPA 2000 directed surveillance), and the
    # authorisation it names, if any (storage.ripa; migration 0012_lawful_use): the supervisor is
    # warned when deciding a flagged request without a live authorisation.
    directed_surveillance: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    ripa_reference: Mapped[str] = mapped_column(String(100), default="", server_default="")
    # Privacy masks (storage.masks; migration 0018_privacy_masks): the supervisor's explicit
    # choice, at approval, to release the masters of masked cameras (which are never painted:
    # they are the evidence), and the mask version painted into each camera's working copy by
    # the last export ({"<camera id>": version}), which a download checks against the masks in force.
    masters_released: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    package_masks: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True, default=dict)
    windows: Mapped[list[EvidenceWindow]] = relationship(
        back_populates="request", cascade="all, delete-orphan", lazy="selectin", order_by="EvidenceWindow.id"
    )


class EvidenceWindow(Base):
    __tablename__ = "evidence_windows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("evidence_requests.id", ondelete="CASCADE"), index=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    request: Mapped[EvidenceRequest] = relationship(back_populates="windows")


class ExportJob(Base):
    """One attempt at producing a request's package. ``heartbeat_us`` proves a runner is alive."""

    __tablename__ = "evidence_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("evidence_requests.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value, index=True)
    created_us: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200))
    started_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    heartbeat_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    stage: Mapped[str] = mapped_column(String(100), default="")
    done_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str] = mapped_column(Text, default="")


class DisclosureEntry(Base):
    """The disclosure register: every release, when, to whom, why, on what basis, what."""

    __tablename__ = "disclosure_register"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at_us: Mapped[int] = mapped_column(BigInteger, index=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("evidence_requests.id"))
    released_by: Mapped[str] = mapped_column(String(200))  # the account that fetched it / approved
    recipient: Mapped[str] = mapped_column(String(400))  # officer, collar number, force
    purpose: Mapped[str] = mapped_column(Text)  # crime reference, offence, necessity
    lawful_basis: Mapped[str] = mapped_column(Text)
    what: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # exhibit, package hash, windows


class CustodyEntry(Base):
    __tablename__ = "evidence_custody"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("evidence_requests.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at_us: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    details: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text, default="")  # base64 Ed25519 over the line body


class DownloadLink(Base):
    """A one-time, expiring download link. Only the SHA-256 of the token is stored."""

    __tablename__ = "evidence_links"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("evidence_requests.id", ondelete="CASCADE"))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_us: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200))
    expires_us: Mapped[int] = mapped_column(BigInteger)
    used_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Each byte of the package is sent through a link at most once (migration 0010 says why):
    # a range is served only from reserved_bytes on; a broken transfer gives back what it did
    # not send (reserved_bytes = delivered_bytes), so a download can resume.
    delivered_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reserved_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


# --- requests -------------------------------------------------------------------------------

REQUIRED_TEXT = ("officer_name", "collar_number", "force", "crime_reference", "offence", "necessity",
                 "lawful_basis", "authorised_by")


@dataclass(frozen=True)
class WindowSpec:
    camera_id: int
    start_us: int
    end_us: int


async def create_request(
    session: AsyncSession,
    *,
    requested_by: str,
    fields: dict[str, str],
    windows: list[WindowSpec],
    hold_review_us: int,
    max_window_us: int,
) -> EvidenceRequest:
    """Validate, store the request and its windows, and place its hold in the same transaction."""
    missing = [k for k in REQUIRED_TEXT if not str(fields.get(k, "")).strip()]
    if missing:
        raise Invalid(f"missing or empty: {', '.join(missing)}")
    if not windows:
        raise Invalid("windows: at least one camera and time window is needed")
    for w in windows:
        if w.end_us <= w.start_us:
            raise Invalid(f"camera {w.camera_id}: the window must end after it starts")
        if w.end_us - w.start_us > max_window_us:
            raise Invalid(f"camera {w.camera_id}: a window may last at most {max_window_us // 3_600_000_000} hours")
        if w.start_us > now_us():
            raise Invalid(f"camera {w.camera_id}: the window starts in the future")
        if await session.get(Camera, w.camera_id) is None:
            raise Invalid(f"windows: no camera {w.camera_id}")
    req = EvidenceRequest(
        created_us=now_us(), requested_by=requested_by, state=RequestState.SUBMITTED.value,
        **{k: str(fields[k]).strip() for k in REQUIRED_TEXT},
    )
    req.windows = [EvidenceWindow(camera_id=w.camera_id, start_us=w.start_us, end_us=w.end_us) for w in windows]
    session.add(req)
    await session.flush()
    req.exhibit_ref = exhibit_reference(req.id, req.created_us)
    hold = await add_hold(
        session,
        reason=f"evidence request {req.id} ({req.crime_reference}): pending disclosure to {req.force}",
        owner=requested_by,
        review_us=hold_review_us,
        windows=[(w.camera_id, w.start_us, w.end_us) for w in windows],
        reference=f"evidence:{req.id}",
    )
    req.hold_id = hold.id
    await session.flush()
    return req


def exhibit_reference(request_id: int, created_us: int) -> str:
    """``CR-<year>-<id>``: unique per request, stable, short enough to write on a label."""
    from datetime import UTC, datetime

    return f"CR-{datetime.fromtimestamp(created_us / 1e6, UTC).year}-{request_id:06d}"


async def get_request(session: AsyncSession, request_id: int, *, owner: str | None = None,
                      for_update: bool = False) -> EvidenceRequest:
    """The request, or NotFound. With ``owner`` set, someone else's request is NotFound too, so a
    caller cannot learn that it exists."""
    query = select(EvidenceRequest).where(EvidenceRequest.id == request_id)
    if for_update:
        query = query.with_for_update()
    req = (await session.execute(query)).scalar_one_or_none()
    if req is None or (owner is not None and req.requested_by != owner):
        raise NotFound(f"no evidence request {request_id}")
    return req


async def list_requests(session: AsyncSession, *, owner: str | None = None) -> list[EvidenceRequest]:
    query = select(EvidenceRequest).order_by(EvidenceRequest.id.desc())
    if owner is not None:
        query = query.where(EvidenceRequest.requested_by == owner)
    return list((await session.execute(query)).scalars())


def move(req: EvidenceRequest, to: RequestState) -> None:
    current = RequestState(req.state)
    if to not in TRANSITIONS[current]:
        raise Invalid(f"evidence request {req.id} is {current.value}; it cannot become {to.value}")
    req.state = to.value


async def decide(session: AsyncSession, req: EvidenceRequest, *, by: str, approve: bool, reason: str,
                 release_masters: bool = False) -> ExportJob | None:
    """Approve (and queue its export) or refuse a submitted request. A reason is required.
    ``release_masters``: the package carries the masters of cameras with privacy masks too."""
    if not reason.strip():
        raise Invalid("a decision needs a reason")
    move(req, RequestState.APPROVED if approve else RequestState.REFUSED)
    req.masters_released = approve and release_masters
    req.decided_by, req.decided_us, req.decision_reason = by, now_us(), reason.strip()
    if approve:
        return await queue_export(session, req, by=by)
    if req.hold_id is not None:  # a refused request has no claim on the footage
        await release_hold(session, req.hold_id, by)
    return None


async def queue_export(session: AsyncSession, req: EvidenceRequest, *, by: str) -> ExportJob:
    """Queue a (new) export of an approved request; refuses while one is queued or running."""
    if req.state != RequestState.APPROVED.value:
        raise Invalid(f"evidence request {req.id} is {req.state}; only an approved request is exported")
    active = await active_job(session, req.id)
    if active is not None:
        raise Invalid(f"evidence request {req.id} already has export job {active.id} {active.state}")
    job = ExportJob(request_id=req.id, created_us=now_us(), created_by=by, state=JobState.QUEUED.value)
    session.add(job)
    await session.flush()
    await jobs.enqueue(session, EXPORT_KIND, {"export_job": job.id}, by=by)  # any jobs node takes it
    return job


async def close_request(session: AsyncSession, req: EvidenceRequest, *, by: str, reason: str, review_us: int) -> None:
    """Close: release the hold (recording who and when) and record the review date."""
    if not reason.strip():
        raise Invalid("closing needs a reason")
    if await active_job(session, req.id) is not None:
        raise Invalid(f"evidence request {req.id} is being exported; cancel the export first")
    move(req, RequestState.CLOSED)
    req.closed_by, req.closed_us, req.close_reason, req.review_us = by, now_us(), reason.strip(), review_us
    if req.hold_id is not None:
        hold = await session.get(Hold, req.hold_id)
        if hold is not None and hold.released_us is None:
            hold.review_us = review_us
            await release_hold(session, hold.id, by)


# --- export jobs ----------------------------------------------------------------------------

async def active_job(session: AsyncSession, request_id: int) -> ExportJob | None:
    return (await session.execute(
        select(ExportJob).where(ExportJob.request_id == request_id,
                                ExportJob.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]))
    )).scalars().first()


async def latest_job(session: AsyncSession, request_id: int) -> ExportJob | None:
    return (await session.execute(
        select(ExportJob).where(ExportJob.request_id == request_id).order_by(ExportJob.id.desc()).limit(1)
    )).scalars().first()


async def claim_next_job(session: AsyncSession, job_id: int | None = None) -> ExportJob | None:
    """Atomically take the oldest queued export (or ``job_id``) (compare-and-set on its state).
    Which runner runs which export is decided by the ``jobs`` queue (storage.jobs); this marks
    the export itself running, attempt + 1."""
    query = select(ExportJob.id).where(ExportJob.state == JobState.QUEUED.value)
    if job_id is not None:
        query = query.where(ExportJob.id == job_id)
    candidates = (await session.execute(query.order_by(ExportJob.id).limit(5))).scalars().all()
    for job_id in candidates:
        now = now_us()
        taken = await session.execute(
            update(ExportJob).where(ExportJob.id == job_id, ExportJob.state == JobState.QUEUED.value)
            .values(state=JobState.RUNNING.value, started_us=now, heartbeat_us=now,
                    attempts=ExportJob.attempts + 1, error="", done_bytes=0, stage="starting")
        )
        if taken.rowcount == 1:
            return await session.get(ExportJob, job_id, populate_existing=True)
    return None


async def stale_jobs(session: AsyncSession, older_than_us: int) -> list[ExportJob]:
    """Running jobs whose runner stopped beating before ``older_than_us`` (it died)."""
    return list((await session.execute(
        select(ExportJob).where(ExportJob.state == JobState.RUNNING.value,
                                (ExportJob.heartbeat_us.is_(None)) | (ExportJob.heartbeat_us < older_than_us))
    )).scalars())


# --- disclosure register and custody --------------------------------------------------------

async def register_release(session: AsyncSession, req: EvidenceRequest, *, released_by: str,
                           what: dict[str, Any]) -> DisclosureEntry:
    entry = DisclosureEntry(
        at_us=now_us(), request_id=req.id, released_by=released_by,
        recipient=f"{req.officer_name} ({req.collar_number}), {req.force}",
        purpose=f"{req.crime_reference}: {req.offence}. Necessity: {req.necessity}",
        lawful_basis=req.lawful_basis, what=what,
    )
    session.add(entry)
    await session.flush()
    return entry


async def list_register(session: AsyncSession) -> list[DisclosureEntry]:
    return list((await session.execute(select(DisclosureEntry).order_by(DisclosureEntry.id))).scalars())


def custody_body(request_id: int, seq: int, at_us: int, actor: str, action: str, details: str, prev: str) -> bytes:
    """The bytes a custody entry's hash and signature cover (canonical JSON, UTF-8)."""
    return json.dumps(
        {"request": request_id, "seq": seq, "at_us": at_us, "actor": actor, "action": action,
         "details": json.loads(details), "prev": prev},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    ).encode()


async def add_custody(session: AsyncSession, request_id: int, actor: str, action: str,
                      signer: Callable[[bytes], bytes] | None = None, **details: Any) -> CustodyEntry:
    """Append to a request's custody chain (lock the request row first to keep seq unique)."""
    await session.execute(select(EvidenceRequest.id).where(EvidenceRequest.id == request_id).with_for_update())
    head = (await session.execute(
        select(CustodyEntry.seq, CustodyEntry.hash).where(CustodyEntry.request_id == request_id)
        .order_by(CustodyEntry.seq.desc()).limit(1)
    )).first()
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    body_json = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    at = now_us()
    body = custody_body(request_id, seq, at, actor, action, body_json, prev)
    entry = CustodyEntry(
        request_id=request_id, seq=seq, at_us=at, actor=actor, action=action, details=body_json,
        prev_hash=prev, hash=hashlib.sha256(body).hexdigest(),
        signature=base64.b64encode(signer(body)).decode() if signer else "",
    )
    session.add(entry)
    await session.flush()
    return entry


async def custody_log(session: AsyncSession, request_id: int) -> list[CustodyEntry]:
    return list((await session.execute(
        select(CustodyEntry).where(CustodyEntry.request_id == request_id).order_by(CustodyEntry.seq)
    )).scalars())


def custody_line(entry: CustodyEntry) -> dict[str, Any]:
    """One custody.jsonl line: the signed body's fields plus its hash and signature."""
    return {
        "request": entry.request_id, "seq": entry.seq, "at_us": entry.at_us, "actor": entry.actor,
        "action": entry.action, "details": json.loads(entry.details), "prev": entry.prev_hash,
        "hash": entry.hash, "sig": entry.signature,
    }


# --- one-time links -------------------------------------------------------------------------

def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def add_link(session: AsyncSession, req: EvidenceRequest, *, token: str, by: str, ttl_s: float) -> DownloadLink:
    now = now_us()
    link = DownloadLink(request_id=req.id, token_sha256=token_digest(token), created_us=now, created_by=by,
                        expires_us=now + int(ttl_s * 1_000_000))
    session.add(link)
    await session.flush()
    return link


async def find_link(session: AsyncSession, token: str) -> DownloadLink:
    """The live link for a token; NotFound for unknown or expired ones (same answer for both)."""
    link = (await session.execute(
        select(DownloadLink).where(DownloadLink.token_sha256 == token_digest(token)).with_for_update()
    )).scalar_one_or_none()
    if link is None or link.expires_us <= now_us():
        raise NotFound("no such download link, or it has expired")
    return link
