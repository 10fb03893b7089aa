"""Engine, session factory and the declarative base shared by every model module.

Times are stored as integer microseconds since the Unix epoch, UTC (columns named ``*_us``):
one unit, no floats, no time zones in the database. See docs/design/time.md.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import MetaData, String, event, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapper, Session

from storage import Invalid, NotFound, StorageError

# Stable constraint names, so Alembic migrations work the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


@cache
def _sized_columns(mapper: Mapper) -> tuple[tuple[str, int], ...]:
    """(attribute, length) of every ``String(n)`` column of a model."""
    return tuple((attr.key, col.type.length) for attr in mapper.column_attrs for col in attr.columns
                 if isinstance(col.type, String) and col.type.length)


@event.listens_for(Session, "before_flush")
def _values_fit_their_columns(session: Session, _context: object, _instances: object) -> None:
    """Refuse, as bad input naming the field, any text longer than its ``String(n)`` column.

    PostgreSQL refused such a value inside the flush (a server error: "value too long"), while
    SQLite stored it whole, so the same input gave a 500 on one database and silently broke
    the declared size on the other. One check here covers every table and every way in (API,
    CLI, imports); the API's models keep their own, usually tighter, limits."""
    for obj in (*session.new, *session.dirty):
        for key, length in _sized_columns(sa_inspect(obj).mapper):
            value = getattr(obj, key, None)
            if isinstance(value, str) and len(value) > length:
                raise Invalid(f"{key}: at most {length} characters ({len(value)} given)")


# Every primary key is an Integer column: INTEGER (32 bits) in PostgreSQL. A larger id names
# nothing, and passing one to the driver failed the query (asyncpg: "value out of int32 range"),
# a server error the API fuzz found through a camera id in a body (issue 13).
MAX_ID = 2**31 - 1


def row_id(text: str | int | None) -> int | None:
    """A row id written by a person or in a URL (ASCII digits, 1..MAX_ID), else None.

    ``str.isdigit`` alone accepts other scripts' digits and superscripts, which ``int`` then
    refuses, and a number past INTEGER overflows the database driver: both were server errors."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text if 0 < text <= MAX_ID else None
    if not isinstance(text, str) or not text or len(text) > 19 or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


T = TypeVar("T", bound=Any)


async def by_id_or_name(session: AsyncSession, model: type[T], ref: int | str, what: str) -> T:
    """A row by id (ASCII digits, :func:`row_id`) or by its ``name`` column; NotFound names
    ``what`` ("camera", "hotlist") and the reference."""
    if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):
        found = row_id(ref)
        row = await session.get(model, found) if found is not None else None
    else:
        row = (await session.execute(select(model).where(model.name == ref))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no {what} {ref!r}")
    return row


def insert_for(session: AsyncSession) -> Any:
    """The dialect's ``insert`` (PostgreSQL's or SQLite's), which has ``on_conflict_do_*``."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert


def now_us() -> int:
    """Wall-clock time now, UTC microseconds."""
    return time.time_ns() // 1000


class DatabaseReadOnly(StorageError):
    """The database refuses writes: a read-only file, folder, filesystem or server."""


# How the drivers say "you may not write here" (SQLite's SQLITE_READONLY and a file it cannot
# open for writing; PostgreSQL's read_only_sql_transaction, 25006, e.g. a hot standby).
_READ_ONLY = ("readonly database", "read-only file system", "read-only transaction")


def _name_read_only(engine: AsyncEngine) -> None:
    """Turn a driver's read-only error into :class:`DatabaseReadOnly`, one clear line that names
    the database and what to check, instead of a long driver traceback (issue 11, found 14)."""
    where = engine.url.render_as_string(hide_password=True)

    @event.listens_for(engine.sync_engine, "handle_error")
    def _read_only(context) -> None:  # pragma: no cover - exercised by test_files
        message = str(context.original_exception).lower()
        if any(marker in message for marker in _READ_ONLY):
            raise DatabaseReadOnly(
                f"the database {where} is read-only ({context.original_exception}): the service must be "
                "able to write the database file and its folder; check their owner and mode, the "
                "filesystem, or the server's read-only setting"
            ) from None


def make_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout. Both name a read-only
    database clearly (:class:`DatabaseReadOnly`)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _name_read_only(engine)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - exercised by every test
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    engine = create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    _name_read_only(engine)
    return engine


# Session.info key of the audit chain's HMAC key (storage.audit reads it when it appends).
AUDIT_KEY = "audit_mac_key"


def make_sessionmaker(engine: AsyncEngine, *, audit_key: bytes | None = None) -> async_sessionmaker[AsyncSession]:
    """Sessions on ``engine``. ``audit_key`` (``Keys.audit_mac_key``) travels with each session
    so that every audit append, wherever it is called, chains with the keyed MAC; sessions
    made without it read everything but refuse to append to the audit trail."""
    info = {AUDIT_KEY: audit_key} if audit_key is not None else {}
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session inside one write transaction: committed on success, rolled back on error.

    On SQLite the write lock is taken first (as BEGIN IMMEDIATE would): a deferred transaction
    that reads, then writes after another connection wrote, fails at once with "database is
    locked" (WAL snapshot conflicts skip the busy timeout); taking the lock first makes writers
    queue for it within the busy timeout instead. Plain ``sessions()`` reads stay lock-free.
    """
    async with sessions() as session, session.begin():
        if session.get_bind().dialect.name == "sqlite":
            await session.execute(text("UPDATE cameras SET id = id WHERE 0"))
        yield session
