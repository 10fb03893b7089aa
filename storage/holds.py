"""Holds: locks that keep footage past retention. Every hold has a reason, an owner, a review date."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import Invalid, NotFound
from storage.db import now_us
from storage.models import Hold, HoldWindow


@dataclass(frozen=True)
class HeldSpan:
    """What retention needs to know of a hold window. ``camera_id`` None covers every camera."""

    camera_id: int | None
    start_us: int
    end_us: int

    def covers(self, camera_id: int, start_us: int, end_us: int) -> bool:
        return (self.camera_id is None or self.camera_id == camera_id) and start_us < self.end_us and end_us > self.start_us


async def add_hold(
    session: AsyncSession,
    *,
    reason: str,
    owner: str,
    review_us: int,
    windows: list[tuple[int | None, int, int]],
    reference: str = "",
) -> Hold:
    if not reason.strip():
        raise Invalid("a hold needs a reason")
    if not owner.strip():
        raise Invalid("a hold needs an owner")
    if not windows:
        raise Invalid("a hold needs at least one camera and time range")
    for _, start, end in windows:
        if end <= start:
            raise Invalid("a hold's time range must end after it starts")
    hold = Hold(reason=reason, owner=owner, review_us=review_us, created_us=now_us(), reference=reference)
    hold.windows = [HoldWindow(camera_id=c, start_us=s, end_us=e) for c, s, e in windows]
    session.add(hold)
    await session.flush()
    return hold


async def release_hold(session: AsyncSession, hold_id: int, by: str) -> Hold:
    hold = await session.get(Hold, hold_id)
    if hold is None:
        raise NotFound(f"no hold {hold_id}")
    if hold.released_us is not None:
        raise Invalid(f"hold {hold_id} was already released")
    hold.released_us, hold.released_by = now_us(), by
    await session.flush()
    return hold


async def list_holds(session: AsyncSession, include_released: bool = False) -> list[Hold]:
    query = select(Hold).order_by(Hold.id)
    if not include_released:
        query = query.where(Hold.released_us.is_(None))
    return list((await session.execute(query)).scalars())


async def active_spans(session: AsyncSession) -> list[HeldSpan]:
    rows = await session.execute(
        select(HoldWindow.camera_id, HoldWindow.start_us, HoldWindow.end_us)
        .join(Hold)
        .where(Hold.released_us.is_(None))
    )
    return [HeldSpan(c, s, e) for c, s, e in rows]
