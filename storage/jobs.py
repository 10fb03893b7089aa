"""The job queue: background work that any ``jobs`` node may take (docs/design/cluster.md, "Jobs").

A job is a row of ``jobs``: its ``kind`` (what runs it: the registry ``controlroom.jobs.KINDS``),
a JSON ``payload``, a ``state`` (queued, running, done, failed, cancelled) and, while running,
the node that took it, the ``attempt`` it is on and ``locked_until_us``: the job's lease.

- **Taking**: :func:`claim_next` selects the oldest runnable job (queued, or running under a
  lease that ran out: its node died) ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two nodes
  taking at the same moment take different jobs without waiting; SQLite has one writer, and
  the update is conditional on the attempt it read (compare-and-set), which is the same
  guarantee there.
- **Lease**: renewed by the node's heartbeat (:func:`renew`, in ``storage.nodes.heartbeat``) in a
  cluster, by the runner's own beat on one machine. A node that stops heartbeating loses its
  jobs after the lease's time-to-live; the next claim takes them again, ``attempt + 1``.
- **Fencing**: every write a runner makes about its job (checkpoint, finish, requeue) names the
  :class:`JobFence` (job, node, attempt) it was given and is refused (:class:`JobLost`) if the
  job has been taken again since: a node paused past its lease cannot finish a job another node
  is running.
- **Resuming**: :func:`checkpoint` stores a JSON ``checkpoint`` under the fence; the next attempt
  reads it from the row (an export restarts from the beginning; a retention run is idempotent).
- **Unique jobs**: ``unique_key`` is set while a job is queued or running and cleared when it
  ends, and is unique: one retention run at a time across the cluster.

Times are microseconds, and every lease time is the database's clock (``storage.nodes``).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    String,
    Text,
    false,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import Conflict, NotFound
from storage.db import Base

KIND_MAX = 100


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ENDED = (JobState.DONE.value, JobState.FAILED.value, JobState.CANCELLED.value)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(KIND_MAX), index=True)
    payload: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    # Set while queued or running, NULL once ended: one job per key at a time.
    unique_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value, index=True)
    node_id: Mapped[str | None] = mapped_column(String(100), nullable=True)  # the node running it
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    locked_until_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    checkpoint: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON, the last checkpoint
    created_us: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200), default="system")
    started_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    # A running job asked to stop: its kind reads it (a SAR redaction's heartbeat) and ends cancelled.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    def data(self) -> dict[str, Any]:
        return json.loads(self.payload or "{}")

    def saved(self) -> Any:
        """The last checkpoint (None: start from the beginning)."""
        return None if self.checkpoint is None else json.loads(self.checkpoint)


@dataclass(frozen=True)
class JobFence:
    """The attempt a runner was given: every write about the job is checked against it."""

    job_id: int
    node_id: str
    attempt: int


class JobLost(Conflict):
    """The job has been taken again (its lease ran out) or ended: this attempt must stop."""


class JobCancelled(Exception):  # noqa: N818 - an outcome, as asyncio.CancelledError
    """Raised by an entry point that stopped because it was asked to: the job ends cancelled."""


class JobFailed(Exception):  # noqa: N818 - an outcome
    """Raised by an entry point that failed and has said why (logged, recorded): the job ends
    failed with this message, without another traceback."""


def _now(session: AsyncSession) -> Any:
    from storage.nodes import _now as db_now  # one definition of the database's clock

    return db_now(session)


async def _now_us(session: AsyncSession) -> int:
    from storage.nodes import db_now_us

    return await db_now_us(session)


def _postgres(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"


# -- queueing ---------------------------------------------------------------------------------
async def enqueue(session: AsyncSession, kind: str, payload: dict[str, Any] | None = None, *,
                  unique_key: str | None = None, by: str = "system") -> int | None:
    """Queue a job; its id. With ``unique_key``: None if a job of that key is queued or running
    already (nothing is queued twice; of two nodes queueing one key at once, the unique index
    lets one in and the other gets None)."""
    if unique_key is not None:
        busy = await session.scalar(select(Job.id).where(Job.unique_key == unique_key))
        if busy is not None:
            return None
    job = Job(kind=kind[:KIND_MAX], payload=json.dumps(payload or {}, sort_keys=True), unique_key=unique_key,
              state=JobState.QUEUED.value, created_us=await _now_us(session), created_by=by)
    if unique_key is None:
        session.add(job)
        await session.flush()
        return job.id
    try:
        async with session.begin_nested():
            session.add(job)
            await session.flush()
    except IntegrityError:
        return None
    return job.id


async def due(session: AsyncSession, kind: str, every_s: float, retry_s: float) -> bool:
    """Is a periodic job of ``kind`` due: none queued or running, and the last one ended more
    than ``every_s`` ago (``retry_s`` after a failure)?

    On PostgreSQL the caller's transaction first takes an advisory lock of ``kind``, held until
    it ends: the schedules of two nodes then check and queue one after the other. Without it, a
    run another node queued, ran and ended between this check and this node's queueing was not
    seen, and two runs went back to back (seen at a cluster's start). Call it in the
    transaction that queues the job."""
    if _postgres(session):
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"controlroom.jobs.due:{kind}"})
    active = await session.scalar(select(Job.id).where(Job.kind == kind, Job.state.in_(
        (JobState.QUEUED.value, JobState.RUNNING.value))).limit(1))
    if active is not None:
        return False
    last = (await session.execute(select(Job.state, Job.finished_us).where(Job.kind == kind, Job.state.in_(ENDED))
                                  .order_by(Job.id.desc()).limit(1))).first()
    if last is None or last.finished_us is None:
        return True
    wait_s = retry_s if last.state == JobState.FAILED.value else every_s
    return await _now_us(session) - last.finished_us >= wait_s * 1e6


# -- taking and the lease --------------------------------------------------------------------
async def claim_next(session: AsyncSession, node_id: str, kinds: list[str], ttl_s: float) -> tuple[Job, JobFence] | None:
    """Take the oldest runnable job of ``kinds`` (queued, or running under a lease that ran
    out) for ``node_id``: running, ``attempt + 1``, locked for ``ttl_s``. None if there is none."""
    if not kinds:
        return None
    now = await _now_us(session)
    query = (select(Job.id, Job.attempt).where(Job.kind.in_(kinds), or_(
        Job.state == JobState.QUEUED.value,
        (Job.state == JobState.RUNNING.value) & (Job.locked_until_us < now))).order_by(Job.id).limit(1))
    if _postgres(session):
        query = query.with_for_update(skip_locked=True)
    row = (await session.execute(query)).first()
    if row is None:
        return None
    taken = await session.execute(
        update(Job).where(Job.id == row.id, Job.attempt == row.attempt)
        .values(state=JobState.RUNNING.value, node_id=node_id, attempt=row.attempt + 1,
                locked_until_us=now + int(ttl_s * 1e6), started_us=now, finished_us=None))
    if taken.rowcount != 1:  # SQLite: taken meanwhile (cannot happen under its one writer)
        return None
    job = await session.get(Job, row.id, populate_existing=True)
    return job, JobFence(job.id, node_id, job.attempt)


async def renew(session: AsyncSession, node_id: str, ttl_s: float) -> int:
    """Extend the lease of every job ``node_id`` is running (the node's heartbeat); how many."""
    result = await session.execute(
        update(Job).where(Job.node_id == node_id, Job.state == JobState.RUNNING.value)
        .values(locked_until_us=_now(session) + int(ttl_s * 1e6)))
    return result.rowcount or 0


async def check(session: AsyncSession, fence: JobFence, *, lock: bool = True) -> Job:
    """The job, if ``fence`` still holds it (running, same node and attempt); else :class:`JobLost`.
    On PostgreSQL the row is locked for the rest of the transaction: a claim waits for it."""
    query = select(Job).where(Job.id == fence.job_id).execution_options(populate_existing=True)
    if lock and _postgres(session):
        query = query.with_for_update()
    job = (await session.scalars(query)).first()
    if job is None:
        raise NotFound(f"job {fence.job_id} does not exist")
    if job.state != JobState.RUNNING.value or job.node_id != fence.node_id or job.attempt != fence.attempt:
        raise JobLost(f"job {fence.job_id} ({job.kind}): attempt {fence.attempt} on node {fence.node_id} no longer "
                      f"holds it (now {job.state}, attempt {job.attempt} on node {job.node_id})")
    return job


async def touch(session: AsyncSession, fence: JobFence, ttl_s: float) -> Job:
    """Check the fence and extend this one job's lease (a runner's own beat)."""
    job = await check(session, fence)
    await session.execute(update(Job).where(Job.id == job.id).values(locked_until_us=_now(session) + int(ttl_s * 1e6)))
    return job


async def save_checkpoint(session: AsyncSession, fence: JobFence, data: Any) -> None:
    """Store where the job has got to; the next attempt starts from there."""
    job = await check(session, fence)
    job.checkpoint = json.dumps(data, sort_keys=True)


async def finish(session: AsyncSession, fence: JobFence, state: JobState, error: str = "") -> None:
    """End the job (done, failed, cancelled) under its fence; its unique key is freed."""
    job = await check(session, fence)
    job.state, job.error, job.finished_us = state.value, error[:4000], await _now_us(session)
    job.locked_until_us, job.unique_key = None, None


async def requeue(session: AsyncSession, fence: JobFence, reason: str) -> None:
    """Give the job back (this node is stopping): any node takes it at once, from its checkpoint."""
    job = await check(session, fence)
    job.state, job.node_id, job.locked_until_us, job.error = JobState.QUEUED.value, None, None, reason[:4000]


async def requeue_node(session: AsyncSession, node_id: str, reason: str) -> list[int]:
    """Give back every job ``node_id`` is running (its earlier life died: this is a restart)."""
    rows = await session.execute(
        update(Job).where(Job.node_id == node_id, Job.state == JobState.RUNNING.value)
        .values(state=JobState.QUEUED.value, node_id=None, locked_until_us=None, error=reason[:4000])
        .returning(Job.id))
    return [r for (r,) in rows.all()]


async def update_queued(session: AsyncSession, unique_key: str, payload: dict[str, Any]) -> int:
    """Merge ``payload`` into the queued (not yet running) job of ``unique_key``; how many (0 or 1)."""
    job = (await session.scalars(select(Job).where(Job.unique_key == unique_key,
                                                   Job.state == JobState.QUEUED.value))).first()
    if job is None:
        return 0
    job.payload = json.dumps({**job.data(), **payload}, sort_keys=True)
    return 1


async def requeue_payload(session: AsyncSession, kind: str, payload: dict[str, Any], reason: str) -> int:
    """Give back the running job of ``kind`` with ``payload`` (found dead by its own heartbeat,
    without the queue's lease: ``controlroom export run``); how many."""
    result = await session.execute(
        update(Job).where(Job.kind == kind, Job.payload == json.dumps(payload, sort_keys=True),
                          Job.state == JobState.RUNNING.value)
        .values(state=JobState.QUEUED.value, node_id=None, locked_until_us=None, error=reason[:4000]))
    return result.rowcount or 0


async def cancel(session: AsyncSession, job_id: int, reason: str) -> Job:
    """Cancel a queued job at once; a running one is asked to stop (``cancel_requested``, read by
    its kind, which ends it cancelled)."""
    job = await session.get(Job, job_id, with_for_update=_postgres(session), populate_existing=True)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    if job.state == JobState.QUEUED.value:
        job.state, job.error, job.unique_key, job.finished_us = JobState.CANCELLED.value, reason, None, await _now_us(session)
    elif job.state == JobState.RUNNING.value:
        job.cancel_requested = True
    return job


async def active(session: AsyncSession) -> list[Job]:
    """Queued and running jobs, oldest first (``/healthz``, ``jobs list``)."""
    return list((await session.scalars(select(Job).where(Job.state.in_(
        (JobState.QUEUED.value, JobState.RUNNING.value))).order_by(Job.id))).all())


async def counts(session: AsyncSession) -> dict[str, int]:
    return dict((await session.execute(select(Job.state, func.count()).group_by(Job.state))).all())


__all__ = ["ENDED", "Job", "JobCancelled", "JobFailed", "JobFence", "JobLost", "JobState", "active", "cancel", "check", "claim_next", "counts",
           "due", "enqueue", "finish", "renew", "requeue", "requeue_node", "requeue_payload", "save_checkpoint",
           "touch", "update_queued"]
