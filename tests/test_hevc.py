"""Cameras that stream H.265 (issue 14, item 0): recorded as sent, shown in the browser, exported
so that an ordinary PC plays the working copy.

Real components throughout: the simulator's H.265 cameras (x265enc), the recorder, the live hub
with its ffmpeg upstreams, Chromium through Playwright. Two simulated cameras:

- "Live Town Centre 01" sends H.265 on both streams: the browser gets one transcode to H.264,
  shared by all its viewers, stopped when the last one leaves;
- "Live Town Centre 02" sends H.265 on its main stream and H.264 on its sub stream: every viewer
  gets the sub stream as it is, never a transcode.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select
from ui_stack import OPERATOR, PASSWORD, browser_page, log_in, running_stack, wait_for

from controlroom.context import LIVE, SESSIONS
from storage.models import Segment

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

HEVC_ONLY = "Live Town Centre 01"
HEVC_H264_SUB = "Live Town Centre 02"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    async with running_stack(tmp_path_factory.mktemp("hevc"), cameras=0, live=2, ptz=0,
                             codecs={HEVC_ONLY: "h265", HEVC_H264_SUB: "h265+h264sub"},
                             **{"live.linger_s": 1.0, "recording.segment_s": 4}) as st:
        yield st


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(stack):
    async with browser_page(stack.base_url) as pg:
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        await log_in(pg, stack.base_url)
        pg.errors = errors
        yield pg


async def operator_ws(stack, camera_id: int, stream: str, extra: str = ""):
    """An operator's session and a live WebSocket to one camera; returns (http, ws)."""
    http = aiohttp.ClientSession(stack.base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    resp = await http.post("/api/v1/session", json={"username": OPERATOR, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    ws = await http.ws_connect(f"/api/v1/cameras/{camera_id}/live?stream={stream}{extra}")
    return http, ws


async def first_message(ws) -> dict:
    msg = await asyncio.wait_for(ws.receive(), 30)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


def ffprobe(path: Path) -> dict:
    return json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,codec_type",
         "-of", "json", str(path)], capture_output=True, check=True, timeout=30).stdout)


async def test_hevc_camera_plays_in_chromium_through_one_shared_transcode(stack, page, artifacts: Path):
    """The defect: an H.265 camera's tile said "No picture: connection lost". Now both tiles play,
    the H.265-only camera through one transcode, the other from its H.264 sub stream."""
    hevc, mixed = stack.camera_id(HEVC_ONLY), stack.camera_id(HEVC_H264_SUB)
    await page.evaluate(
        """([slots]) => { const g = window.controlroom.grid; const a = g.arrangement;
            a.slots = slots; a.layout = 4; g.save(); location.hash = '#grid'; g.render(); }""", [[hevc, mixed]])
    selector = "#grid video"

    async def both_playing():
        times = await page.eval_on_selector_all(selector, "vs => vs.map(v => v.currentTime)")
        return times if len(times) == 2 and all(t > 0 for t in times) else None

    first = await wait_for(both_playing, 45)
    messages = await page.locator("#grid .tile").all_text_contents()
    assert first, ("the H.265 cameras' tiles did not start playing within 45 s", messages, page.errors)
    await asyncio.sleep(2.0)
    second = await page.eval_on_selector_all(selector, "vs => vs.map(v => v.currentTime)")
    assert all(b > a + 0.5 for a, b in zip(first, second, strict=True)), (first, second)
    await page.screenshot(path=str(artifacts / "ui-grid-hevc.png"))

    hub = stack.app[LIVE]
    transcode = hub.upstreams[f"{hevc}/h264"]
    assert transcode.transcode and transcode.codec.startswith("avc1")
    assert not hub.upstreams[f"{mixed}/sub"].transcode, "an H.264 sub stream must be used as it is"
    assert hub.upstreams[f"{mixed}/sub"].codec.startswith("avc1")
    assert f"{mixed}/h264" not in hub.upstreams
    assert await page.get_attribute(f"#grid video[data-camera='{hevc}'] >> xpath=..", "data-transcoded") == "1"
    assert hub.learned_codec(f"{hevc}/sub", (await camera_row(stack, hevc)).sub_url).startswith("hvc1")

    # A second viewer, of the main stream this time, shares the same transcode: no second one.
    # (Its main stream is opened once to learn that it is H.265 too, and closed at once.)
    http, ws = await operator_ws(stack, hevc, "main")
    try:
        init = await first_message(ws)
        assert init["type"] == "init" and init["transcoded"] is True and init["codec"].startswith("avc1"), init
        assert init["source"] == "sub"
        assert (await asyncio.wait_for(ws.receive(), 10)).type == aiohttp.WSMsgType.BINARY
        assert hub.upstreams[f"{hevc}/h264"] is transcode and len(transcode.viewers) == 2
        assert hub.transcoding() == 1
        assert hub.learned_codec(f"{hevc}/main", (await camera_row(stack, hevc)).main_url).startswith("hvc1")
        assert await wait_for(lambda: asyncio.sleep(0, f"{hevc}/main" not in hub.upstreams), 5)
    finally:
        await ws.close()
        await http.close()

    # The main stream of the mixed camera is H.265: its single view is served by the H.264 sub.
    http, ws = await operator_ws(stack, mixed, "main")
    try:
        init = await first_message(ws)
        assert init["transcoded"] is False and init["source"] == "sub" and init["codec"].startswith("avc1"), init
    finally:
        await ws.close()
        await http.close()
    assert hub.transcoding() == 1

    # The last viewer leaves: the transcode stops (linger_s = 1 here) and its ffmpeg is gone.
    await page.evaluate("() => { location.hash = '#playback'; }")

    async def stopped():
        return f"{hevc}/h264" not in hub.upstreams and transcode.ended and transcode._proc is None

    assert await wait_for(stopped, 15), list(hub.upstreams)
    assert not page.errors


