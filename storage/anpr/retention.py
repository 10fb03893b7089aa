"""ANPR retention: reads (with their hits and pictures) older than the ANPR retention period
go; a read whose hit still awaits a decision stays. Separate from video retention.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import NotFound, audit
from storage.anpr.images import resolve_image
from storage.anpr.models import AnprHit, AnprRead, HitState
from storage.db import now_us, transaction

log = logging.getLogger(__name__)


DAY_US = 86_400 * 1_000_000


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
