"""Live view fan-out (cameras/live.py) and the live/alerts/playback API, with real ffmpeg and
the simulated cameras (no browser: tests/test_ui.py drives that)."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select
from ui_stack import OPERATOR, PASSWORD, running_stack

from cameras import CameraUnavailable
from cameras.live import (
    BoxStream,
    Feed,
    FeedUpstream,
    Fragment,
    LiveHub,
    Source,
    Upstream,
    Viewer,
    _no_source,
    upstream_args,
)
from controlroom.api.live import SNAPSHOT_FRESH_S, snapshot_jpeg
from controlroom.context import ALERTS, KEYS, LIVE, SESSIONS
from simulator import Simulation
from storage import accounts, inventory
from storage.alerts import raise_alert
from storage.audit import AuditEntry
from storage.db import transaction
from storage.inventory import credentialed_url


def fmp4_of_test_pattern(tmp_path: Path, seconds: int = 4, gop: int = 25) -> bytes:
    src = tmp_path / "src.mkv"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc=size=320x180:rate=25:duration={seconds}", "-c:v", "libx264", "-preset",
                    "ultrafast", "-g", str(gop), "-pix_fmt", "yuv420p", str(src)], check=True)
    return subprocess.run(upstream_args(str(src)), check=True, capture_output=True).stdout


def test_box_stream_cuts_init_and_fragments_and_finds_keyframes(tmp_path: Path):
    data = fmp4_of_test_pattern(tmp_path, seconds=4, gop=25)
    boxes = BoxStream()
    items: list = []
    for i in range(0, len(data), 777):  # odd chunk sizes: boxes straddle reads
        items += boxes.feed(data[i:i + 777])
    init, frags = items[0], items[1:]
    assert isinstance(init, bytes) and init[4:8] == b"ftyp" and b"moov" in init
    assert all(isinstance(f, Fragment) and f.data[4:8] == b"moof" for f in frags)
    # Every byte is accounted for, in order (mfra/sidx at the end aside).
    assert data.startswith(init + b"".join(f.data for f in frags))
    # 100 ms fragments, a keyframe every 25 frames: a fragment is marked keyframe exactly when
    # its first sample's number is a multiple of 25 (sample counts read from each trun).
    first_sample, expected = 0, []
    for f in frags:
        trun = f.data.find(b"trun")
        expected.append(first_sample % 25 == 0)
        first_sample += struct.unpack_from(">I", f.data, trun + 8)[0]
    assert [f.keyframe for f in frags] == expected
    assert sum(expected) >= 3 and len(frags) > 3 * sum(expected)


def test_viewer_that_falls_behind_is_skipped_to_the_next_keyframe():
    v = Viewer(budget_bytes=1000)

    def frag(key: bool, size: int = 400) -> Fragment:
        return Fragment(b"k" * size if key else b"p" * size, key, time.monotonic())

    v.offer(frag(False))  # before any keyframe: nothing to decode from
    assert v.backlog_bytes == 0
    v.offer(frag(True))
    v.offer(frag(False))
    assert v.backlog_bytes == 800
    v.offer(frag(False))  # would exceed the budget: backlog dropped, wait for a keyframe
    assert v.backlog_bytes == 0 and v.skips == 1
    v.offer(frag(False))
    assert v.backlog_bytes == 0
    v.offer(frag(True))
    assert v.backlog_bytes == 400
    for _ in range(100):
        v.offer(frag(True))
        assert v.backlog_bytes <= 1000  # never grows a queue


@pytest.fixture
async def sim(tmp_path: Path):
    async with Simulation(tmp_path / "sim", cameras=1) as s:
        yield s


def source_for(cam) -> Source:
    async def make() -> Source:
        return Source(credentialed_url(cam.sub_url, cam.username, cam.password), (cam.password,))
    return make


async def rtsp_clients(sim) -> int:
    return sum(c.get("clients", 0) for c in await sim.status())


async def test_a_feed_serves_the_hubs_viewers_without_a_source_of_its_own(tmp_path: Path):
    """The recorder's live output (a Feed) serves a stream copy of its key: viewers get its init
    segment and the current group of pictures at once, then every fragment; the run's end ends
    the upstream; a failed feed is passed over for the camera's own pull (the source factory)."""
    data = fmp4_of_test_pattern(tmp_path, seconds=4, gop=25)
    feed = Feed("1/main")
    hub = LiveHub(grace_s=0.1)
    hub.feeds["1/main"] = feed
    asked: list[str] = []

    async def camera() -> Source:
        asked.append("camera")
        return Source("rtsp://127.0.0.1:9/none")

    try:
        feed.begin()
        half = len(data) // 2
        feed.data(data[:half])  # before anyone watches: the init and the GOP so far are kept
        before, gop = feed.fragments, len(feed.gop.fragments)
        up, early = await hub.join("1/main", camera)
        assert isinstance(up, FeedUpstream) and hub.started == 1
        await up.wait_ready(5)
        assert early.init == feed.init and early.init is not None and early.backlog_bytes > 0
        first = await early.next_chunk()
        assert first == feed.gop.fragments[0].data and feed.gop.fragments[0].keyframe
        feed.data(data[half:])
        await asyncio.sleep(0.05)
        assert up.fragments == gop + feed.fragments - before  # the GOP it joined in, then every fragment once
        _, late = await hub.join("1/main", camera)  # a late joiner: same upstream, current GOP
        assert late.init == early.init and late.backlog_bytes > 0
        feed.end("the recorder's ffmpeg stopped")
        await asyncio.sleep(0.05)
        assert up.ended and early.closed and late.closed and up.end_reason == "the recorder's ffmpeg stopped"
        assert not asked  # never the camera
        feed.begin()
        feed.end("the recorder's live output failed: Broken pipe", failed=True)
        up2, viewer = await hub.join("1/main", camera)
        assert not isinstance(up2, FeedUpstream)  # a failed feed: the camera's own pull, as before
        await asyncio.sleep(0.2)  # its upstream asks the source factory
        assert asked == ["camera"]
        hub.leave(up2, viewer)
        feed.data(data)  # the next run's init clears the failure
        assert feed.error == "" and feed.init is not None
    finally:
        await hub.close()


