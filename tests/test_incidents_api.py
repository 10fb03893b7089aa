"""The occurrence book through the HTTP API with real logins (SQLite and PostgreSQL): an
operator opens, adds to and changes an incident, a supervisor closes it, a change after that is
refused (409) while a correction is taken; bookmarks; evidence links and holds; clear errors."""

from __future__ import annotations

import pytest
from evidence_media import add_cameras
from sqlalchemy import select
from test_evidence_api import Users

from controlroom.app import create_app
from controlroom.context import SESSIONS
from controlroom.timefmt import us_to_iso
from storage.audit import AuditEntry
from storage.db import now_us
from storage.holds import list_holds

MIN_US = 60_000_000


@pytest.fixture
async def app_client(db_url, aiohttp_client, settings):
    return await aiohttp_client(create_app(settings.with_overrides(database_url=db_url), record=False))


async def audit_actions(app, prefix: str) -> list[str]:
    async with app[SESSIONS]() as session:
        rows = await session.execute(select(AuditEntry.action).where(AuditEntry.action.startswith(prefix))
                                     .order_by(AuditEntry.seq))
        return list(rows.scalars())


async def test_operator_logs_supervisor_closes_then_append_only(app_client, login):
    client, app = app_client, app_client.server.app
    cam, _ = await add_cameras(app[SESSIONS], ["Market Cross", "Bridge Street"])
    users = Users(client, login)
    op = await users.as_("operator", "op1")

    vocab = await (await client.get("/api/v1/incidents/vocabulary")).json()
    assert [c["value"] for c in vocab["categories"]][:3] == ["asb_personal", "asb_nuisance", "asb_environmental"]
    assert {"value": "radio", "label": "Shopwatch/Pubwatch radio"} in vocab["told"]

    seen = now_us() - 5 * MIN_US
    resp = await client.post("/api/v1/incidents", json={"category": "shoplifting", "camera": "Market Cross",
                                                         "occurred_at": us_to_iso(seen), "told": ["radio"]}, headers=op)
    assert resp.status == 201, await resp.text()
    inc = await resp.json()
    iid = inc["id"]
    assert (inc["camera_id"], inc["camera"], inc["site"], inc["status"]) == (cam, "Market Cross", "Town Centre", "open")
    assert inc["category_label"] == "Shoplifting" and inc["told_labels"] == ["Shopwatch/Pubwatch radio"]
    assert inc["occurred_at_local"].startswith(us_to_iso(seen)[:10])

    resp = await client.post(f"/api/v1/incidents/{iid}/entries", json={"text": "Male left Boots with bag"}, headers=op)
    assert resp.status == 201, await resp.text()
    resp = await client.patch(f"/api/v1/incidents/{iid}", json={"police_reference": "CAD 0421",
                                                                  "told": ["police", "radio"]}, headers=op)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["police_reference"] == "CAD 0421"

    # Operators cannot close; a supervisor must give an outcome.
    resp = await client.post(f"/api/v1/incidents/{iid}/close", json={"outcome": "arrest_assisted"}, headers=op)
    assert resp.status == 403
    sup = await users.as_("supervisor", "sup1")
    resp = await client.post(f"/api/v1/incidents/{iid}/close", json={}, headers=sup)
    assert resp.status == 400 and "outcome" in (await resp.json())["error"]
    resp = await client.post(f"/api/v1/incidents/{iid}/close", json={"outcome": "arrest_assisted"}, headers=sup)
    assert resp.status == 200, await resp.text()
    closed = await resp.json()
    assert (closed["status"], closed["closed_by"], closed["outcome_label"]) == ("closed", "sup1", "Arrest assisted")

    op = await users.as_("operator", "op1")
    resp = await client.patch(f"/api/v1/incidents/{iid}", json={"summary": "rewritten"}, headers=op)
    assert resp.status == 409 and "closed" in (await resp.json())["error"]
    resp = await client.post(f"/api/v1/incidents/{iid}/entries", json={"kind": "correction",
                                                                        "text": "Boots, not Superdrug"}, headers=op)
    assert resp.status == 201
    detail = await (await client.get(f"/api/v1/incidents/{iid}", headers=op)).json()
    assert [e["kind"] for e in detail["entries"]] == ["status", "note", "status", "status", "correction"]
    assert detail["summary"] == "" and detail["status"] == "closed"

    listed = await (await client.get("/api/v1/incidents?status=closed&category=shoplifting", headers=op)).json()
    assert [i["id"] for i in listed["incidents"]] == [iid]
    assert (await (await client.get("/api/v1/incidents?status=open", headers=op)).json())["incidents"] == []
    assert await audit_actions(app, "incident.") == [
        "incident.open", "incident.note", "incident.update", "incident.close", "incident.correction"]
    assert await audit_actions(app, "incidents.") == ["incidents.view", "incidents.list", "incidents.list"]


