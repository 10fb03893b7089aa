"""JSON shapes shared by the API and the CLI's --json output (one place for each)."""

from __future__ import annotations

import functools
from typing import Any
from zoneinfo import ZoneInfo

from controlroom.timefmt import us_to_iso
from storage.catalogue import Timeline
from storage.inventory import camera_public
from storage.models import Camera


def camera_json(cam: Camera, sites: dict[int, str]) -> dict[str, Any]:
    data = camera_public(cam, sites.get(cam.site_id) if cam.site_id else None)
    for key in ("state_since", "last_segment"):
        data[key] = us_to_iso(data.pop(f"{key}_us"))
    return data


def timeline_json(tl: Timeline, display_tz: str = "UTC") -> dict[str, Any]:
    tz = ZoneInfo(display_tz)
    # Each time is formatted once: a segment's end is the next one's start, and formatting was
    # most of the cost of a camera-day's 2,880 segments (measured: 32 -> 21 ms with json.dumps).
    iso = functools.cache(us_to_iso)
    iso_local = functools.cache(lambda us: us_to_iso(us, tz))

    return {
        "segments": [
            {
                "id": s.id,
                "start": iso(s.start_us),
                "end": iso(s.end_us),
                "start_local": iso_local(s.start_us),
                "end_local": iso_local(s.end_us),
                "duration_s": round((s.end_us - s.start_us) / 1e6, 3),
                "bytes": s.bytes,
                "sha256": s.sha256,
                "path": s.path,
                "codec": s.codec,
                "width": s.width,
                "height": s.height,
                "state": s.state,
                "clock_offset_s": s.clock_offset_s,
                "clock_flag": s.clock_flag,
            }
            for s in tl.segments
        ],
        "gaps": [
            {"start": us_to_iso(g.start_us), "end": us_to_iso(g.end_us), "reason": g.reason}
            for g in tl.gaps
        ],
    }
