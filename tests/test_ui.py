"""The operators' screen end to end: real service, simulated cameras (RTSP + ONVIF), real Chromium.

One stack for the module (starting the simulator and recorders costs seconds); the tests run in
file order and each leaves the cameras as it found them.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select
from ui_stack import OPERATOR, PASSWORD, browser_page, log_in, running_stack, wait_for

from cameras.recorder import media_duration_s
from controlroom.context import LIVE, SESSIONS
from storage import inventory
from storage.alerts import Alert
from storage.audit import AuditEntry
from storage.catalogue import find_run
from storage.db import transaction
from storage.models import Segment

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

LIVE_CAM = "Live Town Centre 01"
PTZ_CAM = "PTZ Market Square 01"
FIXED = ["Town Centre 01", "Queens Park 01", "Town Centre 02", "Queens Park 02"]
HOSTILE_NAME = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    async with running_stack(tmp_path_factory.mktemp("ui"), cameras=4, live=1, ptz=1, onvif=True) as st:
        st.started_s = time.time()
        yield st


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(stack):
    async with browser_page(stack.base_url) as pg:
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        await log_in(pg, stack.base_url)
        pg.errors = errors
        yield pg


async def api_session(stack) -> tuple[aiohttp.ClientSession, dict[str, str]]:
    http = aiohttp.ClientSession(stack.base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    resp = await http.post("/api/v1/session", json={"username": OPERATOR, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    return http, {"X-CSRF-Token": (await resp.json())["csrf_token"]}


async def set_grid(page, slots: list[int], layout: int) -> None:
    """Arrange the grid as an operator would, through the page's own controls."""
    await page.evaluate(
        """([slots, layout]) => { const g = window.controlroom.grid; const a = g.arrangement;
            a.slots = slots; a.layout = layout; g.save(); location.hash = '#grid'; g.render(); }""",
        [slots, layout],
    )


async def test_grid_of_four_plays_live(stack, page, artifacts: Path):
    ids = [stack.camera_id(n) for n in FIXED]
    await page.click("[data-layout='4']")
    await set_grid(page, ids, 4)
    assert await page.locator("#grid .tile").count() == 4
    assert await page.eval_on_selector_all("#grid video", "vs => vs.map(v => +v.dataset.camera)") == ids

    async def all_playing():
        times = await page.eval_on_selector_all("#grid video", "vs => vs.map(v => v.currentTime)")
        return times if all(t > 0 for t in times) else None

    first = await wait_for(all_playing, 15)
    assert first, "not every tile started playing within 15 s"
    await asyncio.sleep(1.5)
    second = await page.eval_on_selector_all("#grid video", "vs => vs.map(v => v.currentTime)")
    assert all(b > a for a, b in zip(first, second, strict=True)), (first, second)
    # Names and badges are there, and one upstream per camera stream serves them.
    assert await page.locator("#grid .tile-name").all_text_contents() == FIXED
    await wait_for(lambda: page.locator("#grid .badge.recording").count(), 10)
    await page.screenshot(path=str(artifacts / "ui-grid-4.png"))
    assert set(stack.app[LIVE].upstreams) >= {f"{i}/sub" for i in ids}
    assert not page.errors


async def test_grid_of_sixteen_screenshot_and_hostile_name(stack, page, artifacts: Path):
    """A camera whose name is markup is shown as text; the 16-tile wall screen is saved."""
    from controlroom.context import KEYS

    async with transaction(stack.app[SESSIONS]) as session:
        spec = inventory.parse_spec(inventory.CameraSpec, {"name": HOSTILE_NAME, "site": "<b>Site</b>",
                                                           "main_url": "rtsp://127.0.0.1:9/none", "recording": False})
        cam = await inventory.add_camera(session, spec, stack.app[KEYS])
        hostile_id = cam.id
    await page.evaluate("window.controlroom.store.refresh()")
    ids = list(stack.cameras.values()) + [hostile_id]
    await set_grid(page, ids, 16)
    tile = page.locator(f"#grid .tile:nth-child({len(ids)})")
    assert await tile.locator(".tile-name").text_content() == HOSTILE_NAME
    assert await tile.locator(".tile-site").text_content() == "<b>Site</b>"
    assert await page.evaluate("window.pwned") is None
    assert await page.locator("#grid .tile img").count() == 0

    async def playing():
        t = await page.eval_on_selector_all("#grid video", "vs => vs.filter(v => v.currentTime > 0).length")
        return t >= len(stack.cameras)

    await wait_for(playing, 15)
    await page.screenshot(path=str(artifacts / "ui-grid-16.png"))
    async with transaction(stack.app[SESSIONS]) as session:
        await inventory.remove_camera(session, hostile_id)
    await page.evaluate("window.controlroom.store.refresh()")
    await set_grid(page, [stack.camera_id(n) for n in FIXED], 4)


