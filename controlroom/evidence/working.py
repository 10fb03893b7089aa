"""The playable working copy: one MP4 (H.264) per camera, cut to the window, with a subtitle
track (mov_text, shown by default) giving the camera, the UTC time and the Europe/London time
with its offset, second by second. Also written as a sidecar ``.srt`` that players load by name.

Why a subtitle track and not burnt-in text: burning in means decoding and re-encoding every
frame (drawtext + libx264). docs/design/evidence.md has the measurement; for an hour of four
cameras on two cores it takes far longer than the copy, and the picture would no longer be the
recorded picture. ``-c copy`` keeps every frame as recorded; the cut snaps to the keyframe at or
before the window start (within one GOP, 2 s on our cameras).

A camera that records H.265 (HEVC) is the exception: many ordinary PCs cannot play HEVC (no
licence for its decoder in the operating system, or no hardware support), so its working copy is
re-encoded to H.264 (libx264 ``veryfast``, CRF 18: visually the recorded picture, at a cost in
CPU measured in docs/design/evidence.md). The masters stay byte for byte the recorded files;
the manifest says the working copy was re-encoded, and from what.

Blocking (runs ffmpeg): call from a thread.
"""

from __future__ import annotations

import errno
import json
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cameras import children
from cameras import masking as paint
from controlroom.evidence.plan import CameraWindow
from controlroom.timefmt import LONDON

SECOND_US = 1_000_000
# What every ordinary PC plays: anything else recorded is re-encoded for the working copy.
PLAYABLE_CODECS = ("h264",)
# Visually the recorded picture; veryfast keeps an hour of a 720p camera within minutes.
REENCODE_ARGS = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]


class WorkingCopyError(Exception):
    pass


class Cancelled(Exception):
    """The export was cancelled."""


@dataclass(frozen=True)
class Piece:
    """One segment's share of the output: output time [out_start_us, out_end_us) shows wall
    time from ``wall_start_us``."""

    out_start_us: int
    out_end_us: int
    wall_start_us: int
    after_gap_s: float


@dataclass(frozen=True)
class Cut:
    concat: str  # ffconcat file text
    seek_us: int  # input -ss on the concatenated timeline
    to_us: int  # input -to on the concatenated timeline
    pieces: list[Piece]
    codecs: tuple[str, ...] = ()  # the recorded codecs of the window's segments ("h264", "hevc")

    @property
    def reencode(self) -> bool:
        """Whether the working copy must be re-encoded to H.264 to play on an ordinary PC."""
        return any(c not in PLAYABLE_CODECS for c in self.codecs)

    @property
    def duration_us(self) -> int:
        return self.to_us - self.seek_us


def plan_cut(cam: CameraWindow, storage_root: Path) -> Cut | None:
    """Concatenate the window's segments (each given its catalogue duration, so the timeline
    matches the catalogue) and say where the window starts and ends on that timeline."""
    segs = cam.segments
    if not segs:
        return None
    lines = ["ffconcat version 1.0"]
    offsets: list[int] = []
    pos = 0
    for s in segs:
        path = str((storage_root / s.path).resolve()).replace("'", "'\\''")
        # A small probe per file: the stream's parameters are in the Matroska header, and the
        # default probe (5 s of packets, some decoded) took half of ffmpeg's CPU for the same
        # output, byte for byte (measured on 20 segments of 30 s: 0.48 s against 0.20 s user).
        lines += [f"file '{path}'", "option probesize 65536", f"duration {(s.end_us - s.start_us) / 1e6:.6f}"]
        offsets.append(pos)
        pos += s.end_us - s.start_us

    def to_timeline(wall_us: int) -> int:
        for s, off in zip(segs, offsets, strict=True):
            if wall_us < s.start_us:
                return off
            if wall_us < s.end_us:
                return off + wall_us - s.start_us
        return pos

    codecs = tuple(sorted({s.codec or probe_codec(storage_root / s.path) for s in segs}))
    seek, to = to_timeline(cam.start_us), to_timeline(cam.end_us)
    pieces: list[Piece] = []
    prev_end = cam.start_us
    for s, off in zip(segs, offsets, strict=True):
        a, b = max(seek, off), min(to, off + s.end_us - s.start_us)
        if b <= a:
            prev_end = max(prev_end, s.end_us)
            continue
        gap_s = (s.start_us - prev_end) / 1e6 if s.start_us > prev_end else 0.0
        pieces.append(Piece(a - seek, b - seek, s.start_us + (a - off), gap_s))
        prev_end = max(prev_end, s.end_us)
    return Cut("\n".join(lines) + "\n", seek, to, pieces, codecs)


