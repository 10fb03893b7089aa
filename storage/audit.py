"""The append-only, MAC-chained audit trail, anchored outside the database.

Each entry carries an HMAC-SHA-256, under a key that is not in the database (storage.keys), of
its own canonical encoding and the previous entry's MAC, so changing, deleting or reordering a
row breaks the chain from there on, and someone who can write the database but does not hold
the key cannot recompute it. Entries written before the chain was keyed (migration 0008_audit_keyed_chain) keep
their plain SHA-256; the ``audit_chain`` row says from which entry on the MAC applies, and the
entry just before it (``audit.chain_keyed``) records the switch in the trail itself. The head
is anchored outside the database (:func:`write_anchor`): a signed file, so that deleting the
newest entries, which leaves a shorter chain that is still valid, is found. Appending takes a lock
(an advisory lock on PostgreSQL, the database write lock on SQLite) so two writers never fork
the chain. If the audit entry cannot be written, the action fails: an action that changes the
database appends inside its own transaction (:func:`append`), so both commit or neither; an
action whose effect is elsewhere (a view, a search, a refusal) waits for its entry from the
process's :class:`AuditWriter` (group commit) before it answers.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import hmac
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
from storage.db import AUDIT_KEY, Base, now_us, transaction
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
    """The unkeyed rule, for entries written before the chain was keyed (and what an attacker
    without the key can compute)."""
    return hashlib.sha256(canonical(seq, at_us, actor, action, target, details, prev)).hexdigest()


def entry_mac(key: bytes, seq: int, at_us: int, actor: str, action: str, target: str, details: str, prev: str) -> str:
    """The keyed rule: HMAC-SHA-256 of the same canonical bytes, hex (stored in ``hash``)."""
    return hmac.new(key, canonical(seq, at_us, actor, action, target, details, prev), hashlib.sha256).hexdigest()


class AuditChain(Base):
    """One row (id 1), written by migration 0008_audit_keyed_chain: from which entry on the chain is keyed, and
    the last anchor written outside the database (so a deleted anchor file is noticed)."""

    __tablename__ = "audit_chain"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    keyed_from_seq: Mapped[int] = mapped_column(BigInteger)
    keyed_at_us: Mapped[int] = mapped_column(BigInteger)
    anchored_seq: Mapped[int] = mapped_column(BigInteger)
    anchored_hash: Mapped[str] = mapped_column(String(64))
    anchored_us: Mapped[int] = mapped_column(BigInteger)
    anchor_path: Mapped[str] = mapped_column(String(1000))


CHAIN_KEYED_ACTION = "audit.chain_keyed"  # the entry (unkeyed, the last one) that marks the switch


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


def _chained(key: bytes, e: NewEntry, seq: int, prev: str) -> WrittenEntry:
    return WrittenEntry(seq, e.at_us, e.actor, e.action, e.target, e.details, prev,
                        entry_mac(key, seq, e.at_us, e.actor, e.action, e.target, e.details, prev))


def session_key(session: AsyncSession) -> bytes:
    """The chain's HMAC key this session carries (storage.db.make_sessionmaker(audit_key=...))."""
    key = session.info.get(AUDIT_KEY)
    if not key:
        raise AuditWriteError("audit entry not written: this session carries no audit key "
                              "(make_sessionmaker(engine, audit_key=keys.audit_mac_key))")
    return key


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
    mac_key = session_key(session)  # every entry appended from now on is keyed (migration 0008_audit_keyed_chain)
    bind = session.get_bind()
    key = bind.url.render_as_string(hide_password=True)
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        # The guarded insert is only atomic under the lock (READ COMMITTED).
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    written: list[WrittenEntry] = []
    hint = _HEADS.get(key)
    if hint is not None:
        first = _chained(mac_key, pending[0], hint[0] + 1, hint[1])
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
        rest.append(_chained(mac_key, e, seq, prev))
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
        # The newest entry this writer committed: only a deletion or a rewrite can take it out
        # of the chain (a commit is not undone), so the anchor loop checks it is still there.
        self.committed: WrittenEntry | None = None

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
        self.committed = written[-1]
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


async def chain_record(session: AsyncSession) -> AuditChain | None:
    return (await session.execute(select(AuditChain).where(AuditChain.id == 1))).scalar_one_or_none()


