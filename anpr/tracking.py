"""Vehicles from per-frame reads: which reads are of one plate, what they agree on, and when a
vehicle is committed (once).

``VehicleTracker`` groups one camera's per-frame reads into vehicles (``same_vehicle``) and
commits each once with the text the frames agree on (``vote``, whose per-character step is
``fuse_characters`` when the reads carry the recogniser's per-character probabilities, else
``vote_characters``). Pure: no clock, no threads, no OpenCV, no I/O; the tests drive it with
frame times (tests/test_anpr_tracking.py), and the import contract in pyproject.toml keeps it so.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from anpr.grammar import Grammar

# ---------------------------------------------------------------------------------------------
# Texts: one plate or two, and the per-character vote


class _Read(Protocol):
    text: str
    confidence: float
    char_confidences: list[float]


class _ReadWithAlternatives(_Read, Protocol):
    alternatives: list[dict[str, float]]


# A symbol a frame did not list among a character's likeliest counts as this probability there:
# that frame's evidence against it, not a veto (the reader lists the best four).
ABSENT = 0.01


def _last_row(a: str, b: str, *, free_start: bool) -> list[int]:
    """The last row of the edit-distance table of ``a`` against ``b`` (plates are short: the
    plain O(n*m) table is fine). ``free_start``: ``a`` may begin anywhere in ``b``."""
    prev = [0] * (len(b) + 1) if free_start else list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance."""
    return _last_row(a, b, free_start=False)[-1]


def substring_distance(short: str, long_: str) -> int:
    """The fewest edits that make ``short`` a substring of ``long_`` (Sellers' approximate
    matching: the edit-distance table with a free start and end in ``long_``)."""
    return min(_last_row(short, long_, free_start=True))


