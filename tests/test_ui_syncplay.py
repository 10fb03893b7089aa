"""Synchronised playback, digital zoom, stills and clips (issue 14, items 1 and 2), as an
operator uses them in Chromium at 1600x900 (en-GB, Europe/London): the real service, four
simulated cameras recording 2 s segments, real ffmpeg.

From a camera alert the operator opens its moment on four cameras at once: every tile plays
that moment together (the seconds from the click to all four playing are printed: the figure
the issue asks for). The wheel zooms a recorded tile and the live picture digitally. A still of
the chosen tile downloads as a PNG of the frame's own size with its audit entry; a 30 s clip
downloads as an MP4 that ffprobe reads as 30 s (to the keyframe before its start).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import cv2
import pytest
import pytest_asyncio
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from sqlalchemy import func, select
from ui_stack import OPERATOR, PASSWORD, chromium, running_stack, wait_for

from cameras.recorder import media_duration_s
from controlroom.context import ALERTS, SESSIONS
from storage.alerts import raise_alert
from storage.audit import AuditEntry
from storage.catalogue import find_run
from storage.db import transaction
from storage.models import Segment

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

SYNC_TOLERANCE_S = 1.0  # each tile's shown moment against the alert's (a frame is 40 ms; seeks land on frames)
SPREAD_S = 0.5  # the tiles against one another


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    async with running_stack(tmp_path_factory.mktemp("ui-sync"), cameras=4, live=0, ptz=0,
                             **{"recording.segment_s": 2}) as st:
        yield st


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(stack):
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1600, "height": 900}, locale="en-GB",
                                            timezone_id="Europe/London", accept_downloads=True)
        pg = await context.new_page()
        pg.errors = []
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
        await pg.goto(f"{stack.base_url}/login")
        await pg.fill("#username", OPERATOR)
        await pg.fill("#password", PASSWORD)
        await pg.click("#login-button")
        await pg.wait_for_selector("#grid .tile")
        yield pg
        await context.close()


async def catalogued_since(stack, cam_id: int, ago_s: float) -> bool:
    at_us = int((time.time() - ago_s) * 1e6)
    async with stack.app[SESSIONS]() as session:
        run = await find_run(session, stack.settings.storage_root, cam_id, at_us, media_duration_s)
    return bool(run) and run[0].start_us <= at_us and run[0].end_us is not None


async def audit_entries(stack, action: str) -> list[AuditEntry]:
    async with stack.app[SESSIONS]() as session:
        return list((await session.execute(select(AuditEntry).where(AuditEntry.action == action))).scalars())


TILES = """(target) => {
  const s = window.controlroom.sync;
  const tiles = s.tiles.filter((t) => t.camId != null);
  const out = tiles.map((t) => ({ camera: t.camId, t: t.video.currentTime, paused: t.video.paused,
    ready: t.video.readyState, wall: t.plan ? t.wallOf(t.video.currentTime) : null, message: t.message.textContent }));
  return { tiles: out, clock: s.wall, hash: location.hash };
}"""

# The view's clock at the first frame after every tile is in place (seek() releases its hold):
# the moment playback starts from. Installed before the click; read by OPENED_IN_STEP.
WATCH_START = """() => {
  window.__syncStart = null;
  const watch = () => {
    const s = window.controlroom && window.controlroom.sync;
    if (s && s.active && !s.holding) window.__syncStart = { wall: s.wall, at: performance.now() };
    else requestAnimationFrame(watch);
  };
  requestAnimationFrame(watch);
}"""

# ALL_PLAYING's state, taken in the frame in which it first holds (not a round trip later).
OPENED_IN_STEP = """() => {
  const s = window.controlroom && window.controlroom.sync;
  if (!s || !s.active) return false;
  const tiles = s.tiles.filter((t) => t.camId != null);
  if (!(tiles.length === 4 && tiles.every((t) => t.plan && !t.video.paused && t.video.readyState >= 3 && !t.message.textContent))) return false;
  return { tiles: tiles.map((t) => ({ camera: t.camId, t: t.video.currentTime, wall: t.wallOf(t.video.currentTime) })),
           clock: s.wall, at: performance.now(), start: window.__syncStart, hash: location.hash };
}"""

ALL_PLAYING = """() => {
  const s = window.controlroom && window.controlroom.sync;
  if (!s || !s.active) return false;
  const tiles = s.tiles.filter((t) => t.camId != null);
  return tiles.length === 4 && tiles.every((t) => t.plan && !t.video.paused && t.video.readyState >= 3 && !t.message.textContent);
}"""


async def all_playing(page, timeout_s: float = 30) -> None:
    """Wait until every tile with a camera plays; if not, say what each tile was doing."""
    try:
        await page.wait_for_function(ALL_PLAYING, polling="raf", timeout=timeout_s * 1000)
    except PlaywrightTimeoutError:
        raise AssertionError(f"not every tile played within {timeout_s:g} s: {await page.evaluate(TILES, 0)}, "
                             f"page errors {page.errors}") from None


async def test_alert_opens_four_cameras_in_step(stack, page, artifacts: Path):
    """A camera alert's "4 cameras" link opens synchronised playback of its moment (30 s before
    the alert) on four cameras: all four play within a second of that moment and of each other,
    the URL carries the cameras and the time, and the seconds from the click are printed."""
    cams = sorted(stack.cameras.values())
    assert len(cams) == 4
    # 2 s segments: 45 s of footage catalogued on every camera, enough for the alert's moment
    # (30 s before it) and, by the time they run, the still (40 s ago) and the clip (50 to 20 s ago).
    for cam in cams:
        assert await wait_for(lambda cam=cam: catalogued_since(stack, cam, 45), 120, 1.0), f"camera {cam} not recording"
    async with transaction(stack.app[SESSIONS]) as s:
        alert = await raise_alert(s, stack.app[ALERTS], "camera_offline", "Test: camera offline (no answer)",
                                  camera_id=cams[0])
    target_ms = alert.at_us // 1000 - 30_000
    card = page.locator("#alerts-list li.alert.kind-camera_offline")
    await card.wait_for(state="attached", timeout=15_000)
    if await card.get_attribute("aria-expanded") != "true" and "expanded" not in (await card.get_attribute("class")):
        await card.locator("button.alert-toggle").click()  # a compact card opens with its toggle
    link = card.locator("a.alert-sync")
    await link.wait_for(timeout=5_000)
    href = await link.get_attribute("href")
    ids = [int(i) for i in href.split("/")[1].split(",")]
    assert ids[0] == cams[0] and sorted(ids) == cams, href  # the alert's camera first, then its site's
    assert abs(int(href.split("/")[2]) - target_ms) <= 1, (href, target_ms)
    await page.evaluate(WATCH_START)
    started = time.monotonic()
    await link.click()
    state = await (await page.wait_for_function(OPENED_IN_STEP, polling="raf", timeout=30_000)).json_value()
    seconds = time.monotonic() - started
    print(f"\nalert to synchronised playback of its moment on 4 cameras: {seconds:.2f} s")
    (artifacts / "sync-alert-to-playback.json").write_text(json.dumps({"seconds": round(seconds, 3), **state}, indent=1))
    walls = [t["wall"] for t in state["tiles"]]
    assert sorted(t["camera"] for t in state["tiles"]) == cams
    # The one clock started at the alert's moment, once every tile was in place; each tile shows
    # that moment or later, and not past the clock (which has run since: longer on a loaded
    # machine, so a tile is held to the clock, not to the target plus a guess of that time).
    start = state["start"]
    assert start and abs(start["wall"] - target_ms) / 1000 < SYNC_TOLERANCE_S, (start, target_ms)
    for t in state["tiles"]:
        assert target_ms - SYNC_TOLERANCE_S * 1000 < t["wall"] < state["clock"] + SYNC_TOLERANCE_S * 1000, state
    assert (max(walls) - min(walls)) / 1000 < SPREAD_S, state
    assert state["hash"].startswith(f"#sync/{','.join(map(str, ids))}/"), state["hash"]
    await page.wait_for_timeout(2000)  # still in step two seconds on
    later = await page.evaluate(TILES, target_ms)
    walls = [t["wall"] for t in later["tiles"]]
    assert all(not t["paused"] for t in later["tiles"]), later
    assert (max(walls) - min(walls)) / 1000 < SPREAD_S, later
    assert min(walls) > target_ms + 1000, later
    await page.screenshot(path=str(artifacts / "ui-sync-4.png"))
    assert not page.errors, page.errors


async def test_digital_zoom_on_recorded_and_live_video(stack, page):
    """The wheel enlarges a recorded tile's picture (its transform scales) and a drag pans it;
    a double click shows the whole picture again. The same on a camera's live picture."""
    tile = page.locator("#sync-grid .sync-tile").nth(1)
    video = tile.locator("video")
    assert (await video.evaluate("v => v.style.transform")) == ""
    box = await tile.bounding_box()
    await page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6)
    await page.mouse.wheel(0, -300)
    await page.wait_for_function("v => v.style.transform.includes('scale')", arg=await video.element_handle())
    zoomed = await video.evaluate("v => v.style.transform")
    assert "scale(1.25)" in zoomed, zoomed  # one notch of the wheel
    assert await tile.get_attribute("data-zoom") not in (None, "1.00")
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=4)
    await page.mouse.up()
    assert await video.evaluate("v => v.style.transform") != zoomed  # panned
    await tile.dblclick()
    assert await video.evaluate("v => v.style.transform") == ""
    # Live: the camera's own view.
    cam = sorted(stack.cameras.values())[2]
    await page.goto(f"{stack.base_url}/#camera/{cam}")
    live = page.locator("#single-video")
    await live.wait_for()
    lbox = await page.locator("#single-video").bounding_box()
    await page.mouse.move(lbox["x"] + lbox["width"] / 2, lbox["y"] + lbox["height"] / 2)
    await page.mouse.wheel(0, -300)
    await page.wait_for_function("() => document.getElementById('single-video').style.transform.includes('scale')")
    await page.keyboard.press("0")
    assert await live.evaluate("v => v.style.transform") == ""


