"""Footage of the simulator's street (pedestrians with faces) as recorded segments, for the
redaction tests: the simulator's own scene (simulator.pedestrians) encoded by ffmpeg and cut
into Matroska segments the way the recorder writes them (H.264, keyframe every 2 s)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from simulator import pedestrians

SEGMENT_S = 2


def street_segments(folder: Path, seconds: int = 4) -> list[Path]:
    """``seconds`` of the street from t = 0, in ``SEGMENT_S`` s MKV segments (made once per folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = sorted(folder.glob("seg*.mkv"))
    if done:
        return done
    clip = folder / "street.h264"
    pedestrians.write_clip(pedestrians.encode_args(str(clip)), seconds)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-r", str(pedestrians.FPS), "-i", str(clip),
                    "-c", "copy", "-f", "segment", "-segment_time", str(SEGMENT_S), "-reset_timestamps", "1",
                    str(folder / "seg%03d.mkv")], check=True, timeout=120)
    clip.unlink()
    return sorted(folder.glob("seg*.mkv"))
