"""The append-only, hash-chained audit trail.

Each entry carries the SHA-256 of the previous entry's hash and its own canonical encoding, so
changing, deleting or reordering a row breaks the chain from there on. Appending takes a lock
(an advisory lock on PostgreSQL, the database write lock on SQLite) so two writers never fork
the chain. If the audit entry cannot be written, the action fails: an action that changes the
database appends inside its own transaction (:func:`append`), so both commit or neither; an
action whose effect is elsewhere (a view, a search, a refusal) waits for its entry from the
process's :class:`AuditWriter` (group commit) before it answers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import BigInteger, Integer, String, Text, bindparam, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from storage import StorageError
from storage.db import Base, now_us
from storage.keys import Keys

log = logging.getLogger(__name__)
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


# The last head each process wrote, per database. Only a hint: an append that uses it checks, in
# the same statement as its insert and under the chain's lock, that this entry is still the head;
# if not (another process appended, a transaction rolled back, rows were removed) it reads the
# real head and appends to that. One statement instead of three on SQLite, two on PostgreSQL.
_HEADS: dict[str, tuple[int, str]] = {}

# Built once: compiling a Core INSERT ... SELECT per append cost more than the insert itself.
_INSERT_AFTER = text(
    "INSERT INTO audit (seq, at_us, actor, action, target, details, prev_hash, hash) "
    "SELECT :seq, :at_us, :actor, :action, :target, :details, :prev_hash, :hash "
    "WHERE EXISTS (SELECT 1 FROM audit WHERE seq = :prev_seq AND hash = :prev_check) "
    "AND NOT EXISTS (SELECT 1 FROM audit WHERE seq > :prev_seq)"
).bindparams(
    bindparam("seq", type_=BigInteger), bindparam("at_us", type_=BigInteger), bindparam("actor", type_=String),
    bindparam("action", type_=String), bindparam("target", type_=String), bindparam("details", type_=Text),
    bindparam("prev_hash", type_=String), bindparam("hash", type_=String), bindparam("prev_seq", type_=BigInteger),
    bindparam("prev_check", type_=String),
)


# Column limits, checked before an entry joins a batch: on PostgreSQL a too-long value fails the
# whole INSERT, and with group commit that would fail every other action in the same batch.
_LIMITS = {"actor": 200, "action": 100, "target": 400}


@dataclass(frozen=True)
class NewEntry:
    """An entry not yet chained: what the caller records, timed when it asked."""

    at_us: int
    actor: str
    action: str
    target: str
    details: str  # canonical JSON


@dataclass(frozen=True, slots=True)
class WrittenEntry:
    """An entry as written to the chain (a plain value: building ORM objects for a batch cost a
    third of the writer's CPU per entry)."""

    seq: int
    at_us: int
    actor: str
    action: str
    target: str
    details: str
    prev_hash: str
    hash: str


class AuditWriteError(StorageError):
    """The audit entry was not written, so the action it records must not be reported as done."""


# The name of the API token the current request acts through ("" for none). The service's auth
# middleware sets it for each request's task; every entry appended under it names the token
# (``details.token``), so the trail tells a token's use from its user's own use by one mechanism
# rather than by each call site remembering to.
ACTING_TOKEN: ContextVar[str] = ContextVar("audit_acting_token", default="")


def new_entry(actor: str, action: str, target: str = "", **details: Any) -> NewEntry:
    """The entry to append, with its details in canonical JSON. ``details`` must hold no secrets.
    Under a request made with an API token, ``details.token`` names it (:data:`ACTING_TOKEN`)."""
    acting = ACTING_TOKEN.get()
    if acting and details.get("token") is None:
        details["token"] = acting
    for name, value in (("actor", actor), ("action", action), ("target", target)):
        if len(value) > _LIMITS[name]:
            raise AuditWriteError(f"audit {name} longer than {_LIMITS[name]} characters: {value[:40]!r}...")
    body = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return NewEntry(now_us(), actor, action, target, body)


def _chained(e: NewEntry, seq: int, prev: str) -> WrittenEntry:
    return WrittenEntry(seq, e.at_us, e.actor, e.action, e.target, e.details, prev,
                        entry_hash(seq, e.at_us, e.actor, e.action, e.target, e.details, prev))


def _row(e: WrittenEntry) -> dict[str, Any]:
    return {"seq": e.seq, "at_us": e.at_us, "actor": e.actor, "action": e.action, "target": e.target,
            "details": e.details, "prev_hash": e.prev_hash, "hash": e.hash}


async def append_many(session: AsyncSession, pending: list[NewEntry]) -> list[WrittenEntry]:
    """Chain ``pending`` in order after the head and insert them in the caller's transaction.

    Appends are serialised by a lock held to the end of the transaction (PostgreSQL's advisory
    lock; on SQLite the write lock, which the first write statement takes), so another process
    or engine appending at the same time queues behind this one instead of forking the chain.
    The first entry goes in with the guarded insert, after the per-process head hint, and that
    statement checks under the lock that the hint is still the head; if it is not, the head is
    read under the lock instead. The rest follow in one executemany.
    """
    if not pending:
        return []
    bind = session.get_bind()
    key = bind.url.render_as_string(hide_password=True)
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        # The guarded insert is only atomic under the lock (READ COMMITTED).
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    written: list[WrittenEntry] = []
    hint = _HEADS.get(key)
    if hint is not None:
        first = _chained(pending[0], hint[0] + 1, hint[1])
        result = await session.execute(_INSERT_AFTER, {**_row(first), "prev_seq": hint[0], "prev_check": hint[1]})
        if result.rowcount == 1:
            written.append(first)
    if written:
        seq, prev = written[0].seq, written[0].hash
    else:
        if not postgres:  # take SQLite's write lock before reading the head
            await session.execute(text("UPDATE audit SET id = id WHERE 0"))
        head_row = (
            await session.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1))
        ).first()
        seq, prev = (head_row[0], head_row[1]) if head_row else (0, GENESIS)
    rest = []
    for e in pending[len(written):]:
        seq += 1
        rest.append(_chained(e, seq, prev))
        prev = rest[-1].hash
    if rest:
        await session.execute(insert(AuditEntry.__table__), [_row(e) for e in rest])
    _HEADS[key] = (seq, prev)
    return written + rest


