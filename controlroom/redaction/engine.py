"""Redacting one window of footage: find faces and plates, follow them, obscure all but the
requester, encode an MP4 (H.264).

Two passes over the decoded frames (decoding is cheap beside detection, measured in
bench/redaction.py):

1. **Analysis** (:func:`analyse`): CenterFace on every ``face_every``-th frame (default every
   frame), the plate detector (anpr.reader) on every ``plate_every``-th; detections of one kind
   are linked frame to frame into **tracks** (nearest centre within a box's size, allowing
   ``max_gap`` frames without a detection). Saved as JSON so a reviewer can look at any frame's
   boxes and a second run does not detect again.
2. **Render** (:func:`render`): every track is obscured on every frame from its first detection
   to its last (boxes interpolated between detections, held ``pad_frames`` beyond each end,
   enlarged by ``pad`` on each side), except the tracks a reviewer marked: ``requester`` (stays
   visible) and ``keep`` (not a third party: a poster, a false alarm). A box ``add``-ed by hand
   on a frame is followed forwards with OpenCV's MIL tracker until it loses it or
   ``until_frame``. Obscuring is a mosaic of ``MOSAIC`` x ``MOSAIC`` blocks (2 x 2): nothing of
   a face's features survives, and it is plain to a viewer that something was obscured.

Returns the redaction log: what was obscured, on which frames and at what times, how
(automatic: which detector; manual: by whom), and what was deliberately left visible.
Blocking (ffmpeg, inference): call from a thread.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cameras import children
from controlroom.evidence.plan import CameraWindow
from controlroom.evidence.working import Cancelled, Cut, plan_cut
from controlroom.redaction import RedactionError
from controlroom.redaction.faces import Box, FaceDetector
from controlroom.timefmt import local_iso, us_to_iso

ANALYSIS_VERSION = 1  # bump when detection or linking changes: cached analyses are redone
MOSAIC = 2  # blocks across a box; at 4 x 4 CenterFace still found faint "faces" in the blocks (14 in 100 frames)
ENCODE_ARGS = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
Progress = Callable[[int, str], None]  # (frames done in this pass, stage)


@dataclass(frozen=True)
class Options:
    face_every: int = 1  # detect faces on every n-th frame
    plate_every: int = 5  # plates move slowly and the reader is dear: every 5th frame (5 fps)
    max_gap: int = 12  # frames without a detection before a track ends
    pad_frames: int = 6  # a track is obscured this many frames before its first and after its last detection
    pad: float = 0.25  # of the box's size, added on each side
    face_width_px: int = 960  # faces are looked for on the frame scaled to this width


@dataclass
class Track:
    id: int
    kind: str  # face | plate
    boxes: dict[int, Box] = field(default_factory=dict)  # frame -> box where detected

    @property
    def first(self) -> int:
        return min(self.boxes)

    @property
    def last(self) -> int:
        return max(self.boxes)

    def box_at(self, frame: int, pad_frames: int = 0) -> Box | None:
        """Detected, interpolated between detections, or held up to ``pad_frames`` past an end."""
        if frame in self.boxes:
            return self.boxes[frame]
        first, last = self.first, self.last
        if frame < first:
            return self.boxes[first] if first - frame <= pad_frames else None
        if frame > last:
            return self.boxes[last] if frame - last <= pad_frames else None
        before = max(f for f in self.boxes if f < frame)
        after = min(f for f in self.boxes if f > frame)
        k = (frame - before) / (after - before)
        a, b = self.boxes[before], self.boxes[after]
        return tuple(int(round(a[i] + (b[i] - a[i]) * k)) for i in range(4))  # type: ignore[return-value]


@dataclass
class Analysis:
    version: int
    width: int
    height: int
    fps: float
    frames: int
    seek_us: int
    to_us: int
    pieces: list[list[int]]  # [out_start_us, out_end_us, wall_start_us] of the cut
    tracks: list[Track]
    options: dict[str, Any]

    def wall_us(self, frame: int) -> int:
        t = int(frame * 1_000_000 / self.fps)
        for start, end, wall in self.pieces:
            if t < end:
                return wall + max(0, t - start)
        if self.pieces:
            start, end, wall = self.pieces[-1]
            return wall + t - start
        return 0

    def frame_at(self, wall_us: int) -> int:
        for start, end, wall in self.pieces:
            if wall_us < wall + (end - start):
                return max(0, int((start + max(0, wall_us - wall)) * self.fps / 1_000_000))
        return max(0, self.frames - 1)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tracks"] = [{"id": t.id, "kind": t.kind, "boxes": {str(k): list(v) for k, v in t.boxes.items()}}
                          for t in self.tracks]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Analysis:
        tracks = [Track(t["id"], t["kind"], {int(k): tuple(v) for k, v in t["boxes"].items()}) for t in data["tracks"]]
        return cls(**{**data, "tracks": tracks})

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Analysis | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls.from_json(data) if data.get("version") == ANALYSIS_VERSION else None


@dataclass(frozen=True)
class Mark:
    """A reviewer's decision on one frame: ``requester`` or ``keep`` (the track under ``box``
    stays visible), or ``add`` (obscure ``box`` and follow it)."""

    id: int
    kind: str
    frame: int
    box: Box
    by: str
    until_frame: int | None = None
    note: str = ""


# --- decoding and encoding ------------------------------------------------------------------

def probe(path: Path) -> tuple[int, int, float]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height,r_frame_rate",
         "-of", "json", str(path)], capture_output=True, check=False, timeout=30, preexec_fn=children.bind_to_parent())
    streams = json.loads(out.stdout or b"{}").get("streams") or []
    if not streams:
        raise RedactionError(f"{path.name}: no video stream ({out.stderr.decode(errors='replace')[-200:]})")
    num, _, den = str(streams[0].get("r_frame_rate", "25/1")).partition("/")
    fps = float(num) / float(den or 1) if float(den or 1) else 25.0
    return int(streams[0]["width"]), int(streams[0]["height"]), fps if 1 <= fps <= 120 else 25.0


class Source:
    """A window's footage as decoded BGR frames (ffmpeg reading the catalogue's segments)."""

    def __init__(self, cam: CameraWindow, storage_root: Path, workdir: Path) -> None:
        cut = plan_cut(cam, storage_root)
        if cut is None or cut.duration_us <= 0:
            raise RedactionError(f"camera {cam.camera_id}: no recorded footage in the window")
        self.cut: Cut = cut
        self.width, self.height, self.fps = probe(storage_root / cam.segments[0].path)
        workdir.mkdir(parents=True, exist_ok=True)
        self.concat = workdir / f"{cam.slug}-{cam.start_us}.ffconcat"
        self.concat.write_text(cut.concat)
        self.frames_estimate = max(1, int(cut.duration_us * self.fps / 1_000_000))

    def input_args(self) -> list[str]:
        return ["-ss", f"{self.cut.seek_us / 1e6:.6f}", "-to", f"{self.cut.to_us / 1e6:.6f}",
                "-f", "concat", "-safe", "0", "-i", str(self.concat)]

    def frames(self, cancel: threading.Event) -> Iterator[np.ndarray]:
        args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *self.input_args(), "-map", "0:v:0",
                "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{self.width}x{self.height}", "pipe:1"]
        size = self.width * self.height * 3
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=children.bind_to_parent())
        assert proc.stdout is not None and proc.stderr is not None
        try:
            while True:
                if cancel.is_set():
                    raise Cancelled("redaction cancelled")
                data = proc.stdout.read(size)
                if len(data) < size:
                    break
                yield np.frombuffer(data, np.uint8).reshape(self.height, self.width, 3)
            err = proc.stderr.read()
            if proc.wait(timeout=30) != 0:
                raise RedactionError(f"decoding the footage failed: {err.decode(errors='replace')[-300:]}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class Encoder:
    def __init__(self, out: Path, width: int, height: int, fps: float, title: str) -> None:
        args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "pipe:0",
                *ENCODE_ARGS, "-movflags", "+faststart", "-metadata", f"title={title}",
                "-metadata", "comment=Redacted copy for a subject access request", str(out)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=children.bind_to_parent())

    def write(self, frame: np.ndarray) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(frame.tobytes())

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        err = self.proc.stderr.read()
        if self.proc.wait(timeout=120) != 0:
            raise RedactionError(f"encoding the redacted copy failed: {err.decode(errors='replace')[-300:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- analysis -------------------------------------------------------------------------------

def _centre(b: Box) -> tuple[float, float]:
    return b[0] + b[2] / 2, b[1] + b[3] / 2


def _predict(t: Track, frame: int) -> tuple[float, float]:
    """Where the track's centre should be on ``frame``: its last centre moved on at its recent
    velocity (so two people crossing each other keep their own tracks)."""
    frames = sorted(t.boxes)[-6:]
    lx, ly = _centre(t.boxes[frames[-1]])
    if len(frames) < 2:
        return lx, ly
    fx, fy = _centre(t.boxes[frames[0]])
    steps = frames[-1] - frames[0]
    return lx + (lx - fx) / steps * (frame - frames[-1]), ly + (ly - fy) / steps * (frame - frames[-1])


def link(detections: dict[int, list[Box]], kind: str, max_gap: int, first_id: int = 1) -> list[Track]:
    """Frame-to-frame linking: each detection joins the open track (last detection at most
    ``max_gap`` frames old) whose predicted centre is nearest, if within half the box's size,
    pairs taken nearest first; otherwise it starts a track."""
    tracks: list[Track] = []
    for frame in sorted(detections):
        open_tracks = [t for t in tracks if frame - t.last <= max_gap]
        pairs = []
        for i, box in enumerate(detections[frame]):
            cx, cy = _centre(box)
            for t in open_tracks:
                px, py = _predict(t, frame)
                d = math.hypot(cx - px, cy - py)
                last = t.boxes[t.last]
                if d < 0.5 * max(last[2], last[3], box[2], box[3]):
                    pairs.append((d, i, t))
        used_boxes: set[int] = set()
        used_tracks: set[int] = set()
        for _, i, t in sorted(pairs, key=lambda p: p[0]):
            if i in used_boxes or t.id in used_tracks:
                continue
            t.boxes[frame] = detections[frame][i]
            used_boxes.add(i)
            used_tracks.add(t.id)
        for i, box in enumerate(detections[frame]):
            if i not in used_boxes:
                tracks.append(Track(first_id + len(tracks), kind, {frame: box}))
    return tracks


def analyse(source: Source, options: Options, cancel: threading.Event, progress: Progress,
            plates: Any | None = None) -> Analysis:
    """Pass 1: detections on the sampled frames, linked into tracks. ``plates``: an
    anpr.reader.PlateReader, or None to look for faces only."""
    detector = FaceDetector(width_px=options.face_width_px)
    faces: dict[int, list[Box]] = {}
    plate_boxes: dict[int, list[Box]] = {}
    n = 0
    for n, frame in enumerate(source.frames(cancel)):
        if n % options.face_every == 0:
            faces[n] = [f.box for f in detector.detect(frame)]
        if plates is not None and n % options.plate_every == 0:
            plate_boxes[n] = [tuple(r.box) for r in plates.read(frame)]
        progress(n + 1, "finding faces and plates")
    frames = n + 1
    tracks = link(faces, "face", options.max_gap * options.face_every)
    tracks += link(plate_boxes, "plate", options.max_gap * options.plate_every // 2 + options.plate_every,
                   first_id=len(tracks) + 1)
    cut = source.cut
    return Analysis(ANALYSIS_VERSION, source.width, source.height, source.fps, frames, cut.seek_us, cut.to_us,
                    [[p.out_start_us, p.out_end_us, p.wall_start_us] for p in cut.pieces], tracks, asdict(options))


# --- render ---------------------------------------------------------------------------------

def iou(a: Box, b: Box) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def track_under(analysis: Analysis, frame: int, box: Box, pad_frames: int = 0) -> Track | None:
    """The track whose box on ``frame`` best matches ``box`` (overlap, or the centre inside)."""
    best, best_score = None, 0.0
    for t in analysis.tracks:
        b = t.box_at(frame, pad_frames)
        if b is None:
            continue
        score = iou(b, box)
        cx, cy = _centre(b)
        if score == 0 and box[0] <= cx <= box[0] + box[2] and box[1] <= cy <= box[1] + box[3]:
            score = 0.01
        if score > best_score:
            best, best_score = t, score
    return best


def obscure(frame: np.ndarray, box: Box, pad: float) -> None:
    """A mosaic of MOSAIC x MOSAIC blocks over ``box`` enlarged by ``pad`` (in place)."""
    h, w = frame.shape[:2]
    x, y, bw, bh = box
    x0, y0 = max(0, int(x - bw * pad)), max(0, int(y - bh * pad))
    x1, y1 = min(w, int(x + bw * (1 + pad))), min(h, int(y + bh * (1 + pad)))
    if x1 <= x0 or y1 <= y0:
        return
    region = frame[y0:y1, x0:x1]
    small = cv2.resize(region, (MOSAIC, MOSAIC), interpolation=cv2.INTER_AREA)
    frame[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)


@dataclass
class _Follow:
    mark: Mark
    tracker: Any
    scale: float
    last: int
    boxes: int = 0


def render(source: Source, analysis: Analysis, marks: list[Mark], out: Path, *, title: str, actor: str,
           options: Options, cancel: threading.Event, progress: Progress,
           masks: list[list[list[float]]] | None = None) -> list[dict[str, Any]]:
    """Pass 2: the redacted MP4 at ``out``; returns the redaction log's entries. ``masks``: the
    camera's privacy mask polygons (normalised 0..1, storage.masks), painted uniform on every
    frame: the requester holds no ``unmask`` right."""
    polygons = [np.array([[round(x * source.width), round(y * source.height)] for x, y in poly], np.int32)
                for poly in masks or []]
    visible: dict[int, Mark] = {}
    for m in marks:
        if m.kind in ("requester", "keep"):
            t = track_under(analysis, m.frame, m.box, options.pad_frames)
            if t is not None:
                visible[t.id] = m
    hidden = [t for t in analysis.tracks if t.id not in visible]
    adds = sorted((m for m in marks if m.kind == "add"), key=lambda m: m.frame)
    follows: list[_Follow] = []
    done: list[_Follow] = []
    frame = np.empty(0)
    encoder = Encoder(out, source.width, source.height, source.fps, title)
    scale = min(1.0, 960 / source.width)  # trackers follow on a half-size frame: as good, four times cheaper
    n = -1
    try:
        for n, original in enumerate(source.frames(cancel)):
            frame = original.copy()
            small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
            while adds and adds[0].frame <= n:
                m = adds.pop(0)
                tracker = cv2.TrackerMIL.create()
                tracker.init(small, tuple(int(v * scale) for v in m.box))
                follows.append(_Follow(m, tracker, scale, n))
            for f in list(follows):
                if f.last == n and f.boxes == 0:
                    box = f.mark.box
                    ok = True
                else:
                    ok, b = f.tracker.update(small)
                    box = tuple(int(v / scale) for v in b)
                if not ok or (f.mark.until_frame is not None and n > f.mark.until_frame):
                    follows.remove(f)
                    done.append(f)
                    continue
                f.last, f.boxes = n, f.boxes + 1
                obscure(frame, box, options.pad)  # type: ignore[arg-type]
            for t in hidden:
                b = t.box_at(n, options.pad_frames)
                if b is not None:
                    obscure(frame, b, options.pad)
            if polygons:
                cv2.fillPoly(frame, polygons, (128, 128, 128))
            encoder.write(frame)
            progress(n + 1, "obscuring and encoding")
        encoder.close()
    except BaseException:
        encoder.kill()
        raise
    done += follows
    frames = n + 1

    def span(first: int, last: int) -> dict[str, Any]:
        first, last = max(0, first), min(frames - 1, last)
        a, b = analysis.wall_us(first), analysis.wall_us(last)
        return {"frames": [first, last], "from_utc": us_to_iso(a), "to_utc": us_to_iso(b),
                "from_local": local_iso(a), "to_local": local_iso(b)}

    how = {"face": "automatic: CenterFace face detector", "plate": "automatic: the plate detector (anpr.reader)"}
    log: list[dict[str, Any]] = []
    for t in analysis.tracks:
        entry = {"what": t.kind, "track": t.id, **span(t.first - options.pad_frames, t.last + options.pad_frames),
                 "detections": len(t.boxes)}
        if t.id in visible:
            m = visible[t.id]
            log.append({**entry, "action": "left visible",
                        "why": "the requester" if m.kind == "requester" else "not a third party (marked by hand)",
                        "how": f"marked by {m.by} on frame {m.frame}", "by": m.by, "mark": m.id})
        else:
            log.append({**entry, "action": "obscured", "how": how[t.kind], "by": actor})
    for f in done:
        log.append({"what": "box added by hand", "mark": f.mark.id, **span(f.mark.frame, f.last), "action": "obscured",
                    "how": f"drawn by {f.mark.by} on frame {f.mark.frame}, followed by the OpenCV MIL tracker"
                           + (f" to frame {f.mark.until_frame}" if f.mark.until_frame is not None else ""),
                    "by": f.mark.by, "note": f.mark.note})
    if polygons:
        log.append({"what": "privacy mask", "polygons": len(polygons), **span(0, frames - 1), "action": "obscured",
                    "how": "the camera's privacy masks, painted uniform grey on every frame", "by": actor})
    for m in marks:
        if m.kind in ("requester", "keep") and m.id not in {v.id for v in visible.values()}:
            log.append({"what": "mark", "mark": m.id, "action": "no effect",
                        "why": f"no detected face or plate under the {m.kind} box on frame {m.frame}", "by": m.by})
    return log
