"""Redaction of a subject access request's footage: the reviewers' marks and the jobs.

A **mark** is a decision a reviewer takes on one frame of one window (``sar_windows.id``):
``requester`` (the face under the box is the requester's: it stays visible), ``keep`` (not a
third party: the automatic box under it is removed), ``add`` (obscure this box, followed
through the next frames). Marks are removed, not deleted (``removed_us``), so the log of a
package made earlier still names marks that exist.

A **job** (``sar_redaction_jobs``) redacts every window of a request and writes its signed
package; its progress (frames done of the estimate, the stage) and heartbeat are written as it
runs, so any process shows them. Every change appends its audit entry (``sar.redact*``,
``sar.mark_*``) in the caller's transaction. docs/design/lawful-use.md.
"""

from __future__ import annotations

import enum

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import Invalid, NotFound, audit
from storage.db import Base, now_us
from storage.sar import CLOSED, SarState, SubjectAccessRequest

MARK_KINDS = ("requester", "keep", "add")


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


class RedactionMark(Base):
    __tablename__ = "sar_marks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sar_id: Mapped[int] = mapped_column(ForeignKey("sars.id", ondelete="CASCADE"), index=True)
    window_id: Mapped[int] = mapped_column(ForeignKey("sar_windows.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    frame: Mapped[int] = mapped_column(Integer)  # index in the window's decoded frames
    x: Mapped[int] = mapped_column(Integer)
    y: Mapped[int] = mapped_column(Integer)
    w: Mapped[int] = mapped_column(Integer)
    h: Mapped[int] = mapped_column(Integer)
    until_frame: Mapped[int | None] = mapped_column(Integer, nullable=True)  # add: follow no further
    note: Mapped[str] = mapped_column(Text, default="")
    by: Mapped[str] = mapped_column(String(200))
    at_us: Mapped[int] = mapped_column(BigInteger)
    removed_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    removed_by: Mapped[str] = mapped_column(String(200), default="")


class RedactionJob(Base):
    __tablename__ = "sar_redaction_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sar_id: Mapped[int] = mapped_column(ForeignKey("sars.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value, index=True)
    created_us: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200))
    started_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    heartbeat_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    stage: Mapped[str] = mapped_column(String(200), default="")
    done_frames: Mapped[int] = mapped_column(BigInteger, default=0)
    total_frames: Mapped[int] = mapped_column(BigInteger, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str] = mapped_column(Text, default="")
    package: Mapped[str] = mapped_column(Text, default="")  # file name under the redaction root
    package_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    manifest_sha256: Mapped[str] = mapped_column(String(64), default="")
    obscured: Mapped[int] = mapped_column(Integer, default=0)  # things obscured, from the log
    kept: Mapped[int] = mapped_column(Integer, default=0)  # left visible (the requester, by hand)


def _open(sar: SubjectAccessRequest) -> None:
    if SarState(sar.state) in CLOSED:
        raise Invalid(f"subject access request {sar.reference} is {sar.state}")


async def add_mark(session: AsyncSession, sar: SubjectAccessRequest, *, by: str, window_id: int, kind: str,
                   frame: int, box: tuple[int, int, int, int], until_frame: int | None = None,
                   note: str = "") -> RedactionMark:
    _open(sar)
    if kind not in MARK_KINDS:
        raise Invalid(f"kind: one of {', '.join(MARK_KINDS)}")
    if not any(w.id == window_id for w in sar.windows):
        raise Invalid(f"window: no window {window_id} in {sar.reference}")
    x, y, w, h = box
    if frame < 0 or x < 0 or y < 0 or w < 4 or h < 4:
        raise Invalid("box: x, y >= 0 and a width and height of at least 4 pixels, on a frame >= 0")
    if until_frame is not None and until_frame < frame:
        raise Invalid("until_frame: on or after the frame the box is drawn on")
    mark = RedactionMark(sar_id=sar.id, window_id=window_id, kind=kind, frame=frame, x=x, y=y, w=w, h=h,
                         until_frame=until_frame, note=note.strip(), by=by, at_us=now_us())
    session.add(mark)
    await session.flush()
    await audit.append(session, by, "sar.mark_add", f"sar:{sar.reference}", mark=mark.id, window=window_id,
                       kind=kind, frame=frame, box=[x, y, w, h])
    return mark


