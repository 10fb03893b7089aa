"""Live ANPR reading without the RTSP stream: the vehicle tracker (pure), bad frames, and the
worker thread storing a read, checking hotlists and alerting. Frames hold synthetic UK plates
drawn here (DejaVu Sans Bold on a yellow plate, as the simulator draws them)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from anpr import AnprError
from anpr.live import (
    CameraConfig,
    FrameRead,
    LiveOptions,
    LiveReading,
    MotionGate,
    VehicleTracker,
    check_frame,
)
from storage import anpr as store
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


def fr(text: str, conf: float, t_us: int) -> FrameRead:
    return FrameRead(text, conf, t_us, (100, 100, 200, 40))


def leave(t: VehicleTracker, at_us: int) -> list:
    """Two frames looked at with nothing in them: what ends a vehicle that has left."""
    return t.add([], at_us) + t.add([], at_us + 200_000)


# ---------------------------------------------------------------------------------------------
# The tracker: pure


def test_tracker_commits_each_vehicle_once_when_frames_agree():
    t = VehicleTracker(agree_frames=2, gap_us=S)
    assert t.add([fr("AB12CDE", 0.9, 0)], 0) == []
    (v,) = t.add([fr("AB12CDE", 0.95, 200_000)], 200_000)
    assert (v.text, v.frames, v.read_us, v.commit_frame_us) == ("AB12CDE", 2, 200_000, 200_000)
    # Later frames of the same vehicle, misread or partly visible, are absorbed.
    assert t.add([fr("AB12CDF", 0.8, 400_000)], 400_000) == []
    assert t.add([fr("AB12CD", 0.7, 600_000)], 600_000) == []
    assert leave(t, 3 * S) == []
    # The next vehicle is its own read.
    t.add([fr("XY70ZZZ", 0.9, 4 * S)], 4 * S)
    (w,) = t.add([fr("XY70ZZZ", 0.9, 4 * S + 200_000)], 4 * S + 200_000)
    assert w.text == "XY70ZZZ"


def test_tracker_votes_when_frames_disagree_and_commits_at_gap():
    t = VehicleTracker(agree_frames=3, gap_us=S)
    t.add([fr("AB12CDE", 0.9, 0)], 0)
    t.add([fr("A812CDE", 0.6, 200_000)], 200_000)
    t.add([fr("AB12CDE", 0.8, 400_000)], 400_000)
    t.add([fr("AB12COE", 0.7, 600_000)], 600_000)
    assert t.add([], 1_000_000) == []  # one empty frame, 0.4 s later: not gone yet
    (v,) = leave(t, 2 * S)
    assert v.text == "AB12CDE" and v.frames == 4 and v.read_us == 0
    assert 0 < v.confidence < 0.9


def test_tracker_single_glimpse_needs_high_confidence():
    t = VehicleTracker(agree_frames=2, gap_us=S, single_conf=0.9)
    t.add([fr("LOW1", 0.6, 0)], 0)
    assert leave(t, 2 * S) == []
    t.add([fr("MN73", 1.0, 2500_000)], 2500_000)  # a plate's left group alone, however sure
    assert leave(t, 4 * S) == []
    t.add([fr("HIGH12", 0.97, 5 * S)], 5 * S)
    assert t.flush(6 * S) == []  # no frames looked at: only a long silence ends it
    (v,) = t.flush(9 * S)
    assert v.text == "HIGH12"


def test_tracker_two_plates_in_one_frame_are_two_vehicles():
    t = VehicleTracker(agree_frames=2, gap_us=S)
    t.add([fr("AB12CDE", 0.9, 0), fr("XY70ZZZ", 0.9, 0)], 0)
    out = t.add([fr("AB12CDE", 0.9, 100_000), fr("XY70ZZZ", 0.9, 100_000)], 100_000)
    assert sorted(v.text for v in out) == ["AB12CDE", "XY70ZZZ"]


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
        hl = await store.add_hotlist(s, "Stolen", source="PNC")
        await store.add_entries(s, hl.id, [store.EntrySpec("AB12CDE", "stolen", "PNC", 1, now_us() + 86_400 * S)])
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
        read = await store.get_read(s, stored[0].read_id)
        (hit, *_), = await store.list_hits(s)
    assert (read.site_name, read.lane, read.direction) == ("Horns Bridge roundabout", "1", "westbound")
    assert hit.read_id == read.id and hit.state == "pending" and hit.alert_id == alert["id"]
    plate = store.resolve_image(tmp_path / "anpr", read.plate_path).read_bytes()
    overview = store.resolve_image(tmp_path / "anpr", read.overview_path).read_bytes()
    assert plate[:2] == overview[:2] == b"\xff\xd8"
    assert 0 < len(plate) < len(overview)


def test_tracker_partial_plate_joins_its_vehicle():
    t = VehicleTracker(agree_frames=2, gap_us=S, single_conf=0.9)
    t.add([fr("19JX", 0.95, 0)], 0)  # the plate entering the view
    t.add([fr("FJ19JXY", 0.99, 200_000)], 200_000)
    (v,) = t.add([fr("FJ19JXY", 0.99, 400_000)], 400_000)
    assert v.text == "FJ19JXY" and v.frames == 3
    assert t.add([fr("J19JXY", 0.95, 600_000)], 600_000) == []
    assert leave(t, 3 * S) == []


def test_tracker_piece_with_a_misread_cut_end_joins_its_vehicle():
    # Seen in CI: "ID815" (the G of "WGD815C" half in view, read as I) in one frame at 0.94,
    # then the whole plate; the piece was committed as a vehicle of its own.
    t = VehicleTracker(agree_frames=2, gap_us=S, single_conf=0.9)
    committed = t.add([fr("ID815", 0.94, 0)], 0)
    committed += t.add([fr("WGD815C", 1.0, 100_000)], 100_000)
    committed += t.add([fr("WGD815C", 1.0, 300_000)], 300_000)
    committed += leave(t, 3 * S)
    assert [v.text for v in committed] == ["WGD815C"]
    # Seen in CI too: "FKG3A" (the front of "FK63AFH", its 6 read as G) a second after the
    # whole plate was committed; it was committed as a vehicle of its own.
    t = VehicleTracker(agree_frames=2, gap_us=S, single_conf=0.9)
    committed = t.add([fr("FK63AFH", 1.0, 0)], 0) + t.add([fr("FK63AFH", 1.0, 200_000)], 200_000)
    committed += t.add([fr("FKG3A", 0.93, 1_200_000)], 1_200_000) + leave(t, 4 * S)
    assert [v.text for v in committed] == ["FK63AFH"]
    # Two vehicles that share only three characters stay apart.
    u = VehicleTracker(agree_frames=2, gap_us=S, single_conf=0.9)
    committed = u.add([fr("XY815", 0.95, 0)], 0) + u.add([fr("WGD815C", 1.0, 100_000)], 100_000)
    committed += u.add([fr("WGD815C", 1.0, 300_000)], 300_000) + leave(u, 3 * S)
    assert sorted(v.text for v in committed) == ["WGD815C", "XY815"]


def test_tracker_piece_read_beside_the_whole_plate_in_one_frame_is_not_a_second_vehicle():
    # Seen in the end-to-end run: the reader returned "9ERA" beside "GW19ERA" in the same
    # frames, and the piece was committed as a vehicle of its own.
    t = VehicleTracker(agree_frames=2, gap_us=S)
    committed = t.add([fr("GW19ERA", 0.95, 0), fr("9ERA", 0.9, 0)], 0)
    committed += t.add([fr("GW19ERA", 0.97, 200_000), fr("9ERA", 0.92, 200_000)], 200_000)
    committed += t.add([fr("9ERA", 0.9, 400_000)], 400_000)
    committed += leave(t, 3 * S)
    assert [v.text for v in committed] == ["GW19ERA"]


def test_tracker_end_of_a_plate_read_twice_before_the_whole_is_not_the_vehicle():
    # Seen in the end-to-end run: "15DRH" (a valid dateless registration) read in two frames as
    # "BG15DRH" entered the view was committed early as the vehicle.
    t = VehicleTracker(agree_frames=2, gap_us=S)
    committed = t.add([fr("15DRH", 0.95, 0)], 0)
    committed += t.add([fr("15DRH", 0.95, 200_000)], 200_000)
    committed += t.add([fr("BG15DRH", 0.97, 400_000)], 400_000)
    committed += t.add([fr("BG15DRH", 0.97, 600_000)], 600_000)
    committed += leave(t, 3 * S)
    assert [v.text for v in committed] == ["BG15DRH"]


def test_tracker_a_plates_left_group_read_twice_waits_for_the_whole():
    t = VehicleTracker(agree_frames=2, gap_us=S)
    assert t.add([fr("MS73", 0.99, 0)], 0) == []
    assert t.add([fr("MS73", 0.99, 200_000)], 200_000) == []  # short: no early commit
    assert t.add([fr("MS73BJA", 0.98, 400_000)], 400_000) == []
    (v,) = t.add([fr("MS73BJA", 0.97, 600_000)], 600_000)
    assert v.text == "MS73BJA"
    # And a short plate that really is short is still read, when the vehicle has left.
    t.add([fr("K1", 0.95, 5 * S)], 5 * S)
    t.add([fr("K1", 0.95, 5 * S + 200_000)], 5 * S + 200_000)
    (w,) = leave(t, 7 * S)
    assert w.text == "K1"


def test_tracker_slow_reads_do_not_split_a_vehicle_and_a_stopped_one_is_read_once():
    t = VehicleTracker(agree_frames=2, gap_us=S)
    # On a busy machine the reads of one vehicle came 1.5 s apart: still one vehicle.
    assert t.add([fr("FV52", 0.99, 0)], 0) == []
    (v,) = t.add([fr("FV52HFW", 0.99, 1_500_000)], 1_500_000) + t.add([fr("FV52HFW", 0.99, 3 * S)], 3 * S)
    assert v.text == "FV52HFW"
    # It stops under the camera (nothing moves: empty frames), then drives off: no second read.
    assert leave(t, 5 * S) == []
    assert t.add([fr("FV52HFW", 0.99, 8 * S)], 8 * S) == []
    assert t.add([fr("FV52HFW", 0.99, 8 * S + 200_000)], 8 * S + 200_000) == []
    assert leave(t, 10 * S) == []


def test_stream_clock_undoes_bursts():
    from anpr.live import StreamClock

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


def test_vote_outvotes_a_misread_character():
    from anpr.live import vote

    reads = [FrameRead("AB12CDE", 0.9, 0, (0, 0, 1, 1), [0.9] * 7), FrameRead("A812CDE", 0.95, 1, (0, 0, 1, 1),
             [0.99, 0.5, 0.99, 0.99, 0.99, 0.99, 0.99]), FrameRead("AB12CDE", 0.8, 2, (0, 0, 1, 1), [0.8] * 7)]
    v = vote(reads)
    assert v.text == "AB12CDE" and v.frame_us == 0 and len(v.char_confidences) == 7


async def test_expired_hotlist_entry_does_not_alert(sessions, tmp_path, anpr_camera):
    from storage.alerts import AlertHub

    cam, keys = anpr_camera
    async with transaction(sessions) as s:
        hl = await store.get_hotlist(s, "Stolen")
        await store.add_entries(s, hl.id, [store.EntrySpec("XY70ZZZ", "was stolen", "PNC", 1, now_us() + 300_000)])
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
        hl = await store.add_hotlist(s, "Stolen", source="PNC")
        await store.add_entries(s, hl.id, [store.EntrySpec("AB12*", "stolen series", "PNC", 1, now_us() + 3600 * S)])
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