async def test_single_view_ptz_preset_moves_the_camera(stack, page, artifacts: Path):
    cam_id = stack.camera_id(PTZ_CAM)
    http, headers = await api_session(stack)
    try:
        await stack.sim.set_ptz(PTZ_CAM, 0.5, -0.25, 0.3)
        resp = await http.post(f"/api/v1/cameras/{cam_id}/ptz/presets", json={"name": "Market cross"}, headers=headers)
        assert resp.status in (200, 201), await resp.text()
    finally:
        await http.close()
    await stack.sim.set_ptz(PTZ_CAM, -0.8, 0.6, 0.0)
    await page.goto(f"{stack.base_url}/#camera/{cam_id}")
    await page.wait_for_selector("#ptz:not([hidden])")
    button = page.locator("#ptz-presets button", has_text="Market cross")
    await button.wait_for(timeout=10_000)

    async def video_playing():
        return await page.eval_on_selector("#single-video", "v => v.currentTime > 0")

    assert await wait_for(video_playing, 15), "the main stream did not play in the single view"
    await button.click()

    async def at_preset():
        pan, tilt, zoom = await stack.sim.get_ptz(PTZ_CAM)
        return abs(pan - 0.5) < 0.02 and abs(tilt + 0.25) < 0.02 and abs(zoom - 0.3) < 0.02

    assert await wait_for(at_preset, 10), await stack.sim.get_ptz(PTZ_CAM)
    # A held arrow button moves the camera continuously, releasing it stops it.
    before = await stack.sim.get_ptz(PTZ_CAM)
    right = page.locator("[data-ptz='right']")
    await right.hover()
    await page.mouse.down()
    await asyncio.sleep(1.0)
    await page.mouse.up()
    await asyncio.sleep(0.5)
    after = await stack.sim.get_ptz(PTZ_CAM)
    assert after[0] > before[0] + 0.05, (before, after)
    await asyncio.sleep(0.5)
    assert (await stack.sim.get_ptz(PTZ_CAM))[0] == pytest.approx(after[0], abs=0.02), "stop was not sent"
    await page.screenshot(path=str(artifacts / "ui-single-ptz.png"))
    async with stack.app[SESSIONS]() as session:
        actions = (await session.execute(select(AuditEntry.action, AuditEntry.actor))).all()
    assert ("live.start", OPERATOR) in actions


async def recorded_ago(stack, cam_id: int, seconds: float) -> int:
    """A wall time (UTC ms) ``seconds`` ago that the camera has recorded, waiting up to 60 s."""
    async def look():
        at_us = int((time.time() - seconds) * 1e6)
        async with stack.app[SESSIONS]() as session:
            run = await find_run(session, stack.settings.storage_root, cam_id, at_us, media_duration_s)
        return at_us // 1000 if run and run[0].start_us <= at_us - 500_000 else None

    target_ms = await wait_for(look, 60, 1.0)
    assert target_ms, f"the camera has not recorded the last {seconds} s"
    return target_ms