def same_vehicle(a: str, b: str) -> bool:
    """Two reads of one plate: a few characters apart (misread), or one inside the other (the
    plate partly in view reads as a shorter, often still valid, registration: ``19JX`` of
    ``FJ19JXY`` was seen with the simulator), with one character misread if the piece has 5 or
    more (``ID815`` of ``WGD815C``, the G half in view read as I; ``FKG3A`` of ``FK63AFH``, the
    6 read as G: both seen in CI, each committed as a second vehicle before this rule)."""
    short, long_ = sorted((a, b), key=len)
    if len(short) >= 3 and substring_distance(short, long_) <= (1 if len(short) >= 5 else 0):
        return True
    return edit_distance(a, b) <= max(1, len(short) // 3)


def vote_characters(reads: Sequence[_Read]) -> tuple[str, list[float]]:
    """The voted text and its per-character confidences (0..1: agreeing confidence / reads):
    among the reads of the most common length, for each position the character with the
    highest summed confidence."""
    by_length: dict[int, list[_Read]] = defaultdict(list)
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


def fuse_characters(reads: Sequence[_ReadWithAlternatives], grammar: Grammar | None = None) -> tuple[str, list[float], str] | None:
    """The text of reads of one length chosen from their per-character probabilities
    multiplied across frames (independent looks at one plate: a character each frame gives
    0.4 among many wins once the frames are put together), the grammar's most probable string
    when one is given: (text, per-character probability, format), or None if fewer than two
    reads carry probabilities for every character."""
    usable = [r for r in reads if r.alternatives and len(r.alternatives) == len(r.text) == len(reads[0].text)]
    if len(usable) < 2:
        return None
    dists: list[dict[str, float]] = []
    for i in range(len(usable[0].text)):
        symbols = set().union(*(r.alternatives[i] for r in usable))
        logs = {c: sum(math.log(max(r.alternatives[i].get(c, 0.0), ABSENT)) for r in usable) for c in symbols}
        top = max(logs.values())
        weights = {c: math.exp(v - top) for c, v in logs.items()}
        total = sum(weights.values())
        dists.append({c: w / total for c, w in weights.items()})
    if grammar is not None:
        fitted = grammar.best_by_position(dists)
        if fitted is not None:
            text, fmt, probs = fitted
            return text, [round(p, 4) for p in probs], fmt
    text = "".join(max(d, key=lambda c: (d[c], c)) for d in dists)
    return text, [round(d[c], 4) for d, c in zip(dists, text, strict=True)], ""


# ---------------------------------------------------------------------------------------------
# Vehicles: grouping per-frame reads, voting, committing once


@dataclass
class FrameRead:
    text: str  # normalised VRM
    confidence: float
    frame_us: int
    box: tuple[int, int, int, int]  # in full-frame pixels
    char_confidences: list[float] = field(default_factory=list)
    raw_text: str = ""
    format: str = ""
    alternatives: list[dict[str, float]] = field(default_factory=list)  # per character (anpr.reader.PlateRead)


@dataclass
class Vehicle:
    """One vehicle's read, voted from its frames. ``frame`` is the best frame (for the images):
    a BGR image to the camera reader, an opaque value here (the tracker only keeps it)."""

    text: str
    confidence: float
    read_us: int  # the time of the best frame
    commit_frame_us: int  # the frame at which the read was decided (alert latency is from here)
    box: tuple[int, int, int, int]
    char_confidences: list[float]
    raw_text: str
    format: str
    frames: int
    frame: Any = None  # numpy.ndarray in practice; not imported: the tracker never looks inside


@dataclass
class _Track:
    reads: list[FrameRead] = field(default_factory=list)
    best_frame: Any = None
    best_conf: float = -1.0
    last_us: int = 0
    misses: int = 0  # frames looked at since it was last seen
    committed: bool = False

    def counts(self) -> Counter[str]:
        return Counter(r.text for r in self.reads)

    def leading_text(self) -> str:
        return self.counts().most_common(1)[0][0]


def vote(reads: list[FrameRead], grammar: Grammar | None = None) -> FrameRead:
    """The read the frames agree on. First the text: the one with the largest summed
    confidence, a partial read (a text inside a longer one) counting for the longer text. Then
    its characters: the frames that read a text of that length close to it are put together
    position by position: their per-character probabilities multiplied (``fuse_characters``,
    constrained by ``grammar``) when the reader gave them, else a vote (``vote_characters``),
    so a character misread in one frame is outvoted. The box, time and images come from the
    most confident frame that read the result."""
    score: dict[str, float] = {}
    for r in reads:
        score[r.text] = score.get(r.text, 0.0) + r.confidence
    texts = list(score)
    for part in texts:
        for whole in texts:
            if part != whole and part in whole:
                score[whole] += score[part]
    text = max(score, key=lambda t: (score[t], len(t)))
    char_conf: list[float] | None = None
    fmt = None
    peers = [r for r in reads if len(r.text) == len(text) and same_vehicle(r.text, text)]
    fused = fuse_characters(peers, grammar) if len(peers) >= 2 else None
    if fused is not None:
        text, char_conf, fmt = fused
    elif len(peers) >= 2:
        text, char_conf = vote_characters(peers)  # type: ignore[arg-type]  # FrameRead has the fields used
    exact = [r for r in reads if r.text == text]
    best = max(exact or peers or reads, key=lambda r: r.confidence)
    if fused is not None and char_conf:
        # The frames' probabilities put together: how sure the vehicle's read is, per character
        # and overall, scaled by the share of its frames that read a text of its shape.
        conf = sum(char_conf) / len(char_conf) * (len(peers) / len(reads)) ** 0.5
    else:
        agreeing = [r.confidence for r in reads if r.text == text or r.text in text]
        # Confidence of the vote: the mean of the agreeing frames, scaled by their share of all frames.
        conf = (sum(agreeing) / len(agreeing)) * (len(agreeing) / len(reads)) ** 0.5 if agreeing else best.confidence
    return FrameRead(text, round(conf, 4), best.frame_us, best.box, char_conf or best.char_confidences,
                     best.raw_text, fmt or best.format)


class VehicleTracker:
    """Groups one camera's per-frame reads into vehicles and commits each vehicle exactly once.

    A vehicle is committed as soon as ``agree_frames`` frames read the same registration of at
    least ``min_early_len`` characters (so a hotlist alert is not kept waiting for the vehicle
    to leave), or, failing that, when it has left: not seen for ``gap_us`` *and* missing from
    ``min_misses`` frames looked at since (so slow reads on a busy machine do not split one
    vehicle in two); then it needs ``agree_frames`` frames in all, or one of at least
    ``single_conf`` and ``min_early_len`` characters (the reader was seen to return a plate's
    left group alone, ``MN73`` of ``MN73HTB``, at confidence 1.0). Later frames of a committed vehicle are absorbed silently, also for
    ``repeat_us`` after it left (a vehicle that stopped under the camera and moves off again).

    **Weak reads** (``weak_conf`` <= confidence < ``min_conf``: a plate too small or dark to
    be read in one frame) join vehicles like any read but never commit one early; a vehicle
    that has left with only weak reads, or too few strong ones, is committed if its frames put
    together (``vote``, with ``grammar``) reach ``min_conf``. Without ``weak_conf`` they are
    ignored. Pure: no clock, no I/O; tests drive it with frame times.
    """

    def __init__(self, agree_frames: int = 2, gap_us: int = 1_000_000, min_conf: float = 0.5,
                 single_conf: float = 0.9, min_early_len: int = 5, min_misses: int = 2,
                 repeat_us: int = 10_000_000, early_len: int = 7, *, weak_conf: float | None = None,
                 grammar: Grammar | None = None) -> None:
        self.weak_conf = min_conf if weak_conf is None else min(weak_conf, min_conf)
        self.grammar = grammar
        # Committing before the vehicle leaves needs a full-length read (7 characters: current
        # and most older UK plates): the end of a plate entering the view, "15DRH" of
        # "BG15DRH", is itself a valid dateless registration and was committed as the vehicle.
        # Shorter plates are committed when the vehicle has left, by the vote.
        self.early_len = early_len
        self.agree_frames, self.gap_us, self.min_conf, self.single_conf = agree_frames, gap_us, min_conf, single_conf
        self.min_early_len, self.min_misses, self.repeat_us = min_early_len, min_misses, repeat_us
        self.tracks: list[_Track] = []
        self.recent: list[_Track] = []  # committed vehicles that left, for repeat_us

    def add(self, reads: list[FrameRead], frame_us: int, frame: Any = None) -> list[Vehicle]:
        """Feed one looked-at frame's reads (none: nothing there, or nothing moved); returns the
        vehicles committed by it, and by vehicles that have now left."""
        out: list[Vehicle] = []
        self.recent = [t for t in self.recent if frame_us - t.last_us <= self.repeat_us]
        seen: set[int] = set()
        # A piece of a plate read beside the whole plate in the same frame is that plate, not a
        # second vehicle (``9ERA`` beside ``GW19ERA`` was committed as a vehicle of its own).
        texts = {r.text for r in reads}
        reads = [r for r in reads if not any(r.text != t and r.text in t for t in texts)]
        for read in sorted(reads, key=lambda r: -r.confidence):
            if read.confidence < self.weak_conf or not read.text:
                continue
            track = self._match(read.text, seen)
            if track is None:
                track = _Track()
                self.tracks.append(track)
            seen.add(id(track))
            track.reads.append(read)
            track.last_us, track.misses = frame_us, 0
            if read.confidence > track.best_conf and frame is not None:
                track.best_conf, track.best_frame = read.confidence, frame
            if not track.committed and self._agreed(track, read.text):
                out.append(self._commit(track, frame_us))
        for track in self.tracks:
            if id(track) not in seen:
                track.misses += 1
        return out + self._end(frame_us, lambda t: t.misses >= self.min_misses and frame_us - t.last_us > self.gap_us)

    def _match(self, text: str, taken: set[int]) -> _Track | None:
        for track in self.tracks:
            if id(track) not in taken and any(same_vehicle(text, r.text) for r in track.reads[-6:]):
                return track
        for track in self.recent:
            if any(same_vehicle(text, r.text) for r in track.reads[-6:]):
                self.recent.remove(track)
                self.tracks.append(track)  # back again (it had stopped): already committed
                return track
        return None

    def _agreed(self, track: _Track, text: str) -> bool:
        """Early commit: enough frames read ``text``, it is not part of a longer text read of
        this vehicle, and it is long enough not to be a piece of a plate (a plate's left group
        alone, ``MS73`` of ``MS73BJA``, was read twice in a row from the simulator's sub
        stream). Short and partial reads wait for the vehicle to leave, then the vote decides."""
        strong = sum(1 for r in track.reads if r.text == text and r.confidence >= self.min_conf)
        if len(text) < max(self.min_early_len, self.early_len) or strong < self.agree_frames:
            return False
        return not any(text != r.text and text in r.text for r in track.reads)

    def flush(self, now_us: int, idle_factor: int = 3) -> list[Vehicle]:
        """No frame to look at (the stream stalled, or stopping): end vehicles unseen for
        ``idle_factor`` gaps. ``now_us`` far ahead ends them all."""
        return self._end(now_us, lambda t: now_us - t.last_us > idle_factor * self.gap_us)

    def _end(self, now_us: int, gone) -> list[Vehicle]:
        out, keep = [], []
        for track in self.tracks:
            if not gone(track):
                keep.append(track)
                continue
            strong = [r for r in track.reads if r.confidence >= self.min_conf]
            if not track.committed and (len(strong) >= self.agree_frames or any(
                r.confidence >= self.single_conf and len(r.text) >= self.min_early_len for r in strong
            ) or (len(track.reads) >= self.agree_frames and vote(track.reads, self.grammar).confidence >= self.min_conf)):
                out.append(self._commit(track, now_us))
            if track.committed:
                track.best_frame = None
                self.recent.append(track)
        self.tracks = keep
        return out

    def _commit(self, track: _Track, at_us: int) -> Vehicle:
        track.committed = True
        v = vote(track.reads, self.grammar)
        return Vehicle(v.text, v.confidence, v.frame_us, at_us, v.box, list(v.char_confidences), v.raw_text,
                       v.format, len(track.reads), track.best_frame)
