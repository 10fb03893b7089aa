"""What text the service accepts from people and devices: one rule, used everywhere text enters.

Control characters have no place in a name, a reason or a note: NUL cannot be stored in
PostgreSQL text at all (the insert fails, which was a server error), and NUL or escape
characters in a camera name broke ``cameras export``/``import`` and can forge lines in logs and
CSV files. Lone surrogates (``"\\ud800"`` in JSON) are not text either: they cannot be encoded
as UTF-8 and fail in the database driver. Tab, line feed and carriage return are allowed in
free text (notes, reasons, descriptions), never in a single-line name.

``controlroom.contract`` applies :func:`check_text` to every path parameter, query value and
JSON string of every request; the inventory models apply it to what the CLI imports.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, model_validator

from storage import Invalid

# C0 controls but tab, LF and CR; DEL; C1 controls; UTF-16 surrogates.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_LINE = re.compile("[\t\n\r]")


def bad_character(text: str, *, multiline: bool = True) -> str | None:
    """The first character ``text`` may not contain, or None."""
    found = _CONTROL.search(text) or (None if multiline else _LINE.search(text))
    return found.group() if found else None


def check_text(text: str, field: str, *, multiline: bool = True) -> str:
    """``text`` itself, or :class:`Invalid` naming ``field`` and the refused character."""
    bad = bad_character(text, multiline=multiline)
    if bad is not None:
        raise Invalid(f"{field}: control character U+{ord(bad):04X} is not allowed")
    return text


def _walk(value: Any, where: str, single_line: frozenset[str]) -> None:
    if isinstance(value, str):
        bad = bad_character(value, multiline=where not in single_line)
        if bad is not None:
            raise ValueError(f"{where}: control character U+{ord(bad):04X} is not allowed")
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(key, where, single_line)
            _walk(item, f"{where}.{key}" if where else str(key), single_line)
    elif isinstance(value, list | tuple):
        for n, item in enumerate(value):
            _walk(item, f"{where}[{n}]", single_line)


class CleanText(BaseModel):
    """A model whose every string (nested ones too) passes :func:`bad_character`; the fields
    named in ``SINGLE_LINE`` may not hold line breaks or tabs either."""

    SINGLE_LINE: ClassVar[frozenset[str]] = frozenset({"name", "site", "username"})

    @model_validator(mode="before")
    @classmethod
    def _clean_text(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                _walk(value, str(key), cls.SINGLE_LINE)
        return data
