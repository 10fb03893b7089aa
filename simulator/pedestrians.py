"""A street with pedestrians who have faces: the scene of the simulator's "street" cameras.

Subject access requests are answered with other people's faces obscured (issue 15), and the
face detector that finds them (CenterFace, controlroom.redaction.faces) must have faces to find.
The other scenes are test patterns, so this one draws a pavement, shop fronts and
``len(PEOPLE)`` people walking across, each with a simple frontal face (skin oval, hair, eyes
with irises, brows, nose, mouth) drawn with OpenCV. Measured: CenterFace finds such a face
of 50 to 80 px on a 1080p frame scaled to half (tests/test_redaction.py checks it fires on
every pedestrian).

Pure and deterministic: ``frame(t_s)`` is the picture at ``t_s`` seconds, and
``faces(t_s)`` says where every face is (the ground truth tests use, e.g. to know which face
is the requester's). Motion repeats every ``LOOP_S`` seconds, so a clip of that length loops
without a jump. ``write_clip`` encodes one loop with ffmpeg (the caller's child-process rules
apply: it is given the argument list to run).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

SIZE = (1920, 1080)
FPS = 25
LOOP_S = 10
MARGIN_PX = 140  # off screen on either side, so people walk in and out whole
SKY_Y = 300  # shop fronts above, pavement below


@dataclass(frozen=True)
class Person:
    name: str
    coat: tuple[int, int, int]  # BGR
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    feet_y: int  # depth: the lower, the nearer
    face_px: int  # face height
    laps: int  # crossings per loop (speed); negative walks right to left
    phase: float  # 0..1 of the crossing at t = 0


# The first is the one the tests treat as the requester ("woman in a green coat").
PEOPLE = (
    Person("green coat", (60, 140, 40), (150, 180, 225), (30, 40, 60), 900, 72, 1, 0.30),
    Person("red jacket", (40, 40, 180), (120, 150, 200), (20, 20, 20), 820, 64, -1, 0.55),
    Person("blue anorak", (170, 90, 30), (160, 190, 230), (60, 90, 140), 980, 80, 1, 0.80),
    Person("grey suit", (110, 110, 110), (100, 130, 180), (40, 40, 40), 760, 58, -1, 0.10),
)


def _x(p: Person, t_s: float) -> float:
    span = SIZE[0] + 2 * MARGIN_PX
    frac = (p.phase + p.laps * t_s / LOOP_S) % 1.0
    return -MARGIN_PX + frac * span


def faces(t_s: float) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Every person's face box (x, y, w, h) in pixels at ``t_s``, off-screen ones included."""
    out = []
    for p in PEOPLE:
        cx, cy = _head(p, t_s)
        fw = int(p.face_px * 0.75)
        out.append((p.name, (int(cx - fw / 2), int(cy - p.face_px / 2), fw, p.face_px)))
    return out


def _head(p: Person, t_s: float) -> tuple[int, int]:
    body_px = p.face_px * 6  # head to feet
    bob = int(abs(np.sin(t_s * 2 * np.pi * 1.8 + p.phase * 7)) * p.face_px * 0.06)
    return int(_x(p, t_s)), p.feet_y - body_px + p.face_px // 2 - bob


def _background() -> np.ndarray:
    w, h = SIZE
    img = np.empty((h, w, 3), np.uint8)
    img[:SKY_Y] = (200, 170, 120)
    img[SKY_Y:] = (120, 125, 125)
    rng = np.random.default_rng(15)
    for i, x in enumerate(range(0, w, 320)):  # shop fronts, windows, doors
        colour = tuple(int(c) for c in rng.integers(60, 200, 3))
        cv2.rectangle(img, (x + 6, 60), (x + 314, 620), colour, -1)
        cv2.rectangle(img, (x + 30, 300), (x + 190, 560), (210, 200, 170), -1)
        cv2.rectangle(img, (x + 220, 340), (x + 290, 620), (50, 40, 30), -1)
        cv2.putText(img, f"SHOP {i + 1}", (x + 40, 140), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 4)
    for y in range(660, h, 90):  # paving
        cv2.line(img, (0, y), (w, y), (105, 110, 110), 3)
    # Texture so that the encoder spends bits as on a real street (and the picture is not flat).
    noise = rng.integers(0, 14, (h, w, 1), dtype=np.uint8)
    return cv2.add(img, np.repeat(noise, 3, axis=2))


