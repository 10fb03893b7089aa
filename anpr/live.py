"""Live reading: each ANPR camera's frames through the plate reader, one read per vehicle.

Per camera, two threads (OpenCV and ONNX block, so none of this runs on the event loop):
- the *capture* thread opens the camera's RTSP stream with ``cv2.VideoCapture(url, CAP_FFMPEG)``
  (credentials put into the URL here, and that URL is never logged), grabs every frame so
  the stream never backs up, and at ``sample_fps`` hands the newest frame, stamped with the
  UTC time it was grabbed, to a one-frame slot. A frame still waiting in the slot is replaced,
  never queued: when the reader falls behind, frames are dropped and counted.
- the *worker* thread takes the slot's frame, crops the camera's region of interest, and runs
  the reader under a semaphore shared by all cameras (``max_parallel_reads``), so a 2-core
  machine is never asked for more plate reads at once than it can do.
Per-frame reads go to a :class:`VehicleTracker`, which groups them into vehicles and commits
each vehicle once (voting across frames); the worker writes the plate patch and overview JPEGs,
then hands the vehicle to the event loop, which stores the read, checks the hotlists and raises
an ``anpr_hit`` alert (stored, on the WebSocket hub, and from there on MQTT).

Imports storage only (never cameras or controlroom).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anpr import AnprError, voting
from anpr.hotlist import check_read
from storage import anpr as store
from storage.alerts import AlertHub, raise_alert
from storage.db import now_us, transaction
from storage.inventory import credentialed_url
from storage.keys import Keys
from storage.models import Camera, CameraKind

# FFmpeg inside OpenCV prints its own errors to stderr, some with the URL it was given, and
# ours carries credentials: keep FFmpeg quiet (read once, when OpenCV's FFmpeg backend loads).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# RTSP over TCP: over UDP, a busy 2-core machine dropped packets and OpenCV returned grey,
# smeared frames with no readable plate (seen with the simulator at load 7); TCP lost none.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
import cv2  # noqa: E402

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Options and the reader's interface


@dataclass(frozen=True)
class LiveOptions:
    """Built by the app from the ``[anpr]`` settings. Times in seconds, sizes in pixels."""

    sample_fps: float = 6.0
    mode: str = "uk"
    max_parallel_reads: int = 1
    agree_frames: int = 2
    track_gap_s: float = 1.0
    min_confidence: float = 0.5
    single_frame_confidence: float = 0.9  # a vehicle read in one frame only must be this sure
    max_frame_pixels: int = 16_000_000
    overview_width: int = 960
    jpeg_quality: int = 85
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    sync_interval_s: float = 30.0
    # Frames whose region of interest did not change since the last sampled frame are not read
    # (nothing passed): the reader costs hundreds of ms a frame, an empty road costs nothing.
    motion_gate: bool = True
    motion_threshold: int = 18  # grey-level change that counts as a changed pixel
    motion_min_fraction: float = 0.003  # share of changed pixels that means "something moved"


class PlateReadLike(Protocol):
    text: str
    confidence: float
    box: Any  # (x, y, w, h) in the image given to the reader
    char_confidences: Any
    raw_text: str
    format: str


class Reader(Protocol):
    def read(self, bgr: np.ndarray) -> list[PlateReadLike]: ...


# The reader's second, slower pass (higher resolution, equalised) rescues small or washed-out
# plates in single photographs. Live, a vehicle gives several frames, and the second pass ran on
# every frame without a plate: 790 ms of CPU for such a frame against 208 ms without it, and
# the same plates read (measured on the simulator's frames). Live reading turns it off.
LIVE_TUNING = {"fallback_below": 0.0, "fallback_side_px": 32}


def default_reader_factory(mode: str) -> Reader:
    from dataclasses import fields, replace

    from anpr.reader import PlateReader, Tuning  # the ONNX models load here, in the worker thread

    known = {f.name for f in fields(Tuning)}
    tuning = replace(Tuning(), **{k: v for k, v in LIVE_TUNING.items() if k in known})
    # One onnxruntime thread per read: on a shared 2-core machine (load ~9) a read took a median
    # 560 ms with one thread against 1360 ms with two (their threads spin while they wait);
    # parallelism comes from max_parallel_reads instead.
    return PlateReader(mode=mode, threads=1, tuning=tuning)


# ---------------------------------------------------------------------------------------------
# Frames


def check_frame(frame: Any, max_pixels: int) -> np.ndarray:
    """The frame if it can be read; otherwise AnprError saying what is wrong with it."""
    if frame is None:
        raise AnprError("empty frame: the camera gave no image")
    if not isinstance(frame, np.ndarray):
        raise AnprError(f"not an image: got {type(frame).__name__}")
    if frame.size == 0 or frame.ndim < 2 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise AnprError(f"empty frame: shape {frame.shape}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise AnprError(f"not a 3-channel BGR image: shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise AnprError(f"not an 8-bit image: dtype {frame.dtype}")
    h, w = frame.shape[:2]
    if h * w > max_pixels:
        raise AnprError(f"frame {w}x{h} is larger than the limit of {max_pixels} pixels")
    if h < 16 or w < 16:
        raise AnprError(f"frame {w}x{h} is too small to hold a plate")
    return frame


def roi_pixels(roi: tuple[float, float, float, float] | None, width: int, height: int) -> tuple[int, int, int, int]:
    """A region of interest given as fractions (x, y, w, h of the frame, 0..1) in pixels."""
    if not roi:
        return 0, 0, width, height
    x, y, w, h = roi
    x0, y0 = int(max(0.0, x) * width), int(max(0.0, y) * height)
    x1, y1 = int(min(1.0, x + w) * width), int(min(1.0, y + h) * height)
    if x1 - x0 < 16 or y1 - y0 < 16:
        return 0, 0, width, height
    return x0, y0, x1 - x0, y1 - y0


def parse_roi(value: Any) -> tuple[float, float, float, float] | None:
    """``camera.extra["anpr_roi"]``: [x, y, w, h] as fractions of the frame, or None."""
    if value in (None, "", []):
        return None
    try:
        x, y, w, h = (float(v) for v in value)
    except (TypeError, ValueError):
        raise AnprError(f"anpr_roi must be [x, y, w, h] fractions of the frame, got {value!r}") from None
    if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1):
        raise AnprError(f"anpr_roi fractions must lie in 0..1, got {value!r}")
    return x, y, w, h


class MotionGate:
    """Is anything moving? Compares each frame with the previous one, small and blurred.

    Frame differencing, not a background model: a vehicle moving through the region changes
    a large share of it between two samples (at 6 fps a car crosses 10% of the frame height
    per sample); sensor noise and compression do not, after a blur. A vehicle that stops is
    not read again: it was read while it moved in.
    """

    def __init__(self, threshold: int = 18, min_fraction: float = 0.003, width_px: int = 160) -> None:
        self.threshold, self.min_fraction, self.width_px = threshold, min_fraction, width_px
        self._previous: np.ndarray | None = None

    def moving(self, image: np.ndarray) -> bool:
        h, w = image.shape[:2]
        small = cv2.resize(image, (self.width_px, max(1, round(h * self.width_px / w))), interpolation=cv2.INTER_AREA)
        grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        previous, self._previous = self._previous, grey
        if previous is None or previous.shape != grey.shape:
            return True
        changed = np.count_nonzero(cv2.absdiff(grey, previous) > self.threshold)
        return changed >= self.min_fraction * grey.size


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise AnprError("JPEG encoding failed")
    return buf.tobytes()


def plate_patch(frame: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.15) -> np.ndarray:
    x, y, w, h = box
    mx, my = int(w * margin), int(h * margin)
    H, W = frame.shape[:2]
    x0, y0, x1, y1 = max(0, x - mx), max(0, y - my), min(W, x + w + mx), min(H, y + h + my)
    if x1 <= x0 or y1 <= y0:
        return frame
    return frame[y0:y1, x0:x1]


def overview(frame: np.ndarray, width: int) -> np.ndarray:
    H, W = frame.shape[:2]
    if W <= width:
        return frame
    return cv2.resize(frame, (width, max(1, round(H * width / W))), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------------
# Vehicles: grouping per-frame reads, voting, committing once


@dataclass
class FrameRead:
    text: str  # normalised VRM
    confidence: float
    frame_us: int
    box: tuple[int, int, int, int]  # in full-frame pixels
    char_confidences: list[float] = field(default_factory=list)
    raw_text: str = ""
    format: str = ""


@dataclass
class Vehicle:
    """One vehicle's read, voted from its frames. ``frame`` is the best frame (for the images)."""

    text: str
    confidence: float
    read_us: int  # the time of the best frame
    commit_frame_us: int  # the frame at which the read was decided (alert latency is from here)
    box: tuple[int, int, int, int]
    char_confidences: list[float]
    raw_text: str
    format: str
    frames: int
    frame: np.ndarray | None = None


