"""Decoding a CTC recogniser's output constrained by a plate grammar.

Model-agnostic: the input is a (T x C) matrix of per-timestep probabilities (softmax
outputs, rows summing to about 1) and the model's alphabet: ``alphabet[0]`` is the CTC blank,
``alphabet[i]`` the character of column i. Letters are folded to upper case; any column that is
not A-Z or 0-9 (punctuation, spaces, other scripts) counts as a separator, like the blank.

:func:`decode` runs a CTC prefix beam search (the probability of a string summed over all its
alignments, not one best path) in which a prefix may only grow into a string the grammar
(``anpr/grammar.py``) allows, with up to ``max_junk`` characters of anything before or after
it (a bolt, a border mark, a piece of a neighbouring word: the caller decides whether to
drop them). Each result is weighted by its template's prior (how common the format is), so a
Z the recogniser gives 30% beside a 2 at 60% still makes ``DZ17YXR`` (current format, common)
rather than ``D217YXR`` (prefix format, rare). Per character, the result carries the
probability of its character at the frame where it is clearest (forced alignment) and the
alternatives there, which the live tracker sums over frames (``anpr/tracking.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property

import numpy as np

from anpr.grammar import SYMBOLS, Grammar

_INDEX = {c: i + 1 for i, c in enumerate(SYMBOLS)}  # column of each symbol in the folded matrix


@dataclass
class Decoded:
    """One string a grammar allows, read from a CTC matrix.

    ``emitted``: everything read, junk included; ``text = emitted[start:end]``.
    ``score``: log probability of ``emitted`` plus the log prior of ``format``.
    ``char_confidences``/``alternatives``/``forced``: per character of ``emitted``: the
    probability of the character where it is clearest, the symbols' probabilities there
    (normalised over the symbols, the best few), and whether another symbol was likelier
    there (the grammar forced this one)."""

    text: str
    format: str
    emitted: str
    start: int
    end: int
    score: float
    # Computed when first asked for (the alignment costs more than the search, and the judge
    # mostly looks at the first result only).
    _align: Callable[[], tuple[tuple[float, ...], tuple[dict[str, float], ...], tuple[bool, ...]]] = field(repr=False, compare=False)

    @cached_property
    def _aligned(self) -> tuple[tuple[float, ...], tuple[dict[str, float], ...], tuple[bool, ...]]:
        return self._align()

    @property
    def char_confidences(self) -> tuple[float, ...]:
        return self._aligned[0]

    @property
    def alternatives(self) -> tuple[dict[str, float], ...]:
        return self._aligned[1]

    @property
    def forced(self) -> tuple[bool, ...]:
        return self._aligned[2]


def fold(probs: np.ndarray, alphabet: Sequence[str]) -> np.ndarray:
    """The (T x 37) matrix: column 0 the blank and every separator, then A-Z0-9 (``SYMBOLS``)."""
    cols = np.zeros(len(alphabet), np.int64)
    for i, ch in enumerate(alphabet):
        if i and len(ch) == 1:
            cols[i] = _INDEX.get(ch.upper(), 0)
    out = np.zeros((probs.shape[0], len(SYMBOLS) + 1), np.float64)
    np.add.at(out.T, cols, np.asarray(probs, np.float64).T)
    return out


class _Search:
    """Which emitted strings can still become ``junk + template + junk`` (cached per grammar)."""

    def __init__(self, grammar: Grammar, max_junk: int) -> None:
        self.grammar, self.max_junk = grammar, max_junk
        self._prefix: dict[str, bool] = {"": True}
        self._viable: dict[str, bool] = {}

    def is_prefix(self, s: str) -> bool:
        got = self._prefix.get(s)
        if got is None:
            got = self._prefix[s] = self.is_prefix(s[:-1]) and s[-1] in self.grammar.following(s[:-1])
        return got

    def viable(self, e: str) -> bool:
        got = self._viable.get(e)
        if got is None:
            if len(self._viable) > 200_000:
                self._viable.clear()
            n, j = len(e), self.max_junk
            got = any(self.is_prefix(e[a:]) for a in range(min(j, n) + 1)) or any(
                self.grammar.fit(e[a : n - k]) is not None for a in range(min(j, n) + 1) for k in range(1, j + 1) if n - k - a >= 2
            )
            self._viable[e] = got
        return got


_SEARCHES: dict[tuple[str, int], _Search] = {}


def decode(probs: np.ndarray, alphabet: Sequence[str] | None, grammar: Grammar, *, beam: int = 10,
           max_junk: int = 2, prune: float = 1e-3, junk_cost: float = 1.0, folded: bool = False, n_best: int = 4) -> list[Decoded]:
    """The strings ``grammar`` allows in ``probs`` (T x C, see the module's doc), best first.

    ``folded``: ``probs`` is already :func:`fold`'s matrix (``alphabet`` unused). Characters
    under ``prune`` at a timestep are not tried there. Each junk character costs ``junk_cost``
    (log units) in the ranking. Empty if nothing fits."""
    p = probs if folded else fold(probs, alphabet or ())
    search = _SEARCHES.get((grammar.name, max_junk))
    if search is None or search.grammar is not grammar:
        search = _SEARCHES[(grammar.name, max_junk)] = _Search(grammar, max_junk)
    beams: dict[str, list[float]] = {"": [1.0, 0.0]}  # prefix -> [ends in blank, ends in a symbol]
    scale = 0.0  # log of the factors the probabilities were divided by (no underflow)
    for t in range(p.shape[0]):
        row = p[t]
        blank = float(row[0])
        ks = np.flatnonzero(row[1:] > prune) + 1
        if ks.size == 0:
            # Nothing but the blank (and symbols held on) at this step: no new prefix, no sorting.
            beams = {k: [(pb + pnb) * blank, pnb * float(row[_INDEX[k[-1]]]) if k else 0.0] for k, (pb, pnb) in beams.items()}
            top = max(v[0] + v[1] for v in beams.values())
            if top <= 0.0:
                return []
            scale += math.log(top)
            beams = {k: [v[0] / top, v[1] / top] for k, v in beams.items()}
            continue
        tried = [(SYMBOLS[k - 1], k, float(row[k])) for k in ks]
        nxt: dict[str, list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = pb + pnb
            entry = nxt.setdefault(prefix, [0.0, 0.0])
            entry[0] += total * blank
            if prefix:
                entry[1] += pnb * float(row[_INDEX[prefix[-1]]])  # the last symbol held on
            for ch, _, pk in tried:
                ext = prefix + ch
                if not search.viable(ext):
                    continue
                e = nxt.setdefault(ext, [0.0, 0.0])
                e[1] += (pb if prefix and ch == prefix[-1] else total) * pk
        kept = sorted(nxt.items(), key=lambda kv: kv[1][0] + kv[1][1], reverse=True)[:beam]
        top = kept[0][1][0] + kept[0][1][1] if kept else 0.0
        if top <= 0.0:
            return []
        scale += math.log(top)
        beams = {k: [v[0] / top, v[1] / top] for k, v in kept}
    found: dict[tuple[str, int, int], tuple[float, str, str]] = {}  # (text, start, end) -> (score, format, emitted)
    j = max_junk
    for emitted, (pb, pnb) in beams.items():
        n = len(emitted)
        if n < 2 or pb + pnb <= 0.0:
            continue
        logp = math.log(pb + pnb) + scale
        for a in range(min(j, n) + 1):
            for b in range(n, max(a + 1, n - j - 1), -1):
                t = grammar.fit(emitted[a:b])
                if t is None:
                    continue
                score = logp + math.log(t.prior) - junk_cost * (a + n - b)
                key = (emitted[a:b], a, b)
                if key not in found or found[key][0] < score:
                    found[key] = (score, t.format, emitted)
    out: list[Decoded] = []
    aligners: dict[str, Callable] = {}
    for (text, a, b), (score, fmt, emitted) in sorted(found.items(), key=lambda kv: kv[1][0], reverse=True)[:n_best]:
        if emitted not in aligners:
            aligners[emitted] = cache(lambda e=emitted: _align(p, e))
        out.append(Decoded(text, fmt, emitted, a, b, score, aligners[emitted]))
    return out


def _align(p: np.ndarray, text: str) -> tuple[tuple[float, ...], tuple[dict[str, float], ...], tuple[bool, ...]]:
    """Forced (Viterbi) alignment of ``text`` to the folded matrix ``p``: per character, its
    probability at its clearest timestep, the symbols' probabilities there (the best four,
    normalised over the symbols) and whether another symbol was likelier there."""
    T, L = p.shape[0], len(text)
    labels = np.zeros(2 * L + 1, np.int64)
    labels[1::2] = [_INDEX[c] for c in text]
    S = len(labels)
    logp = np.log(np.maximum(p[:, labels], 1e-30))
    # Skipping a blank is allowed between two different symbols.
    skip = np.zeros(S, bool)
    skip[3::2] = labels[3::2] != labels[1:-2:2]
    score = np.full(S, -np.inf)
    score[0] = logp[0, 0]
    if S > 1:
        score[1] = logp[0, 1]
    back = np.zeros((T, S), np.int64)
    idx = np.arange(S)
    choices = np.full((3, S), -np.inf)
    for t in range(1, T):
        choices[0] = score
        choices[1, 1:] = score[:-1]
        choices[2, 2:] = np.where(skip[2:], score[:-2], -np.inf)
        arg = choices.argmax(axis=0)
        score = choices[arg, idx] + logp[t]
        back[t] = idx - arg
    state = S - 1 if S == 1 or score[S - 1] >= score[S - 2] else S - 2
    path = np.empty(T, np.int64)
    for t in range(T - 1, -1, -1):
        path[t] = state
        state = back[t, state]
    conf: list[float] = []
    alts: list[dict[str, float]] = []
    forced: list[bool] = []
    for i in range(L):
        frames = np.flatnonzero(path == 2 * i + 1)
        if frames.size == 0:  # cannot happen for a string the beam produced; be safe
            frames = np.array([min(T - 1, i)])
        col = labels[2 * i + 1]
        t = int(frames[np.argmax(p[frames, col])])
        row = p[t, 1:]
        conf.append(float(p[t, col]))
        total = float(row.sum()) or 1.0
        top = np.argsort(row)[::-1][:4]
        alts.append({SYMBOLS[k]: round(float(row[k]) / total, 4) for k in top if row[k] > 0})
        forced.append(bool(int(np.argmax(row)) + 1 != col))
    return tuple(conf), tuple(alts), tuple(forced)


def decode_many(matrices: Sequence[np.ndarray], grammar: Grammar, *, n_best: int = 4, junk_cost: float = 1.0,
                weights: Sequence[float] | None = None, **options: float) -> list[Decoded]:
    """Several models' readings of one line (each a :func:`fold` matrix), put together as a
    product of experts: the strings each model's search finds, each scored by the weighted sum
    of its log probability under every model (each with its own alignment: two models' outputs
    are not averaged timestep by timestep, their characters peak at different timesteps) plus
    its template's log prior. ``weights``: per model (default 1 each). Per character: the
    models' mean confidence and alternatives."""
    weights = list(weights) if weights is not None else [1.0] * len(matrices)
    if len(matrices) == 1:
        return decode(matrices[0], None, grammar, folded=True, n_best=n_best, junk_cost=junk_cost, **options)  # type: ignore[arg-type]
    found: set[tuple[str, int, int]] = set()
    for m in matrices:
        found.update((d.emitted, d.start, d.end) for d in decode(m, None, grammar, folded=True, n_best=n_best,
                                                                  junk_cost=junk_cost, **options))  # type: ignore[arg-type]
    logp: dict[str, float] = {}
    scored = []
    for emitted, a, b in found:
        if emitted not in logp:
            logp[emitted] = sum(w * _string_logprob(m, emitted) for w, m in zip(weights, matrices, strict=True))
        t = grammar.fit(emitted[a:b])
        assert t is not None  # decode only returns strings that fit
        scored.append((logp[emitted] + math.log(t.prior) - junk_cost * (a + len(emitted) - b), emitted, a, b, t.format))
    scored.sort(reverse=True)
    out = []
    aligners: dict[str, Callable] = {}
    for score, emitted, a, b, fmt in scored[:n_best]:
        if emitted not in aligners:
            aligners[emitted] = cache(lambda e=emitted: _align_many(matrices, e))
        out.append(Decoded(emitted[a:b], fmt, emitted, a, b, score, aligners[emitted]))
    return out