async def open_sync(stack, page, ago_s: float = 40) -> int:
    cams = sorted(stack.cameras.values())
    at_ms = int((time.time() - ago_s) * 1000)
    await page.goto(f"{stack.base_url}/#sync/{','.join(map(str, cams))}/{at_ms}")
    await all_playing(page)
    return at_ms


async def test_still_is_a_png_of_the_frame_with_its_audit_entry(stack, page, artifacts: Path):
    """Still (PNG) of the chosen tile: a PNG the size of the camera's picture, with the camera and
    time burnt in (a dark box at the bottom left), and a playback.still entry in the audit trail."""
    await open_sync(stack, page)
    await page.click("#sync-play")  # pause: the still is of the frame on screen
    tile = page.locator("#sync-grid .sync-tile").first
    await tile.click()
    size = await tile.locator("video").evaluate("v => [v.videoWidth, v.videoHeight]")
    before = len(await audit_entries(stack, "playback.still"))
    async with page.expect_download() as info:
        await page.click("#sync-still")
    download = await info.value
    path = artifacts / "sync-still.png"
    await download.save_as(path)
    assert download.suggested_filename.endswith(".png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = cv2.imread(str(path))
    assert [image.shape[1], image.shape[0]] == size, (image.shape, size)
    # The burnt-in text sits on a dark box at the bottom left, over the picture.
    h = image.shape[0]
    corner = image[h - 20:h - 10, 2:8]
    assert corner.mean() < 60, corner.mean()
    assert "saved" in await page.locator("#sync-note").text_content()
    entries = await audit_entries(stack, "playback.still")
    assert len(entries) == before + 1
    entry = entries[-1]
    assert entry.actor == OPERATOR and entry.target == f"camera:{sorted(stack.cameras.values())[0]}"
    assert json.loads(entry.details)["disclosed"] == "footage"
    note = await page.locator(".sync-export-note").text_content()
    assert "evidence request" in note


async def test_clip_is_an_mp4_of_the_chosen_length_with_its_audit_entry(stack, page, artifacts: Path):
    """Clip (MP4) of 30 s around the moment shown: an MP4 ffprobe reads as 30 s (stream copy:
    it starts at the keyframe at or before the window, within 2 s), audited as playback.clip."""
    await open_sync(stack, page, ago_s=35)
    await page.locator("#sync-grid .sync-tile").nth(1).click()
    await page.select_option("#sync-clip-len", "30")
    before = len(await audit_entries(stack, "playback.clip"))
    async with page.expect_download(timeout=60_000) as info:
        await page.click("#sync-clip")
    download = await info.value
    path = artifacts / "sync-clip.mp4"
    await download.save_as(path)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration,format_name:stream=codec_type",
                            "-of", "json", str(path)], capture_output=True, text=True, check=True)
    info_json = json.loads(probe.stdout)
    duration = float(info_json["format"]["duration"])
    assert "mp4" in info_json["format"]["format_name"]
    assert "video" in [s["codec_type"] for s in info_json["streams"]]
    assert 29.5 <= duration <= 32.5, duration
    entries = await audit_entries(stack, "playback.clip")
    assert len(entries) == before + 1
    assert entries[-1].target == f"camera:{sorted(stack.cameras.values())[1]}"
    assert not page.errors, page.errors