@dataclass
class _Track:
    reads: list[FrameRead] = field(default_factory=list)
    best_frame: np.ndarray | None = None
    best_conf: float = -1.0
    last_us: int = 0
    misses: int = 0  # frames looked at since it was last seen
    committed: bool = False

    def counts(self) -> Counter[str]:
        return Counter(r.text for r in self.reads)

    def leading_text(self) -> str:
        return self.counts().most_common(1)[0][0]


def vote(reads: list[FrameRead]) -> FrameRead:
    """The read the frames agree on. First the text: the one with the largest summed
    confidence, a partial read (a text inside a longer one) counting for the longer text. Then
    its characters: the frames that read a text of that length close to it vote position by
    position (anpr.voting.vote), so a character misread in one frame is outvoted. The box,
    time and images come from the most confident frame that read the result."""
    score: dict[str, float] = {}
    for r in reads:
        score[r.text] = score.get(r.text, 0.0) + r.confidence
    texts = list(score)
    for part in texts:
        for whole in texts:
            if part != whole and part in whole:
                score[whole] += score[part]
    text = max(score, key=lambda t: (score[t], len(t)))
    char_conf: list[float] | None = None
    peers = [r for r in reads if len(r.text) == len(text) and voting.same_vehicle(r.text, text)]
    if len(peers) >= 2:
        text, char_conf = voting.vote(peers)  # type: ignore[arg-type]  # FrameRead has the fields used
    exact = [r for r in reads if r.text == text]
    best = max(exact or peers or reads, key=lambda r: r.confidence)
    agreeing = [r.confidence for r in reads if r.text == text or r.text in text]
    # Confidence of the vote: the mean of the agreeing frames, scaled by their share of all frames.
    conf = (sum(agreeing) / len(agreeing)) * (len(agreeing) / len(reads)) ** 0.5 if agreeing else best.confidence
    return FrameRead(text, round(conf, 4), best.frame_us, best.box, char_conf or best.char_confidences,
                     best.raw_text, best.format)


