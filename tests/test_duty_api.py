"""Monitoring hours and camera health over HTTP, with real logins, on SQLite and PostgreSQL:
who may sign on, edit the rota and manage faults; 409s; the week report; narrowing of faults."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from controlroom.app import create_app
from controlroom.context import KEYS, SESSIONS
from storage import accounts
from storage.audit import AuditEntry
from storage.db import transaction
from storage.inventory import CameraSpec, add_camera
from storage.weeks import week_bounds


@pytest.fixture
async def client(db_url, aiohttp_client, settings):
    app = create_app(settings.with_overrides(database_url=db_url), record=False)
    client = await aiohttp_client(app)
    async with transaction(app[SESSIONS]) as s:
        a = await add_camera(s, CameraSpec(name="Market Street", site="Town Centre", main_url="rtsp://127.0.0.1:1/m"),
                             app[KEYS])
        b = await add_camera(s, CameraSpec(name="Park Gate", site="Queens Park", main_url="rtsp://127.0.0.1:1/m"),
                             app[KEYS])
    client.cams = (a.id, b.id)
    return client


async def _actions(client) -> list[tuple[str, str]]:
    async with client.server.app[SESSIONS]() as session:
        rows = await session.execute(select(AuditEntry.actor, AuditEntry.action).order_by(AuditEntry.seq))
        return [(a, b) for a, b in rows if b.startswith(("duty.", "rota.", "fault."))]


async def test_sign_on_and_off_by_role(client, login):
    op = await login(client, "operator", "op1")
    assert (await (await client.get("/api/v1/duty", headers=op)).json())["on_duty"] is False
    resp = await client.post("/api/v1/duty/on", json={"note": "nights"}, headers=op)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["on_local"]
    again = await client.post("/api/v1/duty/on", json={}, headers=op)
    assert again.status == 409 and "already on duty" in (await again.json())["error"]
    state = await (await client.get("/api/v1/duty", headers=op)).json()
    assert state["on_duty"] and state["session"]["note"] == "nights" and state["on_duty_count"] == 1
    assert (await client.post("/api/v1/duty/off", headers=op)).status == 200
    assert (await client.post("/api/v1/duty/off", headers=op)).status == 409
    # Administrators and police do not watch: they cannot sign on.
    for role in ("administrator", "police"):
        headers = await login(client, role)
        assert (await client.post("/api/v1/duty/on", json={}, headers=headers)).status == 403
        state = await (await client.get("/api/v1/duty", headers=headers)).json()
        assert state == {"on_duty": False, "session": None, "on_duty_count": None}
    # A supervisor signs on, and signs off an operator who left without doing so.
    await login(client, "operator", "op2")
    op2 = await login(client, "operator", "op2")
    assert (await client.post("/api/v1/duty/on", json={}, headers=op2)).status == 201
    sup = await login(client, "supervisor", "sup1")
    assert (await client.post("/api/v1/duty/on", json={}, headers=sup)).status == 201
    assert (await client.post("/api/v1/duty/op2/off", headers=sup)).status == 200
    assert (await client.post("/api/v1/duty/op2/off", headers=sup)).status == 409
    listing = await (await client.get("/api/v1/duty/sessions", headers=sup)).json()
    assert sorted(s["username"] for s in listing["sessions"]) == ["op1", "op2", "sup1"]
    op = await login(client, "operator", "op1")
    assert (await client.get("/api/v1/duty/sessions", headers=op)).status == 403
    assert await _actions(client) == [("op1", "duty.on"), ("op1", "duty.off"), ("op2", "duty.on"),
                                      ("sup1", "duty.on"), ("sup1", "duty.off"), ("sup1", "duty.sessions")]


async def test_the_rota_is_the_supervisors_and_the_week_report_uses_it(client, login):
    op = await login(client, "operator")
    window = {"weekday": 0, "start_minute": 480, "end_minute": 1080, "operators": 2}
    assert (await client.post("/api/v1/rota", json=window, headers=op)).status == 403
    sup = await login(client, "supervisor", "sup1")
    resp = await client.post("/api/v1/rota", json=window, headers=sup)
    assert resp.status == 201
    wid = (await resp.json())["id"]
    bad = await client.post("/api/v1/rota", json={**window, "end_minute": 400}, headers=sup)
    assert bad.status == 400 and "end_minute" in (await bad.json())["error"]
    resp = await client.patch(f"/api/v1/rota/{wid}", json={"end_minute": 1200}, headers=sup)
    assert resp.status == 200 and (await resp.json())["end_minute"] == 1200
    assert (await client.patch("/api/v1/rota/999", json={"operators": 1}, headers=sup)).status == 404
    assert [w["id"] for w in (await (await client.get("/api/v1/rota", headers=sup)).json())["windows"]] == [wid]
    report = await (await client.get("/api/v1/duty/week?week=2026-W43", headers=sup)).json()
    assert report["hours_in_week"] == 169 and report["target_hours"] == 116
    assert report["planned_hours"] == 12 and report["planned_operator_hours"] == 24
    assert report["start_local"] == "2026-10-19T00:00:00.000+01:00"
    assert report["unmonitored"][0]["start_local"] == "2026-10-19T00:00:00.000+01:00"
    assert (await client.get("/api/v1/duty/week?week=2026-W99", headers=sup)).status == 400
    assert (await client.delete(f"/api/v1/rota/{wid}", headers=sup)).status == 200
    assert (await client.delete(f"/api/v1/rota/{wid}", headers=sup)).status == 404
    assert [a for _, a in await _actions(client)] == ["rota.add", "rota.update", "rota.remove"]


async def test_faults_operators_report_supervisors_manage(client, login):
    a, b = client.cams
    op = await login(client, "operator", "op1")
    resp = await client.post(f"/api/v1/cameras/{a}/faults", json={"kind": "blurred", "description": "misted"},
                             headers=op)
    assert resp.status == 201, await resp.text()
    fault = await resp.json()
    assert (fault["camera"], fault["source"], fault["status"]) == ("Market Street", "op1", "open")
    assert (await client.post(f"/api/v1/cameras/{a}/faults", json={"kind": "melted"}, headers=op)).status == 400
    assert (await client.patch(f"/api/v1/faults/{fault['id']}", json={"status": "reported"}, headers=op)).status == 403
    for role in ("supervisor", "administrator"):
        await login(client, role)
    sup = await login(client, "supervisor", "sup1")
    resp = await client.patch(f"/api/v1/faults/{fault['id']}", json={"status": "reported", "contractor_ref": "JOB-77"},
                              headers=sup)
    assert resp.status == 200 and (await resp.json())["contractor_ref"] == "JOB-77"
    resp = await client.patch(f"/api/v1/faults/{fault['id']}", json={"status": "open"}, headers=sup)
    assert resp.status == 409
    resp = await client.patch(f"/api/v1/faults/{fault['id']}", json={"status": "repaired"}, headers=sup)
    body = await resp.json()
    assert body["status"] == "repaired" and body["time_to_repair_hours"] is not None
    listing = await (await client.get("/api/v1/faults?open=1", headers=op)).json()
    assert listing["faults"] == []
    listing = await (await client.get("/api/v1/faults?camera=Market%20Street", headers=op)).json()
    assert [f["id"] for f in listing["faults"]] == [fault["id"]]
    police = await login(client, "police")
    assert (await client.get("/api/v1/faults", headers=police)).status == 403
    assert await _actions(client) == [("op1", "fault.open"), ("sup1", "fault.update"), ("sup1", "fault.reported"),
                                      ("sup1", "fault.repaired")]


async def test_availability_and_faults_are_cut_to_a_narrowed_users_cameras(client, login):
    a, b = client.cams
    sup = await login(client, "supervisor")
    for cam in (a, b):
        assert (await client.post(f"/api/v1/cameras/{cam}/faults", json={"kind": "other"}, headers=sup)).status == 201
    await login(client, "operator", "narrow")
    async with transaction(client.server.app[SESSIONS]) as session:
        accounts.set_scope(await accounts.get_user(session, "narrow"), None, [a])
    narrow = await login(client, "operator", "narrow")
    faults = (await (await client.get("/api/v1/faults", headers=narrow)).json())["faults"]
    assert [f["camera_id"] for f in faults] == [a]
    assert (await client.post(f"/api/v1/cameras/{b}/faults", json={"kind": "other"}, headers=narrow)).status == 403
    week = (await (await client.get("/api/v1/health/availability?week=2026-W48", headers=narrow)).json())
    assert [c["camera_id"] for c in week["cameras"]] == [a]
    assert [p["date"] for p in week["cameras"][0]["periods"]][:2] == ["2026-11-23", "2026-11-24"]
    assert week_bounds("2026-W48")[0] == week["cameras"][0]["periods"][0]["start_us"]
    assert (await client.get("/api/v1/health/pictures", headers=narrow)).status == 200
