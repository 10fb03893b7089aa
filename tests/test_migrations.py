"""The migrations: numbered in the order they apply, and a database stamped with an old number
ends exactly like a fresh one (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from conftest import _pg
from sqlalchemy import inspect, text

from storage.db import make_engine
from storage.migrate import (
    MIGRATIONS,
    RENUMBERED,
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
)


def _chain() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_revisions_are_numbered_in_the_order_they_apply():
    chain = _chain()
    numbers = [int(rev.split("_", 1)[0]) for rev in chain]
    assert numbers == list(range(1, len(chain) + 1)), chain
    for rev in chain:  # the file carries its revision's name
        assert (MIGRATIONS / "versions" / f"{rev}.py").is_file(), rev
        assert re.fullmatch(r"\d{4}_[a-z0-9_]+", rev), rev
    # Every old id maps to a revision that exists, and no new id is an old id (no ambiguity).
    assert set(RENUMBERED.values()) <= set(chain)
    assert not set(RENUMBERED) & set(chain)


async def _schema(url: str) -> dict:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            def read(sync_conn) -> dict:
                insp = inspect(sync_conn)
                out = {}
                for table in sorted(insp.get_table_names()):
                    cols = [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)]
                    idx = sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table))
                    fks = sorted((tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(table))
                    out[table] = (cols, idx, fks)
                return out
            schema = await conn.run_sync(read)
        return schema, await current_revision(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def second_url(db_url: str, data_dir: Path) -> Iterator[str]:
    """A second empty database of the same kind as ``db_url``."""
    if db_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{data_dir / 'second.db'}"
        return
    name = f"controlroom_test_{uuid.uuid4().hex[:12]}"
    _pg(f'CREATE DATABASE "{name}"')
    yield f"{db_url.rsplit('/', 1)[0]}/{name}"
    _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("old", sorted(RENUMBERED))
async def test_a_database_stamped_with_an_old_number_upgrades_to_the_same_schema(db_url, second_url, old):
    fresh = make_engine(db_url)
    await upgrade(fresh)
    await fresh.dispose()

    # What the old code left: the schema of revision RENUMBERED[old], stamped with the old id.
    engine = make_engine(second_url)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))

    def to_old(conn) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, RENUMBERED[old])
        conn.execute(text("UPDATE alembic_version SET version_num = :old"), {"old": old})

    try:
        async with engine.begin() as conn:
            await conn.run_sync(to_old)
        assert await current_revision(engine) == old
        await upgrade(engine)
        await upgrade(engine)  # idempotent
    finally:
        await engine.dispose()

    fresh_schema, fresh_rev = await _schema(db_url)
    upgraded_schema, upgraded_rev = await _schema(second_url)
    assert fresh_rev == upgraded_rev == head_revision()
    assert upgraded_schema == fresh_schema


@pytest.mark.postgres
async def test_nodes_starting_together_migrate_one_after_the_other(pg_url):
    """Three nodes of a cluster upgrading one empty PostgreSQL database at the same moment: the
    advisory lock makes them take turns (without it the second dies creating a table the first
    just created, or they wait on each other's locks: seen hanging without it)."""
    engines = [make_engine(pg_url) for _ in range(3)]
    try:
        await asyncio.wait_for(asyncio.gather(*(upgrade(engine) for engine in engines)), 60)
        assert {await current_revision(engine) for engine in engines} == {head_revision()}
    finally:
        for engine in engines:
            await engine.dispose()