def _face(img: np.ndarray, p: Person, cx: int, cy: int) -> None:
    fh = p.face_px
    fw = int(fh * 0.75)
    cv2.ellipse(img, (cx, cy - int(fh * 0.12)), (int(fw * 0.56), int(fh * 0.45)), 0, 180, 360, p.hair, -1)
    cv2.ellipse(img, (cx, cy), (fw // 2, fh // 2), 0, 0, 360, p.skin, -1)
    ey, ex, er = cy - int(fh * 0.08), int(fw * 0.2), max(2, int(fh * 0.06))
    for s in (-1, 1):
        cv2.ellipse(img, (cx + s * ex, ey), (int(er * 1.6), er), 0, 0, 360, (240, 240, 240), -1)
        cv2.circle(img, (cx + s * ex, ey), max(1, int(er * 0.8)), (40, 30, 20), -1)
        cv2.line(img, (cx + s * ex - int(er * 1.6), ey - int(er * 1.8)), (cx + s * ex + int(er * 1.6), ey - int(er * 2.0)),
                 p.hair, max(1, fh // 30))
    nose = np.array([[cx, ey + er], [cx - int(fw * 0.08), cy + int(fh * 0.15)], [cx + int(fw * 0.08), cy + int(fh * 0.15)]])
    cv2.fillPoly(img, [nose], tuple(int(c * 0.8) for c in p.skin))
    cv2.ellipse(img, (cx, cy + int(fh * 0.27)), (int(fw * 0.18), max(1, int(fh * 0.04))), 0, 0, 360, (70, 70, 170), -1)


def _person(img: np.ndarray, p: Person, t_s: float) -> None:
    cx, cy = _head(p, t_s)
    f = p.face_px
    neck = cy + f // 2
    swing = int(np.sin(t_s * 2 * np.pi * 1.8 + p.phase * 7) * f * 0.5)
    cv2.rectangle(img, (cx - int(f * 0.7), neck), (cx + int(f * 0.7), neck + int(f * 2.6)), p.coat, -1)  # coat
    for s in (-1, 1):  # legs and arms swing
        cv2.line(img, (cx + s * int(f * 0.3), neck + int(f * 2.5)), (cx + s * int(f * 0.3) + s * swing, p.feet_y),
                 (40, 35, 30), max(3, int(f * 0.3)))
        cv2.line(img, (cx + s * int(f * 0.75), neck + int(f * 0.2)), (cx + s * int(f * 0.8) - s * swing // 2, neck + int(f * 2.2)),
                 p.coat, max(3, int(f * 0.22)))
    _face(img, p, cx, cy)


class Street:
    """Draws the street at any time (the background is drawn once)."""

    def __init__(self) -> None:
        self.background = _background()

    def frame(self, t_s: float) -> np.ndarray:
        img = self.background.copy()
        for p in sorted(PEOPLE, key=lambda q: q.feet_y):  # far ones first
            _person(img, p, t_s)
        cv2.putText(img, "Street scene  main 1920x1080", (40, SIZE[1] - 40), cv2.FONT_HERSHEY_SIMPLEX, 1.4,
                    (255, 255, 255), 3)
        return img

    def frames(self, seconds: float = LOOP_S) -> Iterator[np.ndarray]:
        for n in range(int(seconds * FPS)):
            yield self.frame(n / FPS)


def encode_args(out: str, *, fmt: str = "h264", bitrate: str = "4M", gop: int = 50) -> list[str]:
    """ffmpeg reading BGR frames on stdin and writing the clip (raw Annex-B H.264 by default,
    the simulator's clip format: AUDs, parameter sets at every IDR, no B-frames)."""
    w, h = SIZE
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-r", str(FPS), "-i", "pipe:0",
        "-c:v", "libx264", "-preset", "superfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-bf", "0", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate,
        "-x264-params", "aud=1:repeat-headers=1", "-f", fmt, out,
    ]


def write_clip(args: list[str], seconds: float = LOOP_S, **popen: object) -> None:
    """Render ``seconds`` of the street into ffmpeg run with ``args`` (see ``encode_args``)."""
    street = Street()
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE, **popen)  # type: ignore[call-overload]
    assert proc.stdin is not None
    try:
        for img in street.frames(seconds):
            proc.stdin.write(img.tobytes())
        proc.stdin.close()
        err = proc.stderr.read() if proc.stderr else b""
        if proc.wait(timeout=300) != 0:
            raise RuntimeError(f"encoding the street scene failed: {err.decode(errors='replace')[-500:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
