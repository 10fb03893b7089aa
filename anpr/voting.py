"""One read per vehicle: the reads of a plate over several frames, voted character by character.

A camera sees a passing vehicle in several frames and the reader may misread a character in
some of them. ``PlateVoter`` (one per camera) groups successive reads of the same plate into a
track and, once the plate has not been seen for ``gap_s`` or the track has ``max_frames``
frames, emits one ``VotedRead``: for each position, the character with the highest summed
confidence among the reads of the most common length. A plate still in view after its track
was emitted is absorbed (not read again) until it has been gone for ``gap_s``.

Pure and deterministic: times are given by the caller (``at_us``, integer UTC microseconds,
as storage keeps them), nothing here reads a clock. Not thread-safe: one caller per camera.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from anpr.reader import PlateRead


@dataclass(frozen=True)
class VotedRead:
    """A vehicle's registration, voted over ``frames`` frames seen from ``first_us`` to ``last_us``.

    ``best`` is the single most confident frame read of the voted text (its box locates the
    plate in ``best_frame``, the payload given with that frame, e.g. the image to store).
    """

    text: str
    confidence: float
    char_confidences: list[float]
    format: str
    frames: int
    first_us: int
    last_us: int
    best: PlateRead
    best_at_us: int
    best_frame: Any = None


@dataclass
class _Track:
    reads: list[tuple[int, PlateRead, Any]] = field(default_factory=list)
    last_us: int = 0
    emitted: bool = False

    def consensus(self) -> str:
        return max(self.reads, key=lambda r: r[1].confidence)[1].text


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (plates are short: the plain O(n*m) table is fine)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def same_plate(a: str, b: str) -> bool:
    """Whether two reads are probably of the same plate (at most a third of it misread)."""
    return edit_distance(a, b) <= max(1, min(len(a), len(b)) // 3)


def vote(reads: list[PlateRead]) -> tuple[str, list[float]]:
    """The voted text and its per-character confidences (0..1: agreeing confidence / reads)."""
    by_length: dict[int, list[PlateRead]] = defaultdict(list)
    for r in reads:
        by_length[len(r.text)].append(r)
    group = max(by_length.values(), key=lambda g: (sum(r.confidence for r in g), len(g)))
    chars: list[str] = []
    confs: list[float] = []
    for i in range(len(group[0].text)):
        votes: dict[str, float] = defaultdict(float)
        for r in group:
            c = r.char_confidences[i] if i < len(r.char_confidences) else r.confidence
            votes[r.text[i]] += c
        ch, total = max(votes.items(), key=lambda kv: (kv[1], kv[0]))
        chars.append(ch)
        confs.append(round(min(1.0, total / len(group)), 4))
    return "".join(chars), confs


class PlateVoter:
    """Turns one camera's per-frame reads into one read per vehicle.

    ``gap_s``: a plate unseen this long has left (its vote is emitted). ``max_frames``: a
    track is voted and emitted as soon as it has this many frames, without waiting for the
    gap (bounds the delay to an alert for a vehicle that stops in view). ``min_frames``: tracks
    with fewer frames are dropped as noise when they end (1 keeps every read).
    """

    def __init__(self, gap_s: float = 1.5, max_frames: int = 8, min_frames: int = 1) -> None:
        if gap_s <= 0 or max_frames < 1 or min_frames < 1:
            raise ValueError("gap_s must be > 0, max_frames and min_frames >= 1")
        self.gap_us = int(gap_s * 1_000_000)
        self.max_frames = max_frames
        self.min_frames = min_frames
        self._tracks: list[_Track] = []

    @property
    def pending(self) -> int:
        """Tracks not yet emitted."""
        return sum(not t.emitted for t in self._tracks)

    def add(self, reads: list[PlateRead], at_us: int, frame: Any = None) -> list[VotedRead]:
        """Feed one frame's reads (possibly none) taken at ``at_us``; returns finished votes.

        ``frame`` is any payload kept with these reads (e.g. the image) and handed back as
        ``VotedRead.best_frame`` if this frame holds the best read.
        """
        out = self.flush(at_us)
        for read in reads:
            track = self._match(read.text)
            if track is None:
                track = _Track()
                self._tracks.append(track)
            track.last_us = max(track.last_us, at_us)
            if track.emitted:
                continue  # the vehicle is still in view after its read was given
            track.reads.append((at_us, read, frame))
            if len(track.reads) >= self.max_frames:
                out.append(self._emit(track))
        return out

    def flush(self, now_us: int | None = None) -> list[VotedRead]:
        """Votes of the tracks unseen for ``gap_s`` at ``now_us`` (None: every pending track)."""
        out: list[VotedRead] = []
        keep: list[_Track] = []
        for track in self._tracks:
            gone = now_us is None or now_us - track.last_us > self.gap_us
            if not gone:
                keep.append(track)
            elif not track.emitted and len(track.reads) >= self.min_frames:
                out.append(self._emit(track))
        self._tracks = keep
        return out

    def _match(self, text: str) -> _Track | None:
        candidates = [t for t in self._tracks if t.reads and same_plate(text, t.consensus())]
        if not candidates:
            return None
        return min(candidates, key=lambda t: edit_distance(text, t.consensus()))

    def _emit(self, track: _Track) -> VotedRead:
        track.emitted = True
        reads = [r for _, r, _ in track.reads]
        text, confs = vote(reads)
        agreeing = [(at, r, f) for at, r, f in track.reads if r.text == text]
        best_at, best, best_frame = max(agreeing or track.reads, key=lambda x: x[1].confidence)
        return VotedRead(
            text=text,
            confidence=round(sum(confs) / len(confs), 4) if confs else 0.0,
            char_confidences=confs,
            format=best.format,
            frames=len(track.reads),
            first_us=min(at for at, _, _ in track.reads),
            last_us=max(at for at, _, _ in track.reads),
            best=best,
            best_at_us=best_at,
            best_frame=best_frame,
        )
