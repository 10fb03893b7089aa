"""Retention: which segments go, decided by pure functions; the run that deletes them.

Two rules, in order:
1. age: a segment whose end is older than its camera's retention days goes, unless held;
2. space: while free space is below the floor, the oldest unheld segments go first (and an
   alarm is raised, because the disk does not cover the retention period). Recording quality
   is never lowered to fit.
Held footage is never deleted by either rule.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import audit
from storage.catalogue import unlink_segments
from storage.db import now_us, transaction
from storage.holds import HeldSpan, active_spans
from storage.models import Camera, RetentionReceipt, Segment, SegmentState

log = logging.getLogger(__name__)
DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class SegmentInfo:
    id: int
    camera_id: int
    start_us: int
    end_us: int
    bytes: int
    path: str


def is_held(seg: SegmentInfo, holds: Iterable[HeldSpan]) -> bool:
    return any(h.covers(seg.camera_id, seg.start_us, seg.end_us) for h in holds)


def is_expired(seg: SegmentInfo, now_us: int, retention_days: int) -> bool:
    """Expired once its *end* is older than the retention period."""
    return seg.end_us <= now_us - retention_days * DAY_US


@dataclass(frozen=True)
class Deletion:
    segment: SegmentInfo
    reason: str  # "expired" or "disk_floor"


def plan_deletions(
    segments: list[SegmentInfo],
    *,
    now_us: int,
    retention_days: dict[int, int],
    default_days: int,
    holds: list[HeldSpan],
    free_bytes: int,
    floor_bytes: int,
) -> list[Deletion]:
    """The pure keep-or-delete decision over the catalogue.

    ``segments`` in any order; ``retention_days`` maps camera id to its days (missing: default).
    Returns deletions, expired ones first, then by age for the disk floor.
    """
    out: list[Deletion] = []
    survivors: list[SegmentInfo] = []
    for seg in segments:
        if is_held(seg, holds):
            continue
        if is_expired(seg, now_us, retention_days.get(seg.camera_id, default_days)):
            out.append(Deletion(seg, "expired"))
            free_bytes += seg.bytes
        else:
            survivors.append(seg)
    if free_bytes < floor_bytes:
        for seg in sorted(survivors, key=lambda s: (s.start_us, s.camera_id)):
            if free_bytes >= floor_bytes:
                break
            out.append(Deletion(seg, "disk_floor"))
            free_bytes += seg.bytes
    return out


@dataclass
class RetentionResult:
    deleted: int = 0
    bytes: int = 0
    dry_run: bool = False
    below_floor: bool = False  # the alarm: capacity does not cover retention
    summary: list[dict] = field(default_factory=list)
    receipt_id: int | None = None


def free_space(root: Path) -> int:
    root.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(root).free


async def run_retention(
    sessions: async_sessionmaker[AsyncSession],
    root: Path,
    *,
    default_days: int,
    floor_bytes: int,
    dry_run: bool = False,
    now: int | None = None,
    free_bytes: int | None = None,
    actor: str = "system:retention",
    batch: int = 2000,
) -> RetentionResult:
    """Plan and carry out one retention run; write its receipt and a summary audit entry."""
    now = now_us() if now is None else now
    free = await asyncio.to_thread(free_space, root) if free_bytes is None else free_bytes
    async with sessions() as session:
        days = {cid: d for cid, d in (await session.execute(select(Camera.id, Camera.retention_days))) if d}
        holds = await active_spans(session)
        # Only the floor rule can reach young segments: read everything only when below it.
        query = select(Segment.id, Segment.camera_id, Segment.start_us, Segment.end_us, Segment.bytes, Segment.path).where(
            Segment.state != SegmentState.GARBAGE.value
        )
        if free >= floor_bytes:
            query = query.where(Segment.end_us <= now - min([default_days, *days.values()]) * DAY_US)
        rows = [SegmentInfo(*r) for r in await session.execute(query)]
    plan = plan_deletions(rows, now_us=now, retention_days=days, default_days=default_days, holds=holds,
                          free_bytes=free, floor_bytes=floor_bytes)
    result = RetentionResult(dry_run=dry_run, below_floor=free < floor_bytes)
    per: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 2**63, 0])
    for d in plan:
        agg = per[(d.segment.camera_id, d.reason)]
        agg[0] += 1
        agg[1] += d.segment.bytes
        agg[2] = min(agg[2], d.segment.start_us)
        agg[3] = max(agg[3], d.segment.end_us)
    result.summary = [
        {"camera_id": c, "reason": r, "segments": n, "bytes": b, "from_us": lo, "to_us": hi}
        for (c, r), (n, b, lo, hi) in sorted(per.items())
    ]
    result.deleted, result.bytes = len(plan), sum(d.segment.bytes for d in plan)
    if result.below_floor:
        log.error("retention: free space %d bytes is below the floor %d: capacity does not cover retention", free, floor_bytes)

    if not dry_run:
        for i in range(0, len(plan), batch):
            chunk = [d.segment for d in plan[i:i + batch]]
            ids = [s.id for s in chunk]
            async with transaction(sessions) as session:
                await session.execute(update(Segment).where(Segment.id.in_(ids)).values(state=SegmentState.GARBAGE.value))
            await asyncio.to_thread(unlink_segments, root, [s.path for s in chunk])
            async with transaction(sessions) as session:
                await session.execute(delete(Segment).where(Segment.id.in_(ids)))
    async with transaction(sessions) as session:
        receipt = RetentionReceipt(run_us=now, dry_run=dry_run, segments=result.deleted, bytes=result.bytes,
                                   summary=result.summary)
        session.add(receipt)
        await session.flush()
        result.receipt_id = receipt.id
        if not dry_run and result.deleted:
            await audit.append(session, actor, "retention.delete", f"receipt:{receipt.id}",
                               segments=result.deleted, bytes=result.bytes, below_floor=result.below_floor,
                               summary=result.summary)
    return result
