"""Cameras and recordings over HTTP with real logins, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controlroom.app import create_app
from controlroom.context import KEYS, SESSIONS, SETTINGS
from storage.catalogue import NewSegment, commit_segment, incoming_dir
from storage.db import transaction
from storage.inventory import CameraSpec, add_camera

# 2026-10-25 00:59:30 UTC: the London clock goes back at 01:00 UTC, so this segment's local
# times straddle the hour that happens twice.
T0 = int(datetime(2026, 10, 25, 0, 59, 30, tzinfo=UTC).timestamp() * 1_000_000)


@pytest.fixture
async def client(db_url, aiohttp_client, settings):
    app = create_app(settings.with_overrides(database_url=db_url), record=False)
    client = await aiohttp_client(app)
    async with transaction(app[SESSIONS]) as s:
        cam = await add_camera(s, CameraSpec(name="Town Centre <b>01</b>", site="Town Centre",
                                             main_url="rtsp://127.0.0.1:1/main", username="u", password="camera-secret"),
                               app[KEYS])
    root = app[SETTINGS].storage_root
    for i in range(3):
        tmp = incoming_dir(root, cam.id) / f"{i}.mkv"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b"segment %d" % i)
        start = T0 + i * 30_000_000
        await commit_segment(app[SESSIONS], root, tmp, NewSegment(cam.id, start, start + 30_000_000, "h264", 1920, 1080))
    client.camera_id = cam.id
    return client


async def test_list_cameras_without_secrets(client, login) -> None:
    headers = await login(client, "operator")
    resp = await client.get("/api/v1/cameras", headers=headers)
    assert resp.status == 200
    body = await resp.text()
    assert "camera-secret" not in body
    cams = (await resp.json())["cameras"]
    assert cams[0]["name"] == "Town Centre <b>01</b>" and cams[0]["site"] == "Town Centre"
    assert cams[0]["has_password"] is True


async def test_recordings_in_range_with_offsets_across_the_clock_change(client, login) -> None:
    headers = await login(client, "operator")
    resp = await client.get(f"/api/v1/cameras/{client.camera_id}/recordings",
                            params={"from": "2026-10-25T00:59:00Z", "to": "2026-10-25T01:01:00+00:00"}, headers=headers)
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    segs = data["segments"]
    assert len(segs) == 3
    assert segs[0]["start"] == "2026-10-25T00:59:30.000+00:00"
    assert segs[0]["start_local"] == "2026-10-25T01:59:30.000+01:00"  # BST
    assert segs[1]["start_local"] == "2026-10-25T01:00:00.000+00:00"  # GMT: 01:00 again, told apart by the offset
    assert {"end", "bytes", "sha256", "path"} <= set(segs[0])
    assert data["gaps"] == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-10-25T00:59:00Z"}, "to"),
        ({"from": "2026-10-25T01:30:00", "to": "2026-10-25T02:00:00Z"}, "no UTC offset"),
        ({"from": "yesterday", "to": "2026-10-25T02:00:00Z"}, "not an ISO 8601 time"),
        ({"from": "2026-10-25T02:00:00Z", "to": "2026-10-25T01:00:00Z"}, "after its start"),
    ],
)
async def test_bad_ranges_are_clear_400s(client, login, params, message) -> None:
    headers = await login(client, "operator")
    resp = await client.get(f"/api/v1/cameras/{client.camera_id}/recordings", params=params, headers=headers)
    assert resp.status == 400
    assert message in (await resp.json())["error"]


async def test_unknown_camera_is_404(client, login) -> None:
    headers = await login(client, "operator")
    resp = await client.get("/api/v1/cameras/999/recordings", params={"from": "2026-10-25T00:00Z", "to": "2026-10-25T01:00Z"},
                            headers=headers)
    assert resp.status == 404


async def test_police_cannot_browse_recordings(client, login) -> None:
    headers = await login(client, "police")
    resp = await client.get(f"/api/v1/cameras/{client.camera_id}/recordings",
                            params={"from": "2026-10-25T00:59:00Z", "to": "2026-10-25T01:01:00Z"}, headers=headers)
    assert resp.status == 403