def probe_codec(path: Path) -> str:
    """The video codec of a recorded file (for segments catalogued without one)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name", "-of", "json",
         str(path)], capture_output=True, check=False, timeout=30, preexec_fn=children.bind_to_parent())
    streams = json.loads(out.stdout or b"{}").get("streams") or [{}]
    codec = streams[0].get("codec_name", "")
    if not codec:
        raise WorkingCopyError(f"{path.name}: no video stream found ({out.stderr.decode(errors='replace')[-200:]})")
    return codec


def _srt_time(us: int) -> str:
    ms = us // 1000
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _label(cam: CameraWindow, wall_us: int) -> str:
    utc = datetime.fromtimestamp(wall_us // SECOND_US, UTC)
    local = utc.astimezone(LONDON)
    offset = local.strftime("%z")
    where = f" - {cam.site}" if cam.site else ""
    return (f"Camera {cam.camera_id} {cam.name}{where}\n"
            f"{utc:%Y-%m-%d %H:%M:%S} UTC | {local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({offset[:3]}:{offset[3:]})")


def subtitles(cam: CameraWindow, cut: Cut) -> str:
    """SRT cues, one per wall-clock second, split where the footage jumps over a gap."""
    cues: list[str] = []
    for piece in cut.pieces:
        t = piece.out_start_us
        while t < piece.out_end_us:
            wall = piece.wall_start_us + (t - piece.out_start_us)
            nxt = min(piece.out_end_us, t + SECOND_US - wall % SECOND_US)
            text = _label(cam, wall)
            if piece.after_gap_s and t - piece.out_start_us < 3 * SECOND_US:
                text += f"\n[footage resumes after a {piece.after_gap_s:.1f} s gap]"
            cues.append(f"{len(cues) + 1}\n{_srt_time(t)} --> {_srt_time(nxt)}\n{text}\n")
            t = nxt
    return "\n".join(cues)


class WorkingJob:
    """One camera's working copy being made by ffmpeg in the background (so the package writer
    can copy masters meanwhile). ``wait`` returns ``(mp4, srt, cut)``."""

    def __init__(self, cam: CameraWindow, storage_root: Path, workdir: Path, mask_png: Path | None = None) -> None:
        self.cam = cam
        self.masked = mask_png is not None
        self.cut = plan_cut(cam, storage_root)
        self.proc: subprocess.Popen[bytes] | None = None
        if self.cut is None or self.cut.duration_us <= 0:
            return
        workdir.mkdir(parents=True, exist_ok=True)
        self.concat = workdir / f"{cam.slug}.ffconcat"
        self.concat.write_text(self.cut.concat)
        self.srt = workdir / f"{cam.slug}.srt"
        self.srt.write_text(subtitles(cam, self.cut), encoding="utf-8")
        self.out = workdir / f"{cam.slug}.mp4"
        title = f"Camera {cam.camera_id} {cam.name}" + (f", {cam.site}" if cam.site else "")
        # Privacy masks (cameras.masking) are painted in: decoded, overlaid, re-encoded.
        video = ["-map", "0:v:0"]
        codec = REENCODE_ARGS if self.cut.reencode else ["-c:v", "copy"]
        if mask_png is not None:
            video = [*paint.ffmpeg_args(mask_png, mask_index=2), "-map", "[masked]"]
            codec = REENCODE_ARGS
        # No +faststart: it rewrites the whole file a second time; players read moov at the end.
        args = [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-ss", f"{self.cut.seek_us / 1e6:.6f}", "-to", f"{self.cut.to_us / 1e6:.6f}",
            "-f", "concat", "-safe", "0", "-i", str(self.concat),
            "-i", str(self.srt),
            *video, "-map", "1:0", *codec,
            "-c:s", "mov_text",
            "-disposition:s:0", "default", "-metadata:s:s:0", "language=eng",
            "-metadata", f"title={title}", "-metadata", "comment=Working copy; master files are in master/",
            str(self.out),
        ]
        # ffmpeg's messages go to the system temporary folder, not the export disk (which may
        # be the disk that filled up: the message saying so must still be readable).
        self.log = tempfile.TemporaryFile()
        # Killed if the service dies (even by SIGKILL): a half-made working copy serves nobody,
        # and the export is restarted from the beginning (ExportRunner.recover).
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
                                     preexec_fn=children.bind_to_parent())

    def finished(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait(self, cancel: threading.Event, *, timeout_s: float = 3600) -> tuple[Path, Path, Cut] | None:
        if self.proc is None or self.cut is None:
            return None
        cam = self.cam
        waited_s = 0.0
        try:
            while True:
                try:
                    self.proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    waited_s += 0.2
                    if cancel.is_set():
                        raise Cancelled("export cancelled") from None
                    if waited_s > timeout_s:
                        raise WorkingCopyError(f"camera {cam.camera_id}: ffmpeg took over {timeout_s:.0f} s") from None
        finally:
            self.kill()
        self.log.seek(0)
        stderr = self.log.read(65536).decode(errors="replace")
        self.log.close()
        self.concat.unlink(missing_ok=True)
        if self.proc.returncode != 0:
            if "No space left on device" in stderr:
                raise OSError(errno.ENOSPC, f"camera {cam.camera_id}: no space left on device for the working copy")
            tail = " | ".join(stderr.strip().splitlines()[-3:])
            raise WorkingCopyError(f"camera {cam.camera_id}: ffmpeg failed making the working copy: {tail}")
        return self.out, self.srt, self.cut


def make_working_copy(cam: CameraWindow, storage_root: Path, workdir: Path, cancel: threading.Event,
                      *, timeout_s: float = 3600, mask_png: Path | None = None) -> tuple[Path, Path, Cut] | None:
    """Write ``<slug>.mp4`` and ``<slug>.srt`` in ``workdir``; None when there is no footage.
    ``mask_png``: the camera's privacy masks, painted in (cameras.masking)."""
    return WorkingJob(cam, storage_root, workdir, mask_png).wait(cancel, timeout_s=timeout_s)