async def test_clip_longer_than_five_minutes_is_refused(stack, page):
    """A clip is for a handover: over 5 minutes the API refuses and says where longer footage goes."""
    cam = sorted(stack.cameras.values())[0]
    status, body = await page.evaluate(
        """async (cam) => { const to = new Date(Date.now() - 60e3), from = new Date(to - 301e3);
           const r = await fetch(`/api/v1/cameras/${cam}/clip.mp4?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`);
           return [r.status, await r.text()]; }""", cam)
    assert status == 400 and "evidence request" in body, (status, body)


async def test_gaps_say_no_recording_and_a_reload_keeps_cameras_and_moment(stack, page):
    """Opened 4 s before any camera recorded, every tile says "No recording" (in red) while the
    one clock runs, and each starts playing when the clock reaches its first recording. A
    reload of the URL comes back to the same cameras at the same moment."""
    async with stack.app[SESSIONS]() as session:
        starts = [await session.scalar(select(func.min(Segment.start_us)).where(Segment.camera_id == cam))
                  for cam in sorted(stack.cameras.values())]
    assert all(starts), starts
    before_ms = min(starts) // 1000 - 4000
    cams = sorted(stack.cameras.values())
    await page.goto(f"{stack.base_url}/#sync/{','.join(map(str, cams))}/{before_ms}")
    await page.wait_for_function(
        """() => { const s = window.controlroom.sync; return s.active && s.tiles.length === 4
             && s.tiles.every((t) => t.root.classList.contains('sync-gap') && /^No recording at \\d\\d:\\d\\d:\\d\\d [+-]\\d\\d:\\d\\d$/.test(t.message.textContent)); }""",
        timeout=15_000)
    await all_playing(page)
    state = await page.evaluate(TILES, 0)
    assert all(t["wall"] >= min(starts) / 1000 - 500 for t in state["tiles"]), state
    await page.click("#sync-play")  # pause, then reload: the URL has the cameras and the moment
    await page.wait_for_timeout(1200)
    paused_at = await page.evaluate("window.controlroom.sync.wall")
    url = page.url
    assert f"#sync/{','.join(map(str, cams))}/" in url
    await page.reload()
    await all_playing(page)
    again = await page.evaluate(TILES, 0)
    assert sorted(t["camera"] for t in again["tiles"]) == cams
    assert abs(again["clock"] - paused_at) < 3000, (again["clock"], paused_at)
    # Nine tiles: the five new ones have no camera left to show (four cameras in all) and say so.
    await page.click("[data-sync-layout='9']")
    assert await page.locator("#sync-grid .sync-tile").count() == 9
    assert await page.locator("#sync-grid .sync-tile .tile-message", has_text="No camera").count() == 5
    assert not page.errors, page.errors
