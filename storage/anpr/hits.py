"""Hits: a read that matched a hotlist entry, pending until an operator confirms or dismisses it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import Invalid, NotFound
from storage.anpr.models import AnprHit, AnprRead, HitState, Hotlist, HotlistEntry
from storage.anpr.reads import _narrowed
from storage.db import now_us


async def add_hit(session: AsyncSession, read: AnprRead, entry: HotlistEntry) -> AnprHit:
    hit = AnprHit(read_id=read.id, entry_id=entry.id, hotlist_id=entry.hotlist_id, at_us=now_us(), vrm=read.vrm,
                  camera_id=read.camera_id, priority=entry.priority, state=HitState.PENDING.value)
    session.add(hit)
    await session.flush()
    return hit


async def get_hit(session: AsyncSession, hit_id: int) -> AnprHit:
    hit = await session.get(AnprHit, hit_id)
    if hit is None:
        raise NotFound(f"no hit {hit_id}")
    return hit


async def list_hits(session: AsyncSession, state: str | None = None, limit: int = 200,
                    from_us: int | None = None, allowed_camera_ids: frozenset[int] | None = None,
                    ) -> list[tuple[AnprHit, AnprRead, HotlistEntry, Hotlist]]:
    query = (
        select(AnprHit, AnprRead, HotlistEntry, Hotlist)
        .join(AnprRead, AnprRead.id == AnprHit.read_id)
        .join(HotlistEntry, HotlistEntry.id == AnprHit.entry_id)
        .join(Hotlist, Hotlist.id == AnprHit.hotlist_id)
    )
    if state:
        if state not in {s.value for s in HitState}:
            raise Invalid(f"state must be one of {', '.join(s.value for s in HitState)}")
        query = query.where(AnprHit.state == state)
    if from_us is not None:
        query = query.where(AnprHit.at_us >= from_us)
    query = _narrowed(query, allowed_camera_ids).order_by(AnprHit.priority, AnprHit.at_us.desc()).limit(limit)
    return [tuple(r) for r in await session.execute(query)]  # type: ignore[misc]


async def decide_hit(session: AsyncSession, hit_id: int, state: HitState, by: str, note: str = "") -> AnprHit:
    """Confirm or dismiss a pending hit; a decided hit is not decided again."""
    if state == HitState.PENDING:
        raise Invalid("a hit is confirmed or dismissed, not set back to pending")
    if not by.strip():
        raise Invalid("a decision must name who made it")
    hit = await get_hit(session, hit_id)
    if hit.state != HitState.PENDING.value:
        raise Invalid(f"hit {hit_id} was already {hit.state} by {hit.decided_by}")
    hit.state, hit.decided_by, hit.decided_us, hit.note = state.value, by, now_us(), note
    await session.flush()
    return hit