async def test_playback_from_twenty_seconds_ago(stack, page, artifacts: Path):
    """The frame shown is from 20 s ago: its media time maps to that wall time through the
    catalogue (or the segment being written), within a frame or two."""
    # A pre-encoded camera: its media clock keeps wall time even on a loaded machine.
    cam_id = stack.camera_id(FIXED[0])
    target_ms = await recorded_ago(stack, cam_id, 20)
    await page.goto(f"{stack.base_url}/#playback/{cam_id}/{target_ms}")

    async def positioned():
        return await page.evaluate(
            """() => { const pb = window.controlroom.playback; const v = document.getElementById('pb-video');
               return pb.ready && v.readyState >= 2 && !v.seeking ? {t: v.currentTime, plan: pb.plan,
               wall: pb.wallOf(v.currentTime), paused: v.paused} : null; }""")

    state = await wait_for(positioned, 20)
    assert state, ("playback did not start within 20 s", await page.text_content("#pb-message"),
                   await page.evaluate("location.hash"), page.errors)
    plan = state["plan"]
    # The wall time shown is the one asked for (the play position may have moved on a little).
    shown_ms = state["wall"]
    assert target_ms - 100 <= shown_ms <= target_ms + 1500, (shown_ms - target_ms, plan)
    # The plan's mapping agrees with the store: each piece is a catalogued segment or the file
    # being written, which starts where the newest catalogued segment ends (or at its name's time).
    async with stack.app[SESSIONS]() as session:
        rows = {s.start_us: s for s in (await session.execute(
            select(Segment).where(Segment.camera_id == cam_id))).scalars()}
    for piece in plan["pieces"]:
        if piece["growing"]:
            incoming = list((stack.settings.storage_root / str(cam_id) / "incoming").glob("*.mkv"))
            assert incoming, "the plan names a growing file but there is none"
            newest_end = max((s.end_us for s in rows.values()), default=None)
            if newest_end is not None and abs(newest_end - piece["start_us"]) < 3_000_000:
                assert piece["start_us"] == newest_end
        else:
            assert piece["start_us"] in rows, piece
            assert rows[piece["start_us"]].end_us == piece["end_us"]
    # Media time of the target according to the plan equals the player's offset.
    t_target = await page.evaluate(f"window.controlroom.playback.mediaTimeOf({target_ms})")
    assert t_target == pytest.approx(plan["offset_s"], abs=0.01)
    # It keeps playing, and the stamp under the picture shows London time with the offset.
    await asyncio.sleep(1.0)
    t2 = await page.eval_on_selector("#pb-video", "v => v.currentTime")
    assert t2 > state["t"]
    stamp = await page.text_content("#pb-stamp")
    assert stamp.endswith(("+00:00", "+01:00")), stamp
    # 2x and stepping.
    await page.click("[data-rate='2']")
    assert await page.eval_on_selector("#pb-video", "v => v.playbackRate") == 2
    await page.click("#pb-play")  # pause
    before = await page.eval_on_selector("#pb-video", "v => v.currentTime")
    await page.click("#pb-stepfwd")
    await asyncio.sleep(0.3)
    after = await page.eval_on_selector("#pb-video", "v => v.currentTime")
    assert after == pytest.approx(before + 0.04, abs=0.005)
    await page.screenshot(path=str(artifacts / "ui-playback.png"))
    async with stack.app[SESSIONS]() as session:
        audited = (await session.execute(select(AuditEntry).where(AuditEntry.action == "playback.start"))).scalars().all()
    assert any(e.actor == OPERATOR and e.target == f"camera:{cam_id}" for e in audited)