async def verify_chain(session: AsyncSession, key: bytes | None = None, batch: int = 5000) -> ChainReport:
    """Walk the whole chain in order; name the first entry that does not verify. Entries from
    ``audit_chain.keyed_from_seq`` on must carry the HMAC under ``key`` (default: the key the
    session carries); those before it, the plain SHA-256 (databases older than the keyed
    chain), and the last of those must be the ``audit.chain_keyed`` entry naming the boundary."""
    key = session_key(session) if key is None else key
    record = await chain_record(session)
    if record is None:
        return ChainReport(False, 0, GENESIS, None, "the audit_chain record (from which entry the chain is keyed, "
                           "the last anchor) is missing from the database: it was deleted")
    keyed_from = record.keyed_from_seq
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
            if e.seq < keyed_from:
                if entry_hash(e.seq, e.at_us, e.actor, e.action, e.target, e.details, e.prev_hash) != e.hash:
                    return ChainReport(False, count, prev, e.seq, f"entry {e.seq} was altered")
                if e.seq == keyed_from - 1 and not _marks_switch(e, keyed_from):
                    return ChainReport(False, count, prev, e.seq,
                                       f"entry {e.seq} was altered: the chain is recorded as keyed from entry "
                                       f"{keyed_from}, but entry {e.seq} is not the {CHAIN_KEYED_ACTION} entry")
            elif not hmac.compare_digest(entry_mac(key, e.seq, e.at_us, e.actor, e.action, e.target, e.details,
                                                   e.prev_hash), e.hash):
                plain = entry_hash(e.seq, e.at_us, e.actor, e.action, e.target, e.details, e.prev_hash)
                how = ("its hash is a plain SHA-256, recomputed without the key" if plain == e.hash
                       else "its MAC does not verify with this key")
                return ChainReport(False, count, prev, e.seq, f"entry {e.seq} was altered ({how})")
            prev, expected_seq, count, last = e.hash, e.seq + 1, count + 1, e.seq


def _marks_switch(e: AuditEntry, keyed_from: int) -> bool:
    try:
        return e.action == CHAIN_KEYED_ACTION and json.loads(e.details).get("keyed_from_seq") == keyed_from
    except (ValueError, AttributeError):
        return False


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


def _matching(q, from_us: int | None, to_us: int | None, action: str | None, actor: str | None):
    """``q`` narrowed to ``from_us <= at_us < to_us`` and, when given, one action and one actor."""
    if from_us is not None:
        q = q.where(AuditEntry.at_us >= from_us)
    if to_us is not None:
        q = q.where(AuditEntry.at_us < to_us)
    if action:
        q = q.where(AuditEntry.action == action)
    if actor:
        q = q.where(AuditEntry.actor == actor)
    return q


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
        q = _matching(select(AuditEntry).where(AuditEntry.seq > last), from_us, to_us, action, actor)
        rows = (await session.execute(q.order_by(AuditEntry.seq).limit(batch))).scalars().all()
        if not rows:
            return
        for e in rows:
            yield e
            sent += 1
            if limit is not None and sent >= limit:
                return
        last = rows[-1].seq


async def latest_entries(
    session: AsyncSession,
    from_us: int | None = None,
    to_us: int | None = None,
    *,
    action: str | None = None,
    actor: str | None = None,
    limit: int = 500,
) -> list[AuditEntry]:
    """The newest ``limit`` entries matching, newest first (what a screen shows first)."""
    q = _matching(select(AuditEntry), from_us, to_us, action, actor)
    return list((await session.execute(q.order_by(AuditEntry.seq.desc()).limit(limit))).scalars())


# --- the anchor: the chain head, signed, outside the database -------------------------------
#
# Deleting the newest entries leaves a shorter chain that is still valid, MACs and all. So the
# head (seq, MAC) is written, signed with the service's Ed25519 key, to one file outside the
# data directory (settings: security.audit_anchor_file) every few minutes and at shutdown, and
# published over MQTT where a bridge runs. The file is replaced atomically by each newer head;
# an anchor whose entry the chain no longer holds as recorded is never overwritten. The
# database remembers the last anchor written (audit_chain), so a deleted or replaced anchor
# file is noticed too. Verification checks the anchor's signature, that the entry it names is
# still in the chain with that MAC, and that it agrees with the database's record.


