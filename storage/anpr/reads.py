"""ANPR reads: storing one, and searching them (by VRM or pattern, time, site, camera), with
the narrowing of a user to the cameras they may see. Times are integer UTC microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import Invalid, NotFound
from storage.anpr.models import AnprRead
from storage.anpr.vrm import is_pattern, normalise_pattern, normalise_vrm, pattern_to_like
from storage.db import now_us
from storage.models import Camera, Site


@dataclass
class NewRead:
    """What the live reader (or an import) hands to :func:`add_read`."""

    vrm: str
    confidence: float
    read_us: int
    camera_id: int | None
    raw_text: str = ""
    plate_format: str = ""
    box: list[int] = field(default_factory=list)
    char_confidences: list[float] = field(default_factory=list)
    frames: int = 1
    plate_path: str = ""
    overview_path: str = ""
    # Used only when camera_id is None (e.g. imported reads); otherwise taken from the camera.
    site_name: str = ""
    lane: str = ""
    direction: str = ""


async def add_read(session: AsyncSession, new: NewRead) -> AnprRead:
    """Insert a read; site, lane and direction come from the camera's configuration now."""
    site_id, site_name, lane, direction = None, new.site_name, new.lane, new.direction
    if new.camera_id is not None:
        cam = await session.get(Camera, new.camera_id)
        if cam is None:
            raise NotFound(f"no camera {new.camera_id}")
        lane, direction = cam.lane or lane, cam.direction or direction
        if cam.site_id is not None:
            site = await session.get(Site, cam.site_id)
            site_id, site_name = cam.site_id, site.name if site else site_name
    read = AnprRead(
        vrm=normalise_vrm(new.vrm), raw_text=new.raw_text[:64], plate_format=new.plate_format,
        confidence=float(new.confidence), read_us=new.read_us, stored_us=now_us(),
        camera_id=new.camera_id, site_id=site_id, site_name=site_name, lane=lane, direction=direction,
        box=[int(v) for v in new.box], char_confidences=[round(float(c), 4) for c in new.char_confidences],
        frames=new.frames, plate_path=new.plate_path, overview_path=new.overview_path,
    )
    session.add(read)
    await session.flush()
    return read


async def get_read(session: AsyncSession, read_id: int) -> AnprRead:
    read = await session.get(AnprRead, read_id)
    if read is None:
        raise NotFound(f"no ANPR read {read_id}")
    return read


@dataclass(frozen=True)
class ReadQuery:
    """A search of ANPR reads. ``pattern`` is a VRM or wildcard pattern (required)."""

    pattern: str
    from_us: int | None = None
    to_us: int | None = None
    sites: tuple[str, ...] = ()
    camera_id: int | None = None
    limit: int = 1000
    offset: int = 0
    # The cameras the searcher may see (narrowing); None: every camera.
    allowed_camera_ids: frozenset[int] | None = None

    def described(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "from_us": self.from_us, "to_us": self.to_us,
                "sites": list(self.sites), "camera_id": self.camera_id}


def _narrowed(query, allowed_camera_ids: frozenset[int] | None):
    """Only reads of the cameras a narrowed user may see (None: no narrowing)."""
    if allowed_camera_ids is None:
        return query
    return query.where(AnprRead.camera_id.in_(sorted(allowed_camera_ids)))


def _site_clause(sites: tuple[str, ...]):
    return or_(*(func.lower(AnprRead.site_name) == s.lower() for s in sites))


async def search_reads(session: AsyncSession, q: ReadQuery) -> list[AnprRead]:
    """Reads matching the query, newest first. Validates the pattern and the time range."""
    pattern = normalise_pattern(q.pattern)
    if q.from_us is not None and q.to_us is not None and q.to_us < q.from_us:
        raise Invalid("the end of the time range is before its start")
    if not 1 <= q.limit <= 10_000:
        raise Invalid("limit must be 1 to 10000")
    query = select(AnprRead)
    if pattern != "*":
        query = query.where(AnprRead.vrm.like(pattern_to_like(pattern)) if is_pattern(pattern)
                            else AnprRead.vrm == pattern)
    if q.from_us is not None:
        query = query.where(AnprRead.read_us >= q.from_us)
    if q.to_us is not None:
        query = query.where(AnprRead.read_us < q.to_us)
    if q.sites:
        query = query.where(_site_clause(q.sites))
    if q.camera_id is not None:
        query = query.where(AnprRead.camera_id == q.camera_id)
    query = _narrowed(query, q.allowed_camera_ids)
    query = query.order_by(AnprRead.read_us.desc(), AnprRead.id.desc()).limit(q.limit).offset(max(q.offset, 0))
    return list((await session.execute(query)).scalars())


async def reads_at_both(session: AsyncSession, site_a: str, site_b: str, from_us: int | None,
                        to_us: int | None, vrm: str | None = None, limit: int = 200_000,
                        allowed_camera_ids: frozenset[int] | None = None) -> list[AnprRead]:
    """Reads at either site (in time order) of VRMs read at both sites in the range.

    The raw material of journeys (anpr.journeys pairs them up).
    """
    def in_range(query, site: str):
        query = query.where(func.lower(AnprRead.site_name) == site.lower())
        if from_us is not None:
            query = query.where(AnprRead.read_us >= from_us)
        if to_us is not None:
            query = query.where(AnprRead.read_us < to_us)
        if vrm:
            pattern = normalise_pattern(vrm)
            query = query.where(AnprRead.vrm.like(pattern_to_like(pattern)) if is_pattern(pattern)
                                else AnprRead.vrm == pattern)
        return _narrowed(query, allowed_camera_ids)

    at_a = in_range(select(AnprRead.vrm), site_a)
    at_b = in_range(select(AnprRead.vrm), site_b)
    both = at_a.intersect(at_b).subquery()
    query = select(AnprRead).where(
        AnprRead.vrm.in_(select(both.c.vrm)),
        _site_clause((site_a, site_b)),
    )
    if from_us is not None:
        query = query.where(AnprRead.read_us >= from_us)
    if to_us is not None:
        query = query.where(AnprRead.read_us < to_us)
    query = _narrowed(query, allowed_camera_ids).order_by(AnprRead.vrm, AnprRead.read_us).limit(limit)
    return list((await session.execute(query)).scalars())
