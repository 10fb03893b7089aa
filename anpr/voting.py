"""Plate texts compared and voted: which reads are of one plate, and what they agree on.

``anpr.live.VehicleTracker`` groups one camera's per-frame reads into vehicles with
``same_vehicle`` and votes each vehicle's text with ``vote``. Pure functions of the texts and
their confidences: no clock, no state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol


class _Read(Protocol):
    text: str
    confidence: float
    char_confidences: list[float]


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


def vote(reads: Sequence[_Read]) -> tuple[str, list[float]]:
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