async def test_one_upstream_serves_every_viewer_and_a_slow_one_is_skipped(sim):
    cam = sim.cameras[0]
    hub = LiveHub(grace_s=0.5, budget_bytes=60_000)
    try:
        joined = [await hub.join("1/sub", source_for(cam)) for _ in range(3)]
        up = joined[0][0]
        assert all(j[0] is up for j in joined) and hub.started == 1
        await up.wait_ready(15)
        fast, slow = joined[0][1], joined[1][1]
        received = 0
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:  # the fast viewer drains; the slow one never reads
            chunk = await asyncio.wait_for(fast.next_chunk(), 5)
            received += len(chunk)
        assert received > 0 and fast.skips == 0
        assert slow.skips >= 1 and slow.backlog_bytes <= 60_000
        assert await rtsp_clients(sim) == 1  # one RTSP session for three viewers
        for upstream, viewer in joined:
            hub.leave(upstream, viewer)
        await asyncio.sleep(1.5)  # grace period, then the upstream stops
        assert "1/sub" not in hub.upstreams
        for _ in range(20):
            if await rtsp_clients(sim) == 0:
                break
            await asyncio.sleep(0.25)
        assert await rtsp_clients(sim) == 0
    finally:
        await hub.close()


async def test_upstream_with_wrong_password_ends_without_leaking_it(sim, caplog):
    caplog.set_level(logging.DEBUG)
    cam = sim.cameras[0]
    secret = "not-the-password-xyz"

    async def bad() -> Source:
        return Source(credentialed_url(cam.sub_url, cam.username, secret), (secret,))

    hub = LiveHub(grace_s=0.1)
    try:
        up, viewer = await hub.join("1/sub", bad)
        with pytest.raises(Exception, match="camera stream 1/sub"):
            await up.wait_ready(15)
        assert await asyncio.wait_for(viewer.next_chunk(), 5) is None
        assert up.stderr_tail, "ffmpeg's complaint is kept"
        assert secret not in "\n".join(up.stderr_tail)
        assert secret not in caplog.text
    finally:
        await hub.close()


# --- the HTTP API --------------------------------------------------------------------------


@pytest.fixture
async def stack(tmp_path: Path):
    async with running_stack(tmp_path, cameras=1, live=0, ptz=0, record=False) as st:
        yield st


