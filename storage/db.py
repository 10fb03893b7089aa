"""Engine, session factory and the declarative base shared by every model module.

Times are stored as integer microseconds since the Unix epoch, UTC (columns named ``*_us``):
one unit, no floats, no time zones in the database. See docs/design/time.md.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import MetaData, event, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

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


MAX_ID = 2**63 - 1  # ids are BIGINT in PostgreSQL (and SQLite's INTEGER): anything larger names nothing


def row_id(text: str | int | None) -> int | None:
    """A row id written by a person or in a URL (ASCII digits, 1..MAX_ID), else None.

    ``str.isdigit`` alone accepts other scripts' digits and superscripts, which ``int`` then
    refuses, and a number past BIGINT overflows the database driver: both were server errors."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text if 0 < text <= MAX_ID else None
    if not isinstance(text, str) or not text or len(text) > 19 or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


def now_us() -> int:
    """Wall-clock time now, UTC microseconds."""
    return time.time_ns() // 1000


def make_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - exercised by every test
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


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
