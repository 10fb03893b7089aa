"""The job runner of a ``jobs`` node: takes jobs from the ``jobs`` table and runs them
(docs/design/cluster.md, "Jobs"; the queue itself is ``storage.jobs``).

**Adding a kind of job** is one line in :data:`KINDS`: ``"kind": entry point``, where the entry
point is ``async def run(ctx: JobContext) -> None``: it reads ``ctx.payload`` (and
``ctx.checkpoint``, where the last attempt got to), may call ``await ctx.save(data)`` to record
progress and ``await ctx.check()`` to learn that the job was taken from it (:class:`JobLost`),
and ends by returning (done), raising :class:`JobCancelled` (cancelled), :class:`JobFailed`
(failed, already reported) or anything else (failed: logged with its traceback). Queue one with ``storage.jobs.enqueue(session, "kind", payload)``.

One job of each kind runs at a time on a node (exports are disk-bound; two at once only share
the disk), jobs of different kinds side by side (a long export does not hold back a retention
run). On one machine the runner renews its jobs' leases itself; in a cluster the node's
heartbeat does (``storage.nodes.heartbeat``). When the service stops, a running job is
cancelled and given back (queued again at once, from its checkpoint); when a node dies, its
jobs' leases run out and another node takes them, ``attempt + 1``.

Periodic jobs (retention, ANPR retention) are queued by every jobs node's scheduler when due
(:func:`storage.jobs.due`); their unique key lets only one be queued or running at a time across
the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from controlroom.background import watched
from controlroom.context import (
    EVIDENCE,
    HEALTH_NOTES,
    JOBS,
    NODE,
    PURGE_NOW,
    REDACTION,
    SESSIONS,
    SETTINGS,
)
from storage import jobs
from storage.anpr.retention import run_anpr_retention
from storage.db import transaction
from storage.evidence import EXPORT_KIND
from storage.jobs import JobCancelled, JobFailed, JobFence, JobLost, JobState
from storage.loops import describe_error
from storage.redaction import REDACTION_KIND
from storage.retention import run_retention

log = logging.getLogger(__name__)

RETENTION_KIND = "retention"
ANPR_RETENTION_KIND = "anpr.retention"
# A failed retention run (database away) is tried again this soon, not a whole sweep later.
RETENTION_RETRY_S = 30.0
# Emergency purges are queued at most this often: each looks at the free space again, so a disk
# that stays below the floor (everything held) is not scanned in a tight loop.
EMERGENCY_PURGE_MIN_INTERVAL_S = 2.0
LOCAL_NODE = "local"  # the node id of a service that is not in a cluster


@dataclass
class JobContext:
    """What an entry point gets: the app, the job's payload and checkpoint, and its fence."""

    app: web.Application
    fence: JobFence
    kind: str
    payload: dict[str, Any]
    checkpoint: Any
    ttl_s: float
    created_by: str = "system"
    extra: dict[str, Any] = field(default_factory=dict)

    async def save(self, data: Any) -> None:
        """Record progress under the fence (:class:`JobLost` if the job was taken from us)."""
        async with transaction(self.app[SESSIONS]) as session:
            await jobs.save_checkpoint(session, self.fence, data)
        self.checkpoint = data

    async def check(self) -> None:
        """:class:`JobLost` if another attempt holds the job now."""
        async with self.app[SESSIONS]() as session:
            await jobs.check(session, self.fence, lock=False)


Entry = Callable[[JobContext], Awaitable[None]]


# -- the kinds ---------------------------------------------------------------------------------
async def run_export(ctx: JobContext) -> None:
    """An evidence export: the export runner's attempt, fenced by the job (controlroom.evidence)."""
    await ctx.app[EVIDENCE].run_claimed(int(ctx.payload["export_job"]), ctx.fence, ctx.ttl_s)


async def run_redaction(ctx: JobContext) -> None:
    """A subject access request's redaction (controlroom.redaction.runner), fenced by the job."""
    await ctx.app[REDACTION].run(ctx)


@contextlib.asynccontextmanager
async def _noted(app: web.Application, component: str, what: str) -> AsyncIterator[None]:
    """A failure is a ``/healthz`` note of ``component`` (on the node that ran it) until a run
    of the kind succeeds there, as for a watched loop (controlroom.background)."""
    notes = app.get(HEALTH_NOTES)
    try:
        yield
    except Exception as exc:
        if notes is not None:
            notes[component] = f"{what} failed: {describe_error(exc)}"
        raise
    if notes is not None:
        notes.pop(component, None)


async def run_video_retention(ctx: JobContext) -> None:
    settings = ctx.app[SETTINGS]
    emergency = bool(ctx.payload.get("emergency"))
    async with _noted(ctx.app, "retention", "retention run"):
        result = await run_retention(
            ctx.app[SESSIONS], settings.storage_root,
            default_days=settings.retention.default_days,
            floor_bytes=settings.retention.free_space_floor_bytes,
            actor="system:emergency-purge" if emergency else "system:retention",
        )
    if emergency:
        log.warning("store: emergency purge deleted %d segments (%d bytes)", result.deleted, result.bytes)


