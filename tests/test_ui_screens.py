"""The screens as control-room staff use them (issue 14, "Defects seen"), in Chromium at
1600x900 with an en-GB locale in Europe/London: the real service, simulated cameras recording
2 s segments, real catalogue rows.

Each test is one defect of the issue: playback refuses an impossible typed time and honours
the others, en-GB dates, the URL carries camera and time; the timeline draws holes in red and
grows while watched; changing one tile reconnects only that tile; a disabled camera shows no
live video (and the API refuses it); names stay readable at 16 tiles; tile messages speak
plainly. Tests run in file order on one stack and leave the cameras as they found them.

Defects of the issue covered elsewhere: H.265 cameras in tests/test_hevc.py; the administrator's
missing screens in tests/test_ui_admin.py; the header at 1366 and 1920 px in
tests/test_ui_sizes.py; views, tours, the map and the alarm in tests/test_ui_views.py.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from sqlalchemy import select, update
from test_ui_anpr import BOX, frame_with_plate, jpegs
from ui_stack import OPERATOR, PASSWORD, running_stack, wait_for

from anpr.hotlist import parse_entry
from anpr.live import LiveReading
from anpr.tracking import Vehicle
from cameras.recorder import media_duration_s
from controlroom.anpr_service import live_options
from controlroom.context import ALERTS, KEYS, SESSIONS, SETTINGS
from storage import inventory
from storage.alerts import Alert, raise_alert
from storage.anpr.hotlists import add_entries, add_hotlist
from storage.anpr.images import save_read_images
from storage.catalogue import find_run
from storage.db import now_us, transaction
from storage.evidence import get_request
from storage.holds import Hold
from storage.models import Camera, Segment

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

LONDON = ZoneInfo("Europe/London")
FIXED = ["Town Centre 01", "Queens Park 01", "Town Centre 02", "Queens Park 02"]
PTZ_CAM = "PTZ Market Square 01"
SUPERVISOR, ADMIN, POLICE = "sup1", "admin2", "pc4521"
LONG_NAME = "Horns Bridge roundabout north approach 03"
EN_GB = re.compile(r"^\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}(\.\d{3})? [+-]\d{2}:\d{2}$")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    async with running_stack(tmp_path_factory.mktemp("ui-screens"), cameras=4, live=0, ptz=1, onvif=True,
                             users={SUPERVISOR: "supervisor", ADMIN: "administrator", POLICE: "police"},
                             **{"recording.segment_s": 2}) as st:
        async with transaction(st.app[SESSIONS]) as session:
            # A camera nobody can reach (offline, with a long name) for the grid's messages.
            cam = await inventory.add_camera(session, inventory.CameraSpec(
                name=LONG_NAME, site="Horns Bridge", main_url="rtsp://127.0.0.1:9/none",
                sub_url="rtsp://127.0.0.1:9/none-sub", recording=False), st.app[KEYS])
            st.unreachable = cam.id
        yield st


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(browser, stack):
    context = await browser.new_context(viewport={"width": 1600, "height": 900}, locale="en-GB",
                                        timezone_id="Europe/London")
    pg = await context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.sockets = []
    pg.on("websocket", lambda ws: pg.sockets.append(ws.url))
    await pg.goto(f"{stack.base_url}/login")
    await pg.fill("#username", OPERATOR)
    await pg.fill("#password", PASSWORD)
    await pg.click("#login-button")
    await pg.wait_for_selector("#grid .tile")
    yield pg
    await context.close()


async def signed_in_as(browser, stack, username: str, where: str):
    """A page of its own context (1600x900, en-GB, London), signed in and sent to ``where``."""
    context = await browser.new_context(viewport={"width": 1600, "height": 900}, locale="en-GB",
                                        timezone_id="Europe/London")
    pg = await context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    await pg.goto(f"{stack.base_url}/login?next={where.replace('#', '%2F%23')}")
    await pg.fill("#username", username)
    await pg.fill("#password", PASSWORD)
    await pg.click("#login-button")
    await pg.wait_for_url(f"{stack.base_url}/{where}" if where else re.compile(re.escape(stack.base_url) + r"/(#.*)?$"))
    return pg


def hhmmss(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, LONDON).strftime("%H:%M:%S")


async def recorded_since(stack, cam_id: int, ago_s: float) -> int | None:
    """UTC ms of ``ago_s`` ago once the camera's footage covers it, else None."""
    at_us = int((time.time() - ago_s) * 1e6)
    async with stack.app[SESSIONS]() as session:
        run = await find_run(session, stack.settings.storage_root, cam_id, at_us, media_duration_s)
    return at_us // 1000 if run and run[0].start_us <= at_us - 500_000 else None


async def positioned(page):
    return await page.evaluate(
        """() => { const pb = window.controlroom.playback; const v = document.getElementById('pb-video');
           return pb.ready && v.readyState >= 2 && !v.seeking ? pb.wallOf(v.currentTime) : null; }""")


