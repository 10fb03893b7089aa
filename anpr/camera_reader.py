"""One ANPR camera's reading: its capture and worker threads.

Two threads per camera (OpenCV and ONNX block, so none of this runs on the event loop):
- the *capture* thread opens the camera's RTSP stream with ``cv2.VideoCapture(url, CAP_FFMPEG)``
  (credentials put into the URL here, and that URL is never logged), grabs every frame so
  the stream never backs up, and at ``sample_fps`` hands the newest frame, stamped with the
  UTC time it was grabbed (:class:`anpr.frames.StreamClock`), to a one-frame slot. A frame
  still waiting in the slot is replaced, never queued: when the reader falls behind, frames
  are dropped and counted.
- the *worker* thread takes the slot's frame, crops the camera's region of interest, and runs
  the reader under a semaphore shared by all cameras (``max_parallel_reads``), so a 2-core
  machine is never asked for more plate reads at once than it can do.
Per-frame reads go to an :class:`anpr.tracking.VehicleTracker`, which groups them into vehicles
and commits each vehicle once; the worker writes the plate patch and overview JPEGs, then hands
the vehicle to the sink (:class:`anpr.live.LiveReading`, on the event loop).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from anpr import AnprError
from anpr.frames import (
    MotionGate,
    StreamClock,
    check_frame,
    encode_jpeg,
    overview,
    plate_patch,
    roi_pixels,
)
from anpr.grammar import GRAMMARS
from anpr.tracking import FrameRead, Vehicle, VehicleTracker
from storage.anpr.images import save_read_images
from storage.anpr.vrm import normalise_vrm
from storage.db import now_us

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
    # Reads from this confidence up (below min_confidence) are kept as weak: a plate too small
    # or dark for one frame is read from its frames' per-character probabilities put together.
    weak_confidence: float = 0.3
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
# It returns weak reads too (down to LiveOptions.weak_confidence's default): the tracker puts a
# vehicle's frames together (anpr/tracking.py), so one frame need not be sure on its own.
LIVE_TUNING = {"fallback_below": 0.0, "fallback_side_px": 32, "min_confidence": LiveOptions.weak_confidence}


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
# One camera


@dataclass(frozen=True)
class CameraConfig:
    camera_id: int
    name: str
    url: str = field(repr=False)  # carries credentials: never log it
    roi: tuple[float, float, float, float] | None = None
    # The anpr lease's generation it reads under (a cluster's anpr node; 0 on one machine): a new
    # generation is a new reader, and each read is stored only under the generation it was made in.
    generation: int = 0

    def signature(self) -> tuple:
        return (self.url, self.roi, self.generation)


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


VehicleSink = Callable[[int, Vehicle, str, str], None]  # camera id, vehicle, plate path, overview path


class CameraReader:
    """Capture and worker threads of one ANPR camera; :meth:`process_frame` is one step."""

    def __init__(self, config: CameraConfig, options: LiveOptions, image_root: Path, sink: VehicleSink,
                 semaphore: threading.Semaphore, reader_factory: Callable[[str], Reader] = default_reader_factory,
                 capture: bool = True) -> None:
        self.config, self.options, self.image_root, self.sink = config, options, image_root, sink
        self.semaphore, self.reader_factory, self.capture = semaphore, reader_factory, capture
        self.tracker = VehicleTracker(options.agree_frames, int(options.track_gap_s * 1e6), options.min_confidence,
                                      options.single_frame_confidence, weak_conf=options.weak_confidence,
                                      grammar=GRAMMARS.get(options.mode))
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
        try:
            self._emit(self.tracker.flush(2**62))  # commit what was seen before stopping
        except Exception as exc:  # noqa: BLE001 - the thread ends either way: say what was lost
            self.stats.errors += 1
            self.stats.last_error = f"the final flush failed: {type(exc).__name__}: {exc}"
            log.exception("camera %d: the final flush of tracked vehicles failed as reading stopped; vehicles "
                          "still tracked then were not stored", self.config.camera_id)

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
                text = normalise_vrm(p.text)
            except Exception:  # noqa: BLE001 - not a registration: ignore this read
                continue
            bx, by, bw, bh = (int(v) for v in p.box)
            alternatives = [dict(a) for a in (getattr(p, "alternatives", None) or [])]
            out.append(FrameRead(text, float(p.confidence), 0, (bx + x0, by + y0, bw, bh),
                                 [float(c) for c in (p.char_confidences or [])], str(p.raw_text or ""),
                                 str(p.format or ""), alternatives if len(alternatives) == len(text) else []))
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
                plate_rel, overview_rel = save_read_images(
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