async def client(stack, username: str = OPERATOR, password: str = PASSWORD):
    http = aiohttp.ClientSession(stack.base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    resp = await http.post("/api/v1/session", json={"username": username, "password": password})
    assert resp.status == 200, await resp.text()
    return http, {"X-CSRF-Token": (await resp.json())["csrf_token"]}


async def test_live_websocket_sends_codec_init_then_fragments_and_is_audited(stack):
    http, _ = await client(stack)
    try:
        async with http.ws_connect("/api/v1/cameras/1/live?stream=sub") as ws:
            hello = await ws.receive_json(timeout=15)
            assert hello["type"] == "init" and hello["codec"].startswith("avc1.")
            init = await ws.receive_bytes(timeout=5)
            assert init[4:8] == b"ftyp"
            frag = await ws.receive_bytes(timeout=5)
            assert frag[4:8] == b"moof"
        # The other stream is a different upstream; the same one is shared.
        assert set(stack.app[LIVE].upstreams) == {"1/sub"}
        for _ in range(20):
            async with stack.app[SESSIONS]() as session:
                actions = [a for (a,) in (await session.execute(
                    select(AuditEntry.action).where(AuditEntry.actor == OPERATOR))).all()]
            if "live.stop" in actions:
                break
            await asyncio.sleep(0.1)
        assert "live.start" in actions and "live.stop" in actions
        # Snapshot: a JPEG from the shared upstream's newest keyframe.
        resp = await http.get("/api/v1/cameras/1/snapshot.jpg?stream=sub&download=1")
        assert resp.status == 200 and resp.content_type == "image/jpeg"
        assert (await resp.read())[:2] == b"\xff\xd8"
        assert "attachment" in resp.headers["Content-Disposition"]
    finally:
        await http.close()


async def test_live_refuses_cross_origin_and_users_without_live_view(stack):
    http, _ = await client(stack)
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect("/api/v1/cameras/1/live", headers={"Origin": "http://evil.example"})
        assert err.value.status == 403
    finally:
        await http.close()
    hashed = await asyncio.to_thread(accounts.hash_password, PASSWORD)
    async with transaction(stack.app[SESSIONS]) as session:
        await accounts.create_user(session, "pc1234", "police", hashed)
    police, _ = await client(stack, "pc1234")
    try:
        for path in ("/api/v1/cameras/1/snapshot.jpg", "/api/v1/alerts", "/api/v1/cameras/1/playback?at=2026-01-01T00:00:00Z"):
            assert (await police.get(path)).status == 403, path
    finally:
        await police.close()


async def test_live_refuses_a_disabled_camera(stack):
    """An administrator disabled the camera: no live video and no still, refused before any
    upgrade or upstream (409, saying why); enabled again, it plays."""
    async with transaction(stack.app[SESSIONS]) as session:
        await inventory.update_camera(session, 1, inventory.CameraUpdate(enabled=False), stack.app[KEYS])
    http, _ = await client(stack)
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect("/api/v1/cameras/1/live?stream=sub")
        assert err.value.status == 409
        for path in ("/api/v1/cameras/1/snapshot.jpg", "/api/v1/cameras/1/snapshot.jpg?stream=main&download=1"):
            resp = await http.get(path)
            assert resp.status == 409 and "is disabled" in (await resp.json())["error"], path
        assert not stack.app[LIVE].upstreams
        async with stack.app[SESSIONS]() as session:
            actions = (await session.execute(select(AuditEntry.action).where(AuditEntry.actor == OPERATOR))).scalars().all()
        assert "live.start" not in actions and "live.snapshot" not in actions
        async with transaction(stack.app[SESSIONS]) as session:
            await inventory.update_camera(session, 1, inventory.CameraUpdate(enabled=True), stack.app[KEYS])
        async with http.ws_connect("/api/v1/cameras/1/live?stream=sub") as ws:
            assert (await ws.receive_json(timeout=15))["type"] == "init"
    finally:
        await http.close()


async def test_alerts_list_live_feed_and_acknowledgement(stack):
    http, headers = await client(stack)
    try:
        async with http.ws_connect("/api/v1/alerts/ws") as ws:
            await asyncio.sleep(0.2)
            async with transaction(stack.app[SESSIONS]) as session:
                alert = await raise_alert(session, stack.app[ALERTS], "camera_offline",
                                          "<script>x</script> lost", 1, reason="test")
            msg = await ws.receive_json(timeout=5)
            assert msg["type"] == "alert" and msg["alert"]["id"] == alert.id
            assert msg["alert"]["at_local"].endswith(("+00:00", "+01:00"))
            listed = await (await http.get("/api/v1/alerts?open=1")).json()
            assert [a["id"] for a in listed["alerts"]] == [alert.id]
            assert (await http.post(f"/api/v1/alerts/{alert.id}/ack")).status == 403  # no CSRF header
            resp = await http.post(f"/api/v1/alerts/{alert.id}/ack", headers=headers)
            assert resp.status == 200
            acked = await resp.json()
            assert acked["acknowledged_by"] == OPERATOR
            msg = await ws.receive_json(timeout=5)
            assert msg["type"] == "ack" and msg["alert"]["acknowledged_by"] == OPERATOR
        assert (await (await http.get("/api/v1/alerts?open=1")).json())["alerts"] == []
        async with stack.app[SESSIONS]() as session:
            entry = (await session.execute(select(AuditEntry).where(AuditEntry.action == "alert.ack"))).scalar_one()
        assert entry.actor == OPERATOR and json.loads(entry.details)["kind"] == "camera_offline"
        assert (await http.post("/api/v1/alerts/99999/ack", headers=headers)).status == 404
    finally:
        await http.close()


async def test_playback_plan_without_recordings_is_404(stack):
    http, _ = await client(stack)
    try:
        resp = await http.get("/api/v1/cameras/1/playback?at=2026-01-01T00:00:00Z")
        assert resp.status == 404
        assert (await http.get("/api/v1/cameras/1/playback")).status == 400
        assert (await http.get("/api/v1/cameras/1/playback?at=2026-01-01T00:00:00")).status == 400  # no offset
    finally:
        await http.close()


async def test_a_snapshot_is_never_of_a_stream_that_stopped_delivering() -> None:
    """An upstream lingers until its stall timeout after its camera stops sending; a snapshot
    meanwhile must say there is no picture, not decode the last keyframe as if it were now."""
    up = Upstream("1/sub", _no_source, stall_timeout_s=60)
    stale = Fragment(b"moof-mdat", keyframe=True, received_s=time.monotonic() - SNAPSHOT_FRESH_S - 1)
    up.init = b"init"  # as _got_init leaves it
    up.ready.set()
    up._publish(stale)
    with pytest.raises(CameraUnavailable, match="no video for over"):
        await snapshot_jpeg(up, timeout_s=0.5)