async def set_grid(page, slots: list[int | None], layout: int) -> None:
    await page.evaluate(
        """([slots, layout]) => { const g = window.controlroom.grid; const a = g.arrangement;
            a.slots = slots; a.layout = layout; g.save(); location.hash = '#grid'; g.render(); }""",
        [slots, layout],
    )


async def test_playback_typed_times_are_checked_and_honoured(stack, page, artifacts: Path):
    cam_id = stack.camera_id(FIXED[0])
    target_ms = await wait_for(lambda: recorded_since(stack, cam_id, 30), 90, 1.0)
    assert target_ms, "the camera has not recorded the last 30 s"
    await page.goto(f"{stack.base_url}/#playback/{cam_id}/{target_ms}")
    assert await wait_for(lambda: positioned(page), 20), await page.text_content("#pb-message")
    # The day reads the British way, whatever the browser's locale.
    day = await page.input_value("#pb-day")
    assert day == datetime.fromtimestamp(target_ms / 1000, LONDON).strftime("%d/%m/%Y"), day
    start_before = await page.evaluate("window.controlroom.playback.day.start")
    # An impossible time is refused with a message naming it; the day does not change.
    await page.fill("#pb-time", "25:99")
    await page.press("#pb-time", "Enter")
    message = page.locator("#pb-message")
    await message.filter(has_text="25:99").wait_for(timeout=5000)
    assert "not a time" in await message.text_content()
    assert await page.input_value("#pb-day") == day
    assert await page.evaluate("window.controlroom.playback.day.start") == start_before
    # A time later today than now is refused too: it has not happened yet.
    future_ms = int(time.time() * 1000) + 3600_000
    if datetime.fromtimestamp(future_ms / 1000, LONDON).date() == datetime.now(LONDON).date():
        await page.fill("#pb-time", hhmmss(future_ms))
        await page.press("#pb-time", "Enter")
        await message.filter(has_text="future").wait_for(timeout=5000)
    # A typed time in the footage plays from that time, not from the live edge.
    typed_ms = (target_ms + 10_000) // 1000 * 1000
    await page.fill("#pb-time", hhmmss(typed_ms))
    await page.press("#pb-time", "Enter")

    async def at_typed():
        wall = await positioned(page)
        return wall if wall is not None and typed_ms - 200 <= wall <= typed_ms + 2500 else None

    assert await wait_for(at_typed, 15), (await positioned(page), typed_ms, await message.text_content())
    assert not (await message.text_content()).strip()
    # Times on screen are en-GB (dd/mm/yyyy, 24 h) with the offset.
    assert EN_GB.match(await page.text_content("#pb-stamp")), await page.text_content("#pb-stamp")
    assert EN_GB.match(await page.text_content("#clock")), await page.text_content("#clock")
    # The URL carries the camera and the time being watched: a reload comes back there.
    await page.click("#pb-play")  # pause
    await asyncio.sleep(0.5)
    wall = await positioned(page)

    async def hash_follows():
        m = re.fullmatch(r"#playback/(\d+)/(\d+)", await page.evaluate("location.hash"))
        return m if m and int(m[1]) == cam_id and abs(int(m[2]) - wall) < 1500 else None

    assert await wait_for(hash_follows, 5), (await page.evaluate("location.hash"), wall)
    await page.reload()
    await page.wait_for_selector("#view-playback:not([hidden])")
    back = await wait_for(lambda: positioned(page), 20)
    assert back is not None and abs(back - wall) < 2500, (back, wall)
    await page.screenshot(path=str(artifacts / "ui-screens-playback.png"))
    assert not page.errors