def _align_many(matrices: Sequence[np.ndarray], emitted: str) -> tuple[tuple[float, ...], tuple[dict[str, float], ...], tuple[bool, ...]]:
    """``_align`` in each model's output, put together: mean confidences and alternatives."""
    each = [_align(m, emitted) for m in matrices]
    conf = tuple(float(np.mean([e[0][i] for e in each])) for i in range(len(emitted)))
    alts = []
    forced = []
    for i, ch in enumerate(emitted):
        merged: dict[str, float] = {}
        for e in each:
            for c, v in e[1][i].items():
                merged[c] = merged.get(c, 0.0) + v / len(each)
        top = dict(sorted(merged.items(), key=lambda kv: kv[1], reverse=True)[:4])
        alts.append(top)
        forced.append(bool(top) and max(top, key=top.get) != ch)  # type: ignore[arg-type]
    return conf, tuple(alts), tuple(forced)


def _string_logprob(p: np.ndarray, text: str) -> float:
    """log P(text) under the folded CTC matrix ``p``: the forward algorithm, all alignments."""
    labels = np.zeros(2 * len(text) + 1, np.int64)
    labels[1::2] = [_INDEX[c] for c in text]
    S = len(labels)
    logp = np.log(np.maximum(p[:, labels], 1e-30))
    skip = np.zeros(S, bool)
    skip[3::2] = labels[3::2] != labels[1:-2:2]
    alpha = np.full(S, -np.inf)
    alpha[0] = logp[0, 0]
    if S > 1:
        alpha[1] = logp[0, 1]
    prev = np.full((3, S), -np.inf)
    for t in range(1, p.shape[0]):
        prev[0] = alpha
        prev[1, 1:] = alpha[:-1]
        prev[2, 2:] = np.where(skip[2:], alpha[:-2], -np.inf)
        alpha = np.logaddexp.reduce(prev, axis=0) + logp[t]
    return float(np.logaddexp(alpha[-1], alpha[-2]) if S > 1 else alpha[-1])