async def test_bookmarks_links_holds_and_clear_errors(app_client, login):
    client, app = app_client, app_client.server.app
    cam, other = await add_cameras(app[SESSIONS], ["Car Park", "Ticket Hall"])
    users = Users(client, login)
    op = await users.as_("operator", "op2")
    t = (now_us() - 30 * MIN_US) // 1000 * 1000  # ISO times carry milliseconds
    resp = await client.post("/api/v1/bookmarks", json={"camera": cam, "at": us_to_iso(t), "note": "silver hatchback"},
                             headers=op)
    assert resp.status == 201, await resp.text()
    mark = await resp.json()
    assert mark["start_us"] == mark["end_us"] == t and mark["camera"] == "Car Park"
    resp = await client.post("/api/v1/bookmarks", json={"camera": "Ticket Hall", "at": us_to_iso(t),
                                                         "to": us_to_iso(t + MIN_US), "note": "crowd"}, headers=op)
    assert resp.status == 201
    resp = await client.patch(f"/api/v1/bookmarks/{mark['id']}", json={"note": "silver hatchback, bay 4"}, headers=op)
    assert resp.status == 200 and (await resp.json())["note"] == "silver hatchback, bay 4"
    found = await (await client.get(f"/api/v1/bookmarks?camera={cam}", headers=op)).json()
    assert [b["note"] for b in found["bookmarks"]] == ["silver hatchback, bay 4"]
    found = await (await client.get("/api/v1/bookmarks?q=CROWD", headers=op)).json()
    assert [b["camera"] for b in found["bookmarks"]] == ["Ticket Hall"]

    inc = await (await client.post("/api/v1/incidents", json={"category": "vehicle_crime", "camera": cam,
                                                               "occurred_at": us_to_iso(t)}, headers=op)).json()
    resp = await client.post(f"/api/v1/bookmarks/{mark['id']}/attach", json={"incident": inc["id"]}, headers=op)
    assert resp.status == 200 and (await resp.json())["incident_id"] == inc["id"]
    other_inc = await (await client.post("/api/v1/incidents", json={"category": "other"}, headers=op)).json()
    resp = await client.post(f"/api/v1/bookmarks/{mark['id']}/attach", json={"incident": other_inc["id"]}, headers=op)
    assert resp.status == 409

    resp = await client.post(f"/api/v1/incidents/{inc['id']}/hold", json={"before_minutes": 10, "after_minutes": 20},
                             headers=op)
    assert resp.status == 201, await resp.text()
    detail = await resp.json()
    assert len(detail["holds"]) == 1 and [b["id"] for b in detail["bookmarks"]] == [mark["id"]]
    async with app[SESSIONS]() as session:
        (hold,) = [h for h in await list_holds(session) if h.reference == f"incident:{inc['id']}"]
        assert (hold.windows[0].camera_id, hold.windows[0].start_us, hold.windows[0].end_us) == (
            cam, t - 10 * MIN_US, t + 20 * MIN_US)
    resp = await client.post(f"/api/v1/incidents/{other_inc['id']}/hold", json={}, headers=op)
    assert resp.status == 400 and "camera" in (await resp.json())["error"]
    resp = await client.post(f"/api/v1/incidents/{inc['id']}/evidence", json={"request": 424242}, headers=op)
    assert resp.status == 400 and "evidence request" in (await resp.json())["error"]

    # Clear errors: bad category, unknown camera (also one past a 32-bit id), unknown incident, future time.
    for body, word in (({"category": "jaywalking"}, "category"), ({"category": "other", "camera": 999}, "camera"),
                       ({"category": "other", "camera": 2**31}, "camera"),
                       ({"category": "other", "occurred_at": us_to_iso(now_us() + 86_400_000_000)}, "future"),
                       ({"category": "other", "colour": "red"}, "colour")):
        resp = await client.post("/api/v1/incidents", json=body, headers=op)
        assert resp.status == 400 and word in (await resp.json())["error"], (body, await resp.text())
    assert (await client.get("/api/v1/incidents/999999", headers=op)).status == 404
    assert (await client.get("/api/v1/incidents/2147483648", headers=op)).status == 404
    resp = await client.post("/api/v1/bookmarks", json={"camera": cam, "at": us_to_iso(t), "to": us_to_iso(t - 1)},
                             headers=op)
    assert resp.status == 400 and "end" in (await resp.json())["error"]
    # Police have no part in the occurrence book.
    other_op = await users.as_("operator", "op3")  # the note is its maker's
    resp = await client.patch(f"/api/v1/bookmarks/{mark['id']}", json={"note": "mine now"}, headers=other_op)
    assert resp.status == 409
    police = await users.as_("police", "pc1")
    assert (await client.get("/api/v1/incidents", headers=police)).status == 403
    assert (await client.post("/api/v1/bookmarks", json={}, headers=police)).status == 403
    assert await audit_actions(app, "bookmark.") == ["bookmark.create", "bookmark.create", "bookmark.note",
                                                     "bookmark.attach"]
