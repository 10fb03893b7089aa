"""What a request's windows hold: the segments that cover them, the gaps, the clock flags.

The same plan feeds the approver (``findings``: shown with the request, before anything is
exported) and the package writer. Pure data, no ORM objects, so it can cross into a thread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from controlroom.timefmt import local_iso, us_to_iso
from storage.catalogue import timeline
from storage.evidence import EvidenceRequest
from storage.models import Camera, Site

# Holes between consecutive segments shorter than this are the recorder's own jitter (segment
# boundaries are stamped from wall-clock times), not missing footage.
HOLE_TOLERANCE_US = 500_000


@dataclass(frozen=True)
class SegmentRef:
    id: int
    path: str  # relative to the storage root
    start_us: int
    end_us: int
    bytes: int
    sha256: str
    state: str
    clock_offset_s: float | None
    clock_flag: bool
    codec: str = ""  # as the recorder catalogued it ("h264", "hevc"); "" if unknown


@dataclass(frozen=True)
class Span:
    start_us: int
    end_us: int
    reason: str

    def json(self) -> dict[str, Any]:
        return {
            "from_utc": us_to_iso(self.start_us), "to_utc": us_to_iso(self.end_us),
            "from_local": local_iso(self.start_us), "to_local": local_iso(self.end_us),
            "duration_s": round((self.end_us - self.start_us) / 1e6, 3), "reason": self.reason,
        }


@dataclass
class CameraWindow:
    camera_id: int
    name: str
    site: str
    site_location: str
    position: str
    kind: str
    start_us: int
    end_us: int
    camera_clock_offset_s: float | None
    camera_clock_checked_us: int | None
    camera_clock_flag: bool
    segments: list[SegmentRef] = field(default_factory=list)
    gaps: list[Span] = field(default_factory=list)

    @property
    def slug(self) -> str:
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.name).strip("-")[:40]
        return f"cam{self.camera_id}-{safe or 'camera'}"

    @property
    def master_bytes(self) -> int:
        return sum(s.bytes for s in self.segments)

    @property
    def window_bytes_estimate(self) -> int:
        """Bytes of the segments that fall inside the window (the working copy's size)."""
        total = 0
        for s in self.segments:
            overlap = min(s.end_us, self.end_us) - max(s.start_us, self.start_us)
            if s.end_us > s.start_us and overlap > 0:
                total += s.bytes * overlap // (s.end_us - s.start_us)
        return total

    def findings(self) -> dict[str, Any]:
        flagged = [s for s in self.segments if s.clock_flag]
        offsets = [abs(s.clock_offset_s) for s in self.segments if s.clock_offset_s is not None]
        recorded_us = sum(max(0, min(s.end_us, self.end_us) - max(s.start_us, self.start_us)) for s in self.segments)
        return {
            "camera_id": self.camera_id, "camera": self.name, "site": self.site,
            "from_utc": us_to_iso(self.start_us), "to_utc": us_to_iso(self.end_us),
            "from_local": local_iso(self.start_us), "to_local": local_iso(self.end_us),
            "segments": len(self.segments), "bytes": self.master_bytes,
            "recorded_s": round(recorded_us / 1e6, 3),
            "window_s": round((self.end_us - self.start_us) / 1e6, 3),
            "missing": not self.segments,
            "gaps": [g.json() for g in self.gaps],
            "recovered_segments": sum(1 for s in self.segments if s.state == "recovered"),
            "clock": {
                "camera_offset_s": self.camera_clock_offset_s,
                "camera_checked_utc": us_to_iso(self.camera_clock_checked_us),
                "camera_flagged": self.camera_clock_flag,
                "segments_flagged": len(flagged),
                "max_abs_segment_offset_s": max(offsets) if offsets else None,
            },
        }


def holes(segments: list[SegmentRef], start_us: int, end_us: int) -> list[Span]:
    """Parts of [start_us, end_us) that no segment covers (beyond the tolerance)."""
    out: list[Span] = []
    cursor = start_us
    for s in segments:
        if s.start_us - cursor > HOLE_TOLERANCE_US:
            out.append(Span(cursor, min(s.start_us, end_us), "no recorded segment"))
        cursor = max(cursor, s.end_us)
    if end_us - cursor > HOLE_TOLERANCE_US:
        out.append(Span(cursor, end_us, "no recorded segment"))
    return out


async def build_plan(session: AsyncSession, req: EvidenceRequest) -> list[CameraWindow]:
    plan: list[CameraWindow] = []
    for w in req.windows:
        cam = await session.get(Camera, w.camera_id)
        if cam is None:  # pragma: no cover - cameras are never deleted while referenced
            continue
        site = await session.get(Site, cam.site_id) if cam.site_id else None
        tl = await timeline(session, cam.id, w.start_us, w.end_us)
        segs = [
            SegmentRef(s.id, s.path, s.start_us, s.end_us, s.bytes, s.sha256, s.state, s.clock_offset_s, s.clock_flag,
                       s.codec)
            for s in tl.segments
        ]
        gaps = [
            Span(max(g.start_us, w.start_us), min(g.end_us if g.end_us is not None else w.end_us, w.end_us),
                 f"recorder gap: {g.reason}" if g.reason else "recorder gap")
            for g in tl.gaps
        ]
        plan.append(CameraWindow(
            camera_id=cam.id, name=cam.name, site=site.name if site else "", site_location=site.location if site else "",
            position=cam.position, kind=cam.kind, start_us=w.start_us, end_us=w.end_us,
            camera_clock_offset_s=cam.clock_offset_s, camera_clock_checked_us=cam.clock_checked_us,
            camera_clock_flag=cam.clock_flag, segments=segs,
            gaps=sorted(gaps + holes(segs, w.start_us, w.end_us), key=lambda g: (g.start_us, g.end_us)),
        ))
    return plan


def findings(plan: list[CameraWindow]) -> dict[str, Any]:
    cams = [c.findings() for c in plan]
    return {
        "windows": cams,
        "total_bytes": sum(c.master_bytes for c in plan),
        "any_gaps": any(c["gaps"] for c in cams),
        "any_missing": any(c["missing"] for c in cams),
        "any_clock_flags": any(c["clock"]["segments_flagged"] or c["clock"]["camera_flagged"] for c in cams),
    }


def plan_to_dict(plan: list[CameraWindow]) -> list[dict[str, Any]]:
    return [asdict(c) for c in plan]
