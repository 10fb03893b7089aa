"""Pre-encoded clips for the simulated fixed cameras, made once with ffmpeg and cached.

Encoding a distinct 10 s 1080p clip per camera costs about 7 s of machine time, far too slow
for 100 cameras, so (see docs/design/simulator.md):

- main streams (1920x1080, ~4 Mb/s) come from a pool of ``len(MAIN_SCENES)`` shared scenes,
  each labelled with its scene letter; camera *i* serves scene ``i % len(MAIN_SCENES)``;
- sub streams (640x360, ~0.6 Mb/s) are encoded per camera with the camera's name burnt in
  (about 0.5 s each).

Every clip is raw Annex-B H.264 with access unit delimiters (so the server can split it into
frames without parsing), no B-frames, an IDR every 50 frames (2 s at 25 fps) and a length that
is a whole number of GOPs, so looping it gives a valid stream. A clip's file name is a hash of
everything that shapes it: changing the recipe makes a new file, never a stale hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path

from cameras import CameraError, children

log = logging.getLogger(__name__)

RECIPE_VERSION = 1
FPS = 25
GOP_FRAMES = 50
CLIP_S = 10
MAIN_SIZE = (1920, 1080)
SUB_SIZE = (640, 360)
MAIN_BITRATE = "4M"
SUB_BITRATE = "600k"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

# Sources with motion and detail enough for a realistic bitrate at the target rate.
# (lavfi source, filters applied to it)
MAIN_SCENES = [
    ("testsrc2=size={w}x{h}:rate={fps}", []),
    ("testsrc2=size={w}x{h}:rate={fps}", ["hue=h=120", "hflip"]),
    ("testsrc=size={w}x{h}:rate={fps}", []),
    ("testsrc2=size={w}x{h}:rate={fps}", ["hue=h=240", "vflip"]),
]


def _safe_text(text: str) -> str:
    """Text for drawtext: our names only use letters, digits and spaces; drop anything else."""
    return "".join(c if c.isalnum() or c in " -" else " " for c in text)


def _drawtext(text: str, size: int, x: str, y: str) -> str:
    return (
        f"drawtext=fontfile={FONT}:text='{_safe_text(text)}':fontsize={size}:fontcolor=white"
        f":box=1:boxcolor=black@0.55:boxborderw=8:x={x}:y={y}"
    )


def _encode_args(source: str, filters: list[str], bitrate: str, out: Path) -> list[str]:
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"{source}:duration={CLIP_S}",
        "-vf", ",".join(filters),
        "-c:v", "libx264", "-preset", "superfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-bf", "0", "-g", str(GOP_FRAMES), "-keyint_min", str(GOP_FRAMES), "-sc_threshold", "0",
        "-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate,
        "-x264-params", "aud=1:repeat-headers=1",
        "-frames:v", str(CLIP_S * FPS),
        "-f", "h264", str(out),
    ]


def main_recipe(scene: int) -> tuple[str, list[str], str]:
    w, h = MAIN_SIZE
    source, filters = MAIN_SCENES[scene % len(MAIN_SCENES)]
    label = f"Scene {chr(65 + scene % len(MAIN_SCENES))}  main {w}x{h}"
    return source.format(w=w, h=h, fps=FPS), [*filters, _drawtext(label, 56, "40", "h-th-40")], MAIN_BITRATE


def sub_recipe(camera: str, scene: int) -> tuple[str, list[str], str]:
    w, h = SUB_SIZE
    source, filters = MAIN_SCENES[scene % len(MAIN_SCENES)]
    return source.format(w=w, h=h, fps=FPS), [*filters, _drawtext(camera, 36, "(w-tw)/2", "(h-th)/2")], SUB_BITRATE


def clip_path(cache_dir: Path, recipe: tuple[str, list[str], str]) -> Path:
    key = json.dumps([RECIPE_VERSION, FPS, GOP_FRAMES, CLIP_S, *recipe]).encode()
    return cache_dir / f"clip-{hashlib.sha256(key).hexdigest()[:20]}.h264"


async def _encode(recipe: tuple[str, list[str], str], out: Path, limit: asyncio.Semaphore) -> None:
    async with limit:
        if await asyncio.to_thread(out.exists):  # another simulation made it meanwhile
            return
        tmp = out.with_name(f"{out.stem}.{os.getpid()}.{id(recipe)}.tmp")
        source, filters, bitrate = recipe
        proc = await children.spawn(
            *_encode_args(source, filters, bitrate, tmp), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await proc.communicate()
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            tmp.unlink(missing_ok=True)
            raise
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise CameraError(f"encoding a simulator clip failed: {err.decode(errors='replace')[-500:]}")
        os.replace(tmp, out)  # atomic: concurrent simulations never see half a clip


def _missing(cache_dir: Path, paths: list[Path], recipes: list) -> dict[Path, tuple[str, list[str], str]]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for stale in cache_dir.glob("*.tmp"):  # left by a process killed while encoding
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > 600:
                stale.unlink()
    return {p: r for p, r in zip(paths, recipes, strict=True) if not p.exists()}


async def ensure_clips(cache_dir: Path, recipes: list[tuple[str, list[str], str]], jobs: int = 2) -> list[Path]:
    """The cached clip of each recipe, encoding the missing ones (``jobs`` at a time)."""
    paths = [clip_path(cache_dir, r) for r in recipes]
    missing = await asyncio.to_thread(_missing, cache_dir, paths, recipes)
    if missing:
        log.info("simulator: encoding %d clip(s) into %s (once; cached afterwards)", len(missing), cache_dir)
        limit = asyncio.Semaphore(jobs)
        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels (and reaps) the rest
                for p, r in missing.items():
                    group.create_task(_encode(r, p, limit))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the first failure, as a CameraError
    return paths
