"""Running a SAR redaction: the job queue's kind ``sar.redaction`` (``controlroom.jobs.KINDS``).

A redaction is a row of the one job queue (``storage.jobs``, payload ``{"sar": id}``): any jobs
node's :class:`controlroom.jobs.JobRunner` takes it (``FOR UPDATE SKIP LOCKED``) and calls
:meth:`Redactor.run` under the job's fence (node, attempt). An attempt:

1. on the first attempt, reads the request's windows, the reviewers' marks and the privacy
   masks and saves them in the job's checkpoint: an attempt that takes the job over redacts
   with the same inputs, whatever was marked meanwhile (the marks apply to the next job);
2. in a thread, per window: the analysis (faces and plates found and linked into tracks),
   reused from ``<root>/<sar id>/`` when the same footage was analysed before, then the render
   (the redacted MP4). A window rendered is recorded in the checkpoint with its SHA-256, so a
   later attempt (its node died) reuses it and goes on with the next window;
3. meanwhile beats every ``heartbeat_s``: renews the job's lease under its fence
   (``storage.jobs.touch``), writes its progress (frames done of the estimate, the stage) into
   the checkpoint, and reads ``cancel_requested``; a lost fence (the job was taken again: this
   node was cut off or paused past its lease) stops this attempt;
4. writes the package to a part file of its own attempt, reads it back and verifies it, checks
   the fence, renames it into place, and records the result (package, manifest hash, counts)
   with ``sar.redact_done`` in one transaction under the fence.

Failures end the job visibly (``sar.redact_failed`` with the reason, :class:`JobFailed`), a
cancellation too (``sar.redact_cancelled``, :class:`JobCancelled`). A service that stops gives
the job back (the runner queues it again at once); a node that dies loses it when its lease
runs out, and the next attempt says so in the trail (``sar.redact_resumed``).
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
from typing import TYPE_CHECKING, Any

from aiohttp import web
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
from storage import audit, jobs, masks, redaction, sar
from storage.db import now_us, transaction
from storage.jobs import JobCancelled, JobFailed, JobFence, JobLost
from storage.keys import Keys
from storage.loops import Every

if TYPE_CHECKING:
    from controlroom.jobs import JobContext

log = logging.getLogger(__name__)
RUNNER_ACTOR = "system:redaction"
# A thread told to stop (cancel, or the service stopping) sees it within a frame; this bounds
# the wait so a stopping service keeps within its stop budget (http.stop_timeout_s, 25 s).
CANCEL_WAIT_S = 10.0


class Progress:
    """Frames done of the estimate (two passes per window), the stage, and the windows rendered,
    shared by the worker thread and the heartbeat."""

    def __init__(self, total: int, rendered: dict[str, Any]) -> None:
        self.lock = threading.Lock()
        self.total, self.base, self.done, self.stage = total, 0, 0, "starting"
        self.rendered = dict(rendered)

    def at(self, frames: int, stage: str) -> None:
        with self.lock:
            self.done, self.stage = self.base + frames, stage

    def next_pass(self, frames: int) -> None:
        with self.lock:
            self.base += frames
            self.done = self.base

    def window_done(self, window_id: int, record: dict[str, Any]) -> None:
        with self.lock:
            self.rendered[str(window_id)] = record

    def state(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The job's checkpoint: its inputs, the windows rendered, and the progress."""
        with self.lock:
            return {"inputs": inputs, "rendered": dict(self.rendered), "stage": self.stage[:200],
                    "done_frames": min(self.done, self.total), "total_frames": self.total}


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _Window:
    """One window to redact, with the inputs its first attempt fixed."""

    id: int
    cam: CameraWindow
    marks: list[Mark]
    polygons: list


def _reusable(work: Path, window_id: int, record: dict[str, Any] | None) -> bool:
    """Did an earlier attempt render this window, and is its file still what it recorded?"""
    out = work / f"w{window_id}.mp4"
    return record is not None and out.is_file() and _sha256(out) == record.get("sha256")