async def run_anpr_retention_job(ctx: JobContext) -> None:
    settings = ctx.app[SETTINGS]
    async with _noted(ctx.app, "anpr_retention", "ANPR retention run"):
        await run_anpr_retention(ctx.app[SESSIONS], settings.anpr_root, retention_days=settings.anpr.retention_days)


# The registration point: kind -> entry point.
KINDS: dict[str, Entry] = {
    EXPORT_KIND: run_export,
    REDACTION_KIND: run_redaction,
    RETENTION_KIND: run_video_retention,
    ANPR_RETENTION_KIND: run_anpr_retention_job,
}


# -- the runner ----------------------------------------------------------------------------------
# How long a stopping runner waits for a job's end to be recorded (one short transaction).
END_GRACE_S = 10.0

class JobRunner:
    """Takes and runs jobs for ``node_id``: one of each kind at a time. :meth:`run_once` takes
    one job and runs it to its end (tests); :meth:`start` runs the loop."""

    def __init__(self, app: web.Application, node_id: str, *, ttl_s: float, beat_s: float, poll_s: float = 2.0,
                 renew_self: bool = True, kinds: dict[str, Entry] | None = None) -> None:
        self.app, self.node_id, self.ttl_s, self.beat_s, self.poll_s = app, node_id, ttl_s, beat_s, poll_s
        self.renew_self = renew_self  # False in a cluster: the node's heartbeat renews
        self.kinds = KINDS if kinds is None else kinds
        self.running: dict[str, asyncio.Task[None]] = {}  # kind -> its job's task
        self.failed_jobs = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def sessions(self):
        return self.app[SESSIONS]

    async def start(self) -> None:
        async with transaction(self.sessions) as session:  # a restart: our earlier life is dead
            given_back = await jobs.requeue_node(session, self.node_id, "its node restarted; queued again")
        if given_back:
            log.warning("jobs: node %s restarted; %d of its jobs queued again: %s", self.node_id, len(given_back),
                        given_back)
        self._tasks.append(asyncio.create_task(self._loop(), name="jobs"))
        if self.renew_self:
            renewing = watched(self.app, "jobs_renewal", self.beat_s, self._renew,
                               what=f"jobs of node {self.node_id}: lease renewal", log=log, wait_first=True)
            self._tasks.append(asyncio.create_task(renewing.run(), name="jobs-renew"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        running = list(self.running.values())
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        self._wake.set()

    async def _renew(self) -> None:
        if self.running:
            async with transaction(self.sessions) as session:
                await jobs.renew(session, self.node_id, self.ttl_s)

    async def _loop(self) -> None:
        await watched(self.app, "jobs", self.poll_s, self._take_all, what=f"jobs of node {self.node_id}: taking jobs",
                      log=log, wait=self._wait).run()

    async def _wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        self._wake.clear()

    async def _take_all(self) -> None:
        while (taken := await self._claim()) is not None:
            ctx = taken
            task = asyncio.create_task(self._run(ctx), name=f"job {ctx.fence.job_id} {ctx.kind}")
            self.running[ctx.kind] = task
            task.add_done_callback(lambda _t, kind=ctx.kind: (self.running.pop(kind, None), self._wake.set()))

    async def _claim(self) -> JobContext | None:
        free = [kind for kind in self.kinds if kind not in self.running]
        async with transaction(self.sessions) as session:
            taken = await jobs.claim_next(session, self.node_id, free, self.ttl_s)
            if taken is None:
                return None
            job, fence = taken
            ctx = JobContext(self.app, fence, job.kind, job.data(), job.saved(), self.ttl_s, job.created_by)
        log.info("jobs: node %s took job %s (%s), attempt %d", self.node_id, fence.job_id, ctx.kind, fence.attempt)
        return ctx

    async def run_once(self) -> int | None:
        """Take one job and run it to its end; its id, or None when nothing is queued."""
        ctx = await self._claim()
        if ctx is None:
            return None
        await self._run(ctx)
        return ctx.fence.job_id

    async def _run(self, ctx: JobContext) -> None:
        fence, name = ctx.fence, f"job {ctx.fence.job_id} ({ctx.kind}, attempt {ctx.fence.attempt})"
        try:
            await self.kinds[ctx.kind](ctx)
        except asyncio.CancelledError:  # the service is stopping: give the job back at once
            await self._end(fence, name, requeue="its node stopped; queued again")
            raise
        except JobLost as exc:  # taken again meanwhile: the other attempt owns it now
            log.error("jobs: %s stopped: %s", name, exc)
        except JobCancelled as exc:
            await self._end(fence, name, state=JobState.CANCELLED, error=str(exc) or "cancelled")
        except JobFailed as exc:  # already logged and recorded by its kind
            self.failed_jobs += 1
            log.warning("jobs: %s failed: %s", name, exc)
            await self._end(fence, name, state=JobState.FAILED, error=str(exc))
        except Exception as exc:  # failed: logged with context, kept on the row for /healthz
            self.failed_jobs += 1
            log.exception("jobs: %s failed", name)
            await self._end(fence, name, state=JobState.FAILED, error=f"{type(exc).__name__}: {exc}")
        else:
            await self._end(fence, name, state=JobState.DONE)

    async def _end(self, fence: JobFence, name: str, *, state: JobState | None = None, error: str = "",
                   requeue: str = "") -> None:
        """Record how the job ended (or give it back). Once begun, this is finished even if the
        runner is stopped meanwhile, for up to ``END_GRACE_S``: a stop that cut it off would leave a
        job whose work is done "running" until its lease ran out, then run it again (seen in CI:
        a node stopped just after its export was ready). The stop then goes on."""
        recording = asyncio.ensure_future(self._record_end(fence, name, state=state, error=error, requeue=requeue))
        try:
            await asyncio.shield(recording)
        except asyncio.CancelledError:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(recording, END_GRACE_S)
            raise

    async def _record_end(self, fence: JobFence, name: str, *, state: JobState | None, error: str,
                          requeue: str) -> None:
        try:
            async with transaction(self.sessions) as session:
                if requeue:
                    await jobs.requeue(session, fence, requeue)
                else:
                    await jobs.finish(session, fence, state, error)
        except JobLost as exc:
            log.error("jobs: %s ended but could not say so: %s", name, exc)
        except Exception:  # its lease runs out and another node takes it again: nothing is lost
            log.exception("jobs: %s: could not record its end (%s); its lease runs out in %g s and it is taken "
                          "again", name, requeue or (state.value if state else ""), self.ttl_s)


# -- the service's side ----------------------------------------------------------------------------
async def jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    """The job runner of a jobs node (after evidence_ctx: it stops first, giving back its jobs
    while the database is still there)."""
    cluster = app[SETTINGS].cluster
    keeper = app.get(NODE)
    runner = JobRunner(app, keeper.node_id if keeper is not None else LOCAL_NODE, ttl_s=cluster.lease_ttl_s,
                       beat_s=cluster.heartbeat_s, renew_self=keeper is None)
    app[JOBS] = runner
    await runner.start()
    yield
    await runner.stop()


def wake(app: web.Application) -> None:
    """A job was queued here: this node's runner (if it has one) takes it now, not at its next poll."""
    if JOBS in app:
        app[JOBS].wake()


def schedule_ctx(*, record: bool, anpr: bool) -> Callable[[web.Application], Any]:
    """Queue the periodic jobs when they are due: video retention (``record``), ANPR retention
    (``anpr``). Every jobs node runs this; the unique keys make it one run at a time."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        periodic = ([(RETENTION_KIND, settings.retention.sweep_interval_s)] if record else []) + (
            [(ANPR_RETENTION_KIND, settings.anpr.sweep_interval_s)] if anpr else [])
        if not periodic:
            yield
            return

        async def step() -> None:
            queued = []
            async with transaction(app[SESSIONS]) as session:
                for kind, every_s in periodic:
                    if await jobs.due(session, kind, every_s, min(RETENTION_RETRY_S, every_s)):
                        if await jobs.enqueue(session, kind, unique_key=kind) is not None:
                            queued.append(kind)
            if queued:
                wake(app)

        interval = min(min(s for _, s in periodic), RETENTION_RETRY_S)
        scheduling = watched(app, "jobs_schedule", interval, step, what="queueing the periodic jobs", log=log)
        task = asyncio.create_task(scheduling.run(), name="jobs-schedule")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


async def purge_ctx(app: web.Application) -> AsyncIterator[None]:
    """A recorder node's emergency purge: when the disk is below its floor, queue a retention run
    marked emergency (or mark the queued one so), for whichever jobs node takes it first."""
    purge_now = app[PURGE_NOW]

    async def step() -> None:
        await purge_now.wait()
        await asyncio.sleep(EMERGENCY_PURGE_MIN_INTERVAL_S)  # a burst of requests makes one run
        async with transaction(app[SESSIONS]) as session:
            if await jobs.enqueue(session, RETENTION_KIND, {"emergency": True}, unique_key=RETENTION_KIND) is None:
                await jobs.update_queued(session, RETENTION_KIND, {"emergency": True})
        purge_now.clear()  # only once queued: a failure keeps the request for the next try
        wake(app)

    requests = watched(app, "emergency_purge", EMERGENCY_PURGE_MIN_INTERVAL_S, step,
                       what="queueing an emergency purge", log=log)
    task = asyncio.create_task(requests.run(), name="purge-now")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

