"""Painting privacy masks into pictures: the one ffmpeg filter for every video route, and
OpenCV's fillPoly for single pictures (JPEG, PNG).

Polygons are normalised (0..1 of the width and height, storage.masks). For video the polygons
are drawn once into an RGBA picture (:func:`write_mask_png`: opaque fill inside, transparent
outside) that ffmpeg scales to the video's size with nearest-neighbour (no half-transparent
edge) and overlays on every frame (:func:`filter_complex`), so one filter serves any
resolution. The fill is black.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

FILL_BGR = (0, 0, 0)
# The mask picture's side: a point is placed within 1/2048 of the picture (under a pixel of 1080p
# video); the PNG of a few polygons is a few kilobytes.
CANVAS = 2048

Polygons = Sequence[Sequence[Sequence[float]]]


def _points(polygons: Polygons, width: int, height: int) -> list[np.ndarray]:
    return [np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in poly], np.int32)
            for poly in polygons]


def fill(frame: np.ndarray, polygons: Polygons) -> np.ndarray:
    """Paint ``polygons`` over a decoded frame (BGR or grey), in place; returns it."""
    height, width = frame.shape[:2]
    colour = FILL_BGR if frame.ndim == 3 else FILL_BGR[0]
    cv2.fillPoly(frame, _points(polygons, width, height), colour)
    return frame


def mask_picture(data: bytes, polygons: Polygons, content_type: str) -> bytes:
    """A JPEG or PNG with ``polygons`` painted over it, in the same format. Raises ValueError
    when the picture cannot be decoded (the caller then sends nothing)."""
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise ValueError("the picture could not be decoded to apply its privacy masks")
    fill(frame, polygons)
    if content_type == "image/png":
        ok, out = cv2.imencode(".png", frame)
    else:
        ok, out = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("the masked picture could not be encoded")
    return out.tobytes()


def write_mask_png(polygons: Polygons, path: Path) -> Path:
    """The polygons as an RGBA picture for :func:`filter_complex` (written atomically)."""
    canvas = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    cv2.fillPoly(canvas, _points(polygons, CANVAS, CANVAS), (*FILL_BGR, 255))
    ok, png = cv2.imencode(".png", canvas)
    if not ok:
        raise ValueError("the mask picture could not be encoded")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as out:
        out.write(png.tobytes())
    os.replace(tmp, path)
    return path


def filter_complex(video: str = "0:v:0", mask: str = "1:v", out: str = "masked") -> str:
    """The filter graph that overlays input ``mask`` (a :func:`write_mask_png` picture, one
    frame: overlay repeats it) on ``video``, scaled to its size, as ``[out]``."""
    return (f"[{mask}][{video}]scale2ref=flags=neighbor[maskpic][maskvid];"
            f"[maskvid][maskpic]overlay=format=auto:eof_action=repeat[{out}]")


def ffmpeg_args(mask_png: Path, *, video: str = "0:v:0", mask_index: int = 1, out: str = "masked") -> list[str]:
    """``-i MASK -filter_complex ...`` for a command whose video input is ``video``; the caller
    maps ``[out]`` instead of the video stream, and encodes (a masked picture is never stream copy)."""
    return ["-i", str(mask_png), "-filter_complex", filter_complex(video, f"{mask_index}:v", out)]


def mask_crop(crop: bytes, overview: bytes | None, box: Sequence[int], polygons: Polygons,
              margin: float = 0.5) -> bytes:
    """A plate crop (JPEG) cut from ``overview`` at ``box`` (x, y, w, h, plus the reader's
    margin): blanked whole when the masks reach the box grown by ``margin`` of its size, or when
    where it came from is unknown (no box, no overview); else as it is."""
    frame = cv2.imdecode(np.frombuffer(overview, np.uint8), cv2.IMREAD_GRAYSCALE) if overview else None
    if frame is not None and len(box) == 4:
        height, width = frame.shape[:2]
        x, y, w, h = (int(v) for v in box)
        area = np.zeros((height, width), np.uint8)
        cv2.fillPoly(area, _points(polygons, width, height), 255)
        mx, my = int(w * margin) + 1, int(h * margin) + 1
        if not area[max(0, y - my):y + h + my, max(0, x - mx):x + w + mx].any():
            return crop
    picture = cv2.imdecode(np.frombuffer(crop, np.uint8), cv2.IMREAD_COLOR)
    if picture is None:
        raise ValueError("the plate picture could not be decoded to apply its privacy masks")
    picture[:] = FILL_BGR
    ok, out = cv2.imencode(".jpg", picture)
    if not ok:
        raise ValueError("the masked plate picture could not be encoded")
    return out.tobytes()
