"""Alembic migrations, run programmatically: ``controlroom db upgrade`` and ``serve`` call this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


# Until December 2026 the revisions were numbered in the order they were written, not the order
# they apply (0001, 0002, 0006, 0007, 0004, 0003, 0008, 0009_audit, 0010). They are now numbered
# in apply order, each with its name. A database stamped with an old id is restamped with the
# same revision's new id before upgrading; the schema it holds is the same either way.
RENUMBERED = {
    "0001": "0001_core_tables",
    "0002": "0002_alerts",
    "0006": "0003_anpr",
    "0007": "0004_evidence",
    "0004": "0005_accounts",
    "0003": "0006_onvif",
    "0008": "0007_segments_timeline_index",
    "0009_audit": "0008_audit_keyed_chain",
    "0010": "0009_link_bytes",
}


def restamp_renumbered(conn) -> str | None:
    """Rewrite an old revision id in ``alembic_version`` to its new id; return the new id or
    None when there was nothing to rewrite."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    new = RENUMBERED.get(current)
    if new is not None:
        conn.execute(text("UPDATE alembic_version SET version_num = :new"), {"new": new})
    return new


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# The PostgreSQL advisory lock every node takes around its migrations (any constant: ours).
MIGRATION_LOCK = 0x636F6E74726F6C  # "control"


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the database to the newest schema (idempotent).

    On PostgreSQL the whole upgrade holds a transaction-level advisory lock: nodes of a cluster
    starting together migrate one after the other (the second finds the schema at head and does
    nothing) instead of racing to create the same tables. SQLite has one writer anyway."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))

    def _run(conn) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        restamp_renumbered(conn)
        command.upgrade(cfg, "head")

    async with engine.begin() as conn:
        await conn.run_sync(_run)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
