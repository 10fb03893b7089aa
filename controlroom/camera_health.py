"""Camera health in the service: automatic faults for cameras off the air, and picture checks.

Two ticks, each one plain call that tests make directly (``offline_tick``, ``picture_tick``),
each run by a small loop here (:func:`health_loop_ctx`):

- **Off the air**: a camera that should record (enabled, recording) and has been ``offline``,
  ``reconnecting`` or ``starting`` for ``health.offline_after_s`` gets an automatic ``offline``
  fault and a ``camera_fault`` alert; when it records again the fault is marked repaired
  (``camera_repaired`` alert). ``degraded`` is not the camera's fault (the recorder runs, the
  database or disk does not keep up: recording-store.md, Health) and opens none. The state is
  the one the recorder supervisor writes to the camera row, so this needs nothing from it.
- **Picture checks** every ``health.picture_interval_s``: one snapshot per enabled camera, taken
  the way the live view takes one (a shared upstream of the sub stream, its newest keyframe
  decoded by ffmpeg), judged by :mod:`cameras.picture` off the event loop,
  ``health.picture_parallel`` cameras at a time. The first picture that passes the dark/covered/blurred checks becomes the
  camera's reference view, unless one was set by hand. ``health.picture_failures_to_fault``
  failing checks in a row open an automatic fault of that kind with a ``picture_check`` alert;
  a picture that passes every check marks the camera's automatic picture faults repaired.

A tick that fails is logged with its traceback, and shown until a tick succeeds by ``/healthz``
(components ``camera_health`` and ``picture_checks``: controlroom.background).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cameras import picture
from controlroom.api.live import snapshot_jpeg, source_factory, upstream_stream
from controlroom.background import watched
from controlroom.context import ALERTS, LIVE, SESSIONS, SETTINGS
from controlroom.settings import HealthSettings
from storage import Invalid, audit, health
from storage.alerts import AlertHub, raise_alert
from storage.db import now_us, transaction
from storage.models import Camera, CameraKind, CameraState

log = logging.getLogger(__name__)

CAMERA_HEALTH = web.AppKey("camera_health", "CameraHealth")
OFF_AIR = (CameraState.OFFLINE.value, CameraState.RECONNECTING.value, CameraState.STARTING.value)
PICTURE_KINDS = (picture.DARK, picture.COVERED, picture.BLURRED, picture.MOVED)

Snapshot = Callable[[Camera], Awaitable[bytes]]


def thresholds(s: HealthSettings) -> picture.Thresholds:
    return picture.Thresholds(
        blur_ratio=s.blur_ratio, blur_min_variance=s.blur_min_variance, dark_mean=s.dark_mean,
        flat_cell_std=s.flat_cell_std, covered_fraction=s.covered_fraction,
        covered_fraction_alone=s.covered_fraction_alone, moved_shift_fraction=s.moved_shift_fraction,
        moved_rotation_deg=s.moved_rotation_deg, moved_scale=s.moved_scale, moved_min_matches=s.moved_min_matches)


@dataclass
class CheckRecord:
    """The last picture check of one camera, as the API shows it."""

    camera_id: int
    at_us: int
    result: dict[str, Any] | None  # cameras.picture.Result.to_dict(), None when no snapshot
    error: str = ""
    reference: bool = False  # the camera has a reference view
    reference_set: bool = False  # this check's picture became the reference

    def to_dict(self) -> dict[str, Any]:
        return {"camera_id": self.camera_id, "at_us": self.at_us, "result": self.result, "error": self.error,
                "reference": self.reference, "reference_set": self.reference_set}


class CameraHealth:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], alerts: AlertHub | None, settings: HealthSettings,
                 reference_dir: Path, snapshot: Snapshot) -> None:
        self.sessions, self.alerts, self.settings = sessions, alerts, settings
        self.reference_dir = reference_dir
        self.snapshot = snapshot
        self.thresholds = thresholds(settings)
        self.checks: dict[int, CheckRecord] = {}
        self._streak: dict[tuple[int, str], int] = {}  # (camera, kind) -> failing checks in a row
        self._references: dict[int, tuple[int, picture.Reference]] = {}  # camera -> (file mtime, reference)

    # --- off the air -----------------------------------------------------------------------

    async def offline_tick(self, now: int | None = None) -> None:
        now = now_us() if now is None else now
        limit_us = int(self.settings.offline_after_s * 1_000_000)
        async with transaction(self.sessions) as session:
            cams = (await session.execute(select(Camera).where(Camera.enabled.is_(True), Camera.recording.is_(True))
                                          .order_by(Camera.id))).scalars().all()
            for cam in cams:
                since = cam.state_since_us
                if cam.state in OFF_AIR and since is not None and now - since >= limit_us:
                    minutes = (now - since) // 60_000_000
                    why = f"off the air for {minutes} min ({cam.state}: {cam.state_reason or 'no reason given'})"
                    fault, opened = await health.open_automatic(session, cam.id, "offline", why, at_us=since)
                    if opened:
                        log.warning("camera %s: automatic offline fault %s: %s", cam.id, fault.id, why)
                        await raise_alert(session, self.alerts, "camera_fault", f"{cam.name}: fault: {why}", cam.id,
                                          fault_id=fault.id, fault_kind="offline")
                elif cam.state == CameraState.RECORDING.value:
                    fault = await health.repair_automatic(session, cam.id, "offline", "recording again",
                                                          at_us=cam.state_since_us or now)
                    if fault is not None:
                        log.info("camera %s: offline fault %s repaired (recording again)", cam.id, fault.id)
                        await raise_alert(session, self.alerts, "camera_repaired",
                                          f"{cam.name}: recording again (fault {fault.id} repaired)", cam.id,
                                          fault_id=fault.id, fault_kind="offline")

    # --- picture checks --------------------------------------------------------------------

    def _reference_path(self, camera_id: int) -> Path:
        return self.reference_dir / f"{camera_id}.jpg"

    async def reference_of(self, camera_id: int) -> picture.Reference | None:
        """The camera's reference view; read again when its file changed or went (the CLI's
        ``faults reset-reference`` works on a running service)."""
        path = self._reference_path(camera_id)
        mtime = await asyncio.to_thread(lambda: path.stat().st_mtime_ns if path.is_file() else None)
        if mtime is None:
            self._references.pop(camera_id, None)
            return None
        cached = self._references.get(camera_id)
        if cached is None or cached[0] != mtime:
            data = await asyncio.to_thread(path.read_bytes)
            cached = (mtime, await asyncio.to_thread(picture.reference, data, self.thresholds))
            self._references[camera_id] = cached
        return cached[1]

    async def set_reference(self, camera_id: int, jpeg: bytes, by: str) -> None:
        """Make ``jpeg`` the camera's reference view (written, then audited)."""
        try:
            ref = await asyncio.to_thread(picture.reference, jpeg, self.thresholds)
        except picture.PictureError as exc:
            raise Invalid(f"camera {camera_id}: {exc}") from None
        path = self._reference_path(camera_id)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(jpeg)
            os.replace(tmp, path)

        await asyncio.to_thread(write)
        self._references[camera_id] = (path.stat().st_mtime_ns, ref)
        async with transaction(self.sessions) as session:
            await audit.append(session, by, "picture.reference", f"camera:{camera_id}", bytes=len(jpeg))

    async def clear_reference(self, camera_id: int, by: str) -> bool:
        """Forget the reference view; the next passing picture becomes the new one."""
        path = self._reference_path(camera_id)
        existed = await asyncio.to_thread(path.is_file)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        self._references.pop(camera_id, None)
        async with transaction(self.sessions) as session:
            await audit.append(session, by, "picture.reference_clear", f"camera:{camera_id}", existed=existed)
        return existed

    async def check_camera(self, cam: Camera) -> CheckRecord:
        """One snapshot of ``cam`` judged; faults and alerts as the module says."""
        try:
            jpeg = await self.snapshot(cam)
        except Exception as exc:  # noqa: BLE001 - an unreachable camera is the offline check's business
            record = CheckRecord(cam.id, now_us(), None, f"no snapshot: {type(exc).__name__}: {exc}"[:300],
                                 reference=await self.reference_of(cam.id) is not None)
            self.checks[cam.id] = record
            log.info("camera %s: picture check skipped: %s", cam.id, record.error)
            return record
        ref = await self.reference_of(cam.id)
        result = await asyncio.to_thread(picture.check, jpeg, ref, self.thresholds,
                                         compare_view=cam.kind != CameraKind.PTZ.value and not cam.ptz)
        record = CheckRecord(cam.id, now_us(), result.to_dict(), reference=ref is not None)
        if ref is None and not result.failures:
            await self.set_reference(cam.id, jpeg, "system:health")
            record.reference = record.reference_set = True
        await self._judge(cam, result)
        self.checks[cam.id] = record
        return record

    async def _judge(self, cam: Camera, result: picture.Result) -> None:
        for kind in PICTURE_KINDS:
            key = (cam.id, kind)
            self._streak[key] = self._streak.get(key, 0) + 1 if kind in result.failures else 0
        async with transaction(self.sessions) as session:
            for kind, why in result.failures.items():
                if self._streak[(cam.id, kind)] < self.settings.picture_failures_to_fault:
                    continue
                fault, opened = await health.open_automatic(session, cam.id, kind, why)
                if opened:
                    log.warning("camera %s: automatic %s fault %s: %s", cam.id, kind, fault.id, why)
                    await raise_alert(session, self.alerts, "picture_check", f"{cam.name}: {why}", cam.id,
                                      fault_id=fault.id, fault_kind=kind)
            if result.ok:
                for kind in PICTURE_KINDS:
                    fault = await health.repair_automatic(session, cam.id, kind, "the picture passes its checks")
                    if fault is not None:
                        log.info("camera %s: %s fault %s repaired (picture passes)", cam.id, kind, fault.id)
                        await raise_alert(session, self.alerts, "camera_repaired",
                                          f"{cam.name}: picture {kind} fault {fault.id} repaired", cam.id,
                                          fault_id=fault.id, fault_kind=kind)

    async def picture_tick(self) -> None:
        """Check every enabled camera, ``health.picture_parallel`` at a time: most of a check's
        time is waiting for the camera (connect, the next keyframe), not CPU."""
        async with self.sessions() as session:
            cams = (await session.execute(select(Camera).where(Camera.enabled.is_(True)).order_by(Camera.id))).scalars().all()
        limit = asyncio.Semaphore(self.settings.picture_parallel)

        async def one(cam: Camera) -> None:
            async with limit:
                await self.check_camera(cam)

        async with asyncio.TaskGroup() as group:
            for cam in cams:
                if cam.main_url or cam.sub_url:
                    group.create_task(one(cam))