class VehicleTracker:
    """Groups one camera's per-frame reads into vehicles and commits each vehicle exactly once.

    A vehicle is committed as soon as ``agree_frames`` frames read the same registration of at
    least ``min_early_len`` characters (so a hotlist alert is not kept waiting for the vehicle
    to leave), or, failing that, when it has left: not seen for ``gap_us`` *and* missing from
    ``min_misses`` frames looked at since (so slow reads on a busy machine do not split one
    vehicle in two); then it needs ``agree_frames`` frames in all, or one of at least
    ``single_conf`` and ``min_early_len`` characters (the reader was seen to return a plate's
    left group alone, ``MN73`` of ``MN73HTB``, at confidence 1.0). Later frames of a committed vehicle are absorbed silently, also for
    ``repeat_us`` after it left (a vehicle that stopped under the camera and moves off again).
    Pure: no clock, no I/O; tests drive it with frame times.
    """

    def __init__(self, agree_frames: int = 2, gap_us: int = 1_000_000, min_conf: float = 0.5,
                 single_conf: float = 0.9, min_early_len: int = 5, min_misses: int = 2,
                 repeat_us: int = 10_000_000, early_len: int = 7) -> None:
        # Committing before the vehicle leaves needs a full-length read (7 characters: current
        # and most older UK plates): the end of a plate entering the view, "15DRH" of
        # "BG15DRH", is itself a valid dateless registration and was committed as the vehicle.
        # Shorter plates are committed when the vehicle has left, by the vote.
        self.early_len = early_len
        self.agree_frames, self.gap_us, self.min_conf, self.single_conf = agree_frames, gap_us, min_conf, single_conf
        self.min_early_len, self.min_misses, self.repeat_us = min_early_len, min_misses, repeat_us
        self.tracks: list[_Track] = []
        self.recent: list[_Track] = []  # committed vehicles that left, for repeat_us

    def add(self, reads: list[FrameRead], frame_us: int, frame: np.ndarray | None = None) -> list[Vehicle]:
        """Feed one looked-at frame's reads (none: nothing there, or nothing moved); returns the
        vehicles committed by it, and by vehicles that have now left."""
        out: list[Vehicle] = []
        self.recent = [t for t in self.recent if frame_us - t.last_us <= self.repeat_us]
        seen: set[int] = set()
        # A piece of a plate read beside the whole plate in the same frame is that plate, not a
        # second vehicle (``9ERA`` beside ``GW19ERA`` was committed as a vehicle of its own).
        texts = {r.text for r in reads}
        reads = [r for r in reads if not any(r.text != t and r.text in t for t in texts)]
        for read in sorted(reads, key=lambda r: -r.confidence):
            if read.confidence < self.min_conf or not read.text:
                continue
            track = self._match(read.text, seen)
            if track is None:
                track = _Track()
                self.tracks.append(track)
            seen.add(id(track))
            track.reads.append(read)
            track.last_us, track.misses = frame_us, 0
            if read.confidence > track.best_conf and frame is not None:
                track.best_conf, track.best_frame = read.confidence, frame
            if not track.committed and self._agreed(track, read.text):
                out.append(self._commit(track, frame_us))
        for track in self.tracks:
            if id(track) not in seen:
                track.misses += 1
        return out + self._end(frame_us, lambda t: t.misses >= self.min_misses and frame_us - t.last_us > self.gap_us)

    def _match(self, text: str, taken: set[int]) -> _Track | None:
        for track in self.tracks:
            if id(track) not in taken and any(voting.same_vehicle(text, r.text) for r in track.reads[-6:]):
                return track
        for track in self.recent:
            if any(voting.same_vehicle(text, r.text) for r in track.reads[-6:]):
                self.recent.remove(track)
                self.tracks.append(track)  # back again (it had stopped): already committed
                return track
        return None

    def _agreed(self, track: _Track, text: str) -> bool:
        """Early commit: enough frames read ``text``, it is not part of a longer text read of
        this vehicle, and it is long enough not to be a piece of a plate (a plate's left group
        alone, ``MS73`` of ``MS73BJA``, was read twice in a row from the simulator's sub
        stream). Short and partial reads wait for the vehicle to leave, then the vote decides."""
        if len(text) < max(self.min_early_len, self.early_len) or track.counts()[text] < self.agree_frames:
            return False
        return not any(text != r.text and text in r.text for r in track.reads)

    def flush(self, now_us: int, idle_factor: int = 3) -> list[Vehicle]:
        """No frame to look at (the stream stalled, or stopping): end vehicles unseen for
        ``idle_factor`` gaps. ``now_us`` far ahead ends them all."""
        return self._end(now_us, lambda t: now_us - t.last_us > idle_factor * self.gap_us)

    def _end(self, now_us: int, gone) -> list[Vehicle]:
        out, keep = [], []
        for track in self.tracks:
            if not gone(track):
                keep.append(track)
                continue
            if not track.committed and (len(track.reads) >= self.agree_frames or any(
                r.confidence >= self.single_conf and len(r.text) >= self.min_early_len for r in track.reads
            )):
                out.append(self._commit(track, now_us))
            if track.committed:
                track.best_frame = None
                self.recent.append(track)
        self.tracks = keep
        return out

    def _commit(self, track: _Track, at_us: int) -> Vehicle:
        track.committed = True
        v = vote(track.reads)
        return Vehicle(v.text, v.confidence, v.frame_us, at_us, v.box, list(v.char_confidences), v.raw_text,
                       v.format, len(track.reads), track.best_frame)


