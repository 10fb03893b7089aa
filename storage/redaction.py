"""Redaction of a subject access request's footage: the reviewers' marks and the jobs.

A **mark** is a decision a reviewer takes on one frame of one window (``sar_windows.id``):
``requester`` (the face under the box is the requester's: it stays visible), ``keep`` (not a
third party: the automatic box under it is removed), ``add`` (obscure this box, followed
through the next frames). Marks are removed, not deleted (``removed_us``), so the log of a
package made earlier still names marks that exist.

A **job** is a row of the job queue (``storage.jobs``, kind ``sar.redaction``, payload
``{"sar": id}``): any jobs node takes it, and another takes it again if its node dies. It
redacts every window of a request and writes its signed package; its progress (frames done of
the estimate, the stage, the windows rendered) and finally its result (the package, counts) are
the job's checkpoint, written as it runs, so any process shows them. Every change appends its
audit entry (``sar.redact*``, ``sar.mark_*``) in the caller's transaction. docs/design/lawful-use.md.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import Invalid, NotFound, audit, jobs
from storage.db import Base, now_us
from storage.jobs import Job
from storage.sar import CLOSED, SarState, SubjectAccessRequest

MARK_KINDS = ("requester", "keep", "add")
# The kind of job (storage.jobs, controlroom.jobs.KINDS) that redacts a request: payload {"sar": id}.
REDACTION_KIND = "sar.redaction"


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


def job_payload(sar_id: int) -> dict[str, int]:
    return {"sar": sar_id}


async def queue(session: AsyncSession, sar: SubjectAccessRequest, *, by: str) -> Job:
    """Queue a redaction of every window on the job queue; refused while one is queued or running
    (the job's unique key: one per request at a time, across the cluster)."""
    _open(sar)
    if not sar.windows:
        raise Invalid(f"subject access request {sar.reference} has no footage windows to redact")
    job_id = await jobs.enqueue(session, REDACTION_KIND, job_payload(sar.id), unique_key=f"{REDACTION_KIND}:{sar.id}",
                                by=by)
    if job_id is None:
        raise Invalid(f"a redaction of {sar.reference} is already queued or running")
    await audit.append(session, by, "sar.redact", f"sar:{sar.reference}", job=job_id,
                       windows=[w.id for w in sar.windows])
    return await session.get(Job, job_id)


def _of(sar_id: int) -> Any:
    return (Job.kind == REDACTION_KIND) & (Job.payload == json.dumps(job_payload(sar_id), sort_keys=True))


async def jobs_of(session: AsyncSession, sar_id: int) -> list[Job]:
    """The request's redaction jobs, newest first."""
    return list((await session.scalars(select(Job).where(_of(sar_id)).order_by(Job.id.desc())
                                       .execution_options(populate_existing=True))).all())


async def get_job(session: AsyncSession, sar_id: int, job_id: int) -> Job:
    job = (await session.scalars(select(Job).where(_of(sar_id), Job.id == job_id)
                                 .execution_options(populate_existing=True))).first()
    if job is None:
        raise NotFound(f"no redaction job {job_id} for this request")
    return job


def progress_of(job: Job) -> dict[str, Any]:
    """What the job's attempts recorded (controlroom.redaction.runner): stage, frames done of the
    estimate, the windows rendered, and once done its ``result`` (package, counts)."""
    return job.saved() or {}
