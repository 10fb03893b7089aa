"""Registrations (VRMs) and search patterns: how plate text is normalised for storing and searching.

Registrations are stored normalised: upper case letters and digits, no spaces (``AB12 CDE`` is
stored ``AB12CDE``). A search or hotlist pattern uses ``*`` for any run of characters and ``?``
for exactly one; see :func:`pattern_to_like`.
"""

from __future__ import annotations

import re

from storage import Invalid

VRM_RE = re.compile(r"^[A-Z0-9]{1,10}$")
PATTERN_RE = re.compile(r"^[A-Z0-9*?]{1,12}$")


def normalise_vrm(text: str) -> str:
    """Canonical stored form: upper case, letters and digits only. Raises Invalid if empty/odd."""
    vrm = re.sub(r"[\s\-]", "", str(text)).upper()
    if not VRM_RE.match(vrm):
        raise Invalid(f"{text!r} is not a registration (1 to 10 letters and digits)")
    return vrm


def normalise_pattern(text: str) -> str:
    """A VRM or wildcard pattern (``*`` any run, ``?`` one character), normalised."""
    pattern = re.sub(r"[\s\-]", "", str(text)).upper()
    if not PATTERN_RE.match(pattern):
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