async def camera_row(stack, camera_id: int):
    from storage import inventory

    async with stack.app[SESSIONS]() as session:
        return await inventory.get_camera(session, camera_id)


async def test_tile_says_why_when_no_conversion_slot_is_free(stack):
    """No slot free: the live message carries a code the screen puts into plain words."""
    hub = stack.app[LIVE]
    hub.max_transcodes, before = 0, hub.max_transcodes
    try:
        http, ws = await operator_ws(stack, stack.camera_id(HEVC_ONLY), "sub")
        try:
            msg = await first_message(ws)
        finally:
            await ws.close()
            await http.close()
    finally:
        hub.max_transcodes = before
    assert msg["type"] == "error" and msg["code"] == "transcode_busy", msg
    mse = (Path(__file__).parents[1] / "controlroom/web/js/mse.js").read_text()
    for code in ("transcode_busy", "transcode_failed", "transcode_off"):
        assert f"{code}:" in mse, f"the screen has no plain words for {code}"


async def test_hevc_camera_is_recorded_by_stream_copy_and_catalogued(stack):
    """Recording stays stream copy: the segments are HEVC, catalogued with codec hevc, and
    ffprobe's duration of each agrees with the catalogue's."""
    cam_id = stack.camera_id(HEVC_ONLY)
    root = stack.settings.storage_root

    async def segments():
        async with stack.app[SESSIONS]() as session:
            rows = (await session.execute(select(Segment).where(Segment.camera_id == cam_id))).scalars().all()
        return rows if len(rows) >= 2 else None

    rows = await wait_for(segments, 60, 1.0)
    assert rows, "the H.265 camera recorded fewer than 2 segments in 60 s"
    for seg in rows[:2]:
        assert seg.codec == "hevc" and (seg.width, seg.height) == (640, 360), (seg.codec, seg.width, seg.height)
        probe = ffprobe(root / seg.path)
        assert [s["codec_name"] for s in probe["streams"]] == ["hevc"]
        assert abs(float(probe["format"]["duration"]) - (seg.end_us - seg.start_us) / 1e6) < 0.5


async def test_hevc_recording_plays_back_in_chromium(stack, page):
    """Playback of an H.265 recording: re-encoded to H.264 on the fly, the video plays on."""
    cam_id = stack.camera_id(HEVC_ONLY)

    async def full_segment():  # a whole one (a recorder's first segment may be short)
        async with stack.app[SESSIONS]() as session:
            return (await session.execute(select(Segment).where(
                Segment.camera_id == cam_id, Segment.end_us - Segment.start_us > 3_000_000)
                .order_by(Segment.start_us).limit(1))).scalar_one_or_none()

    seg = await wait_for(full_segment, 60, 1.0)
    if seg is None:
        async with stack.app[SESSIONS]() as session:
            rows = (await session.execute(select(Segment.start_us, Segment.end_us).where(Segment.camera_id == cam_id))).all()
        pytest.fail(f"nothing recorded to play back: {[(a, (b - a) / 1e6) for a, b in rows]}")
    at_ms = seg.start_us // 1000 + 500
    await page.goto(f"{stack.base_url}/#playback/{cam_id}/{at_ms}")

    async def playing():  # the wall time shown (the player may move on to the next run)
        return await page.evaluate(
            """() => { const pb = window.controlroom.playback; const v = document.getElementById('pb-video');
               return pb.ready && v.readyState >= 2 && v.currentTime > 0 ? pb.wallOf(v.currentTime) : null; }""")

    first = await wait_for(playing, 30)
    assert first, ("the H.265 recording did not play within 30 s", await page.text_content("#pb-message"), page.errors)
    async def moved_on():
        shown = await playing()
        return shown is not None and shown > first + 1000

    assert await wait_for(moved_on, 15), "the recording did not play on"
    assert not page.errors
    # What the player was given: H.264, re-encoded on the fly from the H.265 recording.
    http = aiohttp.ClientSession(stack.base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        resp = await http.post("/api/v1/session", json={"username": OPERATOR, "password": PASSWORD})
        assert resp.status == 200
        at = seg.start_us / 1e6 + 0.5
        from datetime import UTC, datetime

        plan = await (await http.get(f"/api/v1/cameras/{cam_id}/playback",
                                     params={"at": datetime.fromtimestamp(at, UTC).isoformat()})).json()
        async with http.get(plan["stream_url"]) as resp:
            assert resp.headers["X-Transcoded"] == "1"
            head = b""
            while b"moov" not in head or len(head) < 4096:
                chunk = await resp.content.read(4096)
                assert chunk, head
                head += chunk
        assert b"avcC" in head and b"hvcC" not in head
    finally:
        await http.close()


async def test_browser_that_plays_hevc_gets_the_stream_as_it_is(stack):
    """hevc=1 (the browser's MSE accepts H.265): no conversion, the camera's own stream."""
    hub = stack.app[LIVE]
    hevc = stack.camera_id(HEVC_ONLY)
    http, ws = await operator_ws(stack, hevc, "sub", "&hevc=1")
    try:
        init = await first_message(ws)
        assert init["transcoded"] is False and init["codec"].startswith("hvc1") and init["source"] == "sub", init
        assert not hub.upstreams[f"{hevc}/sub"].transcode and f"{hevc}/h264" not in hub.upstreams
    finally:
        await ws.close()
        await http.close()
