"""Frame utilities of live reading: checking a frame, the region of interest, the motion gate,
the JPEG pictures of a read, and the stream clock that dates each frame.

Functions of one frame (or, for :class:`MotionGate` and :class:`StreamClock`, of the frames
before it): no threads, no storage. Sizes in pixels, times in microseconds.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from anpr import AnprError


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