class AnchorError(StorageError):
    """An anchor names an audit entry the database no longer holds as recorded: the trail was
    cut or rewritten. The anchor is kept."""


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    at_us: int  # the head entry's time
    written_us: int
    keyed_from_seq: int
    public_key_sha256: str
    signature: str = ""

    def signed_bytes(self) -> bytes:
        body = {
            "kind": "controlroom.audit.anchor", "version": 2, "seq": self.seq, "hash": self.hash,
            "at_us": self.at_us, "written_us": self.written_us, "keyed_from_seq": self.keyed_from_seq,
            "public_key_sha256": self.public_key_sha256,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> dict[str, Any]:
        return {**json.loads(self.signed_bytes()), "signature": self.signature}


def parse_anchor(raw: bytes | str, name: str) -> Anchor:
    """An anchor from its JSON (a file, or a copy received over MQTT); :class:`AnchorError` if malformed."""
    try:
        data = json.loads(raw)
        if data.get("kind") != "controlroom.audit.anchor":
            raise ValueError("not an audit anchor")
        return Anchor(
            seq=int(data["seq"]), hash=str(data["hash"]), at_us=int(data["at_us"]),
            written_us=int(data["written_us"]), keyed_from_seq=int(data["keyed_from_seq"]),
            public_key_sha256=str(data["public_key_sha256"]), signature=str(data["signature"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AnchorError(f"{name}: unreadable anchor ({type(exc).__name__}: {exc})") from None


def read_anchor(path: Path) -> Anchor | None:
    """The anchor in ``path``; None if there is no such file. Blocking."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AnchorError(f"{path}: unreadable anchor ({exc.strerror})") from None
    return parse_anchor(raw, str(path))


def signature_ok(signed: bytes, signature: str, public_key: Ed25519PublicKey) -> bool:
    try:
        public_key.verify(base64.b64decode(signature), signed)
        return True
    except (InvalidSignature, ValueError):
        return False


class TailCutError(AnchorError):
    """An entry this process committed is no longer in the chain as written."""


async def check_committed(session: AsyncSession, entry: WrittenEntry) -> None:
    """Raise :class:`TailCutError` if ``entry``, known to have been committed, is not in the chain
    as written: the tail was cut (or rewritten) since, even if no anchor names it yet."""
    stored = await _entry_hash_at(session, entry.seq)
    if stored != entry.hash:
        what = "is gone" if stored is None else "has a different MAC"
        raise TailCutError(f"entry {entry.seq} ({entry.action} by {entry.actor}), committed by this process, {what}: "
                          f"the audit trail was cut or rewritten after the last anchor; not anchoring")


async def _entry_hash_at(session: AsyncSession, seq: int) -> str | None:
    if seq == 0:
        return GENESIS
    return (await session.execute(select(AuditEntry.hash).where(AuditEntry.seq == seq))).scalar_one_or_none()


def _fsync_write(path: Path, body: bytes) -> None:
    """Replace ``path`` with ``body`` atomically and durably (temp file, fsync, rename, fsync dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# Another process holds the anchor's lock for milliseconds; a holder stuck this long is a fault
# to report, not to wait out (the last anchor at shutdown must not hang the stop).
ANCHOR_LOCK_TIMEOUT_S = 10.0


async def _lock(path: Path) -> int:
    """An exclusive lock beside the anchor file: the service and the CLI never interleave their
    read-check-write of it. Polled on the event loop rather than blocking in a thread: a
    cancelled wait must not leave a thread that takes the lock later and never releases it."""
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        deadline = asyncio.get_running_loop().time() + ANCHOR_LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"{lock_path}: held by another process for over "
                                       f"{ANCHOR_LOCK_TIMEOUT_S:g} s; not anchoring") from None
                await asyncio.sleep(0.05)
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True)
class AnchorResult:
    anchor: Anchor
    written: bool  # False: the file already named this head (or a newer one)
    warning: str = ""  # the file was missing or older than the database's record (raise an alert)


async def write_anchor(sessions: async_sessionmaker[AsyncSession], keys: Keys, path: Path,
                       committed: WrittenEntry | None = None) -> AnchorResult:
    """Anchor the current head in ``path`` and record it in the database.

    Refuses, with :class:`AnchorError`, to overwrite an anchor whose entry the chain no longer
    holds as recorded: that file is the evidence. An anchor already at (or past) the head is
    left as it is. A file that is missing, or older than the last anchor the database records,
    is written afresh and reported in ``warning`` (the caller raises an alert). ``committed``,
    the newest entry this process is known to have committed, must still be in the chain:
    otherwise entries newer than the last anchor were deleted, and the shorter head is not
    anchored (:class:`AnchorError`).
    """
    fd = await _lock(path)
    try:
        old = await asyncio.to_thread(read_anchor, path)  # read before the database: see below
        # A fresh session, begun after the file was read under the lock: a newer anchor written
        # by another process names an entry already committed, so it is visible here.
        async with sessions() as session:
            seq, head_hash, head_at = await head(session)
            record = await chain_record(session)
            if record is None:
                raise AnchorError("the audit_chain record is missing from the database; not anchoring")
            if committed is not None:
                await check_committed(session, committed)
            if old is not None:
                stored = await _entry_hash_at(session, old.seq)
                if stored != old.hash:
                    what = "no longer holds" if stored is None else "holds with a different MAC"
                    raise AnchorError(
                        f"anchor {path} names entry {old.seq}, which the chain {what} (head is now {seq}): "
                        f"the audit trail was cut or rewritten; the anchor is kept"
                    )
                if old.seq >= seq:
                    return AnchorResult(old, False)
        warning = ""
        if old is None and record.anchored_us:
            warning = (f"anchor file {path} is missing: the database records an anchor of entry "
                       f"{record.anchored_seq} written at {_iso(record.anchored_us)} (at {record.anchor_path}); "
                       f"writing a new one")
        elif old is not None and old.seq < record.anchored_seq:
            warning = (f"anchor file {path} names entry {old.seq}, older than the last anchor the database "
                       f"records (entry {record.anchored_seq} at {_iso(record.anchored_us)}): it was replaced")
        a = Anchor(seq, head_hash, head_at, now_us(), record.keyed_from_seq, keys.public_key_fingerprint())
        a = Anchor(**{**a.__dict__, "signature": base64.b64encode(keys.sign(a.signed_bytes())).decode()})
        body = (json.dumps(a.to_json(), indent=2, sort_keys=True) + "\n").encode()
        await asyncio.to_thread(_fsync_write, path, body)
        async with transaction(sessions) as session:
            await session.execute(
                AuditChain.__table__.update().where(AuditChain.id == 1).values(
                    anchored_seq=a.seq, anchored_hash=a.hash, anchored_us=a.written_us, anchor_path=str(path)))
        return AnchorResult(a, True, warning)
    finally:
        os.close(fd)  # releases the lock


def _iso(at_us: int) -> str:
    return datetime.fromtimestamp(at_us / 1_000_000, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class AnchorProblem:
    source: str
    seq: int  # the first entry it shows to be bad; 0 when it names none
    problem: str


async def check_anchor(session: AsyncSession, a: Anchor, source: str, public_key: Ed25519PublicKey,
                       record: AuditChain | None, head_seq: int) -> list[AnchorProblem]:
    """One anchor (the file, or a copy kept elsewhere) against the chain."""
    if not signature_ok(a.signed_bytes(), a.signature, public_key):
        return [AnchorProblem(source, 0, f"{source}: signature does not verify with this key")]
    problems = []
    stored = await _entry_hash_at(session, a.seq)
    if stored is None:
        first = head_seq + 1 if head_seq < a.seq else a.seq
        span = f"entry {first} is" if first == a.seq else f"entries {first} to {a.seq} are"
        problems.append(AnchorProblem(
            source, first, f"{span} missing: anchor {source} recorded entry {a.seq} as the head, but the chain "
                           f"ends at entry {head_seq} (the tail was truncated)"))
    elif stored != a.hash:
        problems.append(AnchorProblem(source, a.seq, f"entry {a.seq} differs from the MAC anchor {source} recorded "
                                                     f"(the chain up to it was rewritten)"))
    if record is not None and a.keyed_from_seq != record.keyed_from_seq:
        problems.append(AnchorProblem(
            source, min(a.keyed_from_seq, record.keyed_from_seq),
            f"the database says the chain is keyed from entry {record.keyed_from_seq}, anchor {source} "
            f"says from entry {a.keyed_from_seq}: the boundary was moved"))
    return problems


async def verify_anchors(session: AsyncSession, public_key: Ed25519PublicKey, path: Path,
                         copies: list[Path] | None = None) -> tuple[int, list[AnchorProblem]]:
    """The anchor file (and any copies of anchors kept elsewhere, e.g. received over MQTT):
    signed by this key, naming an entry the chain still holds with that MAC, and agreeing with
    the database's record of the last anchor. Returns (anchors checked, problems)."""
    record = await chain_record(session)
    head_seq = (await head(session))[0]
    problems: list[AnchorProblem] = []
    checked = 0
    for source, required in [(path, True), *((c, False) for c in copies or [])]:
        try:
            a = await asyncio.to_thread(read_anchor, source)
        except AnchorError as exc:
            problems.append(AnchorProblem(str(source), 0, str(exc)))
            continue
        if a is None:
            if required and record is not None and record.anchored_us:
                problems.append(AnchorProblem(
                    str(source), 0, f"anchor file {source} is missing: the database records an anchor of entry "
                                    f"{record.anchored_seq} written at {_iso(record.anchored_us)} "
                                    f"(at {record.anchor_path})"))
            elif not required:
                problems.append(AnchorProblem(str(source), 0, f"{source}: no such anchor copy"))
            continue
        checked += 1
        problems += await check_anchor(session, a, str(source), public_key, record, head_seq)
        if required and record is not None and a.seq < record.anchored_seq:
            problems.append(AnchorProblem(
                str(source), 0, f"anchor file {source} names entry {a.seq}, older than the last anchor the "
                                f"database records (entry {record.anchored_seq} at {_iso(record.anchored_us)}): "
                                f"it was replaced by an older copy"))
    return checked, problems


# --- daily digests, the anchors of versions before the keyed chain ---------------------------
#
# <data_dir>/audit-digests/YYYY-MM-DD.json, signed like the anchor. No longer written; those on
# disk still name entries of the chain, so they are still checked.


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
        raise AnchorError(f"{path.name}: unreadable digest ({type(exc).__name__})") from None


async def verify_digests(session: AsyncSession, public_key: Ed25519PublicKey, directory: Path) -> list[AnchorProblem]:
    """Every legacy digest file: signed by this key, and naming an entry the chain still holds."""
    problems: list[AnchorProblem] = []
    head_seq = (await head(session))[0]
    for path in await asyncio.to_thread(digest_files, directory):
        try:
            d = await asyncio.to_thread(read_digest, path)
        except AnchorError as exc:
            problems.append(AnchorProblem(path.name, 0, str(exc)))
            continue
        if not signature_ok(d.signed_bytes(), d.signature, public_key):
            problems.append(AnchorProblem(path.name, d.seq, f"{path.name}: signature does not verify with this key"))
            continue
        stored = await _entry_hash_at(session, d.seq)
        if stored is None:
            first = head_seq + 1 if head_seq < d.seq else d.seq
            span = f"entry {first} is" if first == d.seq else f"entries {first} to {d.seq} are"
            problems.append(AnchorProblem(
                path.name, first,
                f"{span} missing: digest {path.name} recorded entry {d.seq} as the head, but the chain "
                f"ends at entry {head_seq} (the tail was truncated)",
            ))
        elif stored != d.hash:
            problems.append(AnchorProblem(
                path.name, d.seq, f"entry {d.seq} differs from the hash digest {path.name} recorded",
            ))
    return problems


@dataclass(frozen=True)
class AuditReport:
    """The whole check: the chain, then the anchor (and copies), then the legacy digests."""

    chain: ChainReport
    anchors_checked: int
    digests_checked: int
    anchor_problems: list[AnchorProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.anchor_problems

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.anchor_problems if p.seq] + (
            [self.chain.first_bad_seq] if self.chain.first_bad_seq else []
        )
        return min(seqs) if seqs else None

    @property
    def problems(self) -> list[str]:
        out = [self.chain.problem] if not self.chain.ok else []
        return out + [p.problem for p in self.anchor_problems]


async def verify_all(session: AsyncSession, keys: Keys, anchor_file: Path, digest_dir: Path,
                     copies: list[Path] | None = None) -> AuditReport:
    chain = await verify_chain(session, keys.audit_mac_key)
    checked, problems = await verify_anchors(session, keys.public_key, anchor_file, copies)
    problems += await verify_digests(session, keys.public_key, digest_dir)
    count = len(await asyncio.to_thread(digest_files, digest_dir))
    return AuditReport(chain, checked, count, problems)
