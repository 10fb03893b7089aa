"""Plate grammars: the registrations a country issues, as fixed-length templates of character
slots, each with how common its format is on the road (its prior).

The decoder (``anpr/decode.py``) searches the recogniser's per-timestep probabilities for the
most probable string a grammar allows; the live tracker (``anpr/tracking.py``) uses
:func:`Grammar.best_by_position` to choose a vehicle's text from per-character probabilities
summed over frames. Pure Python (no numpy): the tracker is pure and imports this.

Priors (decision, docs/design/anpr-reader.md): current-format UK plates (since 2001) are the
great majority on the road; prefix plates (1983-2001) a few percent; suffix plates (1963-83),
dateless (cherished) and Northern Ireland plates rarer still. The figures are round estimates,
not fitted to any photograph: what matters is their order and that a rare format needs clearly
better evidence to win.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"
SYMBOLS = LETTERS + DIGITS
NONZERO = DIGITS[1:]


def _without(chars: str) -> str:
    return "".join(c for c in LETTERS if c not in chars)


# UK (DVLA, Great Britain): what each slot may hold (anpr/plates.py builds its patterns from these).
UK_TAG = _without("IQZ")  # current format's memory tag
UK_RANDOM = _without("IQ")  # the three random letters
UK_PREFIX_AGE = _without("IOUZ")  # Q plates allowed
UK_SUFFIX_AGE = _without("IOQUZ")
# Northern Ireland: an optional letter, a two-letter code holding I or Z, then 1 to 4 digits.
NI_CODES = ("AZ", "BZ", "CZ", "DZ", "EZ", "FZ", "GZ", "HZ", "IA", "IB", "IG", "IJ", "IL", "IW", "JI", "JZ",
            "KZ", "LZ", "MZ", "NZ", "OI", "OZ", "PZ", "RZ", "SZ", "TZ", "UI", "UZ", "VZ", "WZ", "XI", "XZ", "YZ")


def uk_age_ok(text: str) -> bool:
    """A current-format plate's age identifier: 00, 02-49, 51-99 (01 and 50 never issued)."""
    return text[2:4] not in ("01", "50")


@dataclass(frozen=True)
class Template:
    """One fixed-length layout: ``slots[i]`` is the characters position i may hold."""

    format: str
    slots: tuple[str, ...]
    prior: float
    check: Callable[[str], bool] | None = None  # what slots alone cannot say (the UK age pairs)

    def matches(self, text: str) -> bool:
        return (len(text) == len(self.slots) and all(c in s for c, s in zip(text, self.slots, strict=True))
                and (self.check is None or self.check(text)))


@dataclass(frozen=True)
class Grammar:
    """A set of templates. Strings are upper case A-Z0-9 without spaces."""

    name: str
    templates: tuple[Template, ...]

    @cached_property
    def longest(self) -> int:
        return max(len(t.slots) for t in self.templates)

    @cached_property
    def _prefix_next(self) -> dict[str, frozenset[str]]:
        """prefix -> the characters that may follow it (built lazily, per prefix, in ``following``)."""
        return {}

    def following(self, prefix: str) -> frozenset[str]:
        """The characters that can extend ``prefix`` towards some template."""
        cache = self._prefix_next
        got = cache.get(prefix)
        if got is None:
            n = len(prefix)
            nxt: set[str] = set()
            for t in self.templates:
                if len(t.slots) > n and all(c in s for c, s in zip(prefix, t.slots, strict=False)):
                    nxt.update(t.slots[n])
            got = cache[prefix] = frozenset(nxt)
        return got

    @cached_property
    def _fits(self) -> dict[str, Template | None]:
        return {}

    def fit(self, text: str) -> Template | None:
        """The most common template ``text`` fits, or None."""
        cache = self._fits
        if text in cache:
            return cache[text]
        best = None
        for t in self.templates:
            if len(t.slots) == len(text) and t.matches(text) and (best is None or t.prior > best.prior):
                best = t
        if len(cache) > 200_000:
            cache.clear()
        cache[text] = best
        return best

    def best_by_position(self, dists: Sequence[dict[str, float]]) -> tuple[str, str, list[float]] | None:
        """The most probable string this grammar allows when position i holds character c with
        probability ``dists[i][c]`` (independent positions; a missing character counts as a
        small floor), weighted by the templates' priors: (text, format, per-character
        probability), or None if no template has that length."""
        floor = 1e-4
        best: tuple[float, str, str, list[float]] | None = None
        for t in self.templates:
            if len(t.slots) != len(dists):
                continue
            # Per slot, the allowed characters best first; the age check may need a second choice.
            options = [sorted(((d.get(c, floor), c) for c in slot), reverse=True)[:3] for d, slot in zip(dists, t.slots, strict=True)]
            text = "".join(o[0][1] for o in options)
            probs = [o[0][0] for o in options]
            if t.check is not None and not t.check(text):
                alts = []
                for i, o in enumerate(options):
                    for p, c in o[1:]:
                        alt = text[:i] + c + text[i + 1 :]
                        if t.check(alt):
                            alts.append((sum(math.log(x) for x in probs) - math.log(probs[i]) + math.log(p), alt, i, p))
                if not alts:
                    continue
                _, text, i, p = max(alts)
                probs[i] = p
            score = sum(math.log(max(p, floor)) for p in probs) + math.log(t.prior)
            if best is None or score > best[0]:
                best = (score, text, t.format, probs)
        return None if best is None else (best[1], best[2], best[3])