def live_snapshot(app: web.Application) -> Snapshot:
    """Snapshots as the live view takes them (controlroom.api.live.snapshot)."""

    async def take(cam: Camera) -> bytes:
        actual = upstream_stream(cam, "sub")
        up, viewer = await app[LIVE].join(f"{cam.id}/{actual}", source_factory(app, cam.id, actual))
        try:
            return await snapshot_jpeg(up)
        finally:
            app[LIVE].leave(up, viewer)

    return take


# The wait before the next offline check after a failed one.
RETRY_S = 2.0


async def health_ctx(app: web.Application) -> AsyncIterator[None]:
    """The camera health component (picture results and references for the API)."""
    settings = app[SETTINGS]
    app[CAMERA_HEALTH] = CameraHealth(app[SESSIONS], app[ALERTS], settings.health,
                                      settings.data_dir / "picture-references", live_snapshot(app))
    yield


async def health_loop_ctx(app: web.Application) -> AsyncIterator[None]:
    """The health loops (with the recorders): the offline check every ``check_interval_s``;
    picture checks every ``picture_interval_s`` (0: never), the first one interval after start.
    Two tasks, so a long round of pictures never delays the offline check."""
    settings = app[SETTINGS].health
    component = app[CAMERA_HEALTH]

    # After a failed offline check (the database restarting, say) look again soon: the failure
    # shows in /healthz until a tick succeeds, and must not outlive its cause by a whole interval.
    offline = watched(app, "camera_health", settings.check_interval_s, component.offline_tick,
                      what="offline check", log=log, retry_s=RETRY_S)
    tasks = [asyncio.create_task(offline.run(), name="camera health: offline")]
    if settings.picture_interval_s > 0:
        # First one interval after start: the recorders and cameras are up by then, and a
        # short-lived service (a test, a CLI check) opens no extra camera sessions.
        pictures = watched(app, "picture_checks", settings.picture_interval_s, component.picture_tick,
                           what="picture checks", log=log, wait_first=True)
        tasks.append(asyncio.create_task(pictures.run(), name="camera health: pictures"))
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
