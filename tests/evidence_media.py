"""Real recorded footage for the evidence tests, without running cameras.

Segments are made the way the recorder makes them (H.264 in Matroska, 25 fps, a keyframe every
2 s, timestamps reset per segment) by ffmpeg from lavfi's testsrc2, once per test session, then
committed to a test store with storage.catalogue.commit_segment, like the recorder does.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.catalogue import NewSegment, commit_segment
from storage.db import now_us, transaction
from storage.models import Camera, Gap, Segment, Site

SEGMENT_S = 6
GOP_S = 2
SEGMENT_US = SEGMENT_S * 1_000_000


def make_segments(folder: Path, count: int, *, size: str = "320x240", seconds: int = SEGMENT_S,
                  encoder: str = "libx264") -> list[Path]:
    """``count`` real MKV segments of ``seconds`` each (one ffmpeg run); ``encoder="libx265"``
    for H.265 footage."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
         "-t", str(count * seconds), "-c:v", encoder, "-preset", "ultrafast",
         *(["-x265-params", "log-level=error"] if encoder == "libx265" else []), "-g", str(GOP_S * 25),
         "-keyint_min", str(GOP_S * 25), "-sc_threshold", "0", "-pix_fmt", "yuv420p",
         "-f", "segment", "-segment_time", str(seconds), "-reset_timestamps", "1", str(folder / "seg%03d.mkv")],
        check=True, timeout=120,
    )
    return sorted(folder.glob("seg*.mkv"))


@dataclass
class Footage:
    camera_ids: list[int]
    base_us: int  # start of the first segment of every camera
    segments: dict[int, list[Segment]]


async def add_cameras(sessions: async_sessionmaker[AsyncSession], names: list[str]) -> list[int]:
    async with transaction(sessions) as session:
        site = (await session.execute(select(Site).where(Site.name == "Town Centre"))).scalar_one_or_none()
        if site is None:
            site = Site(name="Town Centre", location="High Street, Anytown")
            session.add(site)
            await session.flush()
        cams = [Camera(name=n, site_id=site.id, position=f"{n} column, facing north", clock_offset_s=0.2,
                       clock_checked_us=now_us()) for n in names]
        session.add_all(cams)
        await session.flush()
        return [c.id for c in cams]


async def catalogue_footage(
    sessions: async_sessionmaker[AsyncSession],
    root: Path,
    sources: list[Path],
    *,
    cameras: int = 2,
    skip: dict[int, set[int]] | None = None,
    base_us: int | None = None,
    clock_flag: dict[int, set[int]] | None = None,
    codec: str = "h264",
) -> Footage:
    """Cameras "Camera A", "Camera B"...; each records the source segments back to back from
    ``base_us``, except the indexes in ``skip[camera_index]`` (holes in its recording)."""
    ids = await add_cameras(sessions, [f"Camera {chr(65 + i)}" for i in range(cameras)])
    base = base_us if base_us is not None else (now_us() // 1_000_000 - 3600) * 1_000_000
    segs: dict[int, list[Segment]] = {}
    for n, cam_id in enumerate(ids):
        incoming = root / str(cam_id) / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        for i, src in enumerate(sources):
            if i in (skip or {}).get(n, set()):
                continue
            tmp = incoming / f"{i}.mkv"
            shutil.copyfile(src, tmp)
            start = base + i * SEGMENT_US
            flagged = i in (clock_flag or {}).get(n, set())
            seg = await commit_segment(sessions, root, tmp, NewSegment(
                cam_id, start, start + SEGMENT_US, codec=codec, width=320, height=240,
                clock_offset_s=2.5 if flagged else 0.1, clock_flag=flagged))
            segs.setdefault(cam_id, []).append(seg)
    return Footage(ids, base, segs)


async def add_gap(sessions: async_sessionmaker[AsyncSession], camera_id: int, start_us: int, end_us: int,
                  reason: str) -> None:
    async with transaction(sessions) as session:
        session.add(Gap(camera_id=camera_id, start_us=start_us, end_us=end_us, reason=reason))