# ---------------------------------------------------------------------------------------------
# One camera


@dataclass(frozen=True)
class CameraConfig:
    camera_id: int
    name: str
    url: str = field(repr=False)  # carries credentials: never log it
    roi: tuple[float, float, float, float] | None = None

    def signature(self) -> tuple:
        return (self.url, self.roi)


@dataclass
class CameraStats:
    state: str = "starting"  # starting, connecting, reading, reconnecting, stopped
    frames_grabbed: int = 0
    frames_sampled: int = 0
    frames_read: int = 0
    frames_dropped: int = 0
    frames_still: int = 0  # sampled, but nothing moved: not read
    errors: int = 0
    last_error: str = ""
    vehicles: int = 0
    read_ms_total: float = 0.0
    worker_cpu_s: float = 0.0
    capture_cpu_s: float = 0.0


class StreamClock:
    """The UTC time a frame was captured, from its stream timestamp, not from when we got it.

    Frames arrive in bursts (at connection, 1.4 s of stream came in 10 ms; on a busy machine the
    capture thread falls behind and catches up), so the time of ``grab()`` can be late by
    seconds. The stream's own timestamps are evenly spaced; the offset between them and the
    wall clock is estimated as the smallest seen (the least-delayed frame), allowed to creep up
    by ``drift_ppm`` so a camera clock running slow is followed. Without timestamps, the grab
    time is used.
    """

    def __init__(self, drift_ppm: float = 1000.0) -> None:
        self.drift = drift_ppm / 1e6
        self.offset_us: int | None = None
        self._last_wall_us = 0

    def wall_us(self, pos_ms: float, grabbed_us: int) -> int:
        if not pos_ms or pos_ms <= 0 or pos_ms != pos_ms:
            return grabbed_us
        pos_us = int(pos_ms * 1000)
        offset = grabbed_us - pos_us
        if self.offset_us is None:
            self.offset_us = offset
        else:
            self.offset_us = min(offset, self.offset_us + int((grabbed_us - self._last_wall_us) * self.drift))
        self._last_wall_us = grabbed_us
        return pos_us + self.offset_us


