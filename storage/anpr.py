"""ANPR data: reads, hotlists and their entries, hits; searches, journeys' raw reads, retention.

Registrations (VRMs) are stored normalised: upper case letters and digits, no spaces
(``AB12 CDE`` is stored ``AB12CDE``). A search or hotlist pattern uses ``*`` for any run of
characters and ``?`` for exactly one; see :func:`pattern_to_like`.

Images: each read's plate patch and overview are JPEG files under the ANPR image root (by
default ``<data_dir>/anpr``), in ``YYYY/MM/DD/<camera id>/`` by the read's UTC date; the row
holds paths relative to that root. Files are written (and fsynced) before the row is inserted,
so every row's files exist; a crash in between leaves orphan files, which the day-folder sweep
of :func:`run_anpr_retention` removes. :func:`resolve_image` never returns a path outside the
root. Times are integer UTC microseconds (``*_us``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from storage import Invalid, NotFound, audit
from storage.db import Base, now_us, row_id, transaction
from storage.models import Camera, Site

log = logging.getLogger(__name__)
DAY_US = 86_400 * 1_000_000
VRM_RE = re.compile(r"^[A-Z0-9]{1,10}$")
PATTERN_RE = re.compile(r"^[A-Z0-9*?]{1,12}$")
PRIORITY_MIN, PRIORITY_MAX = 1, 5  # 1 is the most urgent


class HitState(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


# ---------------------------------------------------------------------------------------------
# Models


class AnprRead(Base):
    """One vehicle passing one ANPR camera, read once (after voting across frames)."""

    __tablename__ = "anpr_reads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vrm: Mapped[str] = mapped_column(String(16))  # normalised
    raw_text: Mapped[str] = mapped_column(String(64), default="")
    plate_format: Mapped[str] = mapped_column(String(32), default="")  # e.g. uk_current, generic
    confidence: Mapped[float] = mapped_column(Float)  # 0..1
    read_us: Mapped[int] = mapped_column(BigInteger)  # UTC time of the frame the read comes from
    stored_us: Mapped[int] = mapped_column(BigInteger)
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id", ondelete="SET NULL"), nullable=True)
    # Site, lane and direction as configured when the read was made (a camera may move later).
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"), nullable=True)
    site_name: Mapped[str] = mapped_column(String(200), default="")
    lane: Mapped[str] = mapped_column(String(50), default="")
    direction: Mapped[str] = mapped_column(String(50), default="")
    box: Mapped[list[int]] = mapped_column(JSON, default=list)  # x, y, w, h in the overview frame
    char_confidences: Mapped[list[float]] = mapped_column(JSON, default=list)
    frames: Mapped[int] = mapped_column(Integer, default=1)  # frames that voted for this read
    plate_path: Mapped[str] = mapped_column(String(300), default="")  # relative to the image root
    overview_path: Mapped[str] = mapped_column(String(300), default="")

    __table_args__ = (
        Index("ix_anpr_reads_vrm_read", "vrm", "read_us"),
        Index("ix_anpr_reads_site_read", "site_id", "read_us"),
        Index("ix_anpr_reads_read_us", "read_us"),
    )


class Hotlist(Base):
    __tablename__ = "anpr_hotlists"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(200), default="")  # default for its entries
    default_priority: Mapped[int] = mapped_column(Integer, default=3)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_us: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class HotlistEntry(Base):
    """A VRM or a wildcard pattern of interest. Removed entries are kept (hits refer to them)."""

    __tablename__ = "anpr_hotlist_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hotlist_id: Mapped[int] = mapped_column(ForeignKey("anpr_hotlists.id", ondelete="CASCADE"))
    pattern: Mapped[str] = mapped_column(String(16))  # normalised VRM, or with * and ?
    is_pattern: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(Integer, default=3)
    expires_us: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    removed_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    removed_by: Mapped[str] = mapped_column(String(200), default="")

    __table_args__ = (Index("ix_anpr_hotlist_entries_pattern", "pattern"),)


class AnprHit(Base):
    """A read that matched a hotlist entry; an operator confirms or dismisses it."""

    __tablename__ = "anpr_hits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    read_id: Mapped[int] = mapped_column(ForeignKey("anpr_reads.id", ondelete="CASCADE"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("anpr_hotlist_entries.id", ondelete="CASCADE"))
    hotlist_id: Mapped[int] = mapped_column(ForeignKey("anpr_hotlists.id", ondelete="CASCADE"))
    at_us: Mapped[int] = mapped_column(BigInteger, index=True)
    vrm: Mapped[str] = mapped_column(String(16))
    camera_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    alert_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=HitState.PENDING.value, index=True)
    decided_by: Mapped[str] = mapped_column(String(200), default="")
    decided_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")


# ---------------------------------------------------------------------------------------------
# Registrations and patterns


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


# ---------------------------------------------------------------------------------------------
# Images


def image_dir(read_us: int, camera_id: int | None) -> str:
    """Relative folder for a read's images: ``YYYY/MM/DD/<camera>`` by UTC date."""
    day = datetime.fromtimestamp(read_us / 1e6, UTC)
    return f"{day:%Y/%m/%d}/{camera_id if camera_id is not None else 'none'}"


def write_image(root: Path, rel_dir: str, name: str, data: bytes) -> str:
    """Write one JPEG durably; return its path relative to ``root``. Blocking: call off the loop."""
    folder = root / rel_dir
    folder.mkdir(parents=True, exist_ok=True)
    rel = f"{rel_dir}/{name}"
    tmp = folder / f".{name}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / rel)
    return rel


