"""Views, tours and site maps kept by the service (controlroom/api/views.py), and an alert's
acknowledgement with a note: real logins, on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from sqlalchemy import select

from controlroom.app import create_app
from controlroom.context import KEYS, SESSIONS
from storage import accounts
from storage.alerts import raise_alert
from storage.audit import AuditEntry
from storage.db import transaction
from storage.inventory import CameraSpec, add_camera
from storage.models import Site


@pytest.fixture
async def client(db_url, aiohttp_client, settings):
    app = create_app(settings.with_overrides(database_url=db_url), record=False)
    client = await aiohttp_client(app)
    async with transaction(app[SESSIONS]) as s:
        a = await add_camera(s, CameraSpec(name="Cam A", site="Site A", main_url="rtsp://127.0.0.1:1/a"), app[KEYS])
        b = await add_camera(s, CameraSpec(name="Cam B", site="Site B", main_url="rtsp://127.0.0.1:1/b"), app[KEYS])
        sites = dict((await s.execute(select(Site.name, Site.id))).all())
    client.a, client.b, client.site_a, client.site_b = a.id, b.id, sites["Site A"], sites["Site B"]
    return client


async def narrowed(client, login, role: str, name: str, *, cameras=(), sites=()) -> dict[str, str]:
    async with transaction(client.server.app[SESSIONS]) as session:
        await accounts.create_user(session, name, role, accounts.hash_password("correct horse battery staple"),
                                   camera_ids=list(cameras), site_ids=list(sites))
    return await login(client, role, name)


async def _actions(client, prefix: str) -> list[str]:
    async with client.server.app[SESSIONS]() as session:
        return list((await session.execute(select(AuditEntry.action).where(AuditEntry.action.like(f"{prefix}%"))
                                           .order_by(AuditEntry.seq))).scalars())


def picture(kind: str = "PNG", size: tuple[int, int] = (320, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 220, 240)).save(out, kind)
    return out.getvalue()


async def test_an_operator_keeps_their_own_layouts_and_may_not_share(client, login) -> None:
    op = await login(client, "operator", "op1")
    resp = await client.post("/api/v1/views", json={"name": "Car park", "layout": 4, "tiles": [client.a, None, client.b]},
                             headers=op)
    assert resp.status == 201, await resp.text()
    view = await resp.json()
    assert (view["owner"], view["scope"], view["layout"], view["tiles"]) == ("op1", "own", 4, [client.a, None, client.b, None])
    shared = await client.post("/api/v1/views", json={"name": "Town", "scope": "team", "tiles": [client.a]}, headers=op)
    assert shared.status == 403 and "supervisors" in (await shared.json())["error"]
    # Another operator sees none of op1's own views, and cannot change or remove them.
    other = await login(client, "operator", "op2")
    assert (await (await client.get("/api/v1/views", headers=other)).json())["views"] == []
    assert (await client.put(f"/api/v1/views/{view['id']}", json={"name": "Mine"}, headers=other)).status == 404
    assert (await client.delete(f"/api/v1/views/{view['id']}", headers=other)).status == 404
    op = await login(client, "operator", "op1")
    changed = await client.put(f"/api/v1/views/{view['id']}", json={"name": "Car park 2", "layout": 1, "tiles": [client.b]},
                               headers=op)
    assert changed.status == 200 and (await changed.json())["tiles"] == [client.b]
    assert (await client.delete(f"/api/v1/views/{view['id']}", headers=op)).status == 200
    assert await _actions(client, "view.") == ["view.add", "view.change", "view.remove"]


@pytest.mark.parametrize("body, words", [
    ({"name": "x", "layout": 1, "tiles": [1, 2]}, "at most 1 cameras"),
    ({"name": "x", "layout": 5}, "layout"),
    ({"name": "x", "tiles": [999999]}, "no camera 999999"),
    ({"name": "x", "kind": "tour"}, "at least one camera"),
    ({"name": "x", "kind": "tour", "steps": [{"camera": 1, "view": 1}]}, "not both"),
    ({"name": "x", "kind": "tour", "steps": [{"view": 999}]}, "no layout view 999"),
    ({"name": "x", "kind": "tour", "steps": [{"camera": 1}], "dwell_s": 1}, "dwell_s"),
    ({"name": "x", "scope": "site"}, "names the site"),
    ({"name": ""}, "name"),
    ({"name": "x", "colour": "red"}, "colour"),
])
async def test_a_bad_view_is_refused_naming_the_problem(client, login, body, words) -> None:
    sup = await login(client, "supervisor")
    resp = await client.post("/api/v1/views", json=body, headers=sup)
    assert resp.status == 400 and words in (await resp.json())["error"], await resp.text()


async def test_shared_views_and_tours_show_only_the_cameras_each_viewer_may_see(client, login) -> None:
    sup = await login(client, "supervisor", "sup")
    team = await (await client.post("/api/v1/views", json={"name": "Both", "scope": "team", "tiles": [client.a, client.b]},
                                    headers=sup)).json()
    site_b = await client.post("/api/v1/views", json={"name": "B only", "scope": "site", "site": client.site_b,
                                                      "tiles": [client.b]}, headers=sup)
    assert site_b.status == 201, await site_b.text()
    tour = await client.post("/api/v1/views", json={"name": "Round", "kind": "tour", "scope": "team", "dwell_s": 5,
                                                    "target": "tile", "steps": [{"camera": client.a}, {"camera": client.b},
                                                                                {"view": team["id"]}]}, headers=sup)
    assert tour.status == 201, await tour.text()
    assert (await tour.json())["steps"] == [{"camera": client.a}, {"camera": client.b}, {"view": team["id"]}]

    everyone = {v["name"]: v for v in (await (await client.get("/api/v1/views", headers=await login(client, "operator")))
                                       .json())["views"]}
    assert set(everyone) == {"Both", "B only", "Round"}
    on_a = await narrowed(client, login, "operator", "op.a", cameras=[client.a])
    seen = {v["name"]: v for v in (await (await client.get("/api/v1/views", headers=on_a)).json())["views"]}
    assert set(seen) == {"Both", "Round"}  # shared with site B: not for a user of camera A only
    assert [s["name"] for s in (await (await client.get("/api/v1/views", headers=on_a)).json())["sites"]] == ["Site A"]
    assert seen["Both"]["tiles"] == [client.a, None, None, None]
    assert seen["Round"]["steps"] == [{"camera": client.a}, {"view": team["id"]}]
    by_site = await narrowed(client, login, "operator", "op.siteb", sites=[client.site_b])
    assert {v["name"] for v in (await (await client.get("/api/v1/views", headers=by_site)).json())["views"]} == {
        "Both", "B only", "Round"}
    # A narrowed user saves only their cameras, and cannot change a view holding others'.
    on_a = await login(client, "operator", "op.a")
    assert (await client.post("/api/v1/views", json={"name": "x", "tiles": [client.b]}, headers=on_a)).status == 403
    sup_a = await narrowed(client, login, "supervisor", "sup.a", cameras=[client.a])
    resp = await client.put(f"/api/v1/views/{team['id']}", json={"name": "Both", "scope": "team", "tiles": [client.a]},
                            headers=sup_a)
    assert resp.status == 403 and "ask its owner" in (await resp.json())["error"]
    # Another supervisor may change a shared view; an operator may not.
    op = await login(client, "operator")
    assert (await client.delete(f"/api/v1/views/{team['id']}", headers=op)).status == 403
    sup2 = await login(client, "supervisor", "sup2")
    resp = await client.put(f"/api/v1/views/{team['id']}", json={"name": "Both", "scope": "team", "layout": 1,
                                                                  "tiles": [client.b]}, headers=sup2)
    assert resp.status == 200 and (await resp.json())["owner"] == "sup"


async def test_a_site_map_is_a_decoded_picture_with_pins_of_the_viewers_cameras(client, login) -> None:
    sup = await login(client, "supervisor", "sup")
    png = picture()
    resp = await client.post(f"/api/v1/maps?name=Town%20centre&site={client.site_a}", data=png, headers=sup)
    assert resp.status == 201, await resp.text()
    site_map = await resp.json()
    assert (site_map["width"], site_map["height"], site_map["media_type"], site_map["pins"]) == (320, 200, "image/png", [])
    jpeg = await client.post("/api/v1/maps?name=Plan", data=picture("JPEG"), headers=sup)
    assert jpeg.status == 201 and (await jpeg.json())["media_type"] == "image/jpeg"
    for bad, words in ((b"not a picture", "not a readable PNG or JPEG"), (png[:200], "not a readable PNG or JPEG"),
                       (picture("GIF"), "PNG or JPEG picture, not GIF"), (b"", "send the PNG or JPEG"),
                       (b"\0" * (5 * 1024 * 1024 + 1), "larger than 5 MB")):
        resp = await client.post("/api/v1/maps?name=Bad", data=bad, headers=sup)
        assert resp.status == 400 and words in (await resp.json())["error"], (words, await resp.text())
    # An image the size of a stadium is refused before it is decoded.
    huge = await client.post("/api/v1/maps?name=Huge", data=picture("PNG", (8000, 6000)), headers=sup)
    assert huge.status == 400 and "megapixels" in (await huge.json())["error"]

    pins = {"pins": [{"camera": client.a, "x": 0.25, "y": 0.5}, {"camera": client.b, "x": 0.75, "y": 0.1}]}
    resp = await client.put(f"/api/v1/maps/{site_map['id']}/pins", json=pins, headers=sup)
    assert resp.status == 200 and len((await resp.json())["pins"]) == 2
    off = await client.put(f"/api/v1/maps/{site_map['id']}/pins", json={"pins": [{"camera": client.a, "x": 1.5, "y": 0}]},
                           headers=sup)
    assert off.status == 400 and "x" in (await off.json())["error"]
    image = await client.get(f"/api/v1/maps/{site_map['id']}/image", headers=sup)
    assert image.status == 200 and image.content_type == "image/png" and await image.read() == png

    # Operators use maps (pins of their cameras only) but do not upload or move pins.
    op_a = await narrowed(client, login, "operator", "op.a", cameras=[client.a])
    maps = (await (await client.get("/api/v1/maps", headers=op_a)).json())["maps"]
    assert {m["name"]: [p["camera"] for p in m["pins"]] for m in maps} == {"Town centre": [client.a], "Plan": []}
    assert (await client.post("/api/v1/maps?name=Mine", data=png, headers=op_a)).status == 403
    assert (await client.put(f"/api/v1/maps/{site_map['id']}/pins", json=pins, headers=op_a)).status == 403
    op_b = await narrowed(client, login, "operator", "op.b", cameras=[client.b])
    assert [m["name"] for m in (await (await client.get("/api/v1/maps", headers=op_b)).json())["maps"]] == ["Plan"]
    assert (await client.get(f"/api/v1/maps/{site_map['id']}/image", headers=op_b)).status == 404
    # A supervisor narrowed to camera A moves A's pin; B's stays where it was.
    sup_a = await narrowed(client, login, "supervisor", "sup.a", cameras=[client.a])
    resp = await client.put(f"/api/v1/maps/{site_map['id']}/pins", json={"pins": [{"camera": client.a, "x": 0.5, "y": 0.5}]},
                            headers=sup_a)
    assert resp.status == 200 and (await resp.json())["pins"] == [{"camera": client.a, "x": 0.5, "y": 0.5}]
    sup = await login(client, "supervisor", "sup")
    full = (await (await client.get("/api/v1/maps", headers=sup)).json())["maps"]
    assert sorted((p["camera"], p["x"]) for m in full if m["id"] == site_map["id"] for p in m["pins"]) == [
        (client.a, 0.5), (client.b, 0.75)]
    assert (await client.delete(f"/api/v1/maps/{site_map['id']}", headers=sup)).status == 200
    assert await _actions(client, "map.") == ["map.add", "map.add", "map.pins", "map.pins", "map.remove"]


async def test_an_alert_is_acknowledged_with_a_note_kept_and_audited(client, login) -> None:
    app = client.server.app
    async with transaction(app[SESSIONS]) as session:
        alert = await raise_alert(session, None, "camera_offline", "Cam A is offline", camera_id=client.a)
    op = await login(client, "operator", "op1")
    resp = await client.post(f"/api/v1/alerts/{alert.id}/ack", json={"note": "  Contractor called, ref 42  "}, headers=op)
    assert resp.status == 200, await resp.text()
    assert ((await resp.json())["acknowledged_by"], (await resp.json())["ack_note"]) == ("op1", "Contractor called, ref 42")
    again = await client.post(f"/api/v1/alerts/{alert.id}/ack", json={"note": "second"}, headers=op)
    assert (await again.json())["ack_note"] == "Contractor called, ref 42"  # the first acknowledgement stands
    listed = (await (await client.get("/api/v1/alerts", headers=op)).json())["alerts"]
    assert listed[0]["ack_note"] == "Contractor called, ref 42"
    async with app[SESSIONS]() as session:
        entry = (await session.execute(select(AuditEntry).where(AuditEntry.action == "alert.ack"))).scalars().one()
    assert "Contractor called, ref 42" in entry.details
    long = await client.post(f"/api/v1/alerts/{alert.id}/ack", json={"note": "x" * 2001}, headers=op)
    assert long.status == 400 and "note" in (await long.json())["error"]
