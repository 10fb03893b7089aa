"""Continuous recording: one supervised ffmpeg per camera, stream copy into MKV segments.

Each :class:`CameraRecorder` runs ffmpeg (arguments built with ffmpeg-python, never a shell
string) with the segment muxer writing Matroska files into ``<root>/<camera>/incoming/`` and
the list of finished segments on its stdout. Each finished segment is committed to the store
(storage.catalogue.commit_segment: fsync, rename into its day folder, then the catalogue row)
through the recorder's catalogue queue, which retries each write until the database takes it:
nothing between ffmpeg and the disk waits for the database. The :class:`Supervisor` judges
each recorder by catalogue progress once a second and reports every change (state, alert,
/healthz, /metrics); see docs/design/recording-store.md, "Health".

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
import errno
import fcntl
import json
import logging
import os
import re
import signal
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import ffmpeg
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cameras import children
from cameras.live import FRAG_DURATION_US, Feed
from cameras.rtsp import PROTOCOLS, InputList, has_credentials, scrub
from storage.alerts import AlertHub, raise_alert
from storage.catalogue import (
    NewSegment,
    commit_segment,
    incoming_dir,
    incoming_pattern,
    open_gap,
    segment_relpath,
)
from storage.db import now_us, transaction
from storage.inventory import credentialed_url
from storage.keys import Keys
from storage.loops import describe_error, run_every
from storage.models import Camera, CameraState, SegmentState
from storage.nodes import Fence, Fenced, Late, RoleLeases, check_fence
from storage.retention import free_space

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
# The live output (docs/design/live-from-recorder.md): the pipe holds this much (about 2 s of a
# 4 Mb/s main stream; Linux lets anyone have 1 MiB), then ffmpeg's fifo this many packets (about
# 2 s at 25 fps), then ffmpeg drops live packets: the segments never wait for live view.
LIVE_PIPE_BYTES = 1 << 20
LIVE_FIFO_PACKETS = 60
LIVE_READ_BYTES = 1 << 20
# Nobody watching: the pipe is read this often (in one go), not at each of ffmpeg's writes.
LIVE_IDLE_POLL_S = 0.25
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ from Python 3.10 on Linux; spelled out for type checkers
# What ffmpeg's tee says when an output fails and it goes on without it (the live one is #1).
_LIVE_FAILED_RE = re.compile(r"Slave muxer #1 failed: (?P<why>.*?), continuing with")

# A segment that cannot be catalogued (database locked or restarting, disk error) is retried
# this often: short enough that the catalogue catches up within seconds of the database's return.
CATALOGUE_RETRY_S = 2.0
# How often a recorder waiting for disk space looks again (statvfs is cheap).
DISK_POLL_S = 2.0
# How often the supervisor judges every recorder's health and the disk's free space.
HEALTH_INTERVAL_S = 1.0
# A recording camera is unhealthy when no segment has been catalogued for two segment lengths,
# and never sooner than one segment length and this many seconds: closing, fsync and the
# catalogue's transaction take a few seconds on a busy machine, and with short segments (2 s,
# the least allowed) two lengths left 2 s of slack, so a moment's load cried wolf to the
# control room (seen in CI: all five cameras of a test stack "unhealthy" for 6-7 s on a busy machine).
HEALTH_SLACK_S = 10.0


def unhealthy_after_s(segment_s: float) -> float:
    """Seconds without a catalogued segment after which a recording camera is unhealthy."""
    return max(2 * segment_s, segment_s + HEALTH_SLACK_S)


# A recorder that raised (a bug) is started again after this, showing offline meanwhile.
RECORDER_RESTART_S = 5.0
# A wall clock that moves this much more (or less) than the monotonic clock between two health
# checks has been stepped; NTP's slewing changes it by at most 0.5 ms per second.
CLOCK_STEP_S = 2.0
# The "disk below its floor" alert is repeated at most this often while the disk keeps dipping.
DISK_ALERT_REPEAT_S = 3600.0
# The shared storage is probed (a small file created, fsynced, removed) at each ffmpeg start and,
# while ffmpeg writes to the node's local spool, this often; a probe that takes longer than
# STORE_PROBE_TIMEOUT_S (a hung mount) counts as the storage being away.
STORE_PROBE_EVERY_S = 5.0
STORE_PROBE_TIMEOUT_S = 5.0
# Probes run here, never in the default executor: a hung mount must not take its threads.
_PROBES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="store-probe")

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
    # The lease generation it is recorded under (a cluster's recorder node; 0 on one machine).
    generation: int = 0

    @property
    def fingerprint(self) -> tuple[str, str, str]:
        return (self.main_url, self.username, self.password)


def input_options() -> dict[str, object]:
    return {"rtsp_transport": "tcp", "timeout": str(int(RTSP_IO_TIMEOUT_S * 1e6))}


def segment_options(segment_s: int) -> dict[str, object]:
    return dict(
        segment_time=segment_s,
        segment_atclocktime=1,  # cut on wall-clock multiples: cameras' segments line up
        segment_format="matroska",  # readable while written: a crash loses nothing on disk
        reset_timestamps=1,
        strftime=1,
        segment_list="pipe:1",
        segment_list_type="csv",
        segment_list_flags="live",
    )


def live_output_options(fd: int) -> str:
    """The tee muxer's second output (docs/design/live-from-recorder.md): the same packets as
    fragmented MP4 (as cameras.live's upstreams make it) to the pipe ``fd``, through a fifo of its
    own thread that drops packets when the pipe is full (never blocking the segments), and
    dropped by the tee if it fails (``onfail=ignore``: the segments go on)."""
    options = {"f": "mp4", "movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": FRAG_DURATION_US,
               "onfail": "ignore", "use_fifo": 1,
               "fifo_options": f"drop_pkts_on_overflow=1:queue_size={LIVE_FIFO_PACKETS}"}
    return f"[{_tee_options(options)}]pipe:{fd}"


def _tee_options(options: dict[str, object]) -> str:
    # A tee slave's options are unescaped twice (the slave list, then each option's value).
    return ":".join(f"{key}={str(value).replace(':', chr(92) * 2 + ':')}" for key, value in options.items())


def ffmpeg_args(url: str, out_dir: Path, run_id: str, segment_s: int, listing: InputList | None = None,
                live_fd: int | None = None) -> list[str]:
    """The ffmpeg command for one camera: RTSP over TCP in, video stream-copied to MKV segments.
    With ``listing`` (a URL with credentials), ffmpeg reads the URL and its input options from
    that private list file instead of ``url`` (see cameras.rtsp.InputList). With ``live_fd``, the
    tee muxer writes the same packets a second time, as fragmented MP4 to that pipe, for live
    view (:func:`live_output_options`)."""
    if listing is not None:
        source = ffmpeg.input(str(listing.path), f="concat", safe=0, protocol_whitelist=PROTOCOLS)
    else:
        source = ffmpeg.input(url, **input_options())
    segments = str(out_dir / incoming_pattern(run_id))
    if live_fd is None:
        out = source.output(segments, map="0:v", c="copy", f="segment", **segment_options(segment_s))
    else:
        # onfail=abort spelled out: ffmpeg 5.1's tee went on with the live output alone when the
        # segments failed (a full disk), where ffmpeg must exit and say why.
        teed = (f"[f=segment:onfail=abort:{_tee_options(segment_options(segment_s))}]{segments}"
                f"|{live_output_options(live_fd)}")
        out = source.output(teed, map="0:v", c="copy", f="tee")  # video only, as below
    # video only (map 0:v): councils do not record audio in public space
    compiled = out.compile(cmd="ffmpeg")
    # Global options go first (ffmpeg may ignore trailing ones).
    # Progress every 2 s is plenty for a stall watchdog counted in tens of seconds, and costs the
    # service a quarter of the default 0.5 s period (about 12 lines per report per camera).
    # With the tee, -copytb 1 keeps the camera's own time base (90 kHz for RTSP) for the copied
    # stream: ffmpeg 5.1 otherwise gave the tee's stream a coarse one, and rewrote a colliding
    # timestamp of almost every packet ("Non-monotonous DTS ... changing to"), one stderr line each.
    timebase = ["-copytb", "1"] if live_fd is not None else []
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "info", "-stats_period", "2",
            "-progress", "pipe:2", *timebase, *compiled[1:]]


def tee_safe(path: Path) -> bool:
    """Whether a segment path can be a tee muxer's output name (it splits on these characters)."""
    return not any(c in str(path) for c in "|[]\\")


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


async def media_duration_s(path: Path) -> float:
    """Media duration in s of a possibly unfinished MKV (storage.catalogue.MediaDuration)."""
    return (await probe(path))[0]


async def find_incoming(
    root: Path, camera_id: int, clock: tuple[float | None, bool] = (None, False), skip: frozenset[Path] = frozenset(),
    quiet_s: float = 0.0, own_runs: frozenset[str] = frozenset(), folder: Path | None = None,
) -> list[tuple[Path, NewSegment]]:
    """What a crash or an interrupted run left in the camera's ``incoming/`` folder, to catalogue
    as ``recovered`` (the files in ``skip`` are already queued for cataloguing).

    An empty file is removed; a file with no readable video is moved to ``<camera>/damaged/``
    and logged, never deleted. Call only when no ffmpeg of ours writes that folder; ``quiet_s``
    (a cluster's recorder taking a camera over) leaves alone a file modified that recently,
    which a node that lost the lease may still be writing (docs/design/cluster.md), unless one of
    ``own_runs`` (this recorder's ffmpeg runs, now ended) wrote it. ``folder``: another
    incoming folder (a node's local spool, :func:`spool_incoming`) in place of the shared one;
    its unreadable files go to the ``damaged/`` beside it. Hidden files (a probe of the
    storage) are not segments.
    """
    folder = incoming_dir(root, camera_id) if folder is None else folder
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path in skip or path.name.startswith("."):
            continue
        if quiet_s and path.name.split("-", 1)[0] not in own_runs and time.time() - path.stat().st_mtime < quiet_s:
            log.warning("camera %s: %s in incoming/ was written %.0f s ago: left for later (another node may "
                        "still write it)", camera_id, path.name, time.time() - path.stat().st_mtime)
            continue
        if path.stat().st_size == 0:
            path.unlink()
            continue
        duration, codec, width, height = await probe(path)
        if duration <= 0:
            damaged = folder.parent / "damaged"
            damaged.mkdir(exist_ok=True)
            os.replace(path, damaged / path.name)
            log.error("camera %s: unreadable partial segment %s moved to damaged/", camera_id, path.name)
            continue
        end_us = int(path.stat().st_mtime * 1_000_000)
        found.append((path, NewSegment(camera_id, end_us - int(duration * 1_000_000), end_us, codec, width, height,
                                       clock[0], clock[1], SegmentState.RECOVERED)))
    return found


async def recover_incoming(
    sessions: async_sessionmaker[AsyncSession], root: Path, camera_id: int, clock: tuple[float | None, bool] = (None, False)
) -> list[Path]:
    """Catalogue (as ``recovered``) what a crash left in ``incoming/`` (:func:`find_incoming`).
    Returns the recovered files' final paths."""
    recovered = []
    for path, seg in await find_incoming(root, camera_id, clock):
        row = await commit_segment(sessions, root, path, seg)
        log.warning("camera %s: recovered interrupted segment %s (%.1f s)", camera_id, row.path,
                    (seg.end_us - seg.start_us) / 1e6)
        recovered.append(root / row.path)
    return recovered


def spool_incoming(spool_root: Path, camera_id: int, generation: int) -> Path:
    """Where ffmpeg writes while the shared storage is away: the node's local spool, one folder
    per camera and lease generation (the fence its footage is catalogued under; 0 on one
    machine). docs/design/cluster.md, "Losing the shared storage"."""
    return spool_root / str(camera_id) / f"g{generation}" / "incoming"


def probe_store(folder: Path) -> None:
    """Create (with its parents), fsync and remove a small hidden file in ``folder``. Blocking;
    raises OSError when the storage cannot take a segment."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".probe-{os.getpid()}-{os.urandom(4).hex()}"  # unique: other nodes probe too
    with probe.open("wb") as fh:
        fh.write(b"probe")
        fh.flush()
        os.fsync(fh.fileno())
    probe.unlink()


async def store_answers(folder: Path) -> str:
    """"" when the storage at ``folder`` takes a write, else why not (:func:`probe_store`,
    bounded by :data:`STORE_PROBE_TIMEOUT_S`)."""
    try:
        await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(_PROBES, probe_store, folder),
                               STORE_PROBE_TIMEOUT_S)
    except TimeoutError:
        return f"no answer in {STORE_PROBE_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return describe_error(exc)
    return ""


@dataclass
class _Commit:
    """A finished file waiting to be catalogued (retried until it is)."""

    path: Path
    seg: NewSegment
    closes_gap: bool


@dataclass
class _OpenGap:
    """The recording stopped: a gap from the end of the last catalogued footage (read when the
    operation runs, after every segment queued before it has been catalogued)."""

    reason: str
    at_us: int



async def _stamped_lines(fd: int, name: str) -> AsyncIterator[tuple[bytes, int]]:
    """The lines of a pipe, each with the wall-clock time (us) at which it arrived, read by a
    thread that owns (and at the end closes) ``fd``: the stamp does not wait for the event loop.
    Ends at the pipe's end of file; the thread ends with it (the writer's exit)."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue()

    def hand(item: tuple[bytes, int] | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody waits any more
            loop.call_soon_threadsafe(lines.put_nowait, item)

    def pump() -> None:
        try:
            with open(fd, "rb") as pipe:
                for line in pipe:
                    hand((line, now_us()))
        except OSError as exc:
            log.warning("%s: reading the pipe failed: %s", name, exc)
        finally:
            hand(None)

    threading.Thread(target=pump, name=name, daemon=True).start()
    while (item := await lines.get()) is not None:
        yield item

class CameraRecorder:
    """Records one camera forever: start ffmpeg, watch it, commit segments, restart on failure.

    Nothing on the path from ffmpeg to the disk waits for the database: finished segments,
    gaps and the camera's state go into a queue that :meth:`_catalogue_loop` writes in order,
    retrying each until it is written (a locked or restarting database delays the catalogue;
    it never stops ffmpeg nor loses a file). :meth:`problem` judges health by progress: a
    recorder whose ffmpeg runs but that has catalogued nothing for two segment lengths is not
    healthy, whatever ffmpeg says.
    """

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
        min_free_bytes: int = 0,
        on_disk_full: Callable[[], None] | None = None,
        node_id: str = "",
        on_fenced: Callable[[CameraRecorder, str], None] | None = None,
        on_late: Callable[[CameraRecorder, Late], None] | None = None,
        spool_root: Path | None = None,
        live_feed: Feed | None = None,
    ) -> None:
        self.cam = cam
        # The node's local spool: ffmpeg writes there while the shared storage is away, and
        # ``spooling`` says why ("" while it writes to the shared storage).
        self.spool = spool_incoming(spool_root, cam.id, cam.generation) if spool_root is not None else None
        self.spooling = ""
        self._back_to_store = False
        # Live view of the main stream from this ffmpeg's second output (cameras.live.Feed).
        self.live_feed = live_feed
        self.live_drops = 0  # times ffmpeg dropped live packets because the pipe was not read in time
        # A cluster's recorder: every segment is catalogued under the lease it was started with.
        self.fence = Fence(node_id, cam.generation) if node_id else None
        self.on_fenced = on_fenced
        self.segments_fenced = 0
        # Segments of this generation catalogued after another node took the camera (they ended
        # before its claim: storage.nodes.check_fence), and the last such verdict.
        self.on_late = on_late
        self.segments_late = 0
        self.late: Late | None = None
        self._own_runs: set[str] = set()  # run ids of this recorder's ffmpeg runs
        self.sessions = sessions
        self.root = root
        self.segment_s = segment_s
        self.stall_timeout_s = stall_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.alerts = alerts
        self.min_free_bytes = min_free_bytes
        self.on_disk_full = on_disk_full
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_RING_LINES)
        self.state = CameraState.STARTING
        self.segments_committed = 0
        self.bytes_committed = 0
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
        # The catalogue queue (see the class docstring) and what it tells about health.
        self._queue: deque[_Commit | _OpenGap] = deque()
        self._queued_paths: set[Path] = set()
        self._work = asyncio.Event()
        self._idle = asyncio.Event()  # set while the queue is empty and the state written
        self._state_dirty = False
        self._written: tuple[CameraState, str] | None = None  # the state the inventory row holds
        self._catalogue_task: asyncio.Task[None] | None = None
        self.catalogue_error = ""  # why the head of the queue cannot be written ("" when it can)
        self.catalogue_error_since: float | None = None
        self.last_catalogued = time.monotonic()  # monotonic time of the last catalogued segment
        self.last_catalogued_us: int | None = None  # its wall-clock end
        self._recording_since = time.monotonic()
        self.disk_full = False
        self._clock_cache: tuple[float | None, bool] = (None, False)
        self._offsets_us: deque[int] = deque(maxlen=OFFSET_WINDOW)  # media timeline -> wall clock

    # -- health ----------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Segments written to disk and not yet catalogued."""
        return sum(isinstance(op, _Commit) for op in self._queue)

    def seconds_since_catalogued(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.last_catalogued

    def problem(self, now: float | None = None) -> str:
        """Why this camera's recording is not healthy ("" when it is). Judged by progress."""
        now = time.monotonic() if now is None else now
        if self.disk_full:
            return "recording disk is full"
        if self.state != CameraState.RECORDING:
            return ""  # reconnecting/offline: the camera's own state says what is wrong
        if self.spooling:
            return f"shared storage unavailable ({self.spooling}): recording to this node's local spool"
        silent_s = now - max(self.last_catalogued, self._recording_since)
        if silent_s <= unhealthy_after_s(self.segment_s):
            return ""
        why = f"no segment catalogued for {silent_s:.0f} s"
        if self.catalogue_error:
            why += f" ({self.pending} waiting: {self.catalogue_error})"
        return why

    @property
    def visible_state(self) -> tuple[CameraState, str]:
        """The state and reason operators see: ffmpeg's state, unless recording is unhealthy."""
        problem = self.problem()
        if problem and self.state == CameraState.RECORDING:
            return CameraState.DEGRADED, problem
        return self.state, self._reason

    def clock_stepped(self) -> None:
        """The host's wall clock stepped: estimate the media-to-wall offset afresh, so the next
        segments follow the new clock at once (not after OFFSET_WINDOW segments, and never with
        a minimum taken across the step)."""
        self._offsets_us.clear()

    # -- state -----------------------------------------------------------------------------
    def _set_state(self, state: CameraState, reason: str = "") -> None:
        """Change the state now; the inventory row follows through the catalogue queue (so a
        database outage never holds up the reading of ffmpeg's output)."""
        if state == self.state and reason == self._reason:
            return
        if state == CameraState.RECORDING:
            self._recording_since = time.monotonic()
        self.state, self._reason = state, reason
        log.info("camera %s: %s%s", self.cam.id, state.value, f" ({reason})" if reason else "")
        self.state_changed()

    def state_changed(self) -> None:
        """The visible state may have changed: write it to the inventory row (queued)."""
        self._state_dirty = True
        self._idle.clear()
        self._work.set()

    async def _write_state(self) -> None:
        state, reason = self.visible_state
        # Unchanged: nothing to write (a degraded reason's "for N s" changes every second).
        if self._written is not None and self._written[0] == state and (
                state == CameraState.DEGRADED or self._written[1] == reason):
            return
        try:
            async with transaction(self.sessions) as session:
                if self.fence is not None:
                    await check_fence(session, self.cam.id, self.fence)
                await session.execute(
                    update(Camera).where(Camera.id == self.cam.id)
                    .values(state=state.value, state_reason=reason, state_since_us=now_us())
                )
                if state in (CameraState.RECONNECTING, CameraState.OFFLINE) and not self._lost_alerted:
                    await raise_alert(session, self.alerts, "camera_offline",
                                      f"{self.cam.name}: recording stopped: {reason}", self.cam.id, reason=reason)
                    lost = True
                elif state == CameraState.RECORDING and self._lost_alerted:
                    await raise_alert(session, self.alerts, "camera_online", f"{self.cam.name}: recording again",
                                      self.cam.id)
                    lost = False
                else:
                    lost = self._lost_alerted
        except Fenced as exc:
            # Another node records the camera now (this node was cut off): the camera's state is
            # its recorder's to write, not overwritten by what this one saw while away.
            log.warning("camera %s: state %s not written, the camera is not this node's: %s",
                        self.cam.id, state.value, exc)
            lost = self._lost_alerted
        self._lost_alerted = lost
        self._written = (state, reason)

    async def _clock(self) -> tuple[float | None, bool]:
        """The camera's clock offset and flag; the last known ones while the database is away."""
        try:
            async with self.sessions() as session:
                row = (await session.execute(
                    select(Camera.clock_offset_s, Camera.clock_flag).where(Camera.id == self.cam.id)
                )).first()
        except Exception as exc:  # noqa: BLE001 - a database outage must not stop recording
            log.warning("camera %s: cannot read the camera's clock offset (%s); using the last known",
                        self.cam.id, describe_error(exc))
            return self._clock_cache
        self._clock_cache = (row[0], bool(row[1])) if row else (None, False)
        return self._clock_cache

    # -- the catalogue queue ---------------------------------------------------------------
    def _enqueue(self, op: _Commit | _OpenGap) -> None:
        self._queue.append(op)
        if isinstance(op, _Commit):
            self._queued_paths.add(op.path)
        self._idle.clear()
        self._work.set()

    async def _catalogue_loop(self) -> None:
        """Write the queue in order, each operation retried until it is written."""
        while True:
            if not (self._queue or self._state_dirty):
                self._idle.set()
            await self._work.wait()
            self._work.clear()
            while self._state_dirty or self._queue:
                if self._state_dirty:
                    self._state_dirty = False
                    if not await self._attempt(self._write_state, "the camera's state"):
                        self._state_dirty = True
                if not self._queue:
                    continue
                op = self._queue[0]
                what = op.path.name if isinstance(op, _Commit) else "a gap"
                if await self._attempt(lambda op=op: self._apply(op), what):
                    self._queue.popleft()
                    if isinstance(op, _Commit):
                        self._queued_paths.discard(op.path)

    async def _attempt(self, write: Callable[[], Awaitable[None]], what: str) -> bool:
        """One try; on failure log (camera id first), make it visible, wait a backoff. Never raises
        but CancelledError."""
        try:
            await write()
        except Exception as exc:  # noqa: BLE001 - every failure is retried, logged and shown
            error = describe_error(exc)
            first = not self.catalogue_error
            if first:
                self.catalogue_error_since = time.monotonic()
                log.error("camera %s: cannot catalogue %s: %s; retrying (%d segments waiting)",
                          self.cam.id, what, error, self.pending, exc_info=True)
            elif error != self.catalogue_error:
                log.error("camera %s: still cannot catalogue %s: %s (%d segments waiting)",
                          self.cam.id, what, error, self.pending)
            self.catalogue_error = error
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) and self.on_disk_full:
                self.on_disk_full()
            await asyncio.sleep(CATALOGUE_RETRY_S)
            return False
        if self.catalogue_error:
            waited = time.monotonic() - (self.catalogue_error_since or time.monotonic())
            log.warning("camera %s: catalogue writable again after %.0f s (%d segments waiting)",
                        self.cam.id, waited, self.pending)
            self.catalogue_error, self.catalogue_error_since = "", None
        return True

    async def _apply(self, op: _Commit | _OpenGap) -> None:
        if isinstance(op, _OpenGap):
            try:
                async with transaction(self.sessions) as session:
                    if self.fence is not None:
                        await check_fence(session, self.cam.id, self.fence)
                    last = await session.scalar(select(Camera.last_segment_us).where(Camera.id == self.cam.id))
                    await open_gap(session, self.cam.id, last or op.at_us, op.reason)
            except Fenced as exc:
                # The camera's gaps are its holder's now: it opened one from the last catalogued
                # footage when it took the camera, and late segments cut their spans out of it.
                log.warning("camera %s: gap (%s) not opened, the camera is not this node's: %s",
                            self.cam.id, op.reason, exc)
            return
        final = self.root / segment_relpath(op.seg.camera_id, op.seg.start_us, op.seg.end_us, op.path.suffix or ".mkv")
        if not op.path.exists() and not final.exists():
            # Someone removed it from incoming/ before it could be catalogued: say so, go on.
            log.error("camera %s: finished segment %s vanished before it was catalogued%s", self.cam.id, op.path.name,
                      " (a node that took the camera over recovers what it finds in incoming/)" if self.fence else "")
            return
        try:
            row = await commit_segment(self.sessions, self.root, op.path, op.seg, closes_gap=op.closes_gap,
                                       fence=self.fence, on_late=lambda late: self._catalogued_late(op, late))
        except Fenced as exc:
            # Another node holds the camera now: this footage is not catalogued (kept in fenced/).
            self.segments_fenced += 1
            log.error("camera %s: segment %s refused by the lease fence, kept in fenced/: %s",
                      self.cam.id, op.path.name, exc)
            if self.on_fenced is not None:
                self.on_fenced(self, str(exc))
            return
        if op.seg.state == SegmentState.RECOVERED:
            log.warning("camera %s: recovered interrupted segment %s (%.1f s)", self.cam.id, row.path,
                        (op.seg.end_us - op.seg.start_us) / 1e6)
        self.segments_committed += 1
        self.bytes_committed += row.bytes
        self.last_catalogued = time.monotonic()
        self.last_catalogued_us = row.end_us
        self.state_changed()  # a degraded camera is healthy again

    def _catalogued_late(self, op: _Commit, late: Late) -> None:
        """A segment of this generation was catalogued after another node took the camera: it
        ended before that node's claim (this node was cut off from the database meanwhile)."""
        self.segments_late += 1
        self.late = late
        log.warning("camera %s: segment %s (generation %s) catalogued late: it ended %.1f s before node %s took "
                    "the camera (generation %s now)", self.cam.id, op.path.name, self.cam.generation,
                    (late.next_since_us - op.seg.end_us) / 1e6, late.node_id, late.generation)
        if self.on_late is not None:
            self.on_late(self, late)

    async def drain(self, timeout_s: float) -> None:
        """Give the queue up to ``timeout_s`` to empty, then stop it. Whatever is left is on disk
        (in ``incoming/`` or a day folder) and is catalogued by the next start's recovery."""
        if self._catalogue_task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        if self._queue:
            log.error("camera %s: stopping with %d segments not catalogued (%s); they are on disk and are "
                      "catalogued at the next start", self.cam.id, self.pending, self.catalogue_error or "no error")
        self._catalogue_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._catalogue_task
        self._catalogue_task = None

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        """Record until cancelled or :meth:`stop`; never returns on its own."""
        if self._catalogue_task is None:
            self._catalogue_task = asyncio.create_task(self._catalogue_loop(), name=f"rec{self.cam.id}-catalogue")
        try:
            await self._record()
        finally:
            await self.drain(STOP_GRACE_S)

    async def _record(self) -> None:
        backoff = self.backoff_initial_s
        self.state_changed()
        while not self._stopping:
            clock = await self._clock()
            try:
                for path, seg in await find_incoming(self.root, self.cam.id, clock, frozenset(self._queued_paths),
                                                     quiet_s=self.stall_timeout_s if self.fence else 0.0,
                                                     own_runs=frozenset(self._own_runs)):
                    self._enqueue(_Commit(path, seg, closes_gap=False))
            except OSError as exc:  # the shared storage is away: its leftovers wait for it
                log.warning("camera %s: cannot look into incoming/ of the shared storage: %s", self.cam.id,
                            describe_error(exc))
            if self.spool is not None:  # this recorder's own: no other writer
                for path, seg in await find_incoming(self.root, self.cam.id, clock, frozenset(self._queued_paths),
                                                     folder=self.spool):
                    self._enqueue(_Commit(path, seg, closes_gap=False))
            if not await self._wait_for_disk():
                break
            started = time.monotonic()
            await self._run_ffmpeg()
            if self._stopping:
                break
            if self._back_to_store:  # the spool's last segment is finalised: back to the shared storage
                self._back_to_store = False
                self._enqueue(_OpenGap("switched back to the shared storage", now_us()))
                self._gap_open = True
                continue
            self.restarts += 1
            if time.monotonic() - started > 2 * self.segment_s:
                backoff = self.backoff_initial_s  # it had been working: retry quickly
            self._on_failure()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max_s)

    async def _wait_for_disk(self) -> bool:
        """Start ffmpeg only with room to record: on a full disk it fails at once and each retry
        leaves an empty or unreadable file. Waits (offline, "recording disk is full", asking for
        an emergency purge) until there is room. False if the recorder is stopping."""
        while not self._stopping:
            try:
                free = await asyncio.to_thread(free_space, self.root)
            except OSError as exc:
                log.error("camera %s: cannot read the free space of %s: %s", self.cam.id, self.root, exc)
                free = self.min_free_bytes
            if free >= self.min_free_bytes:
                if self.disk_full:
                    log.warning("camera %s: %d bytes free again; recording resumes", self.cam.id, free)
                    self.disk_full = False
                    self.state_changed()
                return True
            if not self.disk_full:
                log.error("camera %s: recording disk is full (%d bytes free, %d needed); waiting for space",
                          self.cam.id, free, self.min_free_bytes)
                self.disk_full = True
                self._on_failure("recording disk is full", final=True)
            if self.on_disk_full is not None:
                self.on_disk_full()
            await asyncio.sleep(DISK_POLL_S)
        return False

    def _on_failure(self, reason: str = "", final: bool = False) -> None:
        if not reason:
            reason, final = classify_failure(list(self.stderr_tail))
        if reason == "recording disk is full" and self.on_disk_full is not None:
            self.on_disk_full()
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            self._enqueue(_OpenGap(reason, now_us()))
            self._gap_open = True
        log.warning("camera %s: ffmpeg exited: %s", self.cam.id, reason)
        if final or now - self._failing_since >= OFFLINE_AFTER_S:
            self._set_state(CameraState.OFFLINE, reason)
        else:
            self._set_state(CameraState.RECONNECTING, reason)

    async def _output_dir(self) -> Path:
        """The shared ``incoming/`` if the storage takes a write; else the node's spool (saying
        so: log, the camera degraded with the reason). Without a spool, the shared folder."""
        shared = incoming_dir(self.root, self.cam.id)
        if self.spool is None:
            shared.mkdir(parents=True, exist_ok=True)
            return shared
        why = await store_answers(shared)
        if not why:
            if self.spooling:
                log.warning("camera %s: the shared storage answers again; recording to it", self.cam.id)
                self.spooling = ""
                self.state_changed()
            return shared
        if why != self.spooling:
            log.error("camera %s: shared storage unavailable (%s): recording to the local spool %s", self.cam.id,
                      why, self.spool)
            self.spooling = why
            self.state_changed()
        self.spool.mkdir(parents=True, exist_ok=True)
        return self.spool

    async def _watch_store(self, proc: asyncio.subprocess.Process) -> None:
        """While ffmpeg writes to the spool: once the shared storage answers again, finalise the
        spool's segment (ffmpeg stops, and :meth:`_record` starts it on the shared storage)."""
        shared = incoming_dir(self.root, self.cam.id)
        while proc.returncode is None:
            await asyncio.sleep(STORE_PROBE_EVERY_S)
            if not await store_answers(shared):
                log.warning("camera %s: the shared storage answers again: finalising the spool's segment",
                            self.cam.id)
                self._back_to_store = True
                await self._terminate(proc)
                return

    async def _run_ffmpeg(self) -> None:
        out_dir = await self._output_dir()
        url = credentialed_url(self.cam.main_url, self.cam.username, self.cam.password)
        # The password goes in a private file, not in ffmpeg's argv (the process list).
        self._input_list = InputList(url, input_options()) if has_credentials(url) else None
        run_id = str(time.time_ns() // 1_000_000)
        self._own_runs.add(run_id)
        live_r = live_w = None
        if self.live_feed is not None and not tee_safe(out_dir):
            if not self.live_feed.error:
                reason = f"the recording folder {out_dir} has a character ffmpeg's tee muxer cannot take (| [ ] \\)"
                log.error("camera %s: %s: no live output; live view pulls the camera itself", self.cam.id, reason)
                self.live_feed.end(reason, failed=True)
        elif self.live_feed is not None:
            live_r, live_w = os.pipe()
            try:
                fcntl.fcntl(live_w, F_SETPIPE_SZ, LIVE_PIPE_BYTES)
            except OSError as exc:  # a lower /proc/sys/fs/pipe-max-size: ffmpeg's fifo drops sooner
                log.warning("camera %s: cannot enlarge the live output's pipe: %s", self.cam.id, exc)
        args = ffmpeg_args(url, out_dir, run_id, self.segment_s, self._input_list, live_fd=live_w)
        self.stderr_tail.clear()
        self._offsets_us: deque[int] = deque(maxlen=OFFSET_WINDOW)  # media timeline -> wall clock
        self._last_progress = time.monotonic()
        self._progress_value = -1
        # ffmpeg's segment list comes through a pipe read by a thread of its own, which stamps
        # each line when it arrives (see _read_segments).
        list_fd, list_w = os.pipe()
        try:
            # SIGTERM if the service dies (even by SIGKILL): ffmpeg finalises its segment on it.
            self._proc = await children.spawn(
                *args, deathsig=signal.SIGTERM, stdin=asyncio.subprocess.DEVNULL, stdout=list_w,
                stderr=asyncio.subprocess.PIPE, env={"TZ": "UTC", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                pass_fds=() if live_w is None else (live_w,),
            )
        except OSError as exc:
            os.close(list_fd)
            self.stderr_tail.append(f"cannot start ffmpeg: {exc}")
            self._forget_input_list()
            for fd in (live_r, live_w):
                if fd is not None:
                    os.close(fd)
            return
        finally:
            os.close(list_w)  # ffmpeg's copy is the only writer: its exit is the reader's end
        if live_w is not None:
            os.close(live_w)  # the same for the live output
        proc = self._proc
        readers = [
            asyncio.create_task(self._read_segments(list_fd, out_dir), name=f"rec{self.cam.id}-segments"),
            asyncio.create_task(self._read_stderr(proc), name=f"rec{self.cam.id}-stderr"),
        ]
        if live_r is not None:
            readers.append(asyncio.create_task(self._read_live(live_r), name=f"rec{self.cam.id}-live"))
        watchers = [asyncio.create_task(self._watchdog(proc), name=f"rec{self.cam.id}-watchdog")]
        if out_dir == self.spool:
            watchers.append(asyncio.create_task(self._watch_store(proc), name=f"rec{self.cam.id}-store"))
        try:
            await proc.wait()
            # Let the readers drain the pipes: the last segment's line arrives just before exit.
            await asyncio.wait(readers, timeout=STOP_GRACE_S)
        finally:
            for task in [*readers, *watchers]:
                task.cancel()
            for task in [*readers, *watchers]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            self._proc = None
            self._forget_input_list()
            if self.live_feed is not None and not self.live_feed.error:
                self.live_feed.end("the recorder's ffmpeg stopped")

    def _forget_input_list(self) -> None:
        """Delete the private file that handed ffmpeg the URL (once it has opened the stream)."""
        if self._input_list is not None:
            self._input_list.remove()
            self._input_list = None

    async def _read_segments(self, list_fd: int, out_dir: Path) -> None:
        """Catalogue each segment ffmpeg lists as finished. A line's arrival time is taken by a
        thread blocked on the pipe, not by this event loop, whose turn can come seconds late on a
        busy node (seen: 15 cameras starting at once on a loaded machine stamped a run's first
        segment 1.9 s late, and the next one, stamped right, overlapped it)."""
        async for line, arrived_us in _stamped_lines(list_fd, f"rec{self.cam.id}-list"):
            try:
                name, start_s, end_s = line.decode().strip().rsplit(",", 2)
                media_start_us, media_end_us = int(float(start_s) * 1_000_000), int(float(end_s) * 1_000_000)
            except ValueError:
                log.warning("camera %s: unexpected segment list line %r", self.cam.id, line[:200])
                continue
            path = out_dir / Path(name).name
            if media_end_us <= media_start_us or not path.exists():
                continue
            if path.stat().st_size == 0:  # ffmpeg could not write it (a full disk): nothing to keep
                log.error("camera %s: ffmpeg finished an empty segment %s (%s); removed", self.cam.id, path.name,
                          "recording disk is full" if self.disk_full else "no data written")
                path.unlink(missing_ok=True)
                continue
            self._offsets_us.append(arrived_us - media_end_us)
            wall_offset_us = min(self._offsets_us)
            offset, flag = self._clock_cache  # read before ffmpeg started: no database on this path
            codec, width, height = self._codec
            seg = NewSegment(self.cam.id, media_start_us + wall_offset_us, media_end_us + wall_offset_us,
                             codec, width, height, offset, flag)
            self._enqueue(_Commit(path, seg, closes_gap=self._gap_open))
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
                        self._set_state(CameraState.RECORDING)
                continue
            if "=" in line and " " not in line:
                continue  # the rest of a progress block
            if match := _STREAM_RE.search(line):
                self._codec = (match["codec"], int(match["w"]), int(match["h"]))
            if self.live_feed is not None and self._live_line(line):
                continue  # about live view only: not a reason for a recording failure
            if line.startswith("[segment @") and "Opening" in line:
                continue
            self.stderr_tail.append(scrub(line, *secrets))

    def _live_line(self, line: str) -> bool:
        """ffmpeg's word on the live output (True if ``line`` was one): it failed (recording goes
        on without it), or it dropped packets because the pipe was not read in time."""
        assert self.live_feed is not None
        if match := _LIVE_FAILED_RE.search(line):
            reason = f"the recorder's live output failed: {match['why']}"
            log.error("camera %s: %s; recording goes on, live view pulls the camera itself until ffmpeg's next run",
                      self.cam.id, reason)
            self.live_feed.end(reason, failed=True)
            return True
        if "FIFO queue full" in line:
            self.live_drops += 1
            if self.live_drops == 1 or self.live_drops % 100 == 0:
                log.warning("camera %s: the live output's pipe was not read in time: ffmpeg dropped live packets "
                            "(%d times so far; the segments are not affected)", self.cam.id, self.live_drops)
            return True
        return False

    async def _read_live(self, fd: int) -> None:
        """Drain the live output's pipe until ffmpeg closes it, whether or not anyone watches (a
        pipe left full would make ffmpeg drop live packets, never segments: see
        :func:`live_output_options`). Read at once while someone watches; else every
        LIVE_IDLE_POLL_S, in one go."""
        feed = self.live_feed
        assert feed is not None
        feed.begin()
        os.set_blocking(fd, False)
        loop = asyncio.get_running_loop()
        broken = False
        try:
            while True:
                try:
                    chunk = os.read(fd, LIVE_READ_BYTES)
                except BlockingIOError:
                    if feed.watched:
                        await _readable(loop, fd)
                    else:
                        await asyncio.sleep(LIVE_IDLE_POLL_S)
                    continue
                if not chunk:
                    return
                if broken:
                    continue  # keep draining: ffmpeg must never wait for this pipe
                try:
                    feed.data(chunk)
                except Exception as exc:  # noqa: BLE001 - a malformed stream (ValueError) or a bug: shown, drained
                    broken = True
                    log.error("camera %s: the recorder's live output cannot be read (%s); recording goes on, live "
                              "view pulls the camera itself until ffmpeg's next run", self.cam.id, describe_error(exc),
                              exc_info=not isinstance(exc, ValueError))
                    feed.end(f"the recorder's live output cannot be read: {describe_error(exc)}", failed=True)
        finally:
            os.close(fd)

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


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Wait until ``fd`` has something to read."""
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


class Supervisor:
    """Keeps one :class:`CameraRecorder` running for each enabled, recording camera.

    :meth:`reload` (run every ``reload_interval_s`` and callable after inventory changes)
    starts, stops and restarts recorders to match the inventory.

    ``lease`` (a cluster's recorder node, docs/design/cluster.md): only the cameras this node
    holds a lease on are recorded, each under its lease's generation (the fence checked when
    its segments are catalogued); the keeper's loop calls :meth:`reload` when the leases
    change. Without it (one machine), every recording camera is recorded, as before.

    ``live_feeds`` (the live hub's, cameras.live.LiveHub.feeds): each recorder's ffmpeg also
    writes its main stream for live view, as the feed ``<camera>/main`` there; a failed live
    output is in ``notes`` (/healthz) until a run of that camera's ffmpeg gives live video again.
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
        floor_bytes: int = 0,
        min_free_bytes: int = 0,
        on_disk_low: Callable[[], None] | None = None,
        health_interval_s: float = HEALTH_INTERVAL_S,
        wall_clock: Callable[[], float] = time.time,
        lease: RoleLeases | None = None,
        notes: dict[str, str] | None = None,
        spool_root: Path | None = None,
        live_feeds: dict[str, Feed] | None = None,
    ) -> None:
        self.sessions = sessions
        self.spool_root = spool_root
        self._sweeper: asyncio.Task[None] | None = None
        self.live_feeds = live_feeds
        self.lease = lease
        self.segments_fenced = 0
        self.segments_late = 0  # catalogued late after this node was cut off (CameraRecorder.segments_late)
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False
        self.keys = keys
        self.root = root
        self.alerts = alerts
        self.reload_interval_s = reload_interval_s
        self.health_interval_s = health_interval_s
        self.floor_bytes = floor_bytes
        self.on_disk_low = on_disk_low
        self._options = dict(segment_s=segment_s, stall_timeout_s=stall_timeout_s,
                             backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s,
                             min_free_bytes=min_free_bytes, on_disk_full=self._disk_full,
                             node_id=lease.node_id if lease else "", on_fenced=self._fenced,
                             on_late=self._late, spool_root=spool_root)
        self.recorders: dict[int, CameraRecorder] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._reloader: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._shutting_down = False
        # Health, as the monitor last judged it (read by /healthz and /metrics).
        self.disk_free_bytes: int | None = None
        self.disk_low = False
        self.problems: dict[int, str] = {}  # camera id -> why its recording is unhealthy
        # component ("recorders") -> why it is failing; the app's health notes when it gives them
        self.notes: dict[str, str] = {} if notes is None else notes
        self._unstored_alerts: deque[tuple[str, str, int | None, dict]] = deque()
        self._alert_writer: asyncio.Task[None] | None = None
        self._disk_alerted: float | None = None
        self._wall_clock = wall_clock
        self._last_tick: tuple[float, float] | None = None  # (wall, monotonic) at the last check
        self.clock_steps = 0

    # -- health ----------------------------------------------------------------------------
    def _fenced(self, rec: CameraRecorder, reason: str) -> None:
        """A segment of ``rec`` was refused by the lease fence: count, alert, stop recording it."""
        self.segments_fenced += 1
        self._alert("segment_fenced", f"{rec.cam.name}: a segment recorded after this node lost the camera's "
                    f"lease was not catalogued (kept in fenced/): {reason}", rec.cam.id, reason=reason)
        if self.lease is not None:
            self.lease.held.pop(rec.cam.id, None)
            self.reload_soon()

    def _late(self, rec: CameraRecorder, late: Late) -> None:
        """A segment of ``rec`` was catalogued late: another node holds the camera, so stop
        recording it (what it still has queued is catalogued or fenced by the drain); the
        summary is said when the recorder has stopped (:meth:`_said_late`)."""
        self.segments_late += 1
        if self.lease is not None and self.lease.held.pop(rec.cam.id, None) is not None:
            self.reload_soon()

    def _said_late(self, rec: CameraRecorder) -> None:
        """Say, once per recorder, how much footage it catalogued late (log, alert)."""
        if not rec.segments_late or rec.late is None:
            return
        message = (f"{rec.cam.name}: {rec.segments_late} segments of generation {rec.cam.generation}, recorded by node "
                   f"{rec.fence.node_id if rec.fence else '?'} while it was cut off from the database, were catalogued "
                   f"late: they ended before node {rec.late.node_id} took the camera over")
        if rec.segments_fenced:
            message += f"; {rec.segments_fenced} recorded after that are in fenced/ (they overlap its footage)"
        log.warning("camera %s: %s", rec.cam.id, message)
        self._alert("segments_catalogued_late", message, rec.cam.id, segments=rec.segments_late,
                    generation=rec.cam.generation, fenced=rec.segments_fenced, taken_by=rec.late.node_id,
                    taken_generation=rec.late.generation)

    def reload_soon(self) -> None:
        """Reload in a task of its own (the lease loop must not wait for recorders to stop)."""
        if self._shutting_down or (self._reload_task is not None and not self._reload_task.done()):
            if self._reload_task is not None and not self._reload_task.done():
                self._reload_again = True
            return

        async def reload() -> None:
            while True:
                self._reload_again = False
                try:
                    await self.reload()
                except Exception as exc:  # noqa: BLE001 - logged; the periodic reload tries again
                    log.error("recorders: reload after a lease change failed: %s", describe_error(exc), exc_info=True)
                    self.notes["recorders"] = f"cannot start or stop recorders: {describe_error(exc)}"
                if not self._reload_again:
                    return

        self._reload_task = asyncio.create_task(reload(), name="recorder-reload-now")

    def _disk_full(self) -> None:
        """A recorder met a full disk: ask for an emergency purge now (retention's floor rule)."""
        if self.on_disk_low is not None:
            self.on_disk_low()

    def _alert(self, kind: str, message: str, camera_id: int | None = None, **data: object) -> None:
        """Publish at once (WebSocket, MQTT), store when the database takes it: the alerts that
        matter here are raised exactly when the database may be unavailable."""
        if self.alerts is not None:
            self.alerts.publish({"id": None, "at_us": now_us(), "kind": kind, "camera_id": camera_id,
                                 "message": message, "data": data, "acknowledged_by": "", "acknowledged_us": None})
        self._unstored_alerts.append((kind, message, camera_id, {**data, "raised_us": now_us()}))
        if self._alert_writer is None or self._alert_writer.done():
            self._alert_writer = asyncio.create_task(self._store_alerts(), name="recorder-alerts")

    async def _store_alerts(self) -> None:
        failures = 0
        while self._unstored_alerts:
            kind, message, camera_id, data = self._unstored_alerts[0]
            try:
                async with transaction(self.sessions) as session:
                    await raise_alert(session, None, kind, message, camera_id, **data)  # already published
            except Exception as exc:  # noqa: BLE001 - retried; it was published already
                if failures % 30 == 0:  # once a minute: the catalogue's own log says why
                    log.warning("camera %s: alert %s published but not stored yet (%s); retrying",
                                camera_id, kind, describe_error(exc))
                failures += 1
                await asyncio.sleep(CATALOGUE_RETRY_S)
                continue
            if failures:
                log.warning("camera %s: alert %s stored after %d tries", camera_id, kind, failures + 1)
                failures = 0
            self._unstored_alerts.popleft()

    def _check_clock(self) -> None:
        """A step of the host's wall clock (NTP correcting it, an administrator setting it) shows
        as wall time moving apart from monotonic time between two checks. It is reported (the
        footage's times around it are as good as the clock was) and every recorder's offset
        estimate starts afresh."""
        wall, mono = self._wall_clock(), time.monotonic()
        if self._last_tick is not None:
            step_s = (wall - self._last_tick[0]) - (mono - self._last_tick[1])
            if abs(step_s) > CLOCK_STEP_S:
                self.clock_steps += 1
                log.error("host: the wall clock stepped by %+.1f s; footage times follow the new clock", step_s)
                self._alert("clock_step", f"the server's clock stepped by {step_s:+.1f} s: footage recorded around "
                            "now is timed by the new clock", step_s=round(step_s, 3))
                for rec in self.recorders.values():
                    rec.clock_stepped()
        self._last_tick = (wall, mono)

    async def check_health(self) -> None:
        """One look at every recorder and the disk: report each change (log, alert, state)."""
        self._check_clock()
        try:
            self.disk_free_bytes = await asyncio.to_thread(free_space, self.root)
        except OSError as exc:
            log.error("store: cannot read the free space of %s: %s", self.root, exc)
        if self.disk_free_bytes is not None:
            low = self.disk_free_bytes < self.floor_bytes
            if low:
                self._disk_full()
            if low and not self.disk_low:
                log.error("store: %d bytes free, below the floor of %d: purging the oldest unheld footage",
                          self.disk_free_bytes, self.floor_bytes)
                # Once an hour at most: a disk that does not cover retention dips below the floor
                # again after every purge (the purge restores the floor, recording eats it).
                if self._disk_alerted is None or time.monotonic() - self._disk_alerted > DISK_ALERT_REPEAT_S:
                    self._disk_alerted = time.monotonic()
                    self._alert("disk_floor", f"recording disk below its free-space floor ({self.disk_free_bytes} "
                                "bytes free): the oldest unheld footage is being purged; the disk does not cover "
                                "the retention period", free_bytes=self.disk_free_bytes, floor_bytes=self.floor_bytes)
            elif self.disk_low and not low:
                log.warning("store: %d bytes free, above the floor again", self.disk_free_bytes)
            self.disk_low = low
        now = time.monotonic()
        for cam_id, rec in list(self.recorders.items()):
            problem = rec.problem(now)
            if problem and cam_id not in self.problems:
                log.error("camera %s: recording unhealthy: %s", cam_id, problem)
                self._alert("recording_stopped", f"{rec.cam.name}: footage is not being catalogued: {problem}",
                            cam_id, reason=problem)
                rec.state_changed()
            elif not problem and cam_id in self.problems:
                log.warning("camera %s: recording healthy again (%d segments catalogued)", cam_id, rec.segments_committed)
                self._alert("recording_resumed", f"{rec.cam.name}: footage is being catalogued again", cam_id)
                rec.state_changed()
            if problem:
                self.problems[cam_id] = problem
            else:
                self.problems.pop(cam_id, None)
        for cam_id in set(self.problems) - set(self.recorders):
            del self.problems[cam_id]
        self._note_live()

    def _note_live(self) -> None:
        """A recorder's failed live output, in the health notes (/healthz) while it lasts."""
        failed = {f"live view of camera {cam_id}": rec.live_feed.error for cam_id, rec in self.recorders.items()
                  if rec.live_feed is not None and rec.live_feed.error}
        for key in [k for k in self.notes if k.startswith("live view of camera ") and k not in failed]:
            del self.notes[key]
        for key, error in failed.items():
            self.notes[key] = f"{error}; recording goes on, and live view of its main stream pulls the camera itself"

    async def _wanted(self) -> dict[int, RecorderCamera]:
        async with self.sessions() as session:
            rows = (await session.execute(select(Camera).where(Camera.main_url != ""))).scalars().all()
            disabled = [c.id for c in rows if not (c.enabled and c.recording) and c.state != CameraState.DISABLED.value]
            if disabled:
                await session.execute(update(Camera).where(Camera.id.in_(disabled)).values(
                    state=CameraState.DISABLED.value, state_reason="", state_since_us=now_us()))
                await session.commit()
        held = self.lease.held if self.lease is not None else None
        return {
            c.id: RecorderCamera(c.id, c.name, c.main_url, c.username, self.keys.decrypt(c.password_enc),
                                 held[c.id].generation if held is not None else 0)
            for c in rows if c.enabled and c.recording and (held is None or c.id in held)
        }

    async def reload(self) -> None:
        async with self._lock:
            moving = self._moving()
            wanted = await self._wanted()
            for cam_id in list(self.recorders):
                cam = self.recorders[cam_id].cam
                if (cam_id not in wanted or cam_id in moving or wanted[cam_id].fingerprint != cam.fingerprint
                        or wanted[cam_id].generation != cam.generation):
                    await self._stop_one(cam_id)
            for cam_id in moving:  # stopped, its last segment catalogued: hand the lease over
                wanted.pop(cam_id, None)
                if self.lease is not None:
                    await self.lease.hand_over(cam_id)
            new = [cam for cam_id, cam in wanted.items() if cam_id not in self.recorders]
            if self.lease is not None and new and not self._shutting_down:
                await self._open_gaps([cam.id for cam in new], f"camera taken over by node {self.lease.node_id}")
            for cam in new:
                if not self._shutting_down:
                    self._start_one(cam)
            self._sweep_spool_soon()

    def _sweep_spool_soon(self) -> None:
        """Catalogue what the local spool holds for no running recorder (a node stopped while the
        storage was away, a camera moved or no longer recorded since), in a task of its own."""
        if self.spool_root is None or self._shutting_down or (self._sweeper is not None and not self._sweeper.done()):
            return
        self._sweeper = asyncio.create_task(self._sweep_spool(), name="recorder-spool-sweep")

    async def _sweep_spool(self) -> None:
        assert self.spool_root is not None
        running = {(rec.cam.id, rec.cam.generation) for rec in self.recorders.values()}
        waiting = []
        for folder in sorted(self.spool_root.glob("*/g*/incoming")):
            cam_id, generation = int(folder.parent.parent.name), int(folder.parent.name[1:])
            if (cam_id, generation) in running:
                continue  # its recorder catalogues it
            fence = Fence(self.lease.node_id, generation) if self.lease is not None and generation else None
            try:
                for path, seg in await find_incoming(self.root, cam_id, folder=folder):
                    try:
                        await commit_segment(self.sessions, self.root, path, seg, fence=fence,
                                             on_late=lambda late, c=cam_id, g=generation: self._swept_late(c, g))
                    except Fenced as exc:
                        self.segments_fenced += 1
                        log.error("camera %s: spooled segment %s refused by the lease fence, kept in fenced/: %s",
                                  cam_id, path.name, exc)
                        self._alert("segment_fenced", f"camera {cam_id}: a segment spooled under generation "
                                    f"{generation} was not catalogued (kept in fenced/): {exc}", cam_id, reason=str(exc))
                        continue
                    log.warning("camera %s: spooled segment %s moved into the store and catalogued", cam_id, path.name)
            except Exception as exc:  # noqa: BLE001 - the storage or the database is away: the next reload tries again
                log.warning("camera %s: spooled segments of generation %s wait: %s", cam_id, generation,
                            describe_error(exc))
                waiting.append(f"camera {cam_id} (generation {generation}): {describe_error(exc)}")
                continue
            with contextlib.suppress(OSError):  # empty now: incoming/, then its generation folder
                folder.rmdir()
                folder.parent.rmdir()
        if waiting:  # shown by /healthz until they are in the store
            self.notes["recorder_spool"] = "spooled segments wait to be moved into the store: " + "; ".join(waiting)
        else:
            self.notes.pop("recorder_spool", None)

    def _swept_late(self, cam_id: int, generation: int) -> None:
        self.segments_late += 1
        log.warning("camera %s: a spooled segment of generation %s catalogued late (another node holds the camera)",
                    cam_id, generation)

    def _moving(self) -> set[int]:
        """The cameras asked to move to another node (controlroom cameras move)."""
        return self.lease.moving() if self.lease is not None else set()

    async def _open_gaps(self, camera_ids: list[int], reason: str) -> None:
        """Whatever was not recorded before these recorders start is a gap (closed by their first
        segment): on one machine the service's own downtime, in a cluster a takeover too."""
        async with transaction(self.sessions) as session:
            for cam_id, last in (await session.execute(
                select(Camera.id, Camera.last_segment_us).where(Camera.id.in_(camera_ids))
            )).all():
                await open_gap(session, cam_id, last or now_us(), reason)
                await session.execute(update(Camera).where(Camera.id == cam_id).values(
                    state=CameraState.STARTING.value, state_reason="", state_since_us=now_us()))

    def _start_one(self, cam: RecorderCamera) -> None:
        feed = None
        if self.live_feeds is not None:
            feed = self.live_feeds[f"{cam.id}/main"] = Feed(f"{cam.id}/main")
        rec = CameraRecorder(cam, self.sessions, self.root, alerts=self.alerts, live_feed=feed, **self._options)
        self.recorders[cam.id] = rec
        self._tasks[cam.id] = asyncio.create_task(self._guard(rec), name=f"recorder-{cam.id}")

    async def _guard(self, rec: CameraRecorder) -> None:
        """A bug in one recorder must not stop it for good: log, show it, and go again."""

        def offline(exc: Exception, _failures: int) -> None:
            rec._set_state(CameraState.OFFLINE, f"recorder error: {describe_error(exc)}")

        await run_every(RECORDER_RESTART_S, rec.run, name=f"camera {rec.cam.id}: recorder", log=log,
                        until_success=True, on_error=offline)

    async def _stop_one(self, cam_id: int) -> None:
        rec, task = self.recorders.pop(cam_id), self._tasks.pop(cam_id)
        if self.live_feeds is not None and self.live_feeds.get(f"{cam_id}/main") is rec.live_feed:
            del self.live_feeds[f"{cam_id}/main"]  # new viewers pull the camera (or its new recorder)
        await rec.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S + 5)
        except TimeoutError:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._said_late(rec)

    async def start(self) -> None:
        if self.lease is not None:

            async def changed() -> None:
                self.reload_soon()

            self.lease.on_change = changed
            await self.reload()  # opens the gaps of the cameras it holds
            self._start_loops()
            return
        # Whatever happened while we were not running is a gap (closed by the first segment).
        async with transaction(self.sessions) as session:
            for cam_id, last in (await session.execute(
                select(Camera.id, Camera.last_segment_us).where(Camera.enabled, Camera.recording, Camera.main_url != "")
            )).all():
                await open_gap(session, cam_id, last or now_us(), "service not recording")
                await session.execute(update(Camera).where(Camera.id == cam_id).values(
                    state=CameraState.STARTING.value, state_reason="", state_since_us=now_us()))
        await self.reload()
        self._start_loops()

    def _start_loops(self) -> None:
        async def reload() -> None:
            await self.reload()
            self.notes.pop("recorders", None)

        def reload_failed(exc: Exception, _failures: int) -> None:  # shown by /healthz until it works
            self.notes["recorders"] = f"cannot read the inventory to start or stop recorders: {describe_error(exc)}"

        self._reloader = asyncio.create_task(run_every(
            self.reload_interval_s, reload, name="recorder inventory reload", log=log, wait_first=True,
            on_error=reload_failed), name="recorder-reload")
        async def check_health() -> None:
            await self.check_health()
            self.notes.pop("recording_health", None)

        def check_failed(exc: Exception, _failures: int) -> None:  # the judge of health cannot judge: say so
            self.notes["recording_health"] = f"the recording health check failed: {describe_error(exc)}"

        self._monitor = asyncio.create_task(run_every(
            self.health_interval_s, check_health, name="recording health check", log=log, on_error=check_failed),
            name="recorder-health")

    def stopping(self) -> None:
        """The service has begun to stop (aiohttp's on_shutdown): no recorder reconnects."""
        self._shutting_down = True
        for rec in self.recorders.values():
            rec.stopping()

    async def stop(self) -> None:
        """Stop every recorder, each finalising its current segment."""
        for task in (self._reloader, self._monitor, self._reload_task, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        async with self._lock:
            await asyncio.gather(*(self._stop_one(cam_id) for cam_id in list(self.recorders)))
        if self._alert_writer is not None and not self._alert_writer.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._alert_writer), STOP_GRACE_S)
            except TimeoutError:
                log.error("store: %d alerts not stored at stop (they were published)", len(self._unstored_alerts))
                self._alert_writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._alert_writer
