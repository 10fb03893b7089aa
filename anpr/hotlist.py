"""Hotlists: matching a registration against entries (with wildcards), parsing entries and CSV.

Patterns: ``*`` matches any run of characters (also none), ``?`` exactly one; anything else
matches itself. Registrations and patterns are compared in their normalised form (upper case,
no spaces): ``ab12 cde`` matches ``AB12*`` and ``?B12CDE``. An expired, removed or disabled
entry never matches: :func:`match_entries` checks the expiry itself, so even an entry handed
to it by mistake does not alert.

CSV import (one entry a line, a header row naming the columns, any order):
``vrm`` (registration or pattern, required), ``reason`` (required), ``source`` (default: the
hotlist's), ``priority`` (1 most urgent .. 5; default: the hotlist's), ``expires`` (required:
ISO 8601 with offset, or a date ``YYYY-MM-DD`` meaning the end of that day in Europe/London).
Every line is checked first; if any is wrong nothing is imported and each error names its line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from anpr import AnprError
from storage import Invalid
from storage.anpr.hotlists import (
    EntrySpec,
    add_entries,
    check_entry,
    entry_problems,
    list_entries,
    live_entries_for,
    remove_entry,
)
from storage.anpr.models import Hotlist, HotlistEntry
from storage.anpr.vrm import is_pattern, normalise_vrm, pattern_to_regex

LONDON = ZoneInfo("Europe/London")
LATEST_EXPIRY_US = 7_258_118_400_000_000  # 2200-01-01T00:00:00Z, as controlroom.timefmt.LATEST_US
CSV_COLUMNS = ("vrm", "reason", "source", "priority", "expires")
MAX_CSV_LINES = 100_000


class HotlistImportError(AnprError, Invalid):
    """A CSV import was refused; ``errors`` lists (line number, message), one per bad line."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        self.errors = errors
        shown = "; ".join(f"line {n}: {m}" for n, m in errors[:10])
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        super().__init__(f"{len(errors)} bad line(s), nothing imported: {shown}{more}")


@lru_cache(maxsize=4096)
def _regex(pattern: str):
    return pattern_to_regex(pattern)


def matches(pattern: str, vrm: str) -> bool:
    """Does a normalised pattern (or plain VRM) match a normalised VRM?"""
    if not is_pattern(pattern):
        return pattern == vrm
    return _regex(pattern).match(vrm) is not None


def is_live(entry: HotlistEntry, at_us: int) -> bool:
    return entry.removed_us is None and entry.expires_us > at_us


def match_entries(vrm: str, candidates: list[tuple[HotlistEntry, Hotlist]],
                  at_us: int) -> list[tuple[HotlistEntry, Hotlist]]:
    """The live entries of enabled hotlists matching ``vrm`` at ``at_us``, most urgent first."""
    vrm = normalise_vrm(vrm)
    found = [
        (e, h) for e, h in candidates
        if h.enabled and is_live(e, at_us) and matches(e.pattern, vrm)
    ]
    return sorted(found, key=lambda eh: (eh[0].priority, eh[0].id))


async def check_read(session: AsyncSession, vrm: str, at_us: int) -> list[tuple[HotlistEntry, Hotlist]]:
    """Entries that a read of ``vrm`` at ``at_us`` hits (exact entries and wildcard patterns)."""
    vrm = normalise_vrm(vrm)
    return match_entries(vrm, await live_entries_for(session, vrm, at_us), at_us)


def parse_expiry(text: str, field: str = "expires") -> int:
    """UTC microseconds from ISO 8601 with an offset, or from a date (end of that London day),
    within 1970..2200 (outside it, datetime arithmetic overflowed: a server error)."""
    text = (text or "").strip()
    if not text:
        raise Invalid(f"{field} is required (ISO 8601 with offset, or YYYY-MM-DD)")
    shown = repr(text[:60])
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            end = datetime.combine(day + timedelta(days=1), time(0), LONDON)
            found = int(end.astimezone(UTC).timestamp()) * 1_000_000
        else:
            dt = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
            if dt.tzinfo is None:
                raise Invalid(f"{field}: {shown} has no UTC offset; add Z or +01:00")
            found = int(dt.replace(microsecond=0).astimezone(UTC).timestamp()) * 1_000_000 + dt.microsecond
    except OverflowError:
        found = -1
    except ValueError:
        raise Invalid(f"{field}: {shown} is not a date or an ISO 8601 time") from None
    if not 0 <= found < LATEST_EXPIRY_US:
        raise Invalid(f"{field}: {shown} is outside 1970 to 2200")
    return found


