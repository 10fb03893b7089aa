"""Privacy masks: per camera, polygons over the picture that no one without the ``unmask`` right
may see (issue 15, item 1; docs/design/lawful-use.md).

A camera has at most one mask set: a list of polygons, each a list of ``[x, y]`` points in
normalised coordinates (0..1 of the picture's width and height, from the top left), so that one
set serves the main stream, the sub stream and any recorded size. Setting replaces the whole
set; clearing removes it. Both need a reason and append their audit entry (``masks.set``,
``masks.clear``) in the caller's transaction. ``version`` grows with every change, so that a
stream opened under an older set can be found and ended.

``applied_by`` says who paints the masks into the picture: ``service`` (the service masks every
picture it hands out, decoding and re-encoding) or ``camera`` (the camera took them through
ONVIF Media2 ``CreateMask`` and masks its own stream; ``camera_tokens`` are its tokens for them).
``camera_since_us`` is when the camera confirmed the current version (its CreateMask answered:
it paints the mask from then on), ``camera_checked_us`` the last time its masks were read back
(GetMasks) and found to be ours, and ``camera_state`` says why the service paints a set when the
camera is ONVIF (no Media2, a refused CreateMask, the camera unreachable, drift found).

Recorded footage is painted at source only if it was recorded while the camera painted this
very set: :func:`camera_painted` (docs/design/lawful-use.md gives the rule and its reasons).
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import Invalid, NotFound, audit
from storage.db import Base, now_us
from storage.models import Camera

MAX_POLYGONS = 16
MAX_POINTS = 64
MAX_REASON = 2000
SERVICE = "service"
CAMERA = "camera"

Polygon = list[tuple[float, float]]


class MaskSet(Base):
    __tablename__ = "privacy_masks"
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), primary_key=True)
    polygons: Mapped[list[list[list[float]]]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str] = mapped_column(String(200))
    set_us: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(Integer, default=1)
    applied_by: Mapped[str] = mapped_column(String(16), default=SERVICE)
    camera_tokens: Mapped[list[str]] = mapped_column(JSON, default=list)
    camera_since_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    camera_checked_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    camera_state: Mapped[str] = mapped_column(Text, default="", server_default="")


# Frames captured before the camera confirmed a mask may still be in its encoder and network
# queues (a GOP of 2 s at most on the cameras we know): footage from this long after the
# confirmation on is trusted to carry the mask.
CAMERA_MARGIN_US = 2_000_000


def camera_painted(applied_by: str, since_us: int | None, checked_us: int | None, start_us: int,
                   end_us: int | None) -> bool:
    """Was footage of ``start_us`` to ``end_us`` (None: still growing) recorded while the camera
    painted this set? Only between its confirmation (plus :data:`CAMERA_MARGIN_US`) and the
    last read-back that found the masks intact: after that, nobody knows yet."""
    return (applied_by == CAMERA and since_us is not None and checked_us is not None and end_us is not None
            and start_us >= since_us + CAMERA_MARGIN_US and end_us <= checked_us)


def check_polygons(polygons: Any) -> list[Polygon]:
    """The polygons, validated: 1..MAX_POLYGONS of 3..MAX_POINTS finite points in 0..1."""
    if not isinstance(polygons, list) or not polygons:
        raise Invalid("polygons: give at least one polygon (to remove every mask, clear them)")
    if len(polygons) > MAX_POLYGONS:
        raise Invalid(f"polygons: at most {MAX_POLYGONS} per camera")
    out: list[Polygon] = []
    for n, poly in enumerate(polygons):
        if not isinstance(poly, list) or not 3 <= len(poly) <= MAX_POINTS:
            raise Invalid(f"polygons[{n}]: a polygon has 3 to {MAX_POINTS} points")
        points: Polygon = []
        for point in poly:
            if (not isinstance(point, list | tuple) or len(point) != 2
                    or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in point)):
                raise Invalid(f"polygons[{n}]: each point is [x, y]")
            x, y = float(point[0]), float(point[1])
            if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= 1 and 0 <= y <= 1):
                raise Invalid(f"polygons[{n}]: coordinates are fractions of the picture, 0 to 1")
            points.append((round(x, 6), round(y, 6)))
        if _area(points) < 1e-6:
            raise Invalid(f"polygons[{n}]: the polygon encloses no area")
        out.append(points)
    return out


def _area(points: Polygon) -> float:
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True))) / 2


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("reason: say why (the audit trail keeps it)")
    if len(reason) > MAX_REASON:
        raise Invalid(f"reason: at most {MAX_REASON} characters")
    return reason


async def get(session: AsyncSession, camera_id: int) -> MaskSet | None:
    return await session.get(MaskSet, camera_id)


async def all_sets(session: AsyncSession) -> dict[int, MaskSet]:
    return {m.camera_id: m for m in (await session.execute(select(MaskSet))).scalars()}


async def set_masks(session: AsyncSession, camera: Camera, polygons: Any, *, reason: str, by: str) -> MaskSet:
    """Replace ``camera``'s masks (audited ``masks.set``). Applied by the service until
    :func:`mark_applied` says the camera took them."""
    checked = check_polygons(polygons)
    reason = _reason(reason)
    row = await session.get(MaskSet, camera.id)
    if row is None:
        row = MaskSet(camera_id=camera.id, version=0, camera_tokens=[])
        session.add(row)
    row.polygons = [[list(p) for p in poly] for poly in checked]
    row.reason, row.set_by, row.set_us = reason, by, now_us()
    row.version = (row.version or 0) + 1
    row.applied_by, row.camera_tokens, row.camera_state = SERVICE, [], ""
    row.camera_since_us = row.camera_checked_us = None
    await session.flush()
    await audit.append(session, by, "masks.set", f"camera:{camera.id}", reason=reason, polygons=len(checked),
                       points=sum(len(p) for p in checked), version=row.version)
    return row


async def clear(session: AsyncSession, camera: Camera, *, reason: str, by: str) -> MaskSet:
    """Remove ``camera``'s masks (audited ``masks.clear``); returns the removed set."""
    reason = _reason(reason)
    row = await session.get(MaskSet, camera.id)
    if row is None:
        raise NotFound(f"camera {camera.name!r} has no privacy masks")
    await session.delete(row)
    await session.flush()
    await audit.append(session, by, "masks.clear", f"camera:{camera.id}", reason=reason, version=row.version)
    return row


