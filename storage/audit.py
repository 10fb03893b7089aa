"""The append-only, hash-chained audit trail.

Each entry carries the SHA-256 of the previous entry's hash and its own canonical encoding, so
changing, deleting or reordering a row breaks the chain from there on. Appending takes a lock
(an advisory lock on PostgreSQL, the database write lock on SQLite) so two writers never fork
the chain. If the audit entry cannot be written, the caller's transaction fails with it:
callers append inside the same transaction as the action they record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import Base, now_us

GENESIS = "0" * 64
# Any constant works: it names the PostgreSQL advisory lock that serialises appends.
_PG_LOCK_KEY = 0x636F6E74726F6C  # "control"


class AuditEntry(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at_us: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str] = mapped_column(String(400), default="")
    details: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


def canonical(seq: int, at_us: int, actor: str, action: str, target: str, details: str, prev: str) -> bytes:
    """The bytes an entry's hash covers: a JSON array, sorted keys, no spaces, UTF-8."""
    return json.dumps(
        [seq, at_us, actor, action, target, details, prev], separators=(",", ":"), ensure_ascii=False
    ).encode()


def entry_hash(seq: int, at_us: int, actor: str, action: str, target: str, details: str, prev: str) -> str:
    return hashlib.sha256(canonical(seq, at_us, actor, action, target, details, prev)).hexdigest()


async def append(
    session: AsyncSession, actor: str, action: str, target: str = "", **details: Any
) -> AuditEntry:
    """Append one entry in the caller's transaction. ``details`` must hold no secrets."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    else:
        # Take SQLite's write lock now, so the read of the head and the insert are atomic.
        await session.execute(text("UPDATE audit SET id = id WHERE 0"))
    head = (
        await session.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1))
    ).first()
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    body = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    at = now_us()
    entry = AuditEntry(
        seq=seq, at_us=at, actor=actor, action=action, target=target, details=body, prev_hash=prev,
        hash=entry_hash(seq, at, actor, action, target, body, prev),
    )
    session.add(entry)
    await session.flush()
    return entry


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""


async def verify_chain(session: AsyncSession, batch: int = 5000) -> ChainReport:
    """Walk the whole chain in order; name the first entry that does not verify."""
    prev, expected_seq, count, last = GENESIS, 1, 0, 0
    while True:
        rows = (
            await session.execute(select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch))
        ).scalars().all()
        if not rows:
            return ChainReport(True, count, prev)
        for e in rows:
            if e.seq != expected_seq:
                return ChainReport(False, count, prev, expected_seq, f"entry {expected_seq} is missing")
            if e.prev_hash != prev:
                return ChainReport(False, count, prev, e.seq, f"entry {e.seq} does not follow entry {e.seq - 1}")
            if entry_hash(e.seq, e.at_us, e.actor, e.action, e.target, e.details, e.prev_hash) != e.hash:
                return ChainReport(False, count, prev, e.seq, f"entry {e.seq} was altered")
            prev, expected_seq, count, last = e.hash, e.seq + 1, count + 1, e.seq