VehicleSink = Callable[[int, Vehicle, str, str], None]  # camera id, vehicle, plate path, overview path


class CameraReader:
    """Capture and worker threads of one ANPR camera; :meth:`process_frame` is one step."""

    def __init__(self, config: CameraConfig, options: LiveOptions, image_root: Path, sink: VehicleSink,
                 semaphore: threading.Semaphore, reader_factory: Callable[[str], Reader] = default_reader_factory,
                 capture: bool = True) -> None:
        self.config, self.options, self.image_root, self.sink = config, options, image_root, sink
        self.semaphore, self.reader_factory, self.capture = semaphore, reader_factory, capture
        self.tracker = VehicleTracker(options.agree_frames, int(options.track_gap_s * 1e6), options.min_confidence,
                                      options.single_frame_confidence)
        self.stats = CameraStats()
        self._reader: Reader | None = None
        self.gate = MotionGate(options.motion_threshold, options.motion_min_fraction) if options.motion_gate else None
        self._slot: tuple[np.ndarray | None, int] | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_error_log = 0.0

    # -- lifecycle

    def start(self) -> None:
        cid = self.config.camera_id
        self._threads = [threading.Thread(target=self._work_loop, name=f"anpr-read-{cid}", daemon=True)]
        if self.capture:
            self._threads.append(threading.Thread(target=self._capture_loop, name=f"anpr-capture-{cid}", daemon=True))
        for t in self._threads:
            t.start()

    def request_stop(self) -> None:
        """Ask both threads to end (returns at once; :meth:`stop` waits for them)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.request_stop()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.stats.state = "stopped"

    # -- frames in

    def submit(self, frame: np.ndarray | None, frame_us: int) -> None:
        """Offer a frame to the worker; an unread frame still waiting is dropped (never queued)."""
        with self._cond:
            if self._slot is not None:
                self.stats.frames_dropped += 1
            self._slot = (frame, frame_us)
            self.stats.frames_sampled += 1
            self._cond.notify()

    def _capture_loop(self) -> None:
        cid, opts = self.config.camera_id, self.options
        backoff = opts.reconnect_initial_s
        period_s = 1.0 / opts.sample_fps
        cpu0 = time.thread_time()
        while not self._stop.is_set():
            self.stats.state = "connecting"
            cap = cv2.VideoCapture(self.config.url, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(opts.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(opts.read_timeout_s * 1000),
            ])
            try:
                if not cap.isOpened():
                    self._error(f"cannot open the stream of camera {self.config.name!r}; retrying in {backoff:.0f} s")
                else:
                    log.info("camera %d: ANPR stream open", cid)
                    self.stats.state = "reading"
                    backoff = opts.reconnect_initial_s
                    next_sample = time.monotonic()
                    clock = StreamClock()
                    while not self._stop.is_set():
                        if not cap.grab():
                            self._error("the stream stopped; reconnecting")
                            break
                        frame_us = clock.wall_us(cap.get(cv2.CAP_PROP_POS_MSEC), now_us())
                        self.stats.frames_grabbed += 1
                        if time.monotonic() >= next_sample:
                            next_sample = max(next_sample + period_s, time.monotonic() - period_s)
                            ok, frame = cap.retrieve()
                            self.submit(frame if ok else None, frame_us)
                        self.stats.capture_cpu_s = time.thread_time() - cpu0
            finally:
                cap.release()
            if self._stop.is_set():
                break
            self.stats.state = "reconnecting"
            self._stop.wait(backoff)
            backoff = min(backoff * 2, opts.reconnect_max_s)

    def _work_loop(self) -> None:
        cpu0 = time.thread_time()
        while not self._stop.is_set():
            with self._cond:
                while self._slot is None and not self._stop.is_set():
                    # Wake up now and then to end tracks of vehicles that have left.
                    if not self._cond.wait(timeout=self.options.track_gap_s / 2):
                        break
                item, self._slot = self._slot, None
            if self._stop.is_set():
                break
            try:
                if item is None:
                    self._emit(self.tracker.flush(now_us()))
                else:
                    self.process_frame(*item)
            except AnprError as exc:
                self._error(str(exc))
            except Exception:  # noqa: BLE001 - one bad frame must not stop the camera's reading
                self.stats.errors += 1
                log.exception("camera %d: reading a frame failed", self.config.camera_id)
            self.stats.worker_cpu_s = time.thread_time() - cpu0
        with contextlib.suppress(Exception):
            self._emit(self.tracker.flush(2**62))  # commit what was seen before stopping

    # -- one step

    def read_frame(self, frame: Any) -> list[FrameRead]:
        """The plate reads in one frame (boxes in full-frame pixels). Raises AnprError if bad."""
        frame = check_frame(frame, self.options.max_frame_pixels)
        h, w = frame.shape[:2]
        x0, y0, rw, rh = roi_pixels(self.config.roi, w, h)
        crop = frame[y0:y0 + rh, x0:x0 + rw]
        if self.gate is not None and not self.gate.moving(crop):
            self.stats.frames_still += 1
            return []
        if self._reader is None:
            self._reader = self.reader_factory(self.options.mode)
        t0 = time.perf_counter()
        with self.semaphore:
            plates = self._reader.read(crop)
        self.stats.read_ms_total += (time.perf_counter() - t0) * 1000
        self.stats.frames_read += 1
        out = []
        for p in plates:
            try:
                text = store.normalise_vrm(p.text)
            except Exception:  # noqa: BLE001 - not a registration: ignore this read
                continue
            bx, by, bw, bh = (int(v) for v in p.box)
            out.append(FrameRead(text, float(p.confidence), 0, (bx + x0, by + y0, bw, bh),
                                 [float(c) for c in (p.char_confidences or [])], str(p.raw_text or ""),
                                 str(p.format or "")))
        return out

    def process_frame(self, frame: Any, frame_us: int) -> list[Vehicle]:
        """Read one frame, feed the tracker, store and hand over the vehicles it commits."""
        reads = self.read_frame(frame)
        for r in reads:
            r.frame_us = frame_us
        vehicles = self.tracker.add(reads, frame_us, frame)
        self._emit(vehicles)
        return vehicles

    def _emit(self, vehicles: list[Vehicle]) -> None:
        for v in vehicles:
            plate_rel = overview_rel = ""
            if v.frame is not None:
                q = self.options.jpeg_quality
                plate_rel, overview_rel = store.save_read_images(
                    self.image_root, v.read_us, self.config.camera_id,
                    encode_jpeg(plate_patch(v.frame, v.box), q), encode_jpeg(overview(v.frame, self.options.overview_width), q),
                )
                v.frame = None  # the frame is not needed any more: free it now
            self.stats.vehicles += 1
            self.sink(self.config.camera_id, v, plate_rel, overview_rel)

    def _error(self, message: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = message
        now = time.monotonic()
        if now - self._last_error_log >= 10:  # a broken camera must not flood the log
            self._last_error_log = now
            log.warning("camera %d: %s", self.config.camera_id, message)


# ---------------------------------------------------------------------------------------------
# All ANPR cameras, on the event loop's side


@dataclass
class StoredVehicle:
    read_id: int
    camera_id: int
    vrm: str
    read_us: int
    commit_frame_us: int
    stored_us: int
    hits: list[int] = field(default_factory=list)
    alert_ids: list[int] = field(default_factory=list)


class LiveReading:
    """Runs a :class:`CameraReader` for every enabled camera of kind ``anpr``.

    :meth:`sync` (the ``run_once``) starts, restarts and stops readers to follow the inventory;
    :meth:`store_vehicle` stores one vehicle's read, checks the hotlists and raises alerts.
    ``on_stored`` (optional) is called with each :class:`StoredVehicle` (tests and benchmarks).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], keys: Keys, hub: AlertHub | None,
                 image_root: Path, options: LiveOptions,
                 reader_factory: Callable[[str], Reader] = default_reader_factory,
                 on_stored: Callable[[StoredVehicle], None] | None = None) -> None:
        self.sessions, self.keys, self.hub, self.image_root = sessions, keys, hub, image_root
        self.options, self.reader_factory, self.on_stored = options, reader_factory, on_stored
        self.semaphore = threading.BoundedSemaphore(options.max_parallel_reads)
        self.readers: dict[int, CameraReader] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._pending_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    async def configs(self) -> list[CameraConfig]:
        async with self.sessions() as session:
            cams = (await session.execute(
                select(Camera).where(Camera.kind == CameraKind.ANPR.value, Camera.enabled.is_(True)).order_by(Camera.id)
            )).scalars().all()
        out = []
        for cam in cams:
            extra = cam.extra or {}
            url = cam.sub_url if extra.get("anpr_stream") == "sub" and cam.sub_url else cam.main_url
            if not url:
                log.warning("camera %d: ANPR camera has no stream URL; not reading it", cam.id)
                continue
            try:
                roi = parse_roi(extra.get("anpr_roi"))
            except AnprError as exc:
                log.warning("camera %d: %s; reading the whole frame", cam.id, exc)
                roi = None
            password = await asyncio.to_thread(self.keys.decrypt, cam.password_enc) if cam.password_enc else ""
            out.append(CameraConfig(cam.id, cam.name, credentialed_url(url, cam.username, password), roi))
        return out

    def _make_reader(self, config: CameraConfig, capture: bool = True) -> CameraReader:
        return CameraReader(config, self.options, self.image_root, self._sink, self.semaphore,
                            self.reader_factory, capture=capture)

    async def sync(self) -> None:
        """Start readers for new ANPR cameras, restart changed ones, stop removed ones."""
        self._loop = asyncio.get_running_loop()
        wanted = {c.camera_id: c for c in await self.configs()}
        for cid in list(self.readers):
            if cid not in wanted or self.readers[cid].config.signature() != wanted[cid].signature():
                await asyncio.to_thread(self.readers.pop(cid).stop)
        for cid, config in wanted.items():
            if cid not in self.readers:
                reader = self._make_reader(config)
                self.readers[cid] = reader
                reader.start()
                log.info("camera %d: live ANPR reading started", cid)

    def attach(self, config: CameraConfig) -> CameraReader:
        """A reader with no capture thread, fed by :meth:`CameraReader.submit` (tests, tools)."""
        self._loop = asyncio.get_running_loop()
        reader = self._make_reader(config, capture=False)
        self.readers[config.camera_id] = reader
        reader.start()
        return reader

    async def start(self) -> None:
        await self.sync()

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.options.sync_interval_s)
                try:
                    await self.sync()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("ANPR: following the camera inventory failed; next try in %ss",
                                  self.options.sync_interval_s)

        self._task = asyncio.create_task(loop(), name="anpr-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        readers, self.readers = list(self.readers.values()), {}
        for r in readers:  # all at once: the joins below share a few executor threads
            r.request_stop()
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in readers))
        await self.drain()

    async def drain(self) -> None:
        """Wait until every vehicle handed over by the worker threads has been stored."""
        with self._pending_lock:
            pending = list(self._pending)
        if pending:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in pending), return_exceptions=True)

    def status(self) -> dict[int, CameraStats]:
        return {cid: r.stats for cid, r in self.readers.items()}

    # -- from worker threads to the loop

    def _sink(self, camera_id: int, vehicle: Vehicle, plate_rel: str, overview_rel: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            log.error("camera %d: read of a vehicle lost: the event loop is gone", camera_id)
            return
        future = asyncio.run_coroutine_threadsafe(self._store_logged(camera_id, vehicle, plate_rel, overview_rel), loop)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    async def _store_logged(self, camera_id: int, vehicle: Vehicle, plate_rel: str, overview_rel: str) -> None:
        try:
            stored = await self.store_vehicle(camera_id, vehicle, plate_rel, overview_rel)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("camera %d: storing a read failed", camera_id)
            return
        if self.on_stored is not None:
            self.on_stored(stored)

    async def store_vehicle(self, camera_id: int, vehicle: Vehicle, plate_rel: str = "",
                            overview_rel: str = "") -> StoredVehicle:
        """Store the read, check the hotlists, store each hit and raise its alert: one transaction."""
        async with transaction(self.sessions) as session:
            read = await store.add_read(session, store.NewRead(
                vrm=vehicle.text, confidence=vehicle.confidence, read_us=vehicle.read_us, camera_id=camera_id,
                raw_text=vehicle.raw_text, plate_format=vehicle.format, box=list(vehicle.box),
                char_confidences=vehicle.char_confidences, frames=vehicle.frames, plate_path=plate_rel,
                overview_path=overview_rel,
            ))
            stored = StoredVehicle(read.id, camera_id, read.vrm, read.read_us, vehicle.commit_frame_us, read.stored_us)
            for entry, hotlist in await check_read(session, read.vrm, read.read_us):
                hit = await store.add_hit(session, read, entry)
                where = " ".join(p for p in (read.site_name, read.lane and f"lane {read.lane}", read.direction) if p)
                alert = await raise_alert(
                    session, self.hub, "anpr_hit",
                    f"{read.vrm} on hotlist {hotlist.name!r} ({entry.reason}) at {where or f'camera {camera_id}'}",
                    camera_id, vrm=read.vrm, hotlist=hotlist.name, hotlist_id=hotlist.id, entry_id=entry.id,
                    pattern=entry.pattern, reason=entry.reason, source=entry.source, read_id=read.id, hit_id=hit.id,
                    priority=entry.priority, site=read.site_name, lane=read.lane, direction=read.direction,
                    read_us=read.read_us, frame_us=vehicle.commit_frame_us, confidence=read.confidence,
                )
                hit.alert_id = alert.id
                stored.hits.append(hit.id)
                stored.alert_ids.append(alert.id)
            await session.flush()
        if stored.hits:
            # No registration in the log: it is personal data, kept only where it is controlled.
            log.info("camera %d: hotlist hit on read %d (hits %s)", camera_id, read.id, stored.hits)
        return stored
