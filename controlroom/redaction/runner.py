"""Running redaction jobs: :func:`run_job` redacts every window of a request and writes its
signed package; :class:`RedactionRunner` takes queued jobs one at a time in the background.

``run_job`` is a plain function of a job id and what it needs (sessions, keys, folders), so a
general job table's worker can call it as it is. A job:

1. reads the request, its windows (with what the catalogue holds: controlroom.evidence.plan)
   and the reviewers' marks;
2. in a thread, per window: the analysis (faces and plates found and linked into tracks),
   reused from ``<root>/<sar id>/`` when the same footage was analysed before, then the render
   (the redacted MP4); then the package, read back and verified before it is offered;
3. meanwhile beats a heartbeat with its progress (frames done of the estimate, and the stage)
   and reads cancellation from the database;
4. ends ``done`` (package named on the job, audited ``sar.redact_done``), or ``failed`` /
   ``cancelled`` with the reason (audited), never left running: a job whose runner died (no
   heartbeat for ``stale_after_s``) is marked failed by :meth:`RedactionRunner.recover`, and the
   supervisor starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlroom.context import KEYS, REDACTION, SESSIONS, SETTINGS
from controlroom.evidence.package import PackageInfo, remove_quietly
from controlroom.evidence.package import Progress as ByteProgress
from controlroom.evidence.plan import CameraWindow, build_plan
from controlroom.evidence.verify import verify_package
from controlroom.evidence.working import Cancelled
from controlroom.redaction import RedactionError
from controlroom.redaction.engine import (
    ANALYSIS_VERSION,
    Analysis,
    Mark,
    Options,
    Source,
    analyse,
    render,
)
from controlroom.redaction.package import RedactedWindow, write_package
from controlroom.timefmt import us_to_iso
from storage import audit, masks, redaction, sar
from storage.db import now_us, transaction
from storage.keys import Keys
from storage.loops import Every, run_every

log = logging.getLogger(__name__)
RUNNER_ACTOR = "system:redaction"


class Progress:
    """Frames done of the estimate (two passes per window) and the stage, shared with the heartbeat."""

    def __init__(self, total: int) -> None:
        self.lock = threading.Lock()
        self.total, self.base, self.done, self.stage = total, 0, 0, "starting"

    def at(self, frames: int, stage: str) -> None:
        with self.lock:
            self.done, self.stage = self.base + frames, stage

    def next_pass(self, frames: int) -> None:
        with self.lock:
            self.base += frames
            self.done = self.base

    def snapshot(self) -> tuple[int, int, str]:
        with self.lock:
            return min(self.done, self.total), self.total, self.stage


@dataclass(frozen=True)
class Folders:
    storage_root: Path
    root: Path  # where analyses, work files and packages go


def analysis_path(folders: Folders, sar_id: int, cam: CameraWindow, window_id: int, options: Options) -> Path:
    """Named by everything that shapes the analysis: the same footage and options reuse it."""
    key = json.dumps([ANALYSIS_VERSION, cam.start_us, cam.end_us, [(s.id, s.sha256) for s in cam.segments],
                      asdict(options)]).encode()
    return folders.root / str(sar_id) / f"analysis-w{window_id}-{hashlib.sha256(key).hexdigest()[:16]}.json"


def package_path(folders: Folders, sar_id: int, reference: str) -> Path:
    return folders.root / str(sar_id) / f"{reference}.zip"


def _produce(folders: Folders, job_id: int, reference: str, sar_fields: dict[str, Any],
             windows: list[tuple[int, CameraWindow, list[Mark], list]], keys: Keys, produced_by: str, options: Options,
             plates: Any, progress: Progress, cancel: threading.Event) -> tuple[PackageInfo, Path, list[RedactedWindow]]:
    work = folders.root / str(sar_fields["id"]) / f"job{job_id}"
    remove_quietly(work)
    work.mkdir(parents=True)
    done: list[RedactedWindow] = []
    for window_id, cam, marks, polygons in windows:
        source = Source(cam, folders.storage_root, work)
        cached = analysis_path(folders, sar_fields["id"], cam, window_id, options)
        analysis = Analysis.load(cached)
        if analysis is None:
            analysis = analyse(source, options, cancel, progress.at, plates=plates)
            analysis.save(cached)
        progress.next_pass(source.frames_estimate)
        out = work / f"w{window_id}.mp4"
        title = f"{reference}: camera {cam.camera_id} {cam.name}, redacted"
        entries = render(source, analysis, marks, out, title=title, actor=produced_by, options=options,
                         cancel=cancel, progress=progress.at, masks=polygons)
        progress.next_pass(source.frames_estimate)
        done.append(RedactedWindow(window_id, cam.camera_id, cam.name, cam.site, cam.start_us, cam.end_us, out,
                                   analysis.frames, analysis.fps, entries))
    progress.at(0, "writing the signed package")
    final = package_path(folders, sar_fields["id"], reference)
    part = final.with_suffix(".zip.part")
    info = write_package(path=part, reference=reference, sar=sar_fields, windows=done, keys=keys,
                         produced_by=produced_by, produced_us=now_us(), progress=ByteProgress(), cancel=cancel,
                         plates=plates is not None)
    progress.at(0, "reading back and verifying")
    report = verify_package(part, keys.public_key_pem(), cancel=cancel)
    if not report.ok:
        raise RedactionError("read-back verification failed: " + "; ".join(map(str, report.problems[:5])))
    os.replace(part, final)
    remove_quietly(work)
    return info, final, done


async def run_job(job_id: int, *, sessions: async_sessionmaker[AsyncSession], keys: Keys, folders: Folders,
                  options: Options | None = None, plates: Any = None, heartbeat_s: float = 2.0) -> None:
    """Run one claimed (running) job to its end. ``plates``: an anpr.reader.PlateReader, or None
    for faces only (no plate reader installed)."""
    options = options or Options()
    cancel = threading.Event()
    async with sessions() as session:
        job = await redaction.get_job(session, job_id)
        s = await sar.get(session, job.sar_id)
        plan = await build_plan(session, s)
        windows = []
        for w, cam in zip(s.windows, plan, strict=True):
            marks = [Mark(m.id, m.kind, m.frame, (m.x, m.y, m.w, m.h), m.by, m.until_frame, m.note)
                     for m in await redaction.marks(session, s.id, w.id)]
            mask_set = await masks.get(session, cam.camera_id)
            windows.append((w.id, cam, marks, mask_set.polygons if mask_set is not None else []))
        reference = f"{s.reference}-R{job.id}"
        sar_fields = {"id": s.id, "reference": s.reference, "requester_name": s.requester_name,
                      "received_utc": us_to_iso(s.received_us)}
        produced_by = job.created_by
    total = 0
    for _, cam, _, _ in windows:
        total += 2 * max(1, int((cam.end_us - cam.start_us) * 25 / 1_000_000))  # refined as windows open
    progress = Progress(total)
    stop = asyncio.Event()
    beat = asyncio.create_task(_heartbeat(sessions, job_id, progress, cancel, stop, heartbeat_s))
    work = asyncio.get_running_loop().run_in_executor(
        None, _produce, folders, job_id, reference, sar_fields, windows, keys, produced_by, options, plates,
        progress, cancel)
    try:
        info, final, done = await asyncio.shield(work)
    except asyncio.CancelledError:
        cancel.set()  # the service is stopping
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(work), 10)
        await _stop(beat, stop)
        await _end(sessions, job_id, redaction.JobState.FAILED, "the service stopped while redacting; start it again")
        raise
    except Cancelled:
        await _stop(beat, stop)
        await _end(sessions, job_id, redaction.JobState.CANCELLED, "cancelled")
        return
    except Exception as exc:  # every failure ends the job visibly
        await _stop(beat, stop)
        if isinstance(exc, RedactionError | OSError):
            message = str(exc)
        else:
            log.exception("subject access request redaction job %s failed", job_id)
            message = f"internal error: {type(exc).__name__}: {exc}"
        await _end(sessions, job_id, redaction.JobState.FAILED, message)
        return
    await _stop(beat, stop)
    entries = [e for w in done for e in w.log]
    async with transaction(sessions) as session:
        job = await redaction.get_job(session, job_id)
        job.state, job.finished_us, job.stage = redaction.JobState.DONE.value, now_us(), "done"
        job.done_frames = job.total_frames
        job.package, job.package_bytes, job.manifest_sha256 = final.name, info.package_bytes, info.manifest_sha256
        job.obscured = sum(e["action"] == "obscured" for e in entries)
        job.kept = sum(e["action"] == "left visible" for e in entries)
        await audit.append(session, job.created_by, "sar.redact_done", f"sar:{sar_fields['reference']}", job=job_id,
                           package=final.name, manifest_sha256=info.manifest_sha256, obscured=job.obscured,
                           left_visible=job.kept)
    log.info("subject access request %s: redacted package %s ready (%d bytes)", sar_fields["reference"], final.name,
             info.package_bytes)


async def _heartbeat(sessions: async_sessionmaker[AsyncSession], job_id: int, progress: Progress,
                     cancel: threading.Event, stop: asyncio.Event, heartbeat_s: float) -> None:
    async def beat() -> None:
        done, total, stage = progress.snapshot()
        async with transaction(sessions) as session:
            await session.execute(update(redaction.RedactionJob).where(redaction.RedactionJob.id == job_id).values(
                heartbeat_us=now_us(), done_frames=done, total_frames=total, stage=stage[:200]))
            job = await redaction.get_job(session, job_id)
            if job.cancel_requested:
                cancel.set()

    every = Every(heartbeat_s, beat, name=f"redaction job {job_id}: heartbeat", log=log)
    await every.tick()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), heartbeat_s)
        if not stop.is_set():
            await every.tick()


async def _stop(beat: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(beat), 30)
    except TimeoutError:
        beat.cancel()


async def _end(sessions: async_sessionmaker[AsyncSession], job_id: int, state: redaction.JobState,
               message: str) -> None:
    async with transaction(sessions) as session:
        job = await redaction.get_job(session, job_id)
        job.state, job.finished_us, job.error = state.value, now_us(), message
        s = await sar.get(session, job.sar_id)
        await audit.append(session, RUNNER_ACTOR, f"sar.redact_{state.value}", f"sar:{s.reference}", job=job_id,
                           error=message)
    log.warning("subject access request redaction job %s %s: %s", job_id, state.value, message)


class RedactionRunner:
    """Takes queued jobs, oldest first, one at a time (a job keeps both cores busy)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], keys: Keys, folders: Folders, *,
                 poll_s: float = 5.0, heartbeat_s: float = 2.0, stale_after_s: float = 60.0,
                 options: Options | None = None, plates: bool = True) -> None:
        self.sessions, self.keys, self.folders = sessions, keys, folders
        self.poll_s, self.heartbeat_s, self.stale_after_s = poll_s, heartbeat_s, stale_after_s
        self.options = options or Options()
        self.plates = plates
        self._reader: Any = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(
            run_every(self.poll_s, self.run_queue, name="redaction loop", log=log, wait=self._wait), name="redaction")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        self._wake.clear()

    async def recover(self) -> list[int]:
        """Jobs whose runner stopped beating are marked failed (visible; started again by hand)."""
        cutoff = now_us() - int(self.stale_after_s * 1_000_000)
        async with self.sessions() as session:
            ids = [j.id for j in await redaction.stale(session, cutoff)]
        for job_id in ids:
            await _end(self.sessions, job_id, redaction.JobState.FAILED,
                       "the service stopped while redacting (no heartbeat); start it again")
        return ids

    async def _plate_reader(self) -> Any:
        if self.plates and self._reader is None:
            from anpr.reader import PlateReader  # loads its models (~0.5 s): only when a job runs

            try:
                self._reader = await asyncio.to_thread(PlateReader, "uk")
            except Exception:
                log.exception("redaction: the plate reader cannot start; plates will not be obscured")
                self.plates = False
        return self._reader

    async def run_once(self) -> int | None:
        async with transaction(self.sessions) as session:
            job = await redaction.claim_next(session)
        if job is None:
            return None
        await run_job(job.id, sessions=self.sessions, keys=self.keys, folders=self.folders, options=self.options,
                      plates=await self._plate_reader(), heartbeat_s=self.heartbeat_s)
        return job.id

    async def run_queue(self) -> None:
        await self.recover()
        while await self.run_once() is not None:
            pass


async def redaction_ctx(app: web.Application) -> AsyncIterator[None]:
    """The runner for the app's lifetime (app[REDACTION]; the API wakes it when it queues a job)."""
    settings = app[SETTINGS]
    runner = RedactionRunner(app[SESSIONS], app[KEYS], Folders(settings.storage_root, settings.redaction_root),
                             heartbeat_s=settings.lawful.redaction_heartbeat_s, plates=settings.lawful.redaction_plates)
    app[REDACTION] = runner
    await runner.start()
    yield
    await runner.stop()
