"""GET /api/v1/evidence/cameras: the cameras police may name in a request, without browsing.

Police hold no inventory right (GET /api/v1/cameras is 403 for them), yet they need camera
names to ask for footage. This list gives id, name, site and position only: no stream URL,
state, recording or clock details; narrowed users see only their cameras; roles without an
evidence right are refused (audited as evidence.denied).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from controlroom.app import create_app
from controlroom.context import KEYS, SESSIONS
from storage import accounts, audit, inventory
from storage.audit import AuditEntry
from storage.db import transaction

PASSWORD = "correct horse battery staple"


async def add_cameras(app) -> dict[str, int]:
    ids = {}
    async with transaction(app[SESSIONS]) as session:
        for name, site in (("Town Centre 01", "Town Centre"), ("Queens Park 01", "Queens Park")):
            spec = inventory.parse_spec(inventory.CameraSpec, {
                "name": name, "site": site, "position": f"{name} column, facing north",
                "main_url": "rtsp://127.0.0.1:9/secret-stream", "username": "cam", "recording": False,
            }, "test")
            ids[name] = (await inventory.add_camera(session, spec, app[KEYS])).id
    return ids


async def test_police_get_names_and_sites_without_streams(aiohttp_client, settings, login):
    app = create_app(settings, record=False)
    client = await aiohttp_client(app)
    ids = await add_cameras(app)
    await login(client, "police")
    assert (await client.get("/api/v1/cameras")).status == 403  # no browsing: unchanged
    resp = await client.get("/api/v1/evidence/cameras")
    assert resp.status == 200, await resp.text()
    cams = (await resp.json())["cameras"]
    assert [(c["id"], c["name"], c["site"]) for c in cams] == [
        (ids["Town Centre 01"], "Town Centre 01", "Town Centre"), (ids["Queens Park 01"], "Queens Park 01", "Queens Park")]
    assert all(set(c) == {"id", "name", "site", "position"} for c in cams)
    assert "rtsp" not in await resp.text()
    for role in ("operator", "supervisor"):
        await login(client, role)
        assert len((await (await client.get("/api/v1/evidence/cameras")).json())["cameras"]) == 2


async def test_refused_without_an_evidence_right_and_narrowed(aiohttp_client, settings, login):
    app = create_app(settings, record=False)
    client = await aiohttp_client(app)
    ids = await add_cameras(app)
    await login(client, "administrator", username="admin1")
    resp = await client.get("/api/v1/evidence/cameras")
    assert resp.status == 403
    async with app[SESSIONS]() as session:
        denied = (await session.execute(select(AuditEntry.actor).where(AuditEntry.action == "evidence.denied"))).scalars().all()
    assert denied == ["admin1"]
    # A police account narrowed to one camera sees that camera only.
    hashed = await asyncio.to_thread(accounts.hash_password, PASSWORD)
    async with transaction(app[SESSIONS]) as session:
        await accounts.create_user(session, "pc_narrow", "police", hashed, camera_ids=[ids["Queens Park 01"]])
        await audit.append(session, "test", "user.add", "user:pc_narrow", role="police")
    client.session.cookie_jar.clear()
    assert (await client.post("/api/v1/session", json={"username": "pc_narrow", "password": PASSWORD})).status == 200
    cams = (await (await client.get("/api/v1/evidence/cameras")).json())["cameras"]
    assert [c["name"] for c in cams] == ["Queens Park 01"]