async def test_timeline_draws_holes_red_and_grows(stack, page, artifacts: Path):
    """A hole in the catalogue that no gap row explains (the service was down) is drawn in the
    legend's red; the catalogued footage grows on the timeline while the operator watches."""
    cam_id = stack.unreachable
    day = datetime.now(LONDON).date() - timedelta(days=1)

    def us(h: int, m: int) -> int:
        return int(datetime(day.year, day.month, day.day, h, m, tzinfo=LONDON).timestamp() * 1e6)

    async with transaction(stack.app[SESSIONS]) as session:
        for i, (a, b) in enumerate([(us(10, 0), us(11, 0)), (us(13, 0), us(14, 0))]):
            session.add(Segment(camera_id=cam_id, start_us=a, end_us=b, bytes=1, sha256="0" * 64,
                                path=f"{cam_id}/screens-{i}.mp4", codec="h264"))
    try:
        await page.goto(f"{stack.base_url}/#playback/{cam_id}/{us(12, 0) // 1000}")
        await page.wait_for_function("([a, b]) => { const s = window.controlroom.playback.spans || [];"
                                     " return s.length === 2 && s[0][0] === a && s[1][1] === b; }",
                                     arg=[us(10, 0) // 1000, us(14, 0) // 1000])
        colours = await page.evaluate(
            """(times) => { const tl = window.controlroom.playback.day, c = tl.canvas, g = c.getContext('2d');
               const dpr = window.devicePixelRatio || 1;
               return times.map((t) => { const x = Math.round(tl.x(t, c.clientWidth) * dpr), y = Math.round(10 * dpr);
                 return Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)); }); }""",
            [us(10, 30) // 1000, us(11, 45) // 1000])  # the hole away from the cursor (12:00, yellow)
        assert colours[0] == [0x2E, 0xA0, 0x43], colours  # recorded: green
        assert colours[1] == [0xF8, 0x51, 0x49], colours  # the hole: the legend's red
        await page.screenshot(path=str(artifacts / "ui-screens-timeline-hole.png"))
    finally:
        async with transaction(stack.app[SESSIONS]) as session:
            await session.execute(Segment.__table__.delete().where(Segment.camera_id == cam_id))
    # Growth: paused 20 s behind the live edge, the day's catalogued footage keeps extending.
    live_cam = stack.camera_id(FIXED[1])
    target_ms = await wait_for(lambda: recorded_since(stack, live_cam, 20), 60, 1.0)
    assert target_ms
    await page.goto(f"{stack.base_url}/#playback/{live_cam}/{target_ms}")
    assert await wait_for(lambda: positioned(page), 20)
    await page.click("#pb-play")  # pause: nothing the player does reloads the day
    last_end = "(window.controlroom.playback.spans || []).filter((s) => !s[2]).reduce((m, s) => Math.max(m, s[1]), 0)"
    first = await page.evaluate(last_end)

    async def grown():
        return await page.evaluate(last_end) > first + 3000

    assert await wait_for(grown, 30, 1.0), (first, await page.evaluate(last_end))
    assert not page.errors


async def test_changing_one_tile_reconnects_only_that_tile(stack, page):
    ids = [stack.camera_id(n) for n in FIXED]
    await page.goto(f"{stack.base_url}/#grid")
    await set_grid(page, ids, 4)

    async def all_playing():
        return await page.eval_on_selector_all("#grid video", "vs => vs.length === 4 && vs.every(v => v.currentTime > 0)")

    assert await wait_for(all_playing, 20)
    await page.eval_on_selector_all("#grid video", "vs => vs.forEach((v, i) => { v.dataset.kept = String(i); })")
    before = len(page.sockets)
    await page.select_option("#grid .tile:nth-child(2) select", str(ids[3]))
    await page.wait_for_function(f"() => document.querySelector('#grid .tile:nth-child(2) video')?.dataset.camera === '{ids[3]}'")
    await asyncio.sleep(1.5)
    opened = [u for u in page.sockets[before:] if "/live" in u]
    assert len(opened) == 1 and f"/cameras/{ids[3]}/live" in opened[0], opened
    kept = await page.eval_on_selector_all("#grid video", "vs => vs.map(v => v.dataset.kept ?? null)")
    assert kept == ["0", None, "2", "3"], kept
    await set_grid(page, ids, 4)


async def test_disabled_camera_shows_no_live_video(stack, page):
    cam_id = stack.camera_id(FIXED[2])
    ids = [stack.camera_id(n) for n in FIXED]
    await page.goto(f"{stack.base_url}/#grid")
    await set_grid(page, ids, 4)
    async with transaction(stack.app[SESSIONS]) as session:
        await inventory.update_camera(session, cam_id, inventory.CameraUpdate(enabled=False), stack.app[KEYS])
    try:
        # The API refuses it, live and snapshot alike.
        async with aiohttp.ClientSession(stack.base_url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            resp = await http.post("/api/v1/session", json={"username": OPERATOR, "password": PASSWORD})
            assert resp.status == 200
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"/api/v1/cameras/{cam_id}/live?stream=sub",
                                      headers={"Origin": stack.base_url})
            assert refused.value.status == 409
            snap = await http.get(f"/api/v1/cameras/{cam_id}/snapshot.jpg")
            assert snap.status == 409 and "disabled" in (await snap.json())["error"]
        tile = page.locator("#grid .tile").nth(2)
        await tile.locator(".tile-message", has_text="disabled").wait_for(timeout=10_000)
        assert await tile.locator("video").count() == 0
        assert await tile.get_attribute("data-state") == "disabled"
    finally:
        async with transaction(stack.app[SESSIONS]) as session:
            await inventory.update_camera(session, cam_id, inventory.CameraUpdate(enabled=True), stack.app[KEYS])
    await page.locator("#grid .tile").nth(2).locator("video").wait_for(timeout=10_000)


async def test_sixteen_tiles_names_readable_and_messages_plain(stack, page, artifacts: Path):
    async with transaction(stack.app[SESSIONS]) as session:
        await session.execute(update(Camera).where(Camera.id == stack.unreachable).values(
            state="offline", state_since_us=int(time.time() * 1e6), state_reason="no answer"))
    await page.evaluate("window.controlroom.store.refresh()")
    slots = [stack.unreachable] + list(stack.cameras.values()) + [None] * 11
    await page.goto(f"{stack.base_url}/#grid")
    await set_grid(page, slots, 16)
    tile = page.locator("#grid .tile").first
    name = tile.locator(".tile-name")
    await tile.locator(".badge.offline").wait_for(timeout=10_000)
    assert await name.get_attribute("title") == LONG_NAME
    box = await name.bounding_box()
    badges = await tile.locator(".badges").bounding_box()
    # Readable: a good part of the name shows, and no badge covers it.
    assert box["width"] >= 120, box
    overlap = not (badges["y"] >= box["y"] + box["height"] or badges["x"] >= box["x"] + box["width"]
                   or badges["x"] + badges["width"] <= box["x"] or badges["y"] + badges["height"] <= box["y"])
    assert not overlap, (box, badges)
    # The picture's message speaks the operator's language, not the service's internals.
    msg = tile.locator(".tile-message")
    try:
        await msg.filter(has_text="No picture").wait_for(timeout=20_000)
    except PlaywrightTimeoutError:  # say where the tile was stuck (seen once in CI, not here)
        raise AssertionError(f"no 'No picture' within 20 s: tile state {await tile.get_attribute('data-state')!r}, "
                             f"message {await msg.text_content()!r}, last sockets {page.sockets[-4:]}") from None
    text = await msg.text_content()
    assert "camera stream" not in text and "/sub" not in text and "rtsp" not in text, text
    await page.screenshot(path=str(artifacts / "ui-screens-grid-16.png"))
    await set_grid(page, [stack.camera_id(n) for n in FIXED], 4)
    assert not page.errors


async def test_alerts_compact_by_priority_linked_handled_and_cleared(stack, page, artifacts: Path):
    """Hits and a camera-offline alert in one panel: one line each (the most urgent hit open),
    by priority then time, links to live and to playback at the read's time; acknowledged
    alerts leave the list for the collapsed Handled section; a removed camera's alert goes;
    an empty panel says so."""
    app = stack.app
    async with transaction(app[SESSIONS]) as s:
        await s.execute(update(Alert).where(Alert.acknowledged_us.is_(None)).values(
            acknowledged_us=now_us(), acknowledged_by="test"))
    await page.goto(f"{stack.base_url}/#grid")
    await page.reload()
    await page.locator("#alerts-conn", has_text="Live").wait_for(timeout=10_000)
    await page.locator("#alerts-list .alerts-empty", has_text="No alerts").wait_for(timeout=5000)
    async with transaction(app[SESSIONS]) as s:
        anpr_cam = await inventory.add_camera(s, inventory.CameraSpec(
            name="HB ANPR 1", site="Horns Bridge", kind="anpr", lane="1", direction="westbound", recording=False), app[KEYS])
        stolen = await add_hotlist(s, "Stolen vehicles", source="PNC", default_priority=1, created_by="test")
        watch = await add_hotlist(s, "Watch list", source="local", default_priority=3, created_by="test")
        await add_entries(s, stolen.id, [parse_entry({"vrm": "KM70*", "reason": "Stolen in a burglary",
                                                      "expires": "2099-12-31"}, stolen)], created_by="test")
        await add_entries(s, watch.id, [parse_entry({"vrm": "ZZ99*", "reason": "Of interest",
                                                     "expires": "2099-12-31"}, watch)], created_by="test")
    await page.evaluate("window.controlroom.store.refresh()")
    live = LiveReading(app[SESSIONS], app[KEYS], app[ALERTS], app[SETTINGS].anpr_root, live_options(app[SETTINGS]))
    hits = []
    for text in ("ZZ99 AAA", "KM70 AAA", "KM70 BBB", "KM70 CCC"):
        read_us = now_us()
        plate, ov = save_read_images(app[SETTINGS].anpr_root, read_us, anpr_cam.id, *jpegs(text))
        stored = await live.store_vehicle(anpr_cam.id, Vehicle(
            text=text.replace(" ", ""), confidence=0.97, read_us=read_us, commit_frame_us=read_us, box=BOX,
            char_confidences=[0.97] * 7, raw_text=text, format="uk_current", frames=3, frame=frame_with_plate(text)),
            plate, ov)
        hits.append((stored.hits[0], read_us))
        await asyncio.sleep(0.05)
    offline_cam = stack.camera_id(FIXED[1])
    async with transaction(app[SESSIONS]) as s:
        offline = await raise_alert(s, app[ALERTS], "camera_offline", f"{FIXED[1]}: camera offline (no answer)",
                                    camera_id=offline_cam)
    cards = page.locator("#alerts-list > li.alert")
    await page.wait_for_function("() => document.querySelectorAll('#alerts-list > li.alert').length === 5")
    await page.locator(f"#alerts-list li[data-hit='{hits[-1][0]}'] .hit-images img").first.wait_for(timeout=10_000)
    # By priority (the three priority-1 hits, newest first), then time (the offline alert, then the older priority-3 hit).
    await page.screenshot(path=str(artifacts / "ui-screens-alerts.png"))
    order = await cards.evaluate_all("lis => lis.map(li => li.dataset.hit ? 'hit' + li.dataset.hit : li.dataset.kind)")
    assert order == [f"hit{hits[3][0]}", f"hit{hits[2][0]}", f"hit{hits[1][0]}", "camera_offline", f"hit{hits[0][0]}"], order
    # The most urgent is open; the others are one line, so the offline alert is in sight.
    heights = await cards.evaluate_all("lis => lis.map(li => li.getBoundingClientRect().height)")
    assert all(h <= 80 for h in heights[1:]), heights
    offline_card = page.locator(f"#alerts-list > li.alert[data-id='{offline.id}']")
    box = await offline_card.bounding_box()
    assert box["y"] + box["height"] <= 900, box
    # A hit links to the camera live and to playback at the read's time.
    top = cards.first
    assert await top.locator("a.alert-live").get_attribute("href") == f"#camera/{anpr_cam.id}"
    assert await top.locator("a.alert-playback").get_attribute("href") == f"#playback/{anpr_cam.id}/{hits[3][1] // 1000}"
    # A closed card opens on a click, with its pictures.
    second = cards.nth(1)
    await second.locator(".alert-top").click()
    await second.locator(".hit-images img").first.wait_for(timeout=5000)
    assert await second.locator("button.hit-confirm").is_visible()
    # Acknowledged: out of the list, into the collapsed Handled section.
    await offline_card.locator("button", has_text="Acknowledge").click()
    await offline_card.wait_for(state="detached", timeout=5000)
    handled = page.locator(f"#alerts-handled li.alert[data-id='{offline.id}']")
    await handled.wait_for(state="attached", timeout=5000)
    assert not await handled.is_visible()
    # An alert of a camera since removed is cleared.
    async with transaction(app[SESSIONS]) as s:
        gone = await inventory.add_camera(s, inventory.CameraSpec(name="Temporary 99", main_url="rtsp://127.0.0.1:9/x",
                                                                 recording=False), app[KEYS])
        gone_alert = await raise_alert(s, app[ALERTS], "camera_offline", "Temporary 99: camera offline", camera_id=gone.id)
    await page.evaluate("window.controlroom.store.refresh()")
    gone_card = page.locator(f"#alerts-list li.alert[data-id='{gone_alert.id}']")
    await gone_card.wait_for(timeout=5000)
    async with transaction(app[SESSIONS]) as s:
        await inventory.remove_camera(s, gone.id)
    await page.evaluate("window.controlroom.store.refresh()")
    await gone_card.wait_for(state="detached", timeout=5000)
    # Everything acknowledged: the panel says there is nothing.
    async with aiohttp.ClientSession(stack.base_url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        resp = await http.post("/api/v1/session", json={"username": OPERATOR, "password": PASSWORD})
        headers = {"X-CSRF-Token": (await resp.json())["csrf_token"]}
        async with app[SESSIONS]() as s:
            ids = (await s.execute(select(Alert.id).where(Alert.acknowledged_us.is_(None)))).scalars().all()
        for alert_id in ids:
            assert (await http.post(f"/api/v1/alerts/{alert_id}/ack", json={}, headers=headers)).status == 200
    await page.locator("#alerts-list .alerts-empty", has_text="No alerts").wait_for(timeout=5000)
    assert await page.text_content("#alerts-count") == ""
    assert not page.errors


async def test_ptz_presets_home_and_speed_from_the_browser(stack, page, artifacts: Path):
    """'No presets stored' stays true after a move; a preset is saved, home and the speed are
    set from the single view (the API had them; the screen did not)."""
    cam_id = stack.camera_id(PTZ_CAM)
    await stack.sim.set_ptz(PTZ_CAM, 0.0, 0.0, 0.0)
    await page.goto(f"{stack.base_url}/#camera/{cam_id}")
    await page.wait_for_selector("#ptz:not([hidden])")
    empty = page.get_by_text("No presets stored on this camera.")
    await empty.wait_for(timeout=10_000)
    right = page.locator("[data-ptz='right']")
    await page.select_option("#ptz-speed", label="Fast")
    async with page.expect_request(lambda r: r.url.endswith("/ptz/move")) as sent:
        await right.hover()
        await page.mouse.down()
    assert (await sent.value).post_data_json["pan"] == 1.0
    await asyncio.sleep(0.6)
    await page.mouse.up()
    await page.wait_for_function("() => !window.controlroom.single.moving")
    await asyncio.sleep(0.5)
    moved = await stack.sim.get_ptz(PTZ_CAM)
    assert moved[0] > 0.1, moved
    assert await empty.is_visible(), "the move cleared 'No presets stored'"
    # Save this position as a preset: it is listed, and the camera has it.
    await page.fill("#ptz-save-name", "Market cross")
    await page.click("#ptz-save-go")
    preset = page.locator("#ptz-presets button", has_text="Market cross")
    await preset.wait_for(timeout=10_000)
    assert not await empty.is_visible()
    # Home: back to the camera's home position (0, 0, 0 in the simulator).
    await page.click("#ptz-home")

    async def at_home():
        pan, tilt, zoom = await stack.sim.get_ptz(PTZ_CAM)
        return abs(pan) < 0.02 and abs(tilt) < 0.02 and abs(zoom) < 0.02

    assert await wait_for(at_home, 10), await stack.sim.get_ptz(PTZ_CAM)
    await page.locator("#ptz-status", has_text="home").wait_for(timeout=5000)
    # The preset takes it back where it was saved.
    await preset.click()

    async def at_preset():
        pan = (await stack.sim.get_ptz(PTZ_CAM))[0]
        return abs(pan - moved[0]) < 0.03

    assert await wait_for(at_preset, 10), (await stack.sim.get_ptz(PTZ_CAM), moved)
    await page.select_option("#ptz-speed", label="Normal")
    await page.screenshot(path=str(artifacts / "ui-screens-ptz.png"))
    assert not page.errors


async def test_hotlists_expiry_required_en_gb_remove_visible_csv_errors_at_once(stack, browser, artifacts: Path):
    page = await signed_in_as(browser, stack, SUPERVISOR, "#anpr/hotlists")
    try:
        await page.wait_for_selector("#an-part-hotlists:not([hidden])")
        await page.fill("#hl-new-name", "Screens list")
        await page.fill("#hl-new-source", "PNC")
        await page.click("#hl-new-go")
        await page.wait_for_selector("#hl-detail:not([hidden])")
        # Expires is required, and says so before anything is sent.
        assert await page.get_attribute("#hl-entry-expires", "aria-required") == "true"
        assert "required" in (await page.text_content("label[for='hl-entry-expires']")).lower()
        await page.fill("#hl-entry-vrm", "AB12CDE")
        await page.fill("#hl-entry-reason", "Stolen vehicle with a long reason to fill the column of the table")
        await page.click("#hl-entry-go")
        await page.locator("#hl-entry-error", has_text="Expires is required").wait_for(timeout=5000)
        # The date is typed and shown the British way: the last day the entry is live.
        await page.fill("#hl-entry-expires", "31/12/2099")
        await page.click("#hl-entry-go")
        row = page.locator("#hl-entries-body tr", has_text="AB12CDE")
        await row.wait_for(timeout=10_000)
        cells = await row.locator("td").all_text_contents()
        assert cells[4] == "31/12/2099", cells
        # Remove is on screen, not under the alerts panel or cut off.
        remove = row.locator("button", has_text="Remove")
        box = await remove.bounding_box()
        hit = await page.evaluate(
            "([x, y]) => document.elementFromPoint(x, y)?.closest('button')?.textContent",
            [box["x"] + box["width"] - 3, box["y"] + box["height"] / 2])
        if hit != "Remove":
            await page.screenshot(path=str(artifacts / "ui-screens-hotlists-clipped.png"))
        assert hit == "Remove", (hit, box)
        # A CSV file with several bad lines: every error of every line, with its line number.
        csv_text = ("vrm,reason,expires,priority\n"
                    "GH78IJK,Fine,2099-12-31,2\n"
                    ",No registration,2099-12-31,2\n"
                    "LM90NOP,Two problems,2001-01-01,nine\n"
                    "QR12STU,,2099-12-31,3\n")
        await page.set_input_files("#hl-import-file", files=[{"name": "bad.csv", "mimeType": "text/csv",
                                                              "buffer": csv_text.encode()}])
        await page.click("#hl-import-go")
        error = page.locator("#hl-import-error")
        await error.filter(has_text="Nothing imported").wait_for(timeout=10_000)
        text = await error.text_content()
        assert "3 bad line(s)" in text, text
        for needle in ("line 3:", "line 4:", "line 5:", "vrm is required", "nine", "past", "reason"):
            assert needle in text, (needle, text)
        await page.screenshot(path=str(artifacts / "ui-screens-hotlists.png"))
        assert not page.errors
    finally:
        await page.context.close()


async def test_police_form_errors_at_once_draft_kept_preview_and_refusal_releases(stack, browser, artifacts: Path):
    police = await signed_in_as(browser, stack, POLICE, "#evidence/new")
    supervisor = None
    try:
        await police.wait_for_selector("#ev-form:not([hidden])")
        labels = {f: await police.text_content(f"label[for='ev-{f}']") for f in
                  ("officer_name", "collar_number", "force", "crime_reference", "offence", "necessity",
                   "lawful_basis", "authorised_by")}
        assert all("(required)" in t for t in labels.values()), labels
        # Everything wrong at once, in the form's own words.
        await police.fill("#ev-lawful_basis", "")
        await police.click("#ev-submit")
        error = police.locator("#ev-form-error")
        await error.filter(has_text="Not submitted").wait_for(timeout=5000)
        text = await error.text_content()
        for needle in ("Officer name is required", "Crime reference is required", "Authorised by is required",
                       "Lawful basis is required", "Window 1: choose a camera", "Window 1: From is required",
                       "Window 1: To is required"):
            assert needle in text, (needle, text)
        assert "crime_reference" not in text and "missing or empty" not in text, text
        # A draft survives a reload (and so an expired session's sign-in).
        cam_id = stack.camera_id(FIXED[0])
        assert await wait_for(lambda: recorded_since(stack, cam_id, 45), 90, 1.0)
        start = datetime.now(LONDON).replace(microsecond=0) - timedelta(seconds=40)
        values = {"officer_name": "PC Jane Smith", "collar_number": "4521", "force": "Test Constabulary",
                  "crime_reference": "CR/55/26", "offence": "Theft", "necessity": "Shows the theft",
                  "lawful_basis": "DPA 2018 Schedule 2 Part 1 paragraph 2", "authorised_by": "Insp Jones"}
        for f, v in values.items():
            await police.fill(f"#ev-{f}", v)
        await police.wait_for_function("() => document.querySelector('#ev-w1-camera').options.length > 1")
        await police.select_option("#ev-w1-camera", str(cam_id))
        await police.fill("#ev-w1-from", start.strftime("%d/%m/%Y %H:%M:%S"))
        await police.fill("#ev-w1-to", (start + timedelta(seconds=20)).strftime("%d/%m/%Y %H:%M:%S"))
        await police.reload()
        await police.wait_for_selector("#ev-form:not([hidden])")
        await police.wait_for_function(f"() => document.querySelector('#ev-w1-camera').value === '{cam_id}'")
        for f, v in values.items():
            assert await police.input_value(f"#ev-{f}") == v, f
        assert await police.input_value("#ev-w1-from") == start.strftime("%d/%m/%Y %H:%M:%S")
        # A camera the API does not know (gone since the list was read): said plainly.
        await police.evaluate("""() => { const s = document.getElementById('ev-w1-camera');
            const o = document.createElement('option'); o.value = '999'; o.textContent = 'Gone'; s.append(o); s.value = '999'; }""")
        await police.click("#ev-submit")
        await error.filter(has_text="Window 1: camera 999 does not exist").wait_for(timeout=5000)
        await police.select_option("#ev-w1-camera", str(cam_id))
        await police.click("#ev-submit")
        await police.wait_for_url(re.compile(r".*#evidence/\d+$"), timeout=10_000)
        rid = int(police.url.rsplit("/", 1)[1])
        # Submitted: nothing typed stays in the browser.
        assert await police.evaluate("Object.keys(localStorage).filter(k => k.startsWith('controlroom.evidence.draft'))") == []
        assert await police.input_value("#ev-crime_reference") == ""
        # The supervisor previews each window's footage before deciding, then refuses.
        supervisor = await signed_in_as(browser, stack, SUPERVISOR, f"#evidence/{rid}")
        preview = supervisor.locator("#ev-detail a.ev-preview")
        await preview.first.wait_for(timeout=10_000)
        from_ms = int(start.timestamp() * 1000)
        assert await preview.first.get_attribute("href") == f"#playback/{cam_id}/{from_ms}"
        await preview.first.click()
        await supervisor.wait_for_selector("#view-playback:not([hidden])")
        assert await wait_for(lambda: positioned(supervisor), 20)
        assert await supervisor.input_value("#pb-camera") == str(cam_id)
        await supervisor.go_back()
        await supervisor.locator("#ev-decision-reason").fill("Not necessary: the offence is not shown")
        await supervisor.click("#ev-refuse")
        await supervisor.locator("#ev-detail .ev-state", has_text="Refused").wait_for(timeout=10_000)
        async with stack.app[SESSIONS]() as session:
            req = await get_request(session, rid)
            hold = await session.get(Hold, req.hold_id)
        assert req.state == "refused" and hold.released_us is not None, (req.state, hold.released_us)
        await supervisor.screenshot(path=str(artifacts / "ui-screens-evidence-refused.png"))
        assert not police.errors and not supervisor.errors
    finally:
        await police.context.close()
        if supervisor:
            await supervisor.context.close()


HEADER_ON_ONE_LINE = """() => { const h = document.querySelector('header.topbar');
  const kids = [...h.children].filter((c) => !c.hidden && c.getBoundingClientRect().width > 0);
  const box = h.getBoundingClientRect();
  // Out of the bar, or wrapped: an inline element on two lines has two boxes, a button grows taller.
  const items = [...kids, ...h.querySelectorAll('button, span, time, label, select, h1')].filter((c) => c.getClientRects().length);
  const bad = items.filter((c) => { const r = c.getBoundingClientRect();
    return r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5 || r.right > box.right + 0.5
      || c.getClientRects().length > 1 || (c.tagName !== 'DIV' && c.tagName !== 'NAV' && r.height > 42); });
  return { overflow: h.scrollWidth - h.clientWidth, bad: bad.map((c) => c.id || c.className) }; }"""


async def test_keyboard_shortcuts_focus_header_and_evidence_list(stack, page, browser, artifacts: Path):
    ids = [stack.camera_id(n) for n in FIXED]
    await page.goto(f"{stack.base_url}/#grid")
    await set_grid(page, ids, 4)
    await page.locator("#grid .tile").nth(1).focus()
    # A, then G: the view changes; nothing is typed into the registration field.
    await page.keyboard.press("a")
    await page.wait_for_selector("#view-anpr:not([hidden])")
    await page.keyboard.press("g")
    await page.wait_for_selector("#view-grid:not([hidden])")
    assert await page.input_value("#an-vrm") == ""
    # Typing in a field is typing; Esc leaves the field, then the shortcuts work again.
    await page.keyboard.press("a")
    await page.wait_for_selector("#view-anpr:not([hidden])")
    await page.click("#an-vrm")
    await page.keyboard.type("gp12")
    assert await page.input_value("#an-vrm") == "gp12"
    assert await page.is_visible("#view-anpr")
    await page.keyboard.press("Escape")
    assert await page.evaluate("document.activeElement.id") != "an-vrm"
    assert await page.is_visible("#view-anpr")
    await page.keyboard.press("g")
    await page.wait_for_selector("#view-grid:not([hidden])")
    # Esc from a camera brings focus back to its tile.
    tile = page.locator("#grid .tile").nth(2)
    await tile.focus()
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#view-single:not([hidden])")
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#view-grid:not([hidden])")
    assert await page.evaluate("document.activeElement?.dataset?.index") == "2"
    # The header stays on one line at 1600 px, for the operator and the supervisor.
    state = await page.evaluate(HEADER_ON_ONE_LINE)
    assert state == {"overflow": 0, "bad": []}, state
    async with aiohttp.ClientSession(stack.base_url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        resp = await http.post("/api/v1/session", json={"username": OPERATOR, "password": PASSWORD})
        headers = {"X-CSRF-Token": (await resp.json())["csrf_token"]}
        start = datetime.now(LONDON).replace(microsecond=0) - timedelta(minutes=5)
        body = {"officer_name": "PC Kay Long-Surname-Smith", "collar_number": "1234", "force": "Test Constabulary",
                "crime_reference": "CR/2026/000123/ABC", "offence": "Criminal damage", "necessity": "Shows it",
                "lawful_basis": "DPA 2018 Schedule 2 Part 1 paragraph 2", "authorised_by": "Insp Jones",
                "windows": [{"camera": cam, "from": start.isoformat(), "to": (start + timedelta(seconds=10)).isoformat()}
                            for cam in ids]}
        resp = await http.post("/api/v1/evidence/requests", json=body, headers=headers)
        assert resp.status in (200, 201), await resp.text()
    supervisor = await signed_in_as(browser, stack, SUPERVISOR, "#evidence")
    try:
        await supervisor.locator("#ev-list-body tr").first.wait_for(timeout=10_000)
        state = await supervisor.evaluate(HEADER_ON_ONE_LINE)
        assert state == {"overflow": 0, "bad": []}, state
        await supervisor.goto(f"{stack.base_url}/#grid")
        await supervisor.wait_for_selector("#view-grid:not([hidden])")
        state = await supervisor.evaluate(HEADER_ON_ONE_LINE)
        assert state == {"overflow": 0, "bad": []}, state
        # The evidence list's columns are all there, none cut off.
        await supervisor.goto(f"{stack.base_url}/#evidence")
        await supervisor.locator("#ev-list-body tr").first.wait_for(timeout=10_000)
        clipped = await supervisor.evaluate("""() => { const wrap = document.querySelector('.ev-list-wrap');
            const cells = [...document.querySelectorAll('.ev-list-wrap th, .ev-list-wrap td')];
            return { over: wrap.scrollWidth - wrap.clientWidth,
                     cells: cells.filter((c) => c.scrollWidth > c.clientWidth + 1).map((c) => c.textContent) }; }""")
        await supervisor.screenshot(path=str(artifacts / "ui-screens-evidence-list.png"))
        assert clipped == {"over": 0, "cells": []}, clipped
    finally:
        await supervisor.context.close()
    assert not page.errors


async def test_administrator_sees_no_live_view_controls(stack, browser, artifacts: Path):
    admin = await signed_in_as(browser, stack, ADMIN, "")
    try:
        await admin.wait_for_selector("#view-health:not([hidden])", timeout=10_000)  # their landing view
        for sel in ("#nav-grid", "#nav-playback", "#grid-controls", "#site-filter", "[data-layout='4']", "#alerts",
                    "#view-grid", "#ptz"):
            assert not await admin.is_visible(sel), sel
        await admin.keyboard.press("g")
        await admin.keyboard.press("p")
        await asyncio.sleep(0.3)
        assert await admin.is_visible("#view-health") and not await admin.is_visible("#view-grid")
        assert not await admin.is_visible("#view-playback")
        state = await admin.evaluate(HEADER_ON_ONE_LINE)
        assert state == {"overflow": 0, "bad": []}, state
        await admin.screenshot(path=str(artifacts / "ui-screens-administrator.png"))
        assert not admin.errors
    finally:
        await admin.context.close()


async def test_question_mark_shows_the_shortcuts_of_the_role(stack, page):
    await page.goto(f"{stack.base_url}/#grid")
    await page.locator("#grid .tile").first.focus()
    await page.keyboard.press("?")
    help_box = page.locator("#shortcut-help")
    await help_box.wait_for(timeout=5000)
    text = await help_box.inner_text()
    assert "Keyboard shortcuts" in text and "Live grid" in text and "Playback speed" in text, text
    assert "Evidence requests" in text  # operators submit for officers
    await page.keyboard.press("Escape")
    await help_box.wait_for(state="hidden", timeout=5000)
    assert await page.is_visible("#view-grid")  # the Esc closed the help, not the view
    assert await page.evaluate("document.activeElement?.classList.contains('tile')")