def _expand(fmt: str, prior: float, parts: Sequence[tuple[str, int, int]], max_len: int = 8, *,
            share: bool = True) -> list[Template]:
    """Templates for a format made of parts (characters, fewest, most), the format's prior
    shared equally among its layouts (``share``) or given to each."""
    layouts: list[tuple[str, ...]] = [()]
    for chars, lo, hi in parts:
        layouts = [lay + (chars,) * n for lay in layouts for n in range(lo, hi + 1)]
    layouts = [lay for lay in layouts if 0 < len(lay) <= max_len]
    return [Template(fmt, lay, prior / len(layouts) if share else prior) for lay in layouts]


def _uk() -> Grammar:
    L, D = LETTERS, DIGITS
    templates = [
        # The tag's second letter may also be Z: DVLA lists no Z tags, but real current-format
        # plates with one are on the road (issue 17: DZ17YXR, read D217YXR).
        Template("current", (UK_TAG, UK_TAG + "Z", D, D, UK_RANDOM, UK_RANDOM, UK_RANDOM), 0.90, uk_age_ok),
        *_expand("prefix", 0.06, [(UK_PREFIX_AGE, 1, 1), (NONZERO, 1, 1), (D, 0, 2), (UK_RANDOM, 3, 3)]),
        *_expand("suffix", 0.015, [(UK_RANDOM, 3, 3), (NONZERO, 1, 1), (D, 0, 2), (UK_SUFFIX_AGE, 1, 1)]),
        # Dateless: letters then a number, or a number then letters, 7 characters at most.
        *_expand("dateless", 0.01, [(L, 1, 4), (NONZERO, 1, 1), (D, 0, 3)], max_len=7),
        *_expand("dateless", 0.005, [(NONZERO, 1, 1), (D, 0, 3), (L, 1, 4)], max_len=7),
    ]
    ni_first = "".join(sorted({c[0] for c in NI_CODES}))
    ni_second = "".join(sorted({c[1] for c in NI_CODES}))
    codes = frozenset(NI_CODES)
    for lead in (0, 1):
        for n in range(1, 5):
            slots = (L,) * lead + (ni_first, ni_second, NONZERO) + (D,) * (n - 1)
            templates.append(Template("dateless", slots, 0.01 / 8, lambda s, k=lead: s[k : k + 2] in codes))
    return Grammar("uk", tuple(templates))


def _generic() -> Grammar:
    """Any 2 to 8 letters and digits (foreign plates), all alike. Decision: no preferred
    shapes. US states alone issue dozens of layouts, and preferring the common ones
    (``ABC1234``, ``1ABC234``) turned correct reads of other layouts into misreads
    (``6HP995`` read ``GHP995``; docs/design/anpr-reader.md)."""
    return Grammar("generic", tuple(_expand("generic", 1.0, [(SYMBOLS, 2, 8)], share=False)))


UK = _uk()
GENERIC = _generic()
GRAMMARS = {"uk": UK, "generic": GENERIC}