def save_read_images(root: Path, read_us: int, camera_id: int | None, plate_jpeg: bytes | None,
                     overview_jpeg: bytes | None) -> tuple[str, str]:
    """Write a read's plate patch and overview; returns their relative paths ('' when absent)."""
    rel_dir = image_dir(read_us, camera_id)
    stem = f"{read_us}-{uuid.uuid4().hex[:8]}"
    plate = write_image(root, rel_dir, f"{stem}-plate.jpg", plate_jpeg) if plate_jpeg else ""
    overview = write_image(root, rel_dir, f"{stem}-overview.jpg", overview_jpeg) if overview_jpeg else ""
    return plate, overview


def resolve_image(root: Path, rel: str) -> Path:
    """The file for a stored relative path; NotFound if absent or if it would leave ``root``."""
    if not rel:
        raise NotFound("this read has no such image")
    base = root.resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base) or path == base:
        raise NotFound("no such image")
    if not path.is_file():
        raise NotFound("the image file is missing")
    return path


# ---------------------------------------------------------------------------------------------
# Reads


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


# ---------------------------------------------------------------------------------------------
# Hotlists


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
    if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):
        found = row_id(ref)
        hl = await session.get(Hotlist, found) if found is not None else None
    else:
        hl = (await session.execute(select(Hotlist).where(Hotlist.name == ref))).scalar_one_or_none()
    if hl is None:
        raise NotFound(f"no hotlist {ref!r}")
    return hl


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


def check_entry(spec: EntrySpec, now: int | None = None) -> EntrySpec:
    pattern = normalise_pattern(spec.pattern)
    if pattern == "*":
        raise Invalid("a hotlist entry of '*' would match every vehicle")
    if not spec.reason.strip():
        raise Invalid("a hotlist entry needs a reason")
    if not spec.source.strip():
        raise Invalid("a hotlist entry needs a source")
    _check_priority(spec.priority)
    if spec.expires_us <= (now_us() if now is None else now):
        raise Invalid("the expiry is in the past")
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


# ---------------------------------------------------------------------------------------------
# Hits


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


# ---------------------------------------------------------------------------------------------
# Retention


@dataclass
class AnprRetentionResult:
    reads: int = 0
    hits: int = 0
    files: int = 0
    kept_pending: int = 0  # expired reads kept because a hit on them awaits a decision
    folders: int = 0


def is_read_expired(read_us: int, now_us: int, retention_days: int) -> bool:
    return read_us <= now_us - retention_days * DAY_US


async def run_anpr_retention(
    sessions: async_sessionmaker[AsyncSession],
    root: Path,
    *,
    retention_days: int,
    now: int | None = None,
    batch: int = 1000,
    actor: str = "system:anpr-retention",
) -> AnprRetentionResult:
    """Delete reads (with their hits and images) older than ``retention_days``.

    A read whose hit is still pending is kept until an operator decides it: an alert nobody
    looked at must not vanish. Rows go first, then their files; day folders older than the
    retention (with any orphan files left by a crash) go last. One audit entry per run.
    """
    now = now_us() if now is None else now
    cutoff = now - retention_days * DAY_US
    result = AnprRetentionResult()
    pending = select(AnprHit.read_id).where(AnprHit.state == HitState.PENDING.value)
    while True:
        async with transaction(sessions) as session:
            rows = (await session.execute(
                select(AnprRead.id, AnprRead.plate_path, AnprRead.overview_path)
                .where(AnprRead.read_us <= cutoff, AnprRead.id.not_in(pending)).order_by(AnprRead.id).limit(batch)
            )).all()
            if not rows:
                break
            ids = [r[0] for r in rows]
            hits = await session.execute(delete(AnprHit).where(AnprHit.read_id.in_(ids)))
            await session.execute(delete(AnprRead).where(AnprRead.id.in_(ids)))
            result.reads += len(ids)
            result.hits += hits.rowcount or 0
        paths = [p for r in rows for p in (r[1], r[2]) if p]
        result.files += await asyncio.to_thread(_unlink_all, root, paths)
    async with transaction(sessions) as session:
        result.kept_pending = int(await session.scalar(
            select(func.count()).where(AnprRead.read_us <= cutoff, AnprRead.id.in_(pending))) or 0)
        if result.reads or result.kept_pending:
            await audit.append(session, actor, "anpr.retention", "anpr", reads=result.reads, hits=result.hits,
                               files=result.files, kept_pending=result.kept_pending, retention_days=retention_days)
        keep_days = set()
        if result.kept_pending:
            kept = await session.execute(select(AnprRead.read_us).where(AnprRead.read_us <= cutoff))
            keep_days = {datetime.fromtimestamp(us / 1e6, UTC).date() for (us,) in kept}
    result.folders = await asyncio.to_thread(_sweep_days, root, cutoff, keep_days)
    if result.reads:
        log.info("anpr retention: deleted %d reads, %d hits, %d files", result.reads, result.hits, result.files)
    return result


def _unlink_all(root: Path, rels: list[str]) -> int:
    n = 0
    for rel in rels:
        try:
            resolve_image(root, rel).unlink()
            n += 1
        except (NotFound, FileNotFoundError):
            pass
    return n


def _sweep_days(root: Path, cutoff_us: int, keep_days: set) -> int:
    """Remove day folders (YYYY/MM/DD) wholly older than the cutoff, except days still kept."""
    if not root.is_dir():
        return 0
    cutoff_day = datetime.fromtimestamp(cutoff_us / 1e6, UTC).date()
    removed = 0
    for day_dir in sorted(root.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]")):
        try:
            day = datetime.strptime("/".join(day_dir.parts[-3:]), "%Y/%m/%d").date()
        except ValueError:
            continue
        if day + timedelta(days=1) <= cutoff_day and day not in keep_days:
            shutil.rmtree(day_dir, ignore_errors=True)
            removed += 1
    return removed
