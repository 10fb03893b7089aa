"""Registration rules: UK formats, confusion resolution by position, and a generic mode.

Everything here is a pure function of strings, so it is tested without images
(tests/test_plates.py, property-based). Normalised registrations are upper case with no spaces:
raw text is cleaned by the one normaliser of plate text, ``storage.anpr.vrm.clean_plate_text``,
which storage applies to what it stores and searches.

UK formats (DVLA, Great Britain; what we implement and why is in docs/design/anpr-reader.md):

- ``current`` (since Sept 2001) ``AB12 CDE``: two letters of local memory tag (never I, Q or
  Z), a two-digit age identifier (``02``..``49`` for March, ``51``..``99`` and ``00`` for
  September; ``01`` and ``50`` were never issued), three random letters (never I or Q).
- ``prefix`` (1983-2001) ``A123 BCD``: an age letter (never I, O, U or Z; Q is the
  "Q plate" for vehicles of unknown age), 1 to 3 digits without a leading zero, three letters
  (never I or Q).
- ``suffix`` (1963-1983) ``ABC 123D``: three letters (never I or Q), 1 to 3 digits without a
  leading zero, an age letter (never I, O, Q, U or Z).
- ``dateless`` (before 1963, and Northern Ireland): 1 to 4 letters then 1 to 4 digits, or
  1 to 4 digits then 1 to 4 letters, at most 7 characters, the number without a leading zero.

A reader confuses some letters and digits (O/0, I/1, S/5, B/8, Z/2, G/6). Each format says
which positions hold letters and which digits, so a character in the wrong kind of slot is
turned into its look-alike: ``AB1Z CDE`` becomes ``AB12CDE``. Among the layouts that fit, the
one needing the fewest changes wins (dateless plates are taken only as read, uncorrected: too
many words would otherwise pass for one); ties go to the newest format (current, prefix, suffix,
dateless), the most common on the road.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from storage.anpr.vrm import clean_plate_text

FORMATS = ("current", "prefix", "suffix", "dateless")

# Letter the reader may have produced in a digit slot -> the digit it stands for, and back.
# D and Q read for 0 are common too; in a letter slot 0 stays O (the commoner letter).
LETTER_TO_DIGIT = {"O": "0", "D": "0", "Q": "0", "I": "1", "S": "5", "B": "8", "Z": "2", "G": "6"}
DIGIT_TO_LETTER = {"0": "O", "1": "I", "5": "S", "8": "B", "2": "Z", "6": "G"}

_L_TAG = "[A-HJ-PR-Y]"  # memory tag: no I, Q, Z
_L_RANDOM = "[A-HJ-PR-Z]"  # random letters: no I, Q
_L_PREFIX_AGE = "[A-HJ-NP-TV-Y]"  # no I, O, U, Z (Q plates allowed)
_L_SUFFIX_AGE = "[A-HJ-NPR-TV-Y]"  # no I, O, Q, U, Z
_AGE = "(?:0[02-9]|[1-4][0-9]|5[1-9]|[6-9][0-9])"  # 00, 02-49, 51-99; never 01 or 50

_PATTERNS = {
    "current": re.compile(rf"{_L_TAG}{{2}}{_AGE}{_L_RANDOM}{{3}}"),
    "prefix": re.compile(rf"{_L_PREFIX_AGE}[1-9][0-9]{{0,2}}{_L_RANDOM}{{3}}"),
    "suffix": re.compile(rf"{_L_RANDOM}{{3}}[1-9][0-9]{{0,2}}{_L_SUFFIX_AGE}"),
    "dateless": re.compile(r"[A-Z]{1,4}[1-9][0-9]{0,3}|[1-9][0-9]{0,3}[A-Z]{1,4}"),
}
# What a format costs, in corrections, when choosing between layouts: suffix plates (1963-83)
# are rare on the road today, so a read is taken as one only if that needs one correction
# fewer than a newer format (tie: the newer). "DN54 OOX" read "DN5400X" was taken as the
# suffix plate DNS 400X (one change) over the current DN54 OOX (two: the Os read as 0s).
_RARITY = {"current": 0.0, "prefix": 0.0, "suffix": 1.0, "dateless": 0.0}
_GENERIC = re.compile(r"[A-Z0-9]{2,8}")


@dataclass(frozen=True)
class UkPlate:
    """A registration that fits a UK format, after ``corrections`` look-alike swaps."""

    text: str
    format: str
    corrections: int


def uk_format(text: str) -> str | None:
    """The UK format ``text`` fits exactly (no corrections), or None."""
    text = clean_plate_text(text)
    if len(text) > 7:
        return None
    for name in FORMATS:
        if _PATTERNS[name].fullmatch(text):
            return name
    return None


@cache
def _layouts(length: int) -> tuple[tuple[str, str], ...]:
    """(format, slots) for every layout of ``length`` characters; slots is a string of L/D."""
    out: list[tuple[str, str]] = []
    if length == 7:
        out.append(("current", "LLDDLLL"))
    for n in range(1, 4):
        if 1 + n + 3 == length:
            out.append(("prefix", "L" + "D" * n + "LLL"))
    for n in range(1, 4):
        if 3 + n + 1 == length:
            out.append(("suffix", "LLL" + "D" * n + "L"))
    for letters in range(1, 5):
        digits = length - letters
        if 1 <= digits <= 4:
            out.append(("dateless", "L" * letters + "D" * digits))
            out.append(("dateless", "D" * digits + "L" * letters))
    return tuple(out)


def _fit(text: str, slots: str) -> tuple[str, int] | None:
    chars: list[str] = []
    changes = 0
    for ch, slot in zip(text, slots, strict=True):
        if slot == "D" and not ch.isdigit():
            if ch not in LETTER_TO_DIGIT:
                return None
            ch, changes = LETTER_TO_DIGIT[ch], changes + 1
        elif slot == "L" and ch.isdigit():
            if ch not in DIGIT_TO_LETTER:
                return None
            ch, changes = DIGIT_TO_LETTER[ch], changes + 1
        chars.append(ch)
    return "".join(chars), changes


def mixed(text: str) -> bool:
    """Letters and digits both, as registrations are (words and fleet or phone numbers are not)."""
    return any(ch.isdigit() for ch in text) and any(ch.isalpha() for ch in text)


def resolve_uk(raw: str, max_corrections: int = 2) -> UkPlate | None:
    """The UK registration ``raw`` most likely is, correcting look-alikes by position, or None.

    ``raw`` may hold spaces and punctuation. At most ``max_corrections`` characters are changed;
    a read needing more is more likely not a plate (or a misread) than a plate.
    """
    text = clean_plate_text(raw)
    if not 2 <= len(text) <= 7:
        return None
    if not mixed(text):
        # Every UK registration has letters and digits; a read of only one kind is a word or
        # a number (a phone number, a date), not a plate with every character misread.
        return None
    best: UkPlate | None = None
    for name, slots in _layouts(len(text)):
        fitted = _fit(text, slots)
        if fitted is None or fitted[1] > max_corrections:
            continue
        if name == "dateless" and fitted[1]:
            # Dateless is so loose (any word ending in S, B, G, Z, O or I would become one)
            # that it is only taken as read, never by correcting look-alikes.
            continue
        candidate, changes = fitted
        if not _PATTERNS[name].fullmatch(candidate):
            continue
        # Layouts are listed newest format first, so a strict < keeps the newest on a tie.
        if best is None or changes + _RARITY[name] < best.corrections + _RARITY[best.format]:
            best = UkPlate(candidate, name, changes)
    return best


def normalise_uk(raw: str) -> str | None:
    """The normalised UK registration (``AB12CDE``) read in ``raw``, or None if none fits."""
    plate = resolve_uk(raw)
    return plate.text if plate else None


def display_uk(text: str) -> str:
    """A registration as printed on the plate, with its space: ``AB12 CDE``, ``ABC 123D``.

    Text that fits no UK format is returned cleaned, without a space.
    """
    text = clean_plate_text(text)
    fmt = uk_format(text)
    if fmt == "current":
        return f"{text[:4]} {text[4:]}"
    if fmt == "prefix":
        return f"{text[:-3]} {text[-3:]}"
    if fmt == "suffix":
        return f"{text[:3]} {text[3:]}"
    if fmt == "dateless":
        m = re.fullmatch(r"([A-Z]+)([0-9]+)|([0-9]+)([A-Z]+)", text)
        assert m is not None
        parts = [p for p in m.groups() if p]
        return " ".join(parts)
    return text


def normalise_generic(raw: str) -> str | None:
    """A foreign plate: 2 to 8 letters and digits once spaces and punctuation are dropped."""
    text = clean_plate_text(raw)
    return text if _GENERIC.fullmatch(text) else None