def _produce(folders: Folders, sar_id: int, job_id: int, attempt: int, reference: str, sar_fields: dict[str, Any],
             windows: list[_Window], keys: Keys, produced_by: str, options: Options, plates: Any, progress: Progress,
             cancel: threading.Event) -> tuple[PackageInfo, Path, list[RedactedWindow], list[int]]:
    work = folders.root / str(sar_id) / f"job{job_id}"
    if not progress.rendered:  # nothing to carry over: start clean
        remove_quietly(work)
    work.mkdir(parents=True, exist_ok=True)
    done: list[RedactedWindow] = []
    reused: list[int] = []
    for w in windows:
        source = Source(w.cam, folders.storage_root, work)
        out = work / f"w{w.id}.mp4"
        record = progress.rendered.get(str(w.id))
        if _reusable(work, w.id, record):
            reused.append(w.id)
            progress.next_pass(2 * source.frames_estimate)
        else:
            cached = analysis_path(folders, sar_id, w.cam, w.id, options)
            analysis = Analysis.load(cached)
            if analysis is None:
                analysis = analyse(source, options, cancel, progress.at, plates=plates)
                analysis.save(cached)
            progress.next_pass(source.frames_estimate)
            title = f"{reference}: camera {w.cam.camera_id} {w.cam.name}, redacted"
            entries = render(source, analysis, w.marks, out, title=title, actor=produced_by, options=options,
                             cancel=cancel, progress=progress.at, masks=w.polygons)
            progress.next_pass(source.frames_estimate)
            record = {"sha256": _sha256(out), "frames": analysis.frames, "fps": analysis.fps, "log": entries}
            progress.window_done(w.id, record)
        done.append(RedactedWindow(w.id, w.cam.camera_id, w.cam.name, w.cam.site, w.cam.start_us, w.cam.end_us, out,
                                   record["frames"], record["fps"], record["log"]))
    progress.at(0, "writing the signed package")
    final = package_path(folders, sar_id, reference)
    part = final.with_name(f"{final.name}.a{attempt}.part")  # two attempts never share a file
    for earlier in final.parent.glob(f"{final.name}.a*.part"):  # left by an attempt that died
        remove_quietly(earlier)
    info = write_package(path=part, reference=reference, sar=sar_fields, windows=done, keys=keys,
                         produced_by=produced_by, produced_us=now_us(), progress=ByteProgress(), cancel=cancel,
                         plates=plates is not None)
    progress.at(0, "reading back and verifying")
    report = verify_package(part, keys.public_key_pem(), cancel=cancel)
    if not report.ok:
        raise RedactionError("read-back verification failed: " + "; ".join(map(str, report.problems[:5])))
    return info, part, done, reused


def _mark(data: dict[str, Any]) -> Mark:
    return Mark(**{**data, "box": tuple(data["box"])})


