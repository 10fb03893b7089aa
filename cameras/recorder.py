"""Continuous recording: one supervised ffmpeg per camera, stream copy into MKV segments.

Each :class:`CameraRecorder` runs ffmpeg (arguments built with ffmpeg-python, never a shell
string) with the segment muxer writing Matroska files into ``<root>/<camera>/incoming/`` and
the list of finished segments on its stdout. Each finished segment is committed to the store
(storage.catalogue.commit_segment: fsync, rename into its day folder, then the catalogue row).

Health is judged by progress, not by "still running": ffmpeg reports ``out_time_us`` on
stderr (``-progress pipe:2``) twice a second; no progress for ``stall_timeout_s`` means it is
restarted. Exits are retried forever with capped exponential backoff. Every outage is a gap
with a start and an end, and the camera's state (recording, reconnecting, offline with
reason, disabled) is kept in the inventory row, with an alert when a camera is lost or back.

Times: ffmpeg lists each finished segment with its start and end on the stream's media
timeline, at about the moment the next segment's first keyframe arrives. The wall-clock time of
that report minus the segment's media end is the offset between the two clocks plus a delay
that is never negative (reporting, scheduling); the smallest such offset over the last
:data:`OFFSET_WINDOW` segments of one ffmpeg run estimates the true offset, and a segment's
wall times are its media times plus that offset. So consecutive segments of a run are
contiguous, a busy event loop cannot open holes between them, and a camera whose media clock
drifts is followed within a few segments. See docs/design/time.md.

Matroska can be read while it is written, so a crash (of ffmpeg or of the service) loses
nothing that reached the disk: the partial file left in ``incoming/`` is recovered at the next
start (:func:`recover_incoming`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import ffmpeg
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cameras import children
from cameras.rtsp import PROTOCOLS, InputList, has_credentials, scrub
from storage.alerts import AlertHub, raise_alert
from storage.catalogue import NewSegment, close_gap, commit_segment, incoming_dir, open_gap
from storage.db import now_us, transaction
from storage.inventory import credentialed_url
from storage.keys import Keys
from storage.models import Camera, CameraState, SegmentState

log = logging.getLogger(__name__)

# How long a camera may fail to connect before "reconnecting" becomes "offline". Cameras that
# reboot come back in 30-90 s; 15 s keeps the badge honest without flapping on a blip.
OFFLINE_AFTER_S = 15.0
# ffmpeg's socket I/O timeout for RTSP; a silent camera is detected by our own stall watchdog
# too, this only bounds the connect.
RTSP_IO_TIMEOUT_S = 10.0
# After SIGINT, ffmpeg finalises the segment and exits (status 255); give it this long.
STOP_GRACE_S = 10.0
STDERR_RING_LINES = 40
# Segments over which the smallest wall-minus-media offset is taken (see the module docstring).
OFFSET_WINDOW = 10

_STREAM_RE = re.compile(r"Stream #0:\d+.*?: Video: (?P<codec>\w+).*?, (?P<w>\d{2,5})x(?P<h>\d{2,5})")


def classify_failure(lines: list[str]) -> tuple[str, bool]:
    """(reason for the operator, final?) from ffmpeg's last stderr lines.

    ``final`` failures (wrong credentials, no such stream) go straight to offline.
    """
    text = "\n".join(lines)
    if "401 Unauthorized" in text or "403 Forbidden" in text:
        return "the camera refused these credentials", True
    if "404 Not Found" in text or "454 Session Not Found" in text:
        return "no stream at this URL (404)", True
    if "Connection refused" in text:
        return "camera unreachable (connection refused)", False
    if "Connection timed out" in text or "timed out" in text.lower():
        return "camera unreachable (timed out)", False
    if "No route to host" in text or "Network is unreachable" in text:
        return "camera unreachable (no route)", False
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return "camera address does not resolve", True
    if "No space left on device" in text:
        return "recording disk is full", False
    for line in reversed(lines):
        if any(word in line for word in ("rror", "failed", "Invalid", "End of file", "stalled")):
            return f"stream lost: {line.strip()[:200]}", False
    return "the camera closed the stream", False


@dataclass
class RecorderCamera:
    """What a recorder needs of an inventory row (the password decrypted, in memory only)."""

    id: int
    name: str
    main_url: str
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @property
    def fingerprint(self) -> tuple[str, str, str]:
        return (self.main_url, self.username, self.password)


def input_options() -> dict[str, object]:
    return {"rtsp_transport": "tcp", "timeout": str(int(RTSP_IO_TIMEOUT_S * 1e6))}


def ffmpeg_args(url: str, out_dir: Path, run_id: str, segment_s: int, listing: InputList | None = None) -> list[str]:
    """The ffmpeg command for one camera: RTSP over TCP in, video stream-copied to MKV segments.
    With ``listing`` (a URL with credentials), ffmpeg reads the URL and its input options from
    that private list file instead of ``url`` (see cameras.rtsp.InputList)."""
    if listing is not None:
        source = ffmpeg.input(str(listing.path), f="concat", safe=0, protocol_whitelist=PROTOCOLS)
    else:
        source = ffmpeg.input(url, **input_options())
    out = source.output(
        str(out_dir / f"{run_id}-%Y%m%dT%H%M%SZ.mkv"),
        map="0:v",  # video only: councils do not record audio in public space
        c="copy",
        f="segment",
        segment_time=segment_s,
        segment_atclocktime=1,  # cut on wall-clock multiples: cameras' segments line up
        segment_format="matroska",  # readable while written: a crash loses nothing on disk
        reset_timestamps=1,
        strftime=1,
        segment_list="pipe:1",
        segment_list_type="csv",
        segment_list_flags="live",
    )
    compiled = out.compile(cmd="ffmpeg")
    # Global options go first (ffmpeg may ignore trailing ones).
    # Progress every 2 s is plenty for a stall watchdog counted in tens of seconds, and costs the
    # service a quarter of the default 0.5 s period (about 12 lines per report per camera).
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "info", "-stats_period", "2",
            "-progress", "pipe:2", *compiled[1:]]


async def probe(path: Path) -> tuple[float, str, int, int]:
    """(media duration in s, codec, width, height) of a possibly unfinished MKV, by reading packets."""
    proc = await children.spawn(
        "ffprobe", "-v", "error", "-select_streams", "v:0",
        "-show_entries", "stream=codec_name,width,height:packet=pts_time",
        "-of", "json", str(path),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await proc.communicate()
    finally:
        await children.end(proc)  # the caller went away (a playback request cancelled)
    try:
        data = json.loads(out or b"{}")
    except json.JSONDecodeError:
        return 0.0, "", 0, 0
    times = [float(p["pts_time"]) for p in data.get("packets", []) if p.get("pts_time") not in (None, "N/A")]
    stream = (data.get("streams") or [{}])[0]
    duration = (max(times) - min(times)) if len(times) > 1 else 0.0
    return duration, stream.get("codec_name", ""), int(stream.get("width") or 0), int(stream.get("height") or 0)


async def recover_incoming(
    sessions: async_sessionmaker[AsyncSession], root: Path, camera_id: int, clock: tuple[float | None, bool] = (None, False)
) -> list[Path]:
    """Catalogue (as ``recovered``) what a crash left in the camera's ``incoming/`` folder.

    A file with no readable video is moved to ``<camera>/damaged/`` and logged, never deleted.
    Returns the recovered files' final paths. Call only when no ffmpeg writes that folder.
    """
    folder = incoming_dir(root, camera_id)
    if not folder.is_dir():
        return []
    recovered = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        if path.stat().st_size == 0:
            path.unlink()
            continue
        duration, codec, width, height = await probe(path)
        if duration <= 0:
            damaged = root / str(camera_id) / "damaged"
            damaged.mkdir(exist_ok=True)
            os.replace(path, damaged / path.name)
            log.error("camera %s: unreadable partial segment %s moved to damaged/", camera_id, path.name)
            continue
        end_us = int(path.stat().st_mtime * 1_000_000)
        seg = NewSegment(camera_id, end_us - int(duration * 1_000_000), end_us, codec, width, height,
                         clock[0], clock[1], SegmentState.RECOVERED)
        row = await commit_segment(sessions, root, path, seg)
        log.warning("camera %s: recovered interrupted segment %s (%.1f s)", camera_id, row.path, duration)
        recovered.append(root / row.path)
    return recovered


class CameraRecorder:
    """Records one camera forever: start ffmpeg, watch it, commit segments, restart on failure."""

    def __init__(
        self,
        cam: RecorderCamera,
        sessions: async_sessionmaker[AsyncSession],
        root: Path,
        *,
        segment_s: int,
        stall_timeout_s: float,
        backoff_initial_s: float,
        backoff_max_s: float,
        alerts: AlertHub | None = None,
    ) -> None:
        self.cam = cam
        self.sessions = sessions
        self.root = root
        self.segment_s = segment_s
        self.stall_timeout_s = stall_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.alerts = alerts
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_RING_LINES)
        self.state = CameraState.STARTING
        self.segments_committed = 0
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._input_list: InputList | None = None  # the private file handing ffmpeg its URL
        self._stopping = False
        self._last_progress = time.monotonic()
        self._codec = ("", 0, 0)
        self._failing_since: float | None = None
        # Supervisor.start opened a gap for the time the service was not recording; the first
        # segment closes it (closing when none is open changes nothing).
        self._gap_open = True
        self._lost_alerted = False
        self._reason = ""

    # -- state -----------------------------------------------------------------------------
    async def _set_state(self, state: CameraState, reason: str = "") -> None:
        if state == self.state and reason == self._reason:
            return
        self.state, self._reason = state, reason
        log.info("camera %s: %s%s", self.cam.id, state.value, f" ({reason})" if reason else "")
        async with transaction(self.sessions) as session:
            await session.execute(
                update(Camera).where(Camera.id == self.cam.id)
                .values(state=state.value, state_reason=reason, state_since_us=now_us())
            )
            if state in (CameraState.RECONNECTING, CameraState.OFFLINE) and not self._lost_alerted:
                self._lost_alerted = True
                await raise_alert(session, self.alerts, "camera_offline",
                                  f"{self.cam.name}: recording stopped: {reason}", self.cam.id, reason=reason)
            elif state == CameraState.RECORDING and self._lost_alerted:
                self._lost_alerted = False
                await raise_alert(session, self.alerts, "camera_online", f"{self.cam.name}: recording again", self.cam.id)

    async def _clock(self) -> tuple[float | None, bool]:
        async with self.sessions() as session:
            row = (await session.execute(
                select(Camera.clock_offset_s, Camera.clock_flag).where(Camera.id == self.cam.id)
            )).first()
        return (row[0], bool(row[1])) if row else (None, False)

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        """Record until cancelled or :meth:`stop`; never returns on its own."""
        backoff = self.backoff_initial_s
        while not self._stopping:
            recovered = await recover_incoming(self.sessions, self.root, self.cam.id, await self._clock())
            if recovered:
                self.segments_committed += len(recovered)
            started = time.monotonic()
            await self._run_ffmpeg()
            if self._stopping:
                break
            self.restarts += 1
            if time.monotonic() - started > 2 * self.segment_s:
                backoff = self.backoff_initial_s  # it had been working: retry quickly
            await self._on_failure()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max_s)

    async def _on_failure(self) -> None:
        reason, final = classify_failure(list(self.stderr_tail))
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            async with transaction(self.sessions) as session:
                last = await session.scalar(select(Camera.last_segment_us).where(Camera.id == self.cam.id))
                await open_gap(session, self.cam.id, last or now_us(), reason)
            self._gap_open = True
        log.warning("camera %s: ffmpeg exited: %s", self.cam.id, reason)
        if final or now - self._failing_since >= OFFLINE_AFTER_S:
            await self._set_state(CameraState.OFFLINE, reason)
        else:
            await self._set_state(CameraState.RECONNECTING, reason)

    async def _run_ffmpeg(self) -> None:
        out_dir = incoming_dir(self.root, self.cam.id)
        out_dir.mkdir(parents=True, exist_ok=True)
        url = credentialed_url(self.cam.main_url, self.cam.username, self.cam.password)
        # The password goes in a private file, not in ffmpeg's argv (the process list).
        self._input_list = InputList(url, input_options()) if has_credentials(url) else None
        args = ffmpeg_args(url, out_dir, str(time.time_ns() // 1_000_000), self.segment_s, self._input_list)
        self.stderr_tail.clear()
        self._offsets_us: deque[int] = deque(maxlen=OFFSET_WINDOW)  # media timeline -> wall clock
        self._last_progress = time.monotonic()
        self._progress_value = -1
        try:
            # SIGTERM if the service dies (even by SIGKILL): ffmpeg finalises its segment on it.
            self._proc = await children.spawn(
                *args, deathsig=signal.SIGTERM, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={"TZ": "UTC", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        except OSError as exc:
            self.stderr_tail.append(f"cannot start ffmpeg: {exc}")
            self._forget_input_list()
            return
        proc = self._proc
        readers = [
            asyncio.create_task(self._read_segments(proc, out_dir), name=f"rec{self.cam.id}-segments"),
            asyncio.create_task(self._read_stderr(proc), name=f"rec{self.cam.id}-stderr"),
        ]
        watchdog = asyncio.create_task(self._watchdog(proc), name=f"rec{self.cam.id}-watchdog")
        try:
            await proc.wait()
            # Let the readers drain the pipes: the last segment's line arrives just before exit.
            await asyncio.wait(readers, timeout=STOP_GRACE_S)
        finally:
            watchdog.cancel()
            for task in readers:
                task.cancel()
            for task in [*readers, watchdog]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            self._proc = None
            self._forget_input_list()

    def _forget_input_list(self) -> None:
        """Delete the private file that handed ffmpeg the URL (once it has opened the stream)."""
        if self._input_list is not None:
            self._input_list.remove()
            self._input_list = None

    async def _read_segments(self, proc: asyncio.subprocess.Process, out_dir: Path) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            arrived_us = now_us()
            try:
                name, start_s, end_s = line.decode().strip().rsplit(",", 2)
                media_start_us, media_end_us = int(float(start_s) * 1_000_000), int(float(end_s) * 1_000_000)
            except ValueError:
                log.warning("camera %s: unexpected segment list line %r", self.cam.id, line[:200])
                continue
            path = out_dir / Path(name).name
            if media_end_us <= media_start_us or not path.exists():
                continue
            self._offsets_us.append(arrived_us - media_end_us)
            wall_offset_us = min(self._offsets_us)
            offset, flag = await self._clock()
            codec, width, height = self._codec
            seg = NewSegment(self.cam.id, media_start_us + wall_offset_us, media_end_us + wall_offset_us,
                             codec, width, height, offset, flag)
            await commit_segment(self.sessions, self.root, path, seg)
            self.segments_committed += 1
            if self._gap_open:
                async with transaction(self.sessions) as session:
                    await close_gap(session, self.cam.id, seg.start_us)
                self._gap_open = False

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        secrets = (self.cam.password,)
        while raw := await proc.stderr.readline():
            line = raw.decode(errors="replace").rstrip()
            if line.startswith("out_time_us="):
                value = line.partition("=")[2]
                self._forget_input_list()  # ffmpeg is reading: the URL's file is no longer needed
                if value.isdigit() and int(value) > self._progress_value:
                    self._progress_value = int(value)
                    self._last_progress = time.monotonic()
                    if self.state != CameraState.RECORDING:
                        self._failing_since = None
                        await self._set_state(CameraState.RECORDING)
                continue
            if "=" in line and " " not in line:
                continue  # the rest of a progress block
            if match := _STREAM_RE.search(line):
                self._codec = (match["codec"], int(match["w"]), int(match["h"]))
            if line.startswith("[segment @") and "Opening" in line:
                continue
            self.stderr_tail.append(scrub(line, *secrets))

    async def _watchdog(self, proc: asyncio.subprocess.Process) -> None:
        while proc.returncode is None:
            await asyncio.sleep(1.0)
            stalled_s = time.monotonic() - self._last_progress
            if stalled_s > self.stall_timeout_s:
                self.stderr_tail.append(f"stalled: no frames for {stalled_s:.0f} s")
                log.warning("camera %s: no progress for %.0f s, restarting ffmpeg", self.cam.id, stalled_s)
                await self._terminate(proc)
                return

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGINT (ffmpeg finalises the segment and exits 255), then SIGKILL after a grace."""
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    def stopping(self) -> None:
        """The service is stopping: when ffmpeg next exits, do not reconnect (and do not report
        the camera lost). A Ctrl-C reaches the cameras' side too when they share the terminal
        (the demo's simulator), and recorders not yet stopped saw their streams close."""
        self._stopping = True

    async def stop(self) -> None:
        """Finalise the current segment and stop (used on shutdown and on removal)."""
        self.stopping()
        if self._proc is not None:
            await self._terminate(self._proc)