def parse_entry(data: dict[str, Any], hotlist: Hotlist, now_us: int | None = None) -> EntrySpec:
    """One entry from a dict (API body or CSV row), defaults from the hotlist, fully checked:
    every problem of the entry is named at once (one :class:`Invalid`, joined with "; ")."""
    problems: list[str] = []
    vrm = str(data.get("vrm") or data.get("pattern") or "").strip()
    if not vrm:
        problems.append("vrm is required")
    raw_priority = data.get("priority")
    priority = hotlist.default_priority
    if raw_priority not in (None, ""):
        try:
            priority = int(str(raw_priority).strip())
        except ValueError:
            problems.append(f"priority: {raw_priority!r} is not a whole number")
    expires = data.get("expires")
    expires_us = LATEST_EXPIRY_US - 1  # stands in for an expiry that did not parse, to check the rest
    try:
        expires_us = int(data["expires_us"]) if data.get("expires_us") is not None else parse_expiry(str(expires or ""))
    except Invalid as exc:
        problems.append(str(exc))
    spec = EntrySpec(
        pattern=vrm or "A", reason=str(data.get("reason") or ""),
        source=str(data.get("source") or hotlist.source or ""), priority=priority, expires_us=expires_us,
    )
    problems += entry_problems(spec, now_us)
    if problems:
        raise Invalid("; ".join(problems))
    return check_entry(spec, now_us)


def parse_csv(text: str, hotlist: Hotlist, now_us: int | None = None) -> list[EntrySpec]:
    """Every line checked; raises :class:`HotlistImportError` listing each bad line."""
    if text.startswith("\ufeff"):
        text = text[1:]  # Excel's byte-order mark
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise HotlistImportError([(1, "the file is empty: expected a header row")]) from None
    except csv.Error as exc:
        raise HotlistImportError([(1, f"not CSV: {exc}")]) from None
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in CSV_COLUMNS]
    missing = [n for n in ("vrm", "reason", "expires") if n not in names]
    if unknown or missing:
        problems = []
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)}")
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        raise HotlistImportError([(1, f"header: {'; '.join(problems)} (columns: {', '.join(CSV_COLUMNS)})")])
    specs: list[EntrySpec] = []
    errors: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(specs) + len(errors) >= MAX_CSV_LINES:
                errors.append((line, f"more than {MAX_CSV_LINES} entries; split the file"))
                break
            if len(row) != len(names):
                errors.append((line, f"{len(row)} fields, expected {len(names)}"))
                continue
            try:
                spec = parse_entry(dict(zip(names, row, strict=True)), hotlist, now_us)
            except Invalid as exc:
                errors.append((line, str(exc)))
                continue
            if spec.pattern in seen:
                errors.append((line, f"{spec.pattern} repeats line {seen[spec.pattern]}"))
                continue
            seen[spec.pattern] = line
            specs.append(spec)
    except csv.Error as exc:
        errors.append((reader.line_num, f"not CSV: {exc}"))
    if errors:
        raise HotlistImportError(errors)
    if not specs:
        raise HotlistImportError([(1, "no entries after the header")])
    return specs


@dataclass(frozen=True)
class ImportResult:
    added: int
    replaced: int


async def import_csv(session: AsyncSession, hotlist: Hotlist, text: str, by: str,
                     replace: bool = False) -> ImportResult:
    """Import entries from CSV text. ``replace``: the file replaces the list's live entries."""
    specs = parse_csv(text, hotlist)
    replaced = 0
    if replace:
        for entry in await list_entries(session, hotlist.id):
            await remove_entry(session, hotlist.id, entry.id, by)
            replaced += 1
    added = await add_entries(session, hotlist.id, specs, created_by=by)
    return ImportResult(len(added), replaced)
