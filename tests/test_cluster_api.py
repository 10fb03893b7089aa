"""Two API nodes on one PostgreSQL (issue 16, "stateless API nodes"): any node serves any request.

A session opened on node A is used on node B; an account locked by failed logins on A is locked
on B; an alert raised on A reaches a WebSocket client of B (PostgreSQL LISTEN/NOTIFY,
controlroom.cluster.AlertListener). Both apps run in this test's process, each with its own
engine, settings and node id, as two machines would.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from conftest import TEST_PASSWORD

from controlroom.app import create_app
from controlroom.auth import COOKIE
from controlroom.context import ALERTS, SESSIONS
from controlroom.settings import load_settings
from storage.alerts import raise_alert
from storage.db import transaction

pytestmark = pytest.mark.postgres


def node_settings(tmp_path: Path, node_id: str, pg_url: str, key: Path | None):
    data = tmp_path / node_id
    data.mkdir()
    if key is not None:
        shutil.copy(key, data / "secret.key")
    (data / "settings.toml").write_text(
        f'database_url = "{pg_url}"\n[security]\nlockout_failures = 3\naddress_max_failures = 8\n'
        f'audit_anchor_file = "{tmp_path / "anchor.json"}"\n'
        f'[cluster]\nenabled = true\nnode_id = "{node_id}"\nroles = "api"\n')
    return load_settings(data, environ={})


async def test_two_api_nodes_share_sessions_lockouts_and_alerts(pg_url, tmp_path, aiohttp_client, login):
    sa = node_settings(tmp_path, "api-a", pg_url, None)
    a = await aiohttp_client(create_app(sa, record=False))
    b = await aiohttp_client(create_app(node_settings(tmp_path, "api-b", pg_url, sa.key_file), record=False))

    # A session opened on A serves on B, CSRF token included.
    headers = await login(a, "supervisor", username="sue")
    cookie = a.session.cookie_jar.filter_cookies(a.make_url("/"))[COOKIE].value
    b.session.cookie_jar.update_cookies({COOKIE: cookie}, b.make_url("/"))
    resp = await b.get("/api/v1/session")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["user"]["username"] == "sue" and body["csrf_token"] == headers["X-CSRF-Token"], body

    # An alert raised on A reaches a WebSocket client of B.
    ws = await b.ws_connect("/api/v1/alerts/ws", headers=headers)
    async with transaction(a.server.app[SESSIONS]) as session:
        await raise_alert(session, a.server.app[ALERTS], "test.cluster", "raised on node A", None)
    message = await asyncio.wait_for(ws.receive_json(), 10)
    assert message["type"] == "alert" and message["alert"]["message"] == "raised on node A", message
    await ws.close()

    # Failed logins on A lock the account on B too (the right password is refused there).
    await login(a, "operator", username="olly")
    for _ in range(3):
        resp = await a.post("/api/v1/session", json={"username": "olly", "password": "wrong password"})
    assert resp.status == 423, await resp.text()
    resp = await b.post("/api/v1/session", json={"username": "olly", "password": TEST_PASSWORD})
    assert resp.status == 423, await resp.text()


async def test_throttles_of_addresses_and_unknown_names_and_acknowledgements_hold_on_every_node(
        pg_url, tmp_path, aiohttp_client, login):
    """The rest of "stateless API nodes": failed logins that no account row counts (per address,
    per name that is no account) were counted in each process, so an attacker spreading attempts
    over N nodes had N times the budget; they are rows now (storage.accounts.LoginFailures). An
    acknowledgement made on one node clears the alert from every node's screens (NOTIFY, as a
    new alert)."""
    sa = node_settings(tmp_path, "api-a", pg_url, None)
    a = await aiohttp_client(create_app(sa, record=False))
    b = await aiohttp_client(create_app(node_settings(tmp_path, "api-b", pg_url, sa.key_file), record=False))
    headers = await login(a, "operator", username="olly")  # A's session serves on B too (above)
    cookie = a.session.cookie_jar.filter_cookies(a.make_url("/"))[COOKIE].value
    b.session.cookie_jar.update_cookies({COOKIE: cookie}, b.make_url("/"))

    # An acknowledgement on A reaches B's WebSocket client.
    ws = await b.ws_connect("/api/v1/alerts/ws", headers=headers)
    async with transaction(a.server.app[SESSIONS]) as session:
        alert = await raise_alert(session, a.server.app[ALERTS], "test.cluster", "to acknowledge", None)
    message = await asyncio.wait_for(ws.receive_json(), 10)
    assert message["type"] == "alert" and message["alert"]["id"] == alert.id, message
    resp = await a.post(f"/api/v1/alerts/{alert.id}/ack", json={"note": "seen on A"}, headers=headers)
    assert resp.status == 200, await resp.text()
    message = await asyncio.wait_for(ws.receive_json(), 10)
    assert message["type"] == "ack" and message["alert"]["id"] == alert.id, message
    assert message["alert"]["acknowledged_by"] == "olly", message
    await ws.close()

    async def attempt(node, name: str) -> int:
        resp = await node.post("/api/v1/session", json={"username": name, "password": "wrong password"})
        return resp.status

    # A name that is no account "locks" as an account does, on every node: 3 failures on A, and
    # B answers 423 as it would for a real account locked on A.
    assert [await attempt(a, "ghost") for _ in range(3)] == [401, 401, 423]
    assert await attempt(b, "ghost") == 423
    # The address's budget (8 failures in the window) is one budget: 3 spent on A (ghost; the
    # refusal of a locked name is no failure), 5 more on B, then B and A both throttle this
    # address, even for a right password.
    assert [await attempt(b, f"nobody{i}") for i in range(5)] == [401] * 5
    for node in (b, a):
        resp = await node.post("/api/v1/session", json={"username": "olly", "password": TEST_PASSWORD})
        assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0, await resp.text()


async def test_nodes_starting_together_create_one_first_administrator(pg_url, tmp_path, monkeypatch):
    """Found by bench.cluster: three nodes starting at once on an empty database each counted no
    users, and the second to insert the administrator died at start-up on uq_users_username.
    Here every node's count says "no users" (as when they all count before any inserts)."""
    from controlroom.auth import bootstrap_admin
    from storage import accounts
    from storage.db import make_engine, make_sessionmaker
    from storage.keys import load_or_create_keys
    from storage.migrate import upgrade

    settings = node_settings(tmp_path, "api-a", pg_url, None)
    engine = make_engine(pg_url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine, audit_key=load_or_create_keys(settings.key_file).audit_mac_key)

    async def nobody(*_args) -> int:
        return 0

    async def no_such_user(*_args) -> None:
        return None

    try:
        assert await bootstrap_admin(sessions, settings) is not None
        monkeypatch.setattr(accounts, "count_users", nobody)
        monkeypatch.setattr(accounts, "find_user", no_such_user)  # both read before either inserted
        assert await bootstrap_admin(sessions, settings) is None  # the other node was first: no crash
    finally:
        await engine.dispose()