class Supervisor:
    """Keeps one :class:`CameraRecorder` running for each enabled, recording camera.

    :meth:`reload` (run every ``reload_interval_s`` and callable after inventory changes)
    starts, stops and restarts recorders to match the inventory.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keys: Keys,
        root: Path,
        *,
        segment_s: int,
        stall_timeout_s: float,
        backoff_initial_s: float,
        backoff_max_s: float,
        alerts: AlertHub | None = None,
        reload_interval_s: float = 10.0,
    ) -> None:
        self.sessions = sessions
        self.keys = keys
        self.root = root
        self.alerts = alerts
        self.reload_interval_s = reload_interval_s
        self._options = dict(segment_s=segment_s, stall_timeout_s=stall_timeout_s,
                             backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s)
        self.recorders: dict[int, CameraRecorder] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._reloader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._shutting_down = False

    async def _wanted(self) -> dict[int, RecorderCamera]:
        async with self.sessions() as session:
            rows = (await session.execute(select(Camera).where(Camera.main_url != ""))).scalars().all()
            disabled = [c.id for c in rows if not (c.enabled and c.recording) and c.state != CameraState.DISABLED.value]
            if disabled:
                await session.execute(update(Camera).where(Camera.id.in_(disabled)).values(
                    state=CameraState.DISABLED.value, state_reason="", state_since_us=now_us()))
                await session.commit()
        return {
            c.id: RecorderCamera(c.id, c.name, c.main_url, c.username, self.keys.decrypt(c.password_enc))
            for c in rows if c.enabled and c.recording
        }

    async def reload(self) -> None:
        async with self._lock:
            wanted = await self._wanted()
            for cam_id in list(self.recorders):
                if cam_id not in wanted or wanted[cam_id].fingerprint != self.recorders[cam_id].cam.fingerprint:
                    await self._stop_one(cam_id)
            for cam_id, cam in wanted.items():
                if cam_id not in self.recorders and not self._shutting_down:
                    self._start_one(cam)

    def _start_one(self, cam: RecorderCamera) -> None:
        rec = CameraRecorder(cam, self.sessions, self.root, alerts=self.alerts, **self._options)
        self.recorders[cam.id] = rec
        self._tasks[cam.id] = asyncio.create_task(self._guard(rec), name=f"recorder-{cam.id}")

    async def _guard(self, rec: CameraRecorder) -> None:
        """A bug in one recorder must not stop it for good: log with traceback and go again."""
        while True:
            try:
                await rec.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("camera %s: recorder failed; restarting in 5 s", rec.cam.id)
                await asyncio.sleep(5)

    async def _stop_one(self, cam_id: int) -> None:
        rec, task = self.recorders.pop(cam_id), self._tasks.pop(cam_id)
        await rec.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S + 5)
        except TimeoutError:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def start(self) -> None:
        # Whatever happened while we were not running is a gap (closed by the first segment).
        async with transaction(self.sessions) as session:
            for cam_id, last in (await session.execute(
                select(Camera.id, Camera.last_segment_us).where(Camera.enabled, Camera.recording, Camera.main_url != "")
            )).all():
                await open_gap(session, cam_id, last or now_us(), "service not recording")
                await session.execute(update(Camera).where(Camera.id == cam_id).values(
                    state=CameraState.STARTING.value, state_reason="", state_since_us=now_us()))
        await self.reload()

        async def reload_loop() -> None:
            while True:
                await asyncio.sleep(self.reload_interval_s)
                try:
                    await self.reload()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("recorder reload failed")

        self._reloader = asyncio.create_task(reload_loop(), name="recorder-reload")

    def stopping(self) -> None:
        """The service has begun to stop (aiohttp's on_shutdown): no recorder reconnects."""
        self._shutting_down = True
        for rec in self.recorders.values():
            rec.stopping()

    async def stop(self) -> None:
        """Stop every recorder, each finalising its current segment."""
        if self._reloader is not None:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader
        async with self._lock:
            await asyncio.gather(*(self._stop_one(cam_id) for cam_id in list(self.recorders)))
