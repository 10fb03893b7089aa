"""Hotlists and their entries (a VRM or a wildcard pattern of interest, with reason, source,
priority and expiry). Matching a read against them is anpr.hotlist's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import Invalid, NotFound
from storage.anpr.models import AnprHit, Hotlist, HotlistEntry
from storage.anpr.vrm import is_pattern, normalise_pattern
from storage.db import by_id_or_name, now_us

PRIORITY_MIN, PRIORITY_MAX = 1, 5  # 1 is the most urgent


async def add_hotlist(session: AsyncSession, name: str, *, description: str = "", source: str = "",
                      default_priority: int = 3, created_by: str = "") -> Hotlist:
    name = name.strip()
    if not name or len(name) > 200:
        raise Invalid("a hotlist needs a name of 1 to 200 characters")
    _check_priority(default_priority)
    if await session.scalar(select(func.count()).where(Hotlist.name == name)):
        raise Invalid(f"a hotlist named {name!r} already exists")
    hl = Hotlist(name=name, description=description, source=source, default_priority=default_priority,
                 enabled=True, created_us=now_us(), created_by=created_by)
    session.add(hl)
    await session.flush()
    return hl


async def get_hotlist(session: AsyncSession, ref: int | str) -> Hotlist:
    """A hotlist by id (ASCII digits) or by name."""
    return await by_id_or_name(session, Hotlist, ref, "hotlist")


async def list_hotlists(session: AsyncSession) -> list[tuple[Hotlist, int]]:
    """Each hotlist with its count of live (not removed, not expired) entries."""
    now = now_us()
    live = (
        select(HotlistEntry.hotlist_id, func.count().label("n"))
        .where(HotlistEntry.removed_us.is_(None), HotlistEntry.expires_us > now)
        .group_by(HotlistEntry.hotlist_id).subquery()
    )
    rows = await session.execute(
        select(Hotlist, func.coalesce(live.c.n, 0)).outerjoin(live, live.c.hotlist_id == Hotlist.id).order_by(Hotlist.name)
    )
    return [(hl, int(n)) for hl, n in rows]


async def update_hotlist(session: AsyncSession, ref: int | str, **changes: Any) -> Hotlist:
    hl = await get_hotlist(session, ref)
    for key, value in changes.items():
        if key not in {"description", "source", "default_priority", "enabled", "name"}:
            raise Invalid(f"{key}: not a hotlist field that can be changed")
        if key == "default_priority":
            _check_priority(value)
        if key == "name":
            value = str(value).strip()
            if not value:
                raise Invalid("name must not be empty")
        setattr(hl, key, value)
    await session.flush()
    return hl


async def remove_hotlist(session: AsyncSession, ref: int | str) -> Hotlist:
    """Delete a hotlist that never produced a hit; one with hits can only be disabled."""
    hl = await get_hotlist(session, ref)
    if await session.scalar(select(func.count()).where(AnprHit.hotlist_id == hl.id)):
        raise Invalid(f"hotlist {hl.name!r} has hits on record: disable it instead")
    await session.execute(delete(HotlistEntry).where(HotlistEntry.hotlist_id == hl.id))
    await session.delete(hl)
    await session.flush()
    return hl


def _check_priority(priority: Any) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise Invalid(f"priority must be a whole number from {PRIORITY_MIN} (most urgent) to {PRIORITY_MAX}")
    return priority


@dataclass(frozen=True)
class EntrySpec:
    """A validated hotlist entry (see anpr.hotlist.parse_entry / parse_csv)."""

    pattern: str
    reason: str
    source: str
    priority: int
    expires_us: int


def entry_problems(spec: EntrySpec, now: int | None = None) -> list[str]:
    """Every reason ``spec`` cannot be stored, all at once (a CSV line or a form can then be
    fixed in one go); empty if it can."""
    problems = []
    try:
        if normalise_pattern(spec.pattern) == "*":
            problems.append("a hotlist entry of '*' would match every vehicle")
    except Invalid as exc:
        problems.append(str(exc))
    if not spec.reason.strip():
        problems.append("a hotlist entry needs a reason")
    if not spec.source.strip():
        problems.append("a hotlist entry needs a source")
    try:
        _check_priority(spec.priority)
    except Invalid as exc:
        problems.append(str(exc))
    if spec.expires_us <= (now_us() if now is None else now):
        problems.append("the expiry is in the past")
    return problems


def check_entry(spec: EntrySpec, now: int | None = None) -> EntrySpec:
    problems = entry_problems(spec, now)
    if problems:
        raise Invalid("; ".join(problems))
    pattern = normalise_pattern(spec.pattern)
    return EntrySpec(pattern, spec.reason.strip(), spec.source.strip(), spec.priority, spec.expires_us)


async def add_entries(session: AsyncSession, hotlist_id: int, specs: list[EntrySpec],
                      created_by: str = "") -> list[HotlistEntry]:
    now = now_us()
    entries = []
    for spec in specs:
        spec = check_entry(spec, now)
        entry = HotlistEntry(
            hotlist_id=hotlist_id, pattern=spec.pattern, is_pattern=is_pattern(spec.pattern), reason=spec.reason,
            source=spec.source, priority=spec.priority, expires_us=spec.expires_us, created_us=now,
            created_by=created_by,
        )
        session.add(entry)
        entries.append(entry)
    await session.flush()
    return entries


async def list_entries(session: AsyncSession, hotlist_id: int, *, include_inactive: bool = False) -> list[HotlistEntry]:
    query = select(HotlistEntry).where(HotlistEntry.hotlist_id == hotlist_id)
    if not include_inactive:
        query = query.where(HotlistEntry.removed_us.is_(None), HotlistEntry.expires_us > now_us())
    return list((await session.execute(query.order_by(HotlistEntry.pattern, HotlistEntry.id))).scalars())


async def remove_entry(session: AsyncSession, hotlist_id: int, entry_id: int, removed_by: str) -> HotlistEntry:
    entry = await session.get(HotlistEntry, entry_id)
    if entry is None or entry.hotlist_id != hotlist_id or entry.removed_us is not None:
        raise NotFound(f"no entry {entry_id} in hotlist {hotlist_id}")
    entry.removed_us, entry.removed_by = now_us(), removed_by
    await session.flush()
    return entry


async def live_entries_for(session: AsyncSession, vrm: str, at_us: int) -> list[tuple[HotlistEntry, Hotlist]]:
    """Entries that could match ``vrm`` at ``at_us``: exact ones for it, and every live pattern.

    Expired, removed, and disabled-hotlist entries are never returned. The caller matches the
    patterns (anpr.hotlist.matches): SQL LIKE would do, but one matcher keeps one meaning.
    """
    rows = await session.execute(
        select(HotlistEntry, Hotlist).join(Hotlist, Hotlist.id == HotlistEntry.hotlist_id).where(
            Hotlist.enabled.is_(True),
            HotlistEntry.removed_us.is_(None),
            HotlistEntry.expires_us > at_us,
            or_(and_(HotlistEntry.is_pattern.is_(False), HotlistEntry.pattern == vrm), HotlistEntry.is_pattern.is_(True)),
        )
    )
    return [(e, h) for e, h in rows]
