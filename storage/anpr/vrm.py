"""Plate text: the one normaliser of registrations (VRMs), and search patterns.

Registrations are stored normalised: upper case letters and digits, no spaces (``AB12 CDE`` is
stored ``AB12CDE``). One function makes that form from any plate text, :func:`clean_plate_text`:
upper case, and every character other than A-Z and 0-9 dropped. The plate reader's rules
(anpr.plates) apply it to the recogniser's text, whose noise they then judge.
:func:`normalise_vrm` and :func:`normalise_pattern` apply it to what a person typed (or a read
handed to storage) and refuse the text if anything but spaces and dashes would be dropped: a
``%`` or ``_`` (SQL's wildcards, not ours), a ``.`` or an ``Ä`` dropped quietly would search
for, or list, another registration than the one meant. A search or hotlist pattern uses ``*``
for any run of characters and ``?`` for exactly one; see :func:`pattern_to_like`.
"""

from __future__ import annotations

import re

from storage import Invalid

VRM_RE = re.compile(r"^[A-Z0-9]{1,10}$")
PATTERN_RE = re.compile(r"^[A-Z0-9*?]{1,12}$")
_NOT_PLATE = re.compile(r"[^A-Z0-9]")
_NOT_PATTERN = re.compile(r"[^A-Z0-9*?]")
_SEPARATORS = re.compile(r"[\s\-]")  # what a person may type between a plate's characters


def clean_plate_text(raw: str) -> str:
    """Upper case, only A-Z and 0-9: spaces, dashes, dots and every other character dropped.

    Never refuses: for a machine's read, whose noise (a bolt read as ``.``, a stray glyph) the
    plate rules then judge. A person's input goes through :func:`normalise_vrm` instead."""
    return _NOT_PLATE.sub("", str(raw).upper())


def normalise_vrm(text: str) -> str:
    """Canonical stored form, :func:`clean_plate_text` of ``text``. Raises Invalid if that
    would drop anything but spaces and dashes, or leaves no character or more than 10."""
    vrm = clean_plate_text(text)
    if not VRM_RE.match(vrm) or vrm != _SEPARATORS.sub("", str(text)).upper():
        raise Invalid(f"{text!r} is not a registration (1 to 10 letters and digits)")
    return vrm


def normalise_pattern(text: str) -> str:
    """A VRM or wildcard pattern (``*`` any run, ``?`` one character), normalised as by
    :func:`normalise_vrm` with the wildcards kept."""
    pattern = _NOT_PATTERN.sub("", str(text).upper())
    if not PATTERN_RE.match(pattern) or pattern != _SEPARATORS.sub("", str(text)).upper():
        raise Invalid(
            f"{text!r} is not a registration or pattern (letters, digits, * for any run, ? for one character)"
        )
    if not re.search(r"[A-Z0-9]", pattern) and pattern != "*":
        raise Invalid(f"{text!r}: a pattern needs at least one letter or digit")
    return pattern


def is_pattern(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def pattern_to_like(pattern: str) -> str:
    """SQL LIKE for a normalised pattern. Stored VRMs hold no ``%`` or ``_``, so no escaping."""
    return pattern.replace("*", "%").replace("?", "_")


def pattern_to_regex(pattern: str) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$")
