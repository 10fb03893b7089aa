"""The routes the administration screens added (controlroom/api/admin.py): sites, holds and the
system view, and the audit trail newest first; real logins, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from controlroom.app import create_app
from controlroom.context import KEYS, SESSIONS
from storage import accounts, nodes
from storage.audit import AuditEntry
from storage.db import transaction
from storage.inventory import CameraSpec, add_camera
from storage.models import Hold
from storage.nodes import NodeRow

HOLD = {"reason": "assault, CAD 1234", "reference": "NS/1/26", "review": "2099-01-01T00:00:00+00:00",
        "from": "2026-06-01T10:00:00+01:00", "to": "2026-06-01T11:00:00+01:00"}


@pytest.fixture
async def client(db_url, aiohttp_client, settings):
    app = create_app(settings.with_overrides(database_url=db_url), record=False)
    client = await aiohttp_client(app)
    async with transaction(app[SESSIONS]) as s:
        a = await add_camera(s, CameraSpec(name="Cam A", site="Site A", main_url="rtsp://127.0.0.1:1/a"), app[KEYS])
        b = await add_camera(s, CameraSpec(name="Cam B", site="Site B", main_url="rtsp://127.0.0.1:1/b"), app[KEYS])
    client.a, client.b = a.id, b.id
    return client


async def _actions(client, prefix: str) -> list[str]:
    async with client.server.app[SESSIONS]() as session:
        return list((await session.execute(select(AuditEntry.action).where(AuditEntry.action.like(f"{prefix}%"))
                                           .order_by(AuditEntry.seq))).scalars())


async def test_sites_are_listed_with_counts_and_added_once(client, login) -> None:
    headers = await login(client, "administrator")
    resp = await client.post("/api/v1/sites", json={"name": "Harbour", "location": "Quay Street"}, headers=headers)
    assert resp.status == 201, await resp.text()
    resp = await client.post("/api/v1/sites", json={"name": "Harbour"}, headers=headers)
    assert resp.status == 400 and "already exists" in (await resp.json())["error"]
    resp = await client.post("/api/v1/sites", json={"name": ""}, headers=headers)
    assert resp.status == 400 and "name" in (await resp.json())["error"]
    sites = {s["name"]: s for s in (await (await client.get("/api/v1/sites", headers=headers)).json())["sites"]}
    assert {n: (s["cameras"], s["location"]) for n, s in sites.items()} == {
        "Harbour": (0, "Quay Street"), "Site A": (1, ""), "Site B": (1, "")}
    assert await _actions(client, "site.") == ["site.add"]


async def test_a_hold_is_placed_listed_and_released_once(client, login) -> None:
    headers = await login(client, "supervisor", "sup")
    resp = await client.post("/api/v1/holds", json={**HOLD, "cameras": [client.a]}, headers=headers)
    assert resp.status == 201, await resp.text()
    hold = await resp.json()
    assert (hold["owner"], hold["windows"][0]["camera"], hold["windows"][0]["from"]) == ("sup", "Cam A", "2026-06-01T09:00:00.000+00:00")
    bad = await client.post("/api/v1/holds", json={**HOLD, "to": HOLD["from"], "cameras": [client.a]}, headers=headers)
    assert bad.status == 400 and "to:" in (await bad.json())["error"]
    missing = await client.post("/api/v1/holds", json={**HOLD, "cameras": [999]}, headers=headers)
    assert missing.status == 404
    listed = (await (await client.get("/api/v1/holds", headers=headers)).json())["holds"]
    assert [h["id"] for h in listed] == [hold["id"]]
    resp = await client.post(f"/api/v1/holds/{hold['id']}/release", json={}, headers=headers)
    assert resp.status == 200 and (await resp.json())["released_by"] == "sup"
    again = await client.post(f"/api/v1/holds/{hold['id']}/release", json={}, headers=headers)
    assert again.status == 400 and "already released" in (await again.json())["error"]
    assert (await (await client.get("/api/v1/holds", headers=headers)).json())["holds"] == []
    assert len((await (await client.get("/api/v1/holds?all=1", headers=headers)).json())["holds"]) == 1
    assert (await client.post("/api/v1/holds/nope/release", json={}, headers=headers)).status == 404
    assert await _actions(client, "hold.") == ["hold.add", "hold.list", "hold.release", "hold.list", "hold.list"]
    # Holds are supervisors': an administrator has no HOLDS right.
    admin = await login(client, "administrator")
    assert (await client.get("/api/v1/holds", headers=admin)).status == 403


async def test_a_narrowed_supervisor_holds_and_sees_only_their_cameras(client, login) -> None:
    async with transaction(client.server.app[SESSIONS]) as session:
        await accounts.create_user(session, "sup.a", "supervisor", accounts.hash_password("correct horse battery staple"),
                                   camera_ids=[client.a])
    full = await login(client, "supervisor", "sup.all")
    every = await client.post("/api/v1/holds", json={**HOLD, "cameras": []}, headers=full)  # every camera
    on_b = await client.post("/api/v1/holds", json={**HOLD, "cameras": [client.b]}, headers=full)
    assert every.status == on_b.status == 201
    narrowed = await login(client, "supervisor", "sup.a")
    assert (await client.post("/api/v1/holds", json={**HOLD, "cameras": [client.b]}, headers=narrowed)).status == 403
    assert (await client.post("/api/v1/holds", json={**HOLD, "cameras": []}, headers=narrowed)).status == 403
    own = await client.post("/api/v1/holds", json={**HOLD, "cameras": [client.a]}, headers=narrowed)
    assert own.status == 201
    listed = (await (await client.get("/api/v1/holds", headers=narrowed)).json())["holds"]
    assert [h["id"] for h in listed] == [(await own.json())["id"]]
    for other in (every, on_b):
        hold_id = (await other.json())["id"]
        assert (await client.post(f"/api/v1/holds/{hold_id}/release", json={}, headers=narrowed)).status == 403
        async with client.server.app[SESSIONS]() as session:
            assert (await session.get(Hold, hold_id)).released_us is None


async def test_system_shows_disk_database_and_recorders(client, login) -> None:
    headers = await login(client, "administrator")
    resp = await client.get("/api/v1/system", headers=headers)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    (disk,) = body["disks"]
    assert disk["name"] == "recordings" and disk["free_bytes"] > 0 and disk["total_bytes"] >= disk["free_bytes"]
    assert body["database"]["ok"] is True and body["database"]["schema"]
    assert [r["camera"] for r in body["recorders"]] == ["Cam A", "Cam B"]
    assert body["nodes"] == []  # an app that runs no node (record=False) lists none
    async with transaction(client.server.app[SESSIONS]) as s:
        await nodes.register(s, "rec-a", ("recorder", "api"), 40, ttl_s=15, host="cctv-1")
        await nodes.register(s, "rec-b", ("recorder",), 40, ttl_s=15, host="cctv-2")
        await s.execute(update(NodeRow).where(NodeRow.id == "rec-b").values(heartbeat_us=0))
    listed = {n["id"]: n for n in (await (await client.get("/api/v1/system", headers=headers)).json())["nodes"]}
    assert (listed["rec-a"]["state"], listed["rec-a"]["roles"], listed["rec-a"]["host"]) == (
        "running", ["recorder", "api"], "cctv-1")
    assert listed["rec-a"]["heartbeat_s_ago"] < 60 and listed["rec-a"]["capacity"] == 40
    assert listed["rec-b"]["state"] == "lost"
    assert body["retention"]["default_days"] >= 1
    operator = await login(client, "operator")
    assert (await client.get("/api/v1/system", headers=operator)).status == 403


async def test_audit_newest_first(client, login) -> None:
    headers = await login(client, "administrator")
    for name in ("one", "two", "three"):
        assert (await client.post("/api/v1/sites", json={"name": name}, headers=headers)).status == 201
    newest = (await (await client.get("/api/v1/audit?action=site.add&newest=1&limit=2", headers=headers)).json())["entries"]
    assert [e["details"]["name"] for e in newest] == ["three", "two"]
    oldest = (await (await client.get("/api/v1/audit?action=site.add&limit=2", headers=headers)).json())["entries"]
    assert [e["details"]["name"] for e in oldest] == ["one", "two"]
