"""The export job runner: produces approved requests' packages in the background.

One job at a time (exports are disk-bound; two at once would only share the disk). Which node
runs an export is decided by the job queue (``storage.jobs``, kind ``evidence.export``): a jobs
node's :class:`controlroom.jobs.JobRunner` takes the job and calls :meth:`ExportRunner.run_claimed`
under the job's fence (node, attempt). An attempt:

1. marks the export running (compare-and-set on its state, ``attempts + 1``); an export left
   running by an attempt whose node died is first recorded as interrupted and its partial
   files removed (it restarts from the beginning);
2. moves the request to ``exporting``, refreshes the findings, logs custody and audit;
3. checks free space against an estimate of the package (masters + working copies + temp);
4. writes ``<export_root>/<id>/<EXHIBIT>.zip.part`` in a thread, beating a heartbeat with its
   progress and reading cancellation from the database (so any process can cancel); the beat
   also renews the job's lease under its fence, and stops the export if the job was taken
   again (this node was cut off or paused past its lease: another node runs it now);
5. reads the package back and verifies it; only then renames it to ``.zip`` and marks the
   request ``ready``. Anything else leaves no ``.zip`` and puts the request back to ``approved``
   with the job's error.

Never stuck "in progress": a job whose node died is taken again when its lease runs out, and is
restarted from the beginning (the partial file is deleted). On a clean stop the running job is
cancelled and queued again at once. Without the service (``controlroom export run``, tests),
:meth:`ExportRunner.run_once` takes and runs one export job itself, and :meth:`recover` gives
back those whose export heartbeat is older than ``stale_after_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlroom.context import EVIDENCE, SESSIONS
from controlroom.evidence.package import (
    ExportError,
    PackageInfo,
    Progress,
    fsync_file,
    remove_quietly,
    write_package,
)
from controlroom.evidence.plan import build_plan, findings
from controlroom.evidence.shapes import request_fields
from controlroom.evidence.verify import VerifyReport, verify_package
from controlroom.evidence.working import Cancelled, WorkingCopyError
from controlroom.jobs import JobRunner, run_export
from storage import audit, jobs, masks
from storage.catalogue import fsync_dir
from storage.db import now_us, transaction
from storage.evidence import (
    EXPORT_KIND,
    EvidenceRequest,
    ExportJob,
    JobState,
    RequestState,
    add_custody,
    claim_next_job,
    custody_line,
    custody_log,
    get_request,
    move,
    stale_jobs,
)
from storage.jobs import JobCancelled, JobFailed, JobFence, JobLost
from storage.keys import Keys
from storage.loops import Every, run_every

log = logging.getLogger(__name__)
RUNNER_ACTOR = "system:export"
# The writer sees a cancellation within 0.2 s (ffmpeg polled) or one chunk; this bound keeps a
# stopping service within its stop budget (http.stop_timeout_s, 25 s) even if the disk stalls.
CANCEL_WAIT_S = 10.0


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def package_paths(export_root: Path, request_id: int, exhibit: str) -> tuple[Path, Path, Path]:
    folder = export_root / str(request_id)
    return folder / f"{exhibit}.zip", folder / f"{exhibit}.zip.part", folder / "tmp"


class ExportRunner:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keys: Keys,
        *,
        storage_root: Path,
        export_root: Path,
        heartbeat_s: float = 2.0,
        stale_after_s: float = 60.0,
        free_space_margin_bytes: int = 0,
        poll_s: float = 5.0,
        node_id: str = "",
    ) -> None:
        self.sessions = sessions
        # The node id of a runner without the service (run_once): unique to this process.
        self.node_id = node_id or f"{socket.gethostname()[:60]}-export-{os.getpid()}"
        self.keys = keys
        self.storage_root = storage_root
        self.export_root = export_root
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.margin_bytes = free_space_margin_bytes
        self.poll_s = poll_s
        self._cancels: dict[int, threading.Event] = {}
        self._lost: dict[int, JobFence] = {}  # jobs taken from this runner by another attempt
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Run the export queue in this runner's own loop (without the service's job runner)."""
        self.export_root.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._loop(), name="evidence-export")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    def cancel_local(self, job_id: int) -> None:
        """Cancel a job running in this process at once (others see the database flag)."""
        if (event := self._cancels.get(job_id)) is not None:
            event.set()

    async def _loop(self) -> None:
        await run_every(self.poll_s, self._run_queue, name="evidence export loop", log=log, wait=self._wait_for_work)

    async def _run_queue(self) -> None:
        await self.recover()
        while await self.run_once() is not None:
            pass

    async def _wait_for_work(self, timeout_s: float) -> None:
        """Until a job is queued here (:meth:`wake`) or ``timeout_s`` (one queued by the CLI)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        self._wake.clear()

    # --- recovery -----------------------------------------------------------------------------

    async def recover(self, stale_after_s: float | None = None) -> list[int]:
        """Queue again every running job whose runner died (no heartbeat for ``stale_after_s``)."""
        window_s = self.stale_after_s if stale_after_s is None else stale_after_s
        cutoff = now_us() - int(window_s * 1_000_000)
        requeued: list[tuple[int, str]] = []
        async with transaction(self.sessions) as session:
            for job in await stale_jobs(session, cutoff):
                if job.id in self._cancels:
                    continue  # running here and alive
                req = await session.get(EvidenceRequest, job.request_id)
                cancelled = job.cancel_requested
                job.state = (JobState.CANCELLED if cancelled else JobState.QUEUED).value
                job.error = (f"the service stopped during attempt {job.attempts}; "
                             + ("cancelled as asked" if cancelled else "queued to start again from the beginning"))
                job.stage, job.done_bytes = "", 0
                if req is not None and req.state == RequestState.EXPORTING.value:
                    move(req, RequestState.APPROVED)
                await jobs.requeue_payload(session, EXPORT_KIND, {"export_job": job.id},
                                           f"the export's heartbeat stopped during attempt {job.attempts}")
                if req is not None:
                    await self._interrupted(session, job, req, requeued=not cancelled)
                    requeued.append((job.id, req.exhibit_ref))
        return [j for j, _ in requeued]

    async def _interrupted(self, session: AsyncSession, job: ExportJob, req: EvidenceRequest, *, requeued: bool) -> None:
        """Record that an attempt died mid-way (custody, audit, log) and remove its partial files."""
        await add_custody(session, req.id, RUNNER_ACTOR, "export.interrupted", self.keys.sign,
                          job=job.id, attempt=job.attempts, requeued=requeued)
        await audit.append(session, RUNNER_ACTOR, "evidence.export_interrupted", f"evidence:{req.id}",
                           job=job.id, attempt=job.attempts, requeued=requeued)
        log.warning("evidence request %s: export job %s was interrupted; %s", req.id, job.id,
                    "queued again" if requeued else "cancelled")
        _, part, tmp = package_paths(self.export_root, req.id, req.exhibit_ref)
        await asyncio.to_thread(remove_quietly, part, tmp)

    # --- running ------------------------------------------------------------------------------

    async def run_once(self) -> int | None:
        """Take the oldest queued export job from the job queue and run it to its end, as this
        runner's node; the export job's id, or None when the queue is empty."""
        taken: list[int] = []

        async def run(ctx) -> None:
            taken.append(int(ctx.payload["export_job"]))
            await run_export(ctx)

        runner = JobRunner({SESSIONS: self.sessions, EVIDENCE: self}, self.node_id, ttl_s=self.stale_after_s,
                           beat_s=self.heartbeat_s, renew_self=False, kinds={EXPORT_KIND: run})
        await runner.run_once()
        return taken[0] if taken else None

    async def run_claimed(self, job_id: int, fence: JobFence, ttl_s: float) -> None:
        """Run export job ``job_id``, whose queue job this node holds under ``fence``.

        An export left running by an earlier attempt (its node died) is recorded as interrupted
        first; one cancelled while it waited in the queue is not run (:class:`JobCancelled`)."""
        async with transaction(self.sessions) as session:
            await jobs.check(session, fence)
            job = await session.get(ExportJob, job_id, with_for_update=True)
            if job is None:
                raise JobCancelled(f"export job {job_id} no longer exists")
            if job.state == JobState.RUNNING.value:  # its node died mid-way
                req = await session.get(EvidenceRequest, job.request_id)
                job.state, job.stage, job.done_bytes = JobState.QUEUED.value, "", 0
                job.error = f"its node stopped during attempt {job.attempts}; started again from the beginning"
                if req.state == RequestState.EXPORTING.value:
                    move(req, RequestState.APPROVED)
                await self._interrupted(session, job, req, requeued=True)
                await session.flush()
            if job.state != JobState.QUEUED.value:
                raise JobCancelled(f"export job {job_id} is {job.state}; nothing to run")
            if await claim_next_job(session, job_id) is None:
                raise JobCancelled(f"export job {job_id} was taken by another runner")
        await self._run(job_id, fence, ttl_s)

    async def _run(self, job_id: int, fence: JobFence, ttl_s: float) -> None:
        cancel = threading.Event()
        self._cancels[job_id] = cancel
        progress = Progress()
        part = tmp = None
        try:
            async with transaction(self.sessions) as session:
                job = await session.get(ExportJob, job_id)
                req = await get_request(session, job.request_id, for_update=True)
                move(req, RequestState.EXPORTING)
                plan = await build_plan(session, req)
                req.findings = findings(plan)
                request = request_fields(req)
                final, part, tmp = package_paths(self.export_root, req.id, req.exhibit_ref)
                await add_custody(session, req.id, job.created_by, "export.started", self.keys.sign,
                                  job=job.id, attempt=job.attempts)
                await audit.append(session, job.created_by, "evidence.export_start", f"evidence:{req.id}",
                                   job=job.id, attempt=job.attempts)
                lines = [custody_line(e) for e in await custody_log(session, req.id)]
                # Privacy masks as they stand now: painted into the working copies; the download
                # checks the masks in force against these versions (controlroom.api.evidence).
                mask_sets = {c.camera_id: await masks.get(session, c.camera_id) for c in plan}
                painted = {cid: (m.version, m.polygons) for cid, m in mask_sets.items() if m is not None}
                req.package_masks = {str(cid): version for cid, (version, _) in painted.items()}
                release = req.masters_released
                estimate = sum(c.master_bytes + c.window_bytes_estimate for c in plan)
                progress.total_bytes = 2 * estimate  # written once, read back once
                job.total_bytes, produced_by, request_id, exhibit = progress.total_bytes, job.created_by, req.id, req.exhibit_ref
            final.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(remove_quietly, part, tmp)
            # Masters + working copies in the ZIP, and the temporary files of the two working
            # copies that can exist at once (one being copied in, the next being made).
            temp = sum(sorted((c.window_bytes_estimate for c in plan), reverse=True)[:2])
            needed = estimate + temp + self.margin_bytes
            free = await asyncio.to_thread(free_bytes, final.parent)
            if free < needed:
                raise ExportError(
                    f"not enough free space in {self.export_root} for this export: about {needed:,} bytes needed "
                    f"(package {estimate:,} plus {self.margin_bytes:,} kept free), {free:,} available"
                )
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(None, self._produce, part, tmp, exhibit, request, plan, lines,
                                        produced_by, progress, cancel, painted, release)
            stop_beat = asyncio.Event()
            beat = asyncio.create_task(self._heartbeat(job_id, progress, cancel, stop_beat, fence, ttl_s))
            try:
                info, report = await asyncio.shield(work)
            except asyncio.CancelledError:
                cancel.set()  # the service is stopping: stop the thread, queue the job again
                await self._wait_stopped(job_id, work)
                await self._stop_beat(beat, stop_beat)
                await self._requeue(job_id, request_id)
                raise
            await self._stop_beat(beat, stop_beat)
            progress.stage = "done"
            if not report.ok:
                raise ExportError("read-back verification failed: " + "; ".join(map(str, report.problems[:5])))
            async with self.sessions() as session:  # not taken again meanwhile (a pause past the lease)
                await jobs.check(session, fence, lock=False)
            await asyncio.to_thread(os.replace, part, final)
            await asyncio.to_thread(fsync_dir, final.parent)
            await asyncio.to_thread(remove_quietly, tmp)
            await self._finish(job_id, request_id, final, info, report, progress.timings_s, fence)
        except Cancelled:
            if self._lost.pop(job_id, None) is not None:
                raise self._lost_error(job_id, fence) from None  # the other attempt cleans up
            await self._fail(job_id, "export cancelled", JobState.CANCELLED, part, tmp, fence)
            raise JobCancelled("export cancelled") from None
        except JobLost:
            raise
        except Exception as exc:  # every failure ends the job visibly; none is left "running"
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                message = (f"the disk filled up while writing the package in {self.export_root} "
                           f"(no space left on device); nothing was offered. Free space and export again.")
            elif isinstance(exc, ExportError | OSError | WorkingCopyError):
                message = str(exc)
            else:
                log.exception("evidence export job %s failed", job_id)
                message = f"internal error: {type(exc).__name__}: {exc}"
            await self._fail(job_id, message, JobState.FAILED, part, tmp, fence)
            raise JobFailed(message) from exc
        finally:
            self._cancels.pop(job_id, None)
            self._lost.pop(job_id, None)

    @staticmethod
    def _lost_error(job_id: int, fence: JobFence) -> JobLost:
        return JobLost(f"export job {job_id}: attempt {fence.attempt} on node {fence.node_id} lost its job to "
                       "another attempt; it stopped and left the export to it")

    def _produce(self, part: Path, tmp: Path, exhibit: str, request: dict, plan: list, lines: list,
                 produced_by: str, progress: Progress, cancel: threading.Event,
                 painted: dict[int, tuple[int, list]] | None = None,
                 release_masters: bool = False) -> tuple[PackageInfo, VerifyReport]:
        info = write_package(
            path=part, workdir=tmp, storage_root=self.storage_root, exhibit=exhibit, request=request,
            plan=plan, custody_lines=lines, keys=self.keys, produced_by=produced_by, produced_us=now_us(),
            progress=progress, cancel=cancel, masks=painted, release_masters=release_masters,
        )
        progress.stage = "reading back and verifying"
        # The fsync runs beside the read-back: both must finish before the package is offered,
        # and the read-back reads the same page cache whether or not the disk has caught up.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="package-fsync") as pool:
            synced = pool.submit(fsync_file, part)
            report = verify_package(part, self.keys.public_key_pem(), progress=progress.add, cancel=cancel)
            synced.result()
        if cancel.is_set():
            raise Cancelled("export cancelled")
        return info, report

    @staticmethod
    async def _wait_stopped(job_id: int, work: asyncio.Future[Any]) -> None:
        """Give the package thread, told to stop, a moment to do so (the job is queued again
        whatever it does; how it ended is logged, not lost)."""
        try:
            await asyncio.wait_for(asyncio.shield(work), CANCEL_WAIT_S)
        except Cancelled:
            pass  # stopped as asked
        except TimeoutError:
            log.warning("evidence export job %s: the package thread did not stop within %g s of the service "
                        "stopping; the job is queued again (its partial files are removed when it runs again)",
                        job_id, CANCEL_WAIT_S)
        except Exception:
            log.warning("evidence export job %s: the package thread failed while stopping; the job is queued "
                        "again", job_id, exc_info=True)

    @staticmethod
    async def _stop_beat(beat: asyncio.Task[None], stop: asyncio.Event) -> None:
        """Let the heartbeat finish its write rather than cancel it: a cancelled write can still
        commit afterwards (aiosqlite's thread), under the next transaction's feet."""
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(beat), 30)
        except TimeoutError:
            beat.cancel()

    async def _heartbeat(self, job_id: int, progress: Progress, cancel: threading.Event, stop: asyncio.Event,
                         fence: JobFence, ttl_s: float) -> None:
        async def beat() -> None:
            done, total, stage = progress.snapshot()
            async with transaction(self.sessions) as session:
                try:
                    await jobs.touch(session, fence, ttl_s)  # the job's lease, under its fence
                except JobLost:
                    log.error("evidence export job %s: its job was taken by another attempt (this node was cut "
                              "off or paused past its lease); stopping this attempt", job_id)
                    self._lost[job_id] = fence
                    cancel.set()
                    return
                await session.execute(update(ExportJob).where(ExportJob.id == job_id).values(
                    heartbeat_us=now_us(), done_bytes=min(done, total), stage=stage[:100]))
                job = await session.get(ExportJob, job_id, populate_existing=True)
                if job is not None and job.cancel_requested:
                    cancel.set()

        # Ends on ``stop`` rather than on cancel (see _stop_beat), so it steps Every by hand.
        every = Every(self.heartbeat_s, beat, name=f"evidence export job {job_id}: heartbeat", log=log)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.heartbeat_s)
            if stop.is_set():
                return
            await every.tick()

    async def _finish(self, job_id: int, request_id: int, final: Path, info: PackageInfo, report: VerifyReport,
                      timings_s: dict[str, float], fence: JobFence) -> None:
        async with transaction(self.sessions) as session:
            await jobs.check(session, fence)
            job = await session.get(ExportJob, job_id)
            req = await get_request(session, request_id, for_update=True)
            job.state, job.finished_us, job.stage = JobState.DONE.value, now_us(), "done"
            job.done_bytes = job.total_bytes
            move(req, RequestState.READY)
            req.package_path = str(final.relative_to(self.export_root))
            req.manifest_sha256, req.package_bytes = info.manifest_sha256, info.package_bytes
            await add_custody(session, req.id, job.created_by, "package.produced", self.keys.sign,
                              exhibit=info.exhibit, manifest_sha256=info.manifest_sha256,
                              package_bytes=info.package_bytes, files=info.files, job=job.id)
            await add_custody(session, req.id, RUNNER_ACTOR, "package.verified", self.keys.sign,
                              files_checked=report.files_checked, bytes_checked=report.bytes_checked)
            await audit.append(session, job.created_by, "evidence.export", f"evidence:{req.id}", job=job.id,
                               exhibit=info.exhibit, manifest_sha256=info.manifest_sha256,
                               package_bytes=info.package_bytes, timings_s=timings_s)
        log.info("evidence request %s: package %s ready (%d bytes; seconds per stage %s)", request_id, info.exhibit,
                 info.package_bytes, timings_s)

    async def _fail(self, job_id: int, message: str, state: JobState, part: Path | None, tmp: Path | None,
                    fence: JobFence) -> None:
        async with transaction(self.sessions) as session:
            await jobs.check(session, fence)  # JobLost: another attempt owns the files and the row now
            if part is not None and tmp is not None:
                await asyncio.to_thread(remove_quietly, part, tmp)
            job = await session.get(ExportJob, job_id)
            job.state, job.finished_us, job.error = state.value, now_us(), message
            req = await session.get(EvidenceRequest, job.request_id)
            if req.state == RequestState.EXPORTING.value:
                move(req, RequestState.APPROVED)
            action = "export.cancelled" if state is JobState.CANCELLED else "export.failed"
            await add_custody(session, req.id, RUNNER_ACTOR, action, self.keys.sign, job=job.id, error=message)
            await audit.append(session, RUNNER_ACTOR, f"evidence.{action.replace('.', '_')}", f"evidence:{req.id}",
                               job=job.id, error=message)
        log.warning("evidence request export job %s %s: %s", job_id, state.value, message)

    async def _requeue(self, job_id: int, request_id: int) -> None:
        """Queue a job again as the service stops. If that cannot be written, the job stays
        ``running`` with no heartbeat, and the next start's :meth:`recover` queues it again."""
        try:
            async with transaction(self.sessions) as session:
                job = await session.get(ExportJob, job_id)
                job.state, job.error, job.done_bytes = JobState.QUEUED.value, "service stopped; queued again", 0
                req = await session.get(EvidenceRequest, request_id)
                if req.state == RequestState.EXPORTING.value:
                    move(req, RequestState.APPROVED)
                await audit.append(session, RUNNER_ACTOR, "evidence.export_interrupted", f"evidence:{request_id}",
                                   job=job_id, requeued=True)
        except Exception:
            log.exception("evidence request %s: export job %s could not be queued again as the service stopped; "
                          "it stays running until the next start finds it without a heartbeat and queues it",
                          request_id, job_id)