async def test_a_stale_plan_is_asked_for_again_and_plays(stack, page):
    """A plan can go stale before the player asks for its stream: the segment it named by an
    estimate (the file being written) is committed with its measured start, or retention removes
    the run. The service's stream then answers 404, and the player asks for a plan once more.

    The first plan is made stale here by naming its run 20 s before its start: the real service
    finds no run starting there (as after a commit moved the start) and answers 404. The time
    asked for is in a catalogued segment, so that the run's first piece is one (a growing first
    piece's start is an estimate, which the service takes as it finds it)."""
    cam_id = stack.camera_id(FIXED[2])

    async def catalogued():
        async with stack.app[SESSIONS]() as session:
            seg = (await session.execute(select(Segment).where(Segment.camera_id == cam_id)
                                         .order_by(Segment.end_us.desc()).limit(1))).scalar_one_or_none()
        return (seg.start_us + seg.end_us) // 2000 if seg else None

    target_ms = await wait_for(catalogued, 70, 1.0)
    assert target_ms, "the camera has catalogued no segment"
    plans: list[dict] = []
    streams: list[int] = []

    async def stale_first(route):
        response = await route.fetch()
        plan = await response.json()
        plans.append(plan)
        if len(plans) == 1:
            start = plan["start_us"]
            plan["stream_url"] = plan["stream_url"].replace(f"start_us={start}", f"start_us={start - 20_000_000}")
        await route.fulfill(response=response, json=plan)

    page.on("response", lambda r: streams.append(r.status) if "/playback/stream.mp4" in r.url else None)
    plans_url = re.compile(r"/api/v1/cameras/\d+/playback\?")
    await page.route(plans_url, stale_first)
    try:
        await page.goto(f"{stack.base_url}/#playback/{cam_id}/{target_ms}")
        state = await wait_for(lambda: page.evaluate(
            """(cam) => { const pb = window.controlroom.playback; const v = document.getElementById('pb-video');
               return pb.ready && pb.plan && pb.plan.camera === cam && v.readyState >= 2 && !v.seeking
                 ? pb.wallOf(v.currentTime) : null; }""", cam_id), 20)
        assert state, ("the player did not recover from a stale plan", await page.text_content("#pb-message"),
                       plans, streams)
    finally:
        await page.unroute(plans_url)
    assert streams[:2] == [404, 200], streams
    assert len(plans) == 2, plans
    assert target_ms - 100 <= state <= target_ms + 1500, (state - target_ms, plans[-1])
    assert await page.text_content("#pb-message") == ""


async def test_camera_off_the_air_shows_in_badge_and_alerts(stack, page, artifacts: Path):
    name = FIXED[1]
    cam_id = stack.camera_id(name)
    await page.goto(f"{stack.base_url}/#grid")
    await set_grid(page, [stack.camera_id(n) for n in FIXED], 4)
    await page.wait_for_selector("#alerts-conn:has-text('Live')")
    tile = page.locator("#grid .tile").nth(1)
    assert await tile.locator(".tile-name").text_content() == name
    await stack.sim.set_off_air(name, True)
    taken_off = time.monotonic()
    try:
        badge = tile.locator(".badge.reconnecting, .badge.offline")
        await badge.wait_for(timeout=10_000)
        alert = page.locator("#alerts-list .alert.kind-camera_offline", has_text=name)
        await alert.first.wait_for(timeout=max(100, 10_000 - (time.monotonic() - taken_off) * 1000))
        assert time.monotonic() - taken_off < 10
        await page.screenshot(path=str(artifacts / "ui-offline.png"))
        # Acknowledge it from the panel: recorded with who.
        await alert.first.locator("button", has_text="Acknowledge").click()
        # Handled: it moves to the Handled section, shown on request (issue 14).
        await page.locator("#alerts-handled").evaluate("d => { d.open = true; }")
        await alert.first.locator(".alert-foot", has_text=f"Acknowledged by {OPERATOR}").wait_for(timeout=5000)
        async with stack.app[SESSIONS]() as session:
            row = (await session.execute(select(Alert).where(Alert.camera_id == cam_id, Alert.kind == "camera_offline")
                                         .order_by(Alert.id.desc()))).scalars().first()
            assert row.acknowledged_by == OPERATOR and row.acknowledged_us
            acks = (await session.execute(select(AuditEntry).where(AuditEntry.action == "alert.ack"))).scalars().all()
        assert any(json.loads(e.details).get("camera_id") == cam_id and e.actor == OPERATOR for e in acks)
    finally:
        await stack.sim.set_off_air(name, False)
    await tile.locator(".badge.recording").wait_for(timeout=30_000)
    assert not page.errors