class Redactor:
    """Runs the redaction jobs a node takes (``app[REDACTION]``): folders, options, and the plate
    reader, loaded at the first job."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], keys: Keys, folders: Folders, *,
                 heartbeat_s: float = 2.0, options: Options | None = None, plates: bool = True) -> None:
        self.sessions, self.keys, self.folders, self.heartbeat_s = sessions, keys, folders, heartbeat_s
        self.options = options or Options()
        self.plates = plates
        self._reader: Any = None

    async def _plate_reader(self) -> Any:
        if self.plates and self._reader is None:
            from anpr.reader import PlateReader  # loads its models (~0.5 s): only when a job runs

            try:
                self._reader = await asyncio.to_thread(PlateReader, "uk")
            except Exception:
                log.exception("redaction: the plate reader cannot start; plates will not be obscured")
                self.plates = False
        return self._reader

    async def _inputs(self, sar_id: int, saved: dict[str, Any] | None) -> tuple[Any, list[_Window], dict[str, Any]]:
        """The request and its windows, with the marks and masks of the first attempt."""
        async with self.sessions() as session:
            s = await sar.get(session, sar_id)
            plan = dict(zip([w.id for w in s.windows], await build_plan(session, s), strict=True))
            if saved is None:
                saved = {"windows": []}
                for w in s.windows:
                    mask_set = await masks.get(session, plan[w.id].camera_id)
                    saved["windows"].append({
                        "id": w.id, "polygons": mask_set.polygons if mask_set is not None else [],
                        "marks": [asdict(Mark(m.id, m.kind, m.frame, (m.x, m.y, m.w, m.h), m.by, m.until_frame, m.note))
                                  for m in await redaction.marks(session, s.id, w.id)]})
        missing = [w["id"] for w in saved["windows"] if w["id"] not in plan]
        if missing:
            raise RedactionError(f"window(s) {missing} were removed from {s.reference} while it was being redacted")
        windows = [_Window(w["id"], plan[w["id"]], [_mark(m) for m in w["marks"]], w["polygons"])
                   for w in saved["windows"]]
        if not windows:
            raise RedactionError(f"subject access request {s.reference} has no footage windows to redact")
        return s, windows, saved

    async def run(self, ctx: JobContext) -> None:
        """The job's attempt (see the module's docstring); returns when the package is ready."""
        sar_id, fence, job_id = int(ctx.payload["sar"]), ctx.fence, ctx.fence.job_id
        checkpoint = ctx.checkpoint or {}
        try:
            s, windows, inputs = await self._inputs(sar_id, checkpoint.get("inputs"))
        except RedactionError as exc:
            await self._end(fence, sar_id, "failed", str(exc))
            raise JobFailed(str(exc)) from None
        reference, sar_reference = f"{s.reference}-R{job_id}", s.reference
        sar_fields = {"id": s.id, "reference": s.reference, "requester_name": s.requester_name,
                      "received_utc": us_to_iso(s.received_us)}
        rendered = checkpoint.get("rendered") or {}
        if fence.attempt > 1:  # its node died (or stopped) while redacting: say so, and go on
            async with transaction(self.sessions) as session:
                await jobs.check(session, fence)
                await audit.append(session, RUNNER_ACTOR, "sar.redact_resumed", f"sar:{sar_reference}", job=job_id,
                                   attempt=fence.attempt, node=fence.node_id, windows_done=sorted(map(int, rendered)))
            log.warning("subject access request %s: redaction job %s resumed on node %s (attempt %d; %d of %d "
                        "windows already rendered)", sar_reference, job_id, fence.node_id, fence.attempt,
                        len(rendered), len(windows))
        total = sum(2 * max(1, int((w.cam.end_us - w.cam.start_us) * 25 / 1_000_000)) for w in windows)
        progress = Progress(total, rendered)
        cancel, lost = threading.Event(), threading.Event()
        stop = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat(fence, ctx.ttl_s, progress, inputs, cancel, lost, stop))
        work = asyncio.get_running_loop().run_in_executor(
            None, _produce, self.folders, sar_id, job_id, fence.attempt, reference, sar_fields, windows, self.keys,
            ctx.created_by, self.options, await self._plate_reader(), progress, cancel)
        try:
            info, part, done, reused = await asyncio.shield(work)
        except asyncio.CancelledError:  # the service is stopping: the runner gives the job back
            cancel.set()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(work), CANCEL_WAIT_S)
            await self._stop(beat, stop)
            raise
        except Cancelled:
            await self._stop(beat, stop)
            if lost.is_set():
                raise JobLost(f"redaction job {job_id}: attempt {fence.attempt} on node {fence.node_id} lost its "
                              "job to another attempt; it stopped and left the redaction to it") from None
            await self._end(fence, sar_id, "cancelled", "cancelled")
            raise JobCancelled("cancelled") from None
        except Exception as exc:  # every failure ends the job visibly
            await self._stop(beat, stop)
            if isinstance(exc, RedactionError | OSError):
                message = str(exc)
            else:
                log.exception("subject access request redaction job %s failed", job_id)
                message = f"internal error: {type(exc).__name__}: {exc}"
            await self._end(fence, sar_id, "failed", message)
            raise JobFailed(message) from exc
        await self._stop(beat, stop)
        final = package_path(self.folders, sar_id, reference)
        async with self.sessions() as session:  # not taken again meanwhile (a pause past the lease)
            await jobs.check(session, fence, lock=False)
        await asyncio.to_thread(os.replace, part, final)
        entries = [e for w in done for e in w.log]
        result = {"package": final.name, "package_bytes": info.package_bytes, "manifest_sha256": info.manifest_sha256,
                  "obscured": sum(e["action"] == "obscured" for e in entries),
                  "left_visible": sum(e["action"] == "left visible" for e in entries), "windows_reused": reused}
        async with transaction(self.sessions) as session:
            await jobs.save_checkpoint(session, fence, {**progress.state(inputs), "stage": "done",
                                                        "done_frames": progress.total, "result": result})
            await audit.append(session, ctx.created_by, "sar.redact_done", f"sar:{sar_reference}", job=job_id,
                               package=final.name, manifest_sha256=info.manifest_sha256, obscured=result["obscured"],
                               left_visible=result["left_visible"], attempt=fence.attempt)
        await asyncio.to_thread(remove_quietly, final.parent / f"job{job_id}")
        log.info("subject access request %s: redacted package %s ready (%d bytes)", sar_reference, final.name,
                 info.package_bytes)

    async def _heartbeat(self, fence: JobFence, ttl_s: float, progress: Progress, inputs: dict[str, Any],
                         cancel: threading.Event, lost: threading.Event, stop: asyncio.Event) -> None:
        async def beat() -> None:
            async with transaction(self.sessions) as session:
                try:
                    job = await jobs.touch(session, fence, ttl_s)  # the job's lease, under its fence
                except JobLost:
                    log.error("redaction job %s: taken by another attempt (this node was cut off or paused past "
                              "its lease); stopping attempt %d", fence.job_id, fence.attempt)
                    lost.set()
                    cancel.set()
                    return
                if job.cancel_requested:
                    cancel.set()
                await jobs.save_checkpoint(session, fence, progress.state(inputs))

        # Ends on ``stop`` rather than on cancel (a cancelled write may still commit afterwards).
        every = Every(self.heartbeat_s, beat, name=f"redaction job {fence.job_id}: heartbeat", log=log)
        await every.tick()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.heartbeat_s)
            if not stop.is_set():
                await every.tick()

    @staticmethod
    async def _stop(beat: asyncio.Task[None], stop: asyncio.Event) -> None:
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(beat), 30)
        except TimeoutError:
            beat.cancel()

    async def _end(self, fence: JobFence, sar_id: int, outcome: str, message: str) -> None:
        """Audit a failed or cancelled attempt (the job runner ends the job with the message)."""
        try:
            async with transaction(self.sessions) as session:
                await jobs.check(session, fence)
                s = await sar.get(session, sar_id)
                await audit.append(session, RUNNER_ACTOR, f"sar.redact_{outcome}", f"sar:{s.reference}",
                                   job=fence.job_id, error=message)
        except JobLost:
            raise
        except Exception:  # the job still ends with the reason; the missing entry is logged
            log.exception("redaction job %s: could not audit its end (%s: %s)", fence.job_id, outcome, message)
        log.warning("subject access request redaction job %s %s: %s", fence.job_id, outcome, message)


async def redaction_ctx(app: web.Application) -> AsyncIterator[None]:
    """The node's :class:`Redactor` (``app[REDACTION]``), for the jobs it takes and the review
    routes (the analysis options)."""
    settings = app[SETTINGS]
    app[REDACTION] = Redactor(app[SESSIONS], app[KEYS], Folders(settings.storage_root, settings.redaction_root),
                              heartbeat_s=settings.lawful.redaction_heartbeat_s,
                              plates=settings.lawful.redaction_plates)
    yield