async def remove_mark(session: AsyncSession, sar: SubjectAccessRequest, mark_id: int, *, by: str) -> RedactionMark:
    _open(sar)
    mark = await session.get(RedactionMark, mark_id)
    if mark is None or mark.sar_id != sar.id or mark.removed_us is not None:
        raise NotFound(f"no mark {mark_id} in {sar.reference}")
    mark.removed_us, mark.removed_by = now_us(), by
    await session.flush()
    await audit.append(session, by, "sar.mark_remove", f"sar:{sar.reference}", mark=mark.id, window=mark.window_id,
                       kind=mark.kind)
    return mark


async def marks(session: AsyncSession, sar_id: int, window_id: int | None = None) -> list[RedactionMark]:
    query = select(RedactionMark).where(RedactionMark.sar_id == sar_id, RedactionMark.removed_us.is_(None))
    if window_id is not None:
        query = query.where(RedactionMark.window_id == window_id)
    return list((await session.execute(query.order_by(RedactionMark.id))).scalars())


async def queue(session: AsyncSession, sar: SubjectAccessRequest, *, by: str) -> RedactionJob:
    """Queue a redaction of every window; refused while one is queued or running."""
    _open(sar)
    if not sar.windows:
        raise Invalid(f"subject access request {sar.reference} has no footage windows to redact")
    if (await active_job(session, sar.id)) is not None:
        raise Invalid(f"a redaction of {sar.reference} is already queued or running")
    job = RedactionJob(sar_id=sar.id, created_us=now_us(), created_by=by, state=JobState.QUEUED.value)
    session.add(job)
    await session.flush()
    await audit.append(session, by, "sar.redact", f"sar:{sar.reference}", job=job.id,
                       windows=[w.id for w in sar.windows])
    return job


async def active_job(session: AsyncSession, sar_id: int) -> RedactionJob | None:
    return (await session.execute(select(RedactionJob).where(
        RedactionJob.sar_id == sar_id, RedactionJob.state.in_(ACTIVE)).limit(1))).scalars().first()


async def jobs(session: AsyncSession, sar_id: int) -> list[RedactionJob]:
    return list((await session.execute(select(RedactionJob).where(RedactionJob.sar_id == sar_id)
                                       .order_by(RedactionJob.id.desc()))).scalars())


async def get_job(session: AsyncSession, job_id: int) -> RedactionJob:
    job = await session.get(RedactionJob, job_id, populate_existing=True)
    if job is None:
        raise NotFound(f"no redaction job {job_id}")
    return job


async def claim_next(session: AsyncSession) -> RedactionJob | None:
    """The oldest queued job, moved to running (compare-and-set: two runners never take one)."""
    for job in (await session.execute(select(RedactionJob).where(RedactionJob.state == JobState.QUEUED.value)
                                      .order_by(RedactionJob.id).limit(5))).scalars():
        now = now_us()
        claimed = await session.execute(update(RedactionJob).where(
            RedactionJob.id == job.id, RedactionJob.state == JobState.QUEUED.value).values(
            state=JobState.RUNNING.value, started_us=now, heartbeat_us=now, stage="starting"))
        if claimed.rowcount == 1:
            return await get_job(session, job.id)
    return None


async def stale(session: AsyncSession, cutoff_us: int) -> list[RedactionJob]:
    return list((await session.execute(select(RedactionJob).where(
        RedactionJob.state == JobState.RUNNING.value, RedactionJob.heartbeat_us < cutoff_us))).scalars())
