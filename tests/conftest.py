"""Shared fixtures: settings on a temporary data directory, real SQLite and PostgreSQL databases.

PostgreSQL runs on loopback (``make test`` starts it); each test that asks for ``pg_url`` gets a
fresh database of its own, dropped afterwards. Set CONTROLROOM_TEST_PG to another server URL
if yours is elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from tcp_proxy import free_port

from controlroom.pyfix import serialise_ast_parse
from controlroom.settings import Settings, load_settings
from storage.db import make_engine, make_sessionmaker
from storage.keys import load_or_create_keys
from storage.migrate import upgrade

PG_ADMIN_URL = os.environ.get("CONTROLROOM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
ARTIFACTS = REPO / "test-artifacts"

# pytest reports a failure from source while the service's threads may be formatting a traceback
# of their own; without this, CPython 3.11 can end the whole run with INTERNALERROR (see pyfix).
serialise_ast_parse()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a test marked ``slow`` run first (a stable sort: each module's tests stay
    together and in their order). ``make test`` runs the modules on two pytest-xdist workers
    (docs/design/testing.md): the long real-time modules (UI, cluster, fault injection, the fuzz)
    then start at once and the quick ones fill in around them, instead of one long module
    running alone at the end."""
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)
    for item in items:
        _databases_outlive_apps(item)


def _databases_outlive_apps(item: pytest.Item) -> None:
    """A test's PostgreSQL database is dropped at its fixture's teardown, and fixtures are torn
    down in the reverse order of their setup: an app (``aiohttp_client``) set up before the
    database would shut down (final audit anchor, cleanup) against a dropped database, an
    intermittent error at teardown. So ``db_url``/``pg_url`` must come before ``aiohttp_client``."""
    names = list(getattr(item, "fixturenames", ()))
    if "aiohttp_client" not in names:
        return
    app_at = names.index("aiohttp_client")
    for db in ("db_url", "pg_url"):
        if db in names and names.index(db) > app_at:
            raise pytest.UsageError(f"{item.nodeid}: ask for {db} before aiohttp_client (its database must "
                                    "outlive the app: tests/conftest.py _databases_outlive_apps)")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    """Settings on a fresh data directory (SQLite), HTTP on a free port chosen by the test."""
    return load_settings(data_dir, environ={})


def _pg(sql: str) -> None:
    """Run one admin statement on the loopback PostgreSQL, from any context (own loop, own thread)."""

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on loopback, as an asyncpg SQLAlchemy URL.

    Dropped at teardown: a test that also takes ``aiohttp_client`` names ``db_url`` (or this)
    first, so that its app shuts down (final audit anchor, cleanup) before the database goes."""
    name = f"controlroom_test_{uuid.uuid4().hex[:12]}"
    _pg(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[str]:
    """Run the test once on SQLite and once on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{data_dir / 'test.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
async def sessions(db_url: str, data_dir: Path):
    """A migrated database (SQLite and PostgreSQL) and its session factory, carrying the audit
    chain's key from ``data_dir/secret.key`` (the key file the app on that data_dir uses)."""
    engine = make_engine(db_url)
    await upgrade(engine)
    yield make_sessionmaker(engine, audit_key=load_or_create_keys(data_dir / "secret.key").audit_mac_key)
    await engine.dispose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    """One Chromium per test module (tests/ui_stack.py), for the UI tests."""
    from ui_stack import chromium

    async with chromium() as b:
        yield b


@pytest.fixture(scope="session")
def artifacts() -> Iterator[Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    yield ARTIFACTS


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashing():
    """Argon2id at a test-sized cost (see storage.accounts.set_hash_cost): logins in tests take
    milliseconds instead of most of a second on a loaded 2-core machine."""
    from storage import accounts

    accounts.set_hash_cost(time_cost=1, memory_kib=1024, parallelism=1)
    yield


TEST_PASSWORD = "correct horse battery staple"
_TEST_HASH: list[str] = []  # Argon2 is slow on purpose: hash the shared test password once


@pytest.fixture
def login():
    """``headers = await login(client, role)``: log a fresh user of ``role`` into the app behind
    an aiohttp test client and return the headers to send (session cookie is kept by the client;
    the CSRF header is in the returned dict). Roles: administrator, supervisor, operator, police.
    The user is created directly in the app's database (password ``TEST_PASSWORD``) and logs in
    through ``POST /api/v1/session``. A second call on the same client replaces the session.
    """
    import asyncio

    from controlroom.context import SESSIONS
    from storage import accounts, audit
    from storage.db import transaction

    counter = iter(range(1, 1_000_000))

    async def _login(client, role: str = "administrator", username: str | None = None) -> dict[str, str]:
        if not _TEST_HASH:
            _TEST_HASH.append(await asyncio.to_thread(accounts.hash_password, TEST_PASSWORD))
        name = username or f"{role}{next(counter)}"
        async with transaction(client.server.app[SESSIONS]) as session:
            if await accounts.find_user(session, name) is None:
                await accounts.create_user(session, name, role, _TEST_HASH[0])
                await audit.append(session, "test", "user.add", f"user:{name}", role=role)
        resp = await client.post("/api/v1/session", json={"username": name, "password": TEST_PASSWORD})
        assert resp.status == 200, await resp.text()
        return {"X-CSRF-Token": (await resp.json())["csrf_token"]}

    return _login


@pytest.fixture
def unused_tcp_port() -> int:
    """pytest-asyncio's fixture, from below the ephemeral range (tcp_proxy.free_port)."""
    return free_port()


@pytest.fixture
def unused_tcp_port_factory():
    """pytest-asyncio's fixture, from below the ephemeral range (tcp_proxy.free_port)."""
    return free_port