async def mark_applied(session: AsyncSession, camera_id: int, version: int, applied_by: str, tokens: list[str],
                       *, by: str, detail: str = "", at_us: int | None = None) -> bool:
    """Record who paints version ``version`` of a camera's masks (audited ``masks.applied``):
    the camera from ``at_us`` (its confirmation) on, or the service, with ``detail`` saying
    why; False when the set changed meanwhile (the caller pushes the newer one)."""
    row = await session.get(MaskSet, camera_id)
    if row is None or row.version != version:
        return False
    row.applied_by, row.camera_tokens, row.camera_state = applied_by, list(tokens), detail[:2000]
    when = at_us if at_us is not None else now_us()
    row.camera_since_us = row.camera_checked_us = when if applied_by == CAMERA else None
    await session.flush()
    await audit.append(session, by, "masks.applied", f"camera:{camera_id}", version=version, by=applied_by,
                       tokens=len(tokens), detail=detail[:300])
    return True


async def mark_checked(session: AsyncSession, camera_id: int, version: int, at_us: int) -> bool:
    """The camera's masks were read back at ``at_us`` and are this version's: footage up to then
    is painted at source. False when the set or who paints it changed meanwhile."""
    row = await session.get(MaskSet, camera_id)
    if row is None or row.version != version or row.applied_by != CAMERA:
        return False
    row.camera_checked_us = max(row.camera_checked_us or 0, at_us)
    return True


async def mark_drift(session: AsyncSession, camera_id: int, version: int, detail: str, *, by: str) -> bool:
    """The camera no longer paints this version as it should (found by a read-back): the service
    paints it again from now on (audited ``masks.drift``)."""
    row = await session.get(MaskSet, camera_id)
    if row is None or row.version != version:
        return False
    row.applied_by, row.camera_state = SERVICE, f"drift: {detail}"[:2000]
    row.camera_since_us = row.camera_checked_us = None
    await session.flush()
    await audit.append(session, by, "masks.drift", f"camera:{camera_id}", version=version, detail=detail[:300])
    return True
