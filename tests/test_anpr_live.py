"""Live ANPR reading without the RTSP stream: bad frames, the motion gate, the stream clock, and
the worker thread storing a read, checking hotlists and alerting (the vehicle tracker, pure, is
tested in test_anpr_tracking.py). Frames hold synthetic UK plates
drawn here (DejaVu Sans Bold on a yellow plate, as the simulator draws them)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from anpr import AnprError
from anpr.camera_reader import CameraConfig, LiveOptions
from anpr.frames import MotionGate, StreamClock, check_frame
from anpr.live import LiveReading
from storage.anpr.hits import list_hits
from storage.anpr.hotlists import EntrySpec, add_entries, add_hotlist, get_hotlist
from storage.anpr.images import resolve_image
from storage.anpr.reads import get_read
from storage.db import now_us, transaction
from storage.inventory import CameraSpec, add_camera, credentialed_url
from storage.keys import load_or_create_keys

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
S = 1_000_000


def synthetic_frame(plate: str | None, y: int = 400, width: int = 1280, height: int = 720) -> np.ndarray:
    """A road-grey BGR frame with a synthetic yellow UK plate (or none) centred at height ``y``."""
    img = Image.new("RGB", (width, height), (70, 72, 75))
    if plate:
        draw = ImageDraw.Draw(img)
        draw.rounded_rectangle([360, y - 220, 920, y + 100], radius=40, fill=(40, 90, 160))
        font = ImageFont.truetype(FONT, 50)
        w, h = 300, 66
        x0, y0 = width // 2 - w // 2, y
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=(245, 200, 20), outline=(20, 20, 20), width=3)
        box = draw.textbbox((0, 0), plate, font=font)
        tw, th = box[2] - box[0], box[3] - box[1]
        draw.text((x0 + (w - tw) / 2 - box[0], y0 + (h - th) / 2 - box[1]), plate, font=font, fill=(0, 0, 0))
    return np.ascontiguousarray(np.asarray(img)[:, :, ::-1])


# ---------------------------------------------------------------------------------------------
# Frames


def test_bad_frames_give_clear_errors():
    with pytest.raises(AnprError, match="empty frame"):
        check_frame(None, 10**7)
    with pytest.raises(AnprError, match="empty frame"):
        check_frame(np.zeros((0, 0, 3), np.uint8), 10**7)
    with pytest.raises(AnprError, match="larger than the limit"):
        check_frame(np.zeros((5000, 5000, 3), np.uint8), 16_000_000)
    with pytest.raises(AnprError, match="8-bit"):
        check_frame(np.zeros((100, 100, 3), np.float32), 10**7)
    with pytest.raises(AnprError, match="not an image"):
        check_frame(b"\xff\xd8 not decoded", 10**7)
    with pytest.raises(AnprError, match="3-channel"):
        check_frame(np.zeros((100, 100), np.uint8), 10**7)


def test_motion_gate():
    gate = MotionGate()
    road = synthetic_frame(None)
    assert gate.moving(road)  # first frame: nothing to compare with
    assert not gate.moving(road.copy())
    noisy = np.clip(road.astype(np.int16) + np.random.default_rng(1).integers(-6, 7, road.shape), 0, 255)
    assert not gate.moving(noisy.astype(np.uint8))
    assert gate.moving(synthetic_frame("AB12 CDE"))


def test_credentials_go_into_the_url_quoted():
    url = credentialed_url("rtsp://127.0.0.1:8554/main", "admin", "p@ss:w/rd")
    assert url == "rtsp://admin:p%40ss%3Aw%2Frd@127.0.0.1:8554/main"
    assert "p@ss" not in repr(CameraConfig(1, "c", url))


# ---------------------------------------------------------------------------------------------
# The worker thread with the real plate reader, fed frames directly


@pytest.fixture
async def anpr_camera(sessions, tmp_path):
    keys = load_or_create_keys(tmp_path / "k.key")
    async with transaction(sessions) as s:
        cam = await add_camera(s, CameraSpec(name="ANPR test 1", site="Horns Bridge roundabout", kind="anpr",
                                             lane="1", direction="westbound", recording=False), keys)
        hl = await add_hotlist(s, "Stolen", source="PNC")
        await add_entries(s, hl.id, [EntrySpec("AB12CDE", "stolen", "PNC", 1, now_us() + 86_400 * S)])
    return cam, keys


async def test_bad_empty_huge_frames_then_a_good_one_is_read_and_alerted(sessions, tmp_path, anpr_camera):
    from storage.alerts import AlertHub

    cam, keys = anpr_camera
    hub = AlertHub()
    alerts = hub.subscribe()
    stored = []
    live = LiveReading(sessions, keys, hub, tmp_path / "anpr", LiveOptions(agree_frames=2, track_gap_s=0.5),
                       on_stored=stored.append)
    reader = live.attach(CameraConfig(cam.id, cam.name, "rtsp://unused", roi=(0.2, 0.1, 0.6, 0.9)))
    try:
        t0 = now_us()
        for n, bad in enumerate((None, np.zeros((0, 0, 3), np.uint8), np.zeros((6000, 6000, 3), np.uint8), "junk")):
            reader.submit(bad, now_us())
            for _ in range(200):
                if reader.stats.errors > n:
                    break
                await asyncio.sleep(0.05)
        for i, y in enumerate((250, 300, 350, 400)):
            reader.submit(synthetic_frame("AB12 CDE", y=y), t0 + i * 150_000)
            # Let the worker take each frame (a waiting frame would be replaced, as when live).
            for _ in range(400):
                if reader.stats.frames_read + reader.stats.frames_still >= i + 1:
                    break
                await asyncio.sleep(0.05)
        deadline = time.monotonic() + 30
        while not stored and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the vehicle's later frames and its end must not add a read
        await live.drain()
    finally:
        await live.stop()
    assert reader.stats.errors == 4 and "not an image" in reader.stats.last_error
    assert [s.vrm for s in stored] == ["AB12CDE"], reader.stats
    alert = alerts.get_nowait()
    assert alert["kind"] == "anpr_hit" and alert["data"]["vrm"] == "AB12CDE" and alert["data"]["hotlist"] == "Stolen"
    assert alert["data"]["read_id"] == stored[0].read_id and alert["data"]["priority"] == 1
    async with sessions() as s:
        read = await get_read(s, stored[0].read_id)
        (hit, *_), = await list_hits(s)
    assert (read.site_name, read.lane, read.direction) == ("Horns Bridge roundabout", "1", "westbound")
    assert hit.read_id == read.id and hit.state == "pending" and hit.alert_id == alert["id"]
    plate = resolve_image(tmp_path / "anpr", read.plate_path).read_bytes()
    overview = resolve_image(tmp_path / "anpr", read.overview_path).read_bytes()
    assert plate[:2] == overview[:2] == b"\xff\xd8"
    assert 0 < len(plate) < len(overview)


def test_stream_clock_undoes_bursts():
    clock = StreamClock()
    t0 = 1_000_000 * S
    # At connection 1.4 s of buffered stream arrives at once (as seen from the simulator)...
    burst = [clock.wall_us(pos, t0 + 10_000) for pos in (600.0, 1000.0, 1400.0)]
    assert burst == [t0 + 10_000, t0 + 10_000, t0 + 10_000]  # nothing better known yet
    # ... then frames arrive as they are captured: stream position + 2.0 s is the wall clock.
    steady = [clock.wall_us(pos, t0 - 2_000_000 + int(pos * 1000)) for pos in (3000.0, 4000.0)]
    assert steady == [t0 + 1_000_000, t0 + 2_000_000]
    # A frame held up on a busy machine keeps the time it was captured at.
    assert clock.wall_us(5000.0, t0 + 4_500_000) == t0 + 3_000_000 + 2_500  # 1000 ppm creep over 2.5 s
    assert clock.wall_us(0.0, 123) == 123  # no timestamp: the grab time


async def test_expired_hotlist_entry_does_not_alert(sessions, tmp_path, anpr_camera):
    from storage.alerts import AlertHub

    cam, keys = anpr_camera
    async with transaction(sessions) as s:
        hl = await get_hotlist(s, "Stolen")
        await add_entries(s, hl.id, [EntrySpec("XY70ZZZ", "was stolen", "PNC", 1, now_us() + 300_000)])
    await asyncio.sleep(0.5)  # the entry has now expired
    hub = AlertHub()
    alerts = hub.subscribe()
    stored = []
    live = LiveReading(sessions, keys, hub, tmp_path / "anpr", LiveOptions(), on_stored=stored.append)
    reader = live.attach(CameraConfig(cam.id, cam.name, "rtsp://unused", roi=(0.2, 0.1, 0.6, 0.9)))
    try:
        for i, y in enumerate((250, 300, 350, 400)):
            reader.submit(synthetic_frame("XY70 ZZZ", y=y), now_us())
            for _ in range(400):
                if reader.stats.frames_read + reader.stats.frames_still >= i + 1:
                    break
                await asyncio.sleep(0.05)
        for _ in range(100):
            if stored:
                break
            await asyncio.sleep(0.1)
        await live.drain()
    finally:
        await live.stop()
    assert [s.vrm for s in stored] == ["XY70ZZZ"] and stored[0].hits == []
    assert alerts.empty()


async def test_hit_reaches_the_websocket_and_mqtt(aiohttp_client, settings, login):
    """The whole path in the real app: frame, read, hotlist, alert on the operators' WebSocket
    and on the loopback Mosquitto. Frames are handed to the worker directly (the RTSP path is
    tested in test_anpr_e2e.py)."""
    import contextlib
    import json
    import uuid

    import aiomqtt

    from controlroom.app import create_app
    from controlroom.context import ANPR_LIVE, KEYS, SESSIONS

    prefix = f"controlroom-test-{uuid.uuid4().hex[:8]}"
    client = await aiohttp_client(create_app(settings.with_overrides(**{"mqtt.topic_prefix": prefix}),
                                             record=False, anpr=True))
    app = client.server.app
    async with transaction(app[SESSIONS]) as s:
        cam = await add_camera(s, CameraSpec(name="ANPR lane 1", site="West Bars roundabout", kind="anpr",
                                             lane="1", direction="eastbound", recording=False), app[KEYS])
        hl = await add_hotlist(s, "Stolen", source="PNC")
        await add_entries(s, hl.id, [EntrySpec("AB12*", "stolen series", "PNC", 1, now_us() + 3600 * S)])
    headers = await login(client, "operator")
    ws = await client.ws_connect("/api/v1/alerts/ws", headers=headers)
    mqtt_messages: list[dict] = []
    subscribed = asyncio.Event()

    async def mqtt_listen() -> None:
        async with aiomqtt.Client("127.0.0.1", 1883) as mq:
            await mq.subscribe(f"{prefix}/anpr/hits", qos=1)
            subscribed.set()
            async for message in mq.messages:
                mqtt_messages.append(json.loads(message.payload))

    mqtt_task = asyncio.create_task(mqtt_listen())
    try:
        await asyncio.wait_for(subscribed.wait(), 10)
        reader = app[ANPR_LIVE].attach(CameraConfig(cam.id, cam.name, "rtsp://unused", roi=(0.2, 0.1, 0.6, 0.9)))
        for i, y in enumerate((250, 300, 350)):
            reader.submit(synthetic_frame("AB12 CDE", y=y), now_us())
            for _ in range(400):
                if reader.stats.frames_read + reader.stats.frames_still >= i + 1:
                    break
                await asyncio.sleep(0.05)
        msg = await ws.receive_json(timeout=60)
        assert msg["type"] == "alert" and msg["alert"]["kind"] == "anpr_hit"
        data = msg["alert"]["data"]
        assert (data["vrm"], data["hotlist"], data["site"], data["pattern"]) == (
            "AB12CDE", "Stolen", "West Bars roundabout", "AB12*")
        for _ in range(100):
            if mqtt_messages:
                break
            await asyncio.sleep(0.05)
        assert [m["data"]["read_id"] for m in mqtt_messages] == [data["read_id"]]
        # The hit, with its images, is there for the operator to confirm.
        r = await client.get("/api/v1/anpr/hits", params={"state": "pending"}, headers=headers)
        (hit,) = (await r.json())["hits"]
        assert hit["read"]["id"] == data["read_id"]
        assert (await client.get(hit["read"]["overview_url"], headers=headers)).status == 200
    finally:
        mqtt_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await mqtt_task
        await ws.close()


async def test_a_failed_final_flush_is_logged_not_swallowed(sessions, tmp_path, anpr_camera, caplog):
    """Issue 12: the vehicles still tracked when reading stops are flushed last; a failure there
    (here: the image folder cannot be created) was suppressed in silence. Now it is logged with
    the camera and counted in the reader's errors."""
    import logging

    cam, keys = anpr_camera
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    stored = []
    # agree_frames above the frames given: no early commit, the vehicle waits for the flush.
    live = LiveReading(sessions, keys, None, blocker / "anpr", LiveOptions(agree_frames=10, track_gap_s=60),
                       on_stored=stored.append)
    reader = live.attach(CameraConfig(cam.id, cam.name, "rtsp://unused", roi=(0.2, 0.1, 0.6, 0.9)))
    t0 = now_us()
    try:
        for i, y in enumerate((250, 300, 350)):
            reader.submit(synthetic_frame("AB12 CDE", y=y), t0 + i * 150_000)
            for _ in range(400):
                if reader.stats.frames_read + reader.stats.frames_still >= i + 1:
                    break
                await asyncio.sleep(0.05)
        assert reader.stats.errors == 0 and not stored
    finally:
        with caplog.at_level(logging.ERROR, logger="anpr.camera_reader"):
            await live.stop()
    flushed = [r for r in caplog.records if "final flush" in r.getMessage()]
    assert flushed and f"camera {cam.id}:" in flushed[0].getMessage() and flushed[0].exc_info, caplog.text
    assert reader.stats.errors == 1 and "final flush" in reader.stats.last_error and not stored