async def append(
    session: AsyncSession, actor: str, action: str, target: str = "", **details: Any
) -> WrittenEntry:
    """Append one entry in the caller's transaction, atomic with the action it records: for
    actions that change the database. ``details`` must hold no secrets."""
    return (await append_many(session, [new_entry(actor, action, target, **details)]))[0]


class AuditWriter:
    """Group commit for actions whose effect is not a database write (a view, a search, a
    refusal): ``await writer.append(...)`` returns once the entry is committed, or raises
    :class:`AuditWriteError`, so the caller answers only after its entry is durable.

    One task per process takes everything queued (up to ``max_batch``), chains it with
    :func:`append_many` in one transaction, commits, then resolves every waiting caller; if the
    transaction fails, every caller in that batch gets the error and none of the batch is
    written. While one batch commits the next one queues, so the batch size follows the load
    and an idle writer adds no delay. Start with :meth:`start`; :meth:`close` writes what is
    queued, then stops; later appends are refused.

    Never await it inside a write transaction of your own: on SQLite the writer needs the write
    lock that transaction holds (it would wait out the busy timeout, then fail its batch). An
    action that writes appends with :func:`append` in that transaction instead.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, max_batch: int = 1000) -> None:
        self.sessions, self.max_batch = sessions, max_batch
        self._queue: list[tuple[NewEntry, asyncio.Future[WrittenEntry]]] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self.batches = self.written = 0  # committed so far (written / batches = the batch size)

    async def append(self, actor: str, action: str, target: str = "", **details: Any) -> WrittenEntry:
        if self._closed:
            raise AuditWriteError(f"audit entry {action} not written: the audit writer has stopped")
        future: asyncio.Future[WrittenEntry] = asyncio.get_running_loop().create_future()
        self._queue.append((new_entry(actor, action, target, **details), future))
        self._wake.set()
        return await future

    async def write(self, session: AsyncSession, pending: list[NewEntry]) -> list[WrittenEntry]:
        """What one batch does inside its transaction (the benchmark swaps in a plain insert)."""
        return await append_many(session, pending)

    async def run_once(self) -> int:
        """Write one batch of what is queued; the number of entries written."""
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        if not batch:
            return 0
        try:
            # Not storage.db.transaction: append_many's first write statement takes SQLite's
            # write lock itself (one round trip less per batch).
            async with self.sessions() as session, session.begin():
                written = await self.write(session, [e for e, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():  # one error each: they are raised in as many tasks
                    failure = AuditWriteError(f"audit trail not writable ({type(exc).__name__}): the action was not done")
                    failure.__cause__ = exc
                    future.set_exception(failure)
            if isinstance(exc, Exception):
                log.error("audit: a batch of %d entries was not written", len(batch), exc_info=exc)
                return 0
            raise
        self.batches, self.written = self.batches + 1, self.written + len(batch)
        for (_, future), entry in zip(batch, written, strict=True):
            if not future.done():  # the caller may have been cancelled meanwhile
                future.set_result(entry)
        return len(batch)

    async def run(self) -> None:
        try:
            while self._queue or not self._closed:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self.run_once()
        finally:
            self._closed = True
            for _, future in self._queue:  # only if cancelled: nobody is left to write these
                if not future.done():
                    future.set_exception(AuditWriteError("audit entry not written: the audit writer has stopped"))
            self._queue = []

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="audit-writer")

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        await (self._task if self._task is not None else self.run())  # writes what is queued


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


async def head(session: AsyncSession) -> tuple[int, str, int]:
    """The chain head: (seq, hash, at_us); (0, GENESIS, 0) for an empty chain."""
    row = (
        await session.execute(
            select(AuditEntry.seq, AuditEntry.hash, AuditEntry.at_us).order_by(AuditEntry.seq.desc()).limit(1)
        )
    ).first()
    return (row[0], row[1], row[2]) if row else (0, GENESIS, 0)


def entry_json(e: AuditEntry) -> dict[str, Any]:
    """One entry as exported (JSON lines) and shown by the API; enough to re-check its hash."""
    return {
        "seq": e.seq,
        "at_us": e.at_us,
        "at": datetime.fromtimestamp(e.at_us / 1_000_000, UTC).isoformat(timespec="microseconds"),
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "details": json.loads(e.details or "{}"),
        "details_canonical": e.details,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


async def entries(
    session: AsyncSession,
    from_us: int | None = None,
    to_us: int | None = None,
    *,
    action: str | None = None,
    actor: str | None = None,
    limit: int | None = None,
    batch: int = 2000,
) -> AsyncIterator[AuditEntry]:
    """Entries in chain order, ``from_us <= at_us < to_us``, in batches (exports are large)."""
    last, sent = 0, 0
    while True:
        q = select(AuditEntry).where(AuditEntry.seq > last)
        if from_us is not None:
            q = q.where(AuditEntry.at_us >= from_us)
        if to_us is not None:
            q = q.where(AuditEntry.at_us < to_us)
        if action:
            q = q.where(AuditEntry.action == action)
        if actor:
            q = q.where(AuditEntry.actor == actor)
        rows = (await session.execute(q.order_by(AuditEntry.seq).limit(batch))).scalars().all()
        if not rows:
            return
        for e in rows:
            yield e
            sent += 1
            if limit is not None and sent >= limit:
                return
        last = rows[-1].seq


# --- daily digests of the chain head, outside the database ----------------------------------
#
# Deleting the newest entries leaves a valid (shorter) chain. So the head is written, signed
# with the service's Ed25519 key, to <data_dir>/audit-digests/YYYY-MM-DD.json (UTC date): once
# per interval, the day's file is replaced by the newer head, atomically. Verification checks
# each digest's signature and that the entry it names is still in the chain, with that hash.


class DigestError(StorageError):
    """A digest names an audit entry the database no longer holds: the trail was cut."""


@dataclass(frozen=True)
class Digest:
    date: str
    seq: int
    hash: str
    at_us: int
    written_us: int
    public_key_sha256: str
    signature: str = ""

    def signed_bytes(self) -> bytes:
        body = {
            "version": 1, "date": self.date, "seq": self.seq, "hash": self.hash, "at_us": self.at_us,
            "written_us": self.written_us, "public_key_sha256": self.public_key_sha256,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> dict[str, Any]:
        return {**json.loads(self.signed_bytes()), "signature": self.signature}


def _utc_date(at_us: int) -> str:
    return datetime.fromtimestamp(at_us / 1_000_000, UTC).strftime("%Y-%m-%d")


def digest_files(directory: Path) -> list[Path]:
    """The digest files, oldest day first. Blocking."""
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def read_digest(path: Path) -> Digest:
    try:
        data = json.loads(path.read_text())
        return Digest(
            date=str(data["date"]), seq=int(data["seq"]), hash=str(data["hash"]), at_us=int(data["at_us"]),
            written_us=int(data["written_us"]), public_key_sha256=str(data["public_key_sha256"]),
            signature=str(data["signature"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DigestError(f"{path.name}: unreadable digest ({type(exc).__name__})") from None


def digest_signature_ok(d: Digest, public_key: Ed25519PublicKey) -> bool:
    try:
        public_key.verify(base64.b64decode(d.signature), d.signed_bytes())
        return True
    except (InvalidSignature, ValueError):
        return False


async def _entry_hash_at(session: AsyncSession, seq: int) -> str | None:
    if seq == 0:
        return GENESIS
    return (await session.execute(select(AuditEntry.hash).where(AuditEntry.seq == seq))).scalar_one_or_none()


async def write_digest(session: AsyncSession, keys: Keys, directory: Path, at_us: int | None = None) -> Path:
    """Write (or advance) today's digest to the current head. Refuses, with :class:`DigestError`,
    to overwrite a digest whose entry is no longer in the chain: that is evidence of truncation."""
    seq, head_hash, head_at = await head(session)
    written = now_us() if at_us is None else at_us
    date = _utc_date(written)
    path = directory / f"{date}.json"
    old = await asyncio.to_thread(lambda: read_digest(path) if path.exists() else None)
    if old is not None:
        if old.seq > seq or await _entry_hash_at(session, old.seq) != old.hash:
            raise DigestError(
                f"digest {path.name} names entry {old.seq}, which the chain no longer holds as recorded "
                f"(head is now {seq}): the audit trail was cut; the digest is kept"
            )
    d = Digest(date, seq, head_hash, head_at, written, keys.public_key_fingerprint())
    d = Digest(**{**d.__dict__, "signature": base64.b64encode(keys.sign(d.signed_bytes())).decode()})

    def _write() -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump(d.to_json(), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    await asyncio.to_thread(_write)
    return path


@dataclass(frozen=True)
class DigestProblem:
    file: str
    seq: int
    problem: str


async def verify_digests(session: AsyncSession, public_key: Ed25519PublicKey, directory: Path) -> list[DigestProblem]:
    """Every digest file: signed by this key, and naming an entry the chain still holds."""
    problems: list[DigestProblem] = []
    head_seq = (await head(session))[0]
    for path in await asyncio.to_thread(digest_files, directory):
        try:
            d = await asyncio.to_thread(read_digest, path)
        except DigestError as exc:
            problems.append(DigestProblem(path.name, 0, str(exc)))
            continue
        if not digest_signature_ok(d, public_key):
            problems.append(DigestProblem(path.name, d.seq, f"{path.name}: signature does not verify with this key"))
            continue
        stored = await _entry_hash_at(session, d.seq)
        if stored is None:
            first = head_seq + 1 if head_seq < d.seq else d.seq
            span = f"entry {first} is" if first == d.seq else f"entries {first} to {d.seq} are"
            problems.append(DigestProblem(
                path.name, first,
                f"{span} missing: digest {path.name} recorded entry {d.seq} as the head, but the chain "
                f"ends at entry {head_seq} (the tail was truncated)",
            ))
        elif stored != d.hash:
            problems.append(DigestProblem(
                path.name, d.seq, f"entry {d.seq} differs from the hash digest {path.name} recorded",
            ))
    return problems


@dataclass(frozen=True)
class AuditReport:
    """The whole check: the chain, then the digests."""

    chain: ChainReport
    digests_checked: int
    digest_problems: list[DigestProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.digest_problems

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.digest_problems if p.seq] + (
            [self.chain.first_bad_seq] if self.chain.first_bad_seq else []
        )
        return min(seqs) if seqs else None

    @property
    def problems(self) -> list[str]:
        out = [self.chain.problem] if not self.chain.ok else []
        return out + [p.problem for p in self.digest_problems]


async def verify_all(session: AsyncSession, public_key: Ed25519PublicKey, directory: Path) -> AuditReport:
    chain = await verify_chain(session)
    problems = await verify_digests(session, public_key, directory)
    count = len(await asyncio.to_thread(digest_files, directory))
    return AuditReport(chain, count, problems)
