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


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (plates are short: the plain O(n*m) table is fine)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def substring_distance(short: str, long_: str) -> int:
    """The fewest edits that make ``short`` a substring of ``long_`` (Sellers' approximate
    matching: the edit-distance table with a free start and end in ``long_``)."""
    prev = [0] * (len(long_) + 1)
    for i, cs in enumerate(short, 1):
        cur = [i]
        for j, cl in enumerate(long_, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (cs != cl)))
        prev = cur
    return min(prev)


def same_vehicle(a: str, b: str) -> bool:
    """Two reads of one plate: a few characters apart (misread), or one inside the other (the
    plate partly in view reads as a shorter, often still valid, registration: ``19JX`` of
    ``FJ19JXY`` was seen with the simulator), also with one character of a piece of 5 or more
    misread (``ID815`` of ``WGD815C``, the G half in view read as I; ``FKG3A`` of ``FK63AFH``,
    the 6 read as G: both seen in CI, each committed as a second vehicle before this rule)."""
    short, long_ = sorted((a, b), key=len)
    if len(short) >= 3 and short in long_:
        return True
    if len(short) >= 5 and substring_distance(short, long_) <= 1:
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
