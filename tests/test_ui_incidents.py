"""The occurrence book in the browser, end to end: real service, a simulated camera recording
real 2 s segments, real Chromium with an operator and a supervisor side by side.

The operator logs an incident from the live view in two clicks ("New incident", then the
category: camera and time filled in), adds an entry to its log, and bookmarks a moment of
playback with the B key, which then shows on the timeline; the supervisor closes the incident;
a change after that is refused while a correction is still taken. Tests run in file order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytest_asyncio
from incident_clicks import log_from_live_view
from sqlalchemy import select
from ui_stack import OPERATOR, running_stack, signed_in, wait_for

from controlroom.context import SESSIONS
from storage.incidents import Bookmark, get_incident
from storage.models import Segment

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

SUPERVISOR = "sup1"
STATE: dict = {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    async with running_stack(tmp_path_factory.mktemp("ui-incidents"), cameras=1, live=0, ptz=0,
                             users={SUPERVISOR: "supervisor"}, **{"recording.segment_s": 2}) as st:
        yield st


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(browser, stack):
    page = await signed_in(browser, stack.base_url, OPERATOR, "")
    await page.wait_for_selector("#grid .tile")
    yield page
    await page.context.close()


def camera(stack) -> int:
    (cam_id,) = stack.cameras.values()
    return cam_id


async def test_operator_logs_an_incident_from_live_view_in_two_clicks(stack, operator, artifacts: Path):
    cam_id = camera(stack)
    await operator.goto(f"{stack.base_url}/#camera/{cam_id}")
    await operator.wait_for_selector("#view-single:not([hidden]) #single-incident")
    await operator.wait_for_function("() => document.querySelectorAll('#qi-categories button').length === 11")

    logged = await log_from_live_view(operator, "violence")
    print(f"\nincident logged from the live view: {logged.clicks} clicks, {logged.seconds:.2f} s")
    (artifacts / "ui-incident-clicks.json").write_text(json.dumps({"clicks": logged.clicks, "seconds": logged.seconds}))
    assert logged.clicks == 2
    assert logged.seconds < 5, logged
    async with stack.app[SESSIONS]() as session:
        inc = await get_incident(session, logged.incident_id)
    # Filled in: the camera watched, its site, and the moment of the click (to the second).
    assert (inc.camera_id, inc.category, inc.opened_by, inc.status) == (cam_id, "violence", OPERATOR, "open")
    assert inc.site_id is not None
    assert abs(inc.occurred_at_us // 1000 - logged.clicked_at_ms) < 2000, (inc.occurred_at_us, logged)
    await operator.screenshot(path=str(artifacts / "ui-incident-logged.png"))
    STATE["incident"] = inc.id

    # The confirmation leads to the incident; an entry goes into its log.
    await operator.click("#qi-done a")
    await operator.wait_for_selector(f"#inc-detail h3:has-text('Incident {inc.id}')")
    await operator.fill("#inc-entry-text", "Two males fighting outside the Crown; police called")
    await operator.click("#inc-entry-add")
    await operator.locator("#inc-log li[data-kind='note']", has_text="outside the Crown").wait_for()
    await operator.click("#inc-edit summary")
    await operator.check("#inc-told-police")
    await operator.fill("#inc-edit-reference", "CAD 1142")
    await operator.click("#inc-edit-save")
    await operator.locator("#inc-detail dd", has_text="CAD 1142").wait_for()
    assert operator.errors == []


async def test_bookmark_with_b_shows_on_the_timeline(stack, operator, artifacts: Path):
    cam_id = camera(stack)

    async def recorded_ms():
        async with stack.app[SESSIONS]() as session:
            seg = (await session.execute(select(Segment).where(Segment.camera_id == cam_id)
                                         .order_by(Segment.start_us.desc()).limit(1))).scalar_one_or_none()
        return seg.start_us // 1000 if seg else None

    at_ms = await wait_for(recorded_ms, 30, 0.5)
    assert at_ms, "nothing recorded yet"
    await operator.goto(f"{stack.base_url}/#playback/{cam_id}/{at_ms}")
    ready = await wait_for(lambda: operator.evaluate("window.controlroom.playback.ready === true"), 20)
    assert ready, await operator.text_content("#pb-message")
    await operator.click("#pb-play")  # pause, so the moment bookmarked is the one on screen
    wall_ms = await operator.evaluate("(() => { const pb = window.controlroom.playback; return pb.wallOf(pb.video.currentTime); })()")
    await operator.locator("#tl-day").focus()
    await operator.keyboard.press("b")
    await operator.wait_for_selector("#bookmark-bar:not([hidden]) #bm-text[data-bookmark]")
    bookmark_id = int(await operator.get_attribute("#bm-text", "data-bookmark"))
    await operator.fill("#bm-note", "Man in red jacket runs towards the station")
    await operator.press("#bm-note", "Enter")
    await operator.locator("#bm-msg", has_text="Note saved").wait_for()
    async with stack.app[SESSIONS]() as session:
        mark = await session.get(Bookmark, bookmark_id)
    assert (mark.camera_id, mark.made_by, mark.note) == (cam_id, OPERATOR, "Man in red jacket runs towards the station")
    assert mark.start_us == mark.end_us and abs(mark.start_us / 1000 - wall_ms) < 1000, (mark.start_us, wall_ms)

    # On the timeline: the canvas has the mark, and its flag is drawn in the bookmark colour.
    await wait_for(lambda: operator.evaluate("Number(document.getElementById('tl-day').dataset.marks || 0) >= 1"), 10)
    pixel = await operator.evaluate(
        """(ms) => { const tl = window.controlroom.playback.day; const c = tl.canvas; const dpr = window.devicePixelRatio || 1;
                     const x = Math.round(tl.x(ms, c.clientWidth) * dpr); const d = c.getContext('2d').getImageData(x, Math.round(2 * dpr), 1, 1).data;
                     return [d[0], d[1], d[2]]; }""", mark.start_us / 1000)
    assert all(abs(a - b) <= 2 for a, b in zip(pixel, [0x4d, 0xa3, 0xff], strict=True)), pixel  # antialiased edge
    await operator.screenshot(path=str(artifacts / "ui-bookmark-timeline.png"))

    # Listed and searchable, and attachable to the incident.
    await operator.goto(f"{stack.base_url}/#incidents/{STATE['incident']}")
    await operator.wait_for_selector(f"#inc-detail h3:has-text('Incident {STATE['incident']}')")
    await operator.click("#inc-tab-bookmarks")
    await operator.fill("#bm-f-text", "red jacket")
    await operator.press("#bm-f-text", "Enter")
    row = operator.locator(f"#bm-list-body tr[data-bookmark='{bookmark_id}']")
    await row.wait_for()
    await row.locator(".bm-attach").click()
    await operator.locator(f"#bm-list-body tr[data-bookmark='{bookmark_id}'] a[href='#incidents/{STATE['incident']}']").wait_for()
    assert operator.errors == []


async def test_supervisor_closes_and_the_record_is_append_only(browser, stack, operator, artifacts: Path):
    iid = STATE["incident"]
    sup = await signed_in(browser, stack.base_url, SUPERVISOR, f"#incidents/{iid}")
    try:
        await sup.wait_for_selector(f"#inc-detail h3:has-text('Incident {iid}')")
        await sup.select_option("#inc-close-outcome", "police_attended")
        await sup.fill("#inc-close-note", "Both spoken to by officers")
        await sup.click("#inc-close")
        await sup.locator("#inc-status", has_text="Closed").wait_for()
        assert await sup.locator("#inc-edit").count() == 0 and await sup.locator("#inc-close").count() == 0
        await sup.screenshot(path=str(artifacts / "ui-incident-closed.png"))
        assert sup.errors == []
    finally:
        await sup.context.close()

    # The operator's screen offers only a correction now, and the service refuses a change.
    await operator.goto(f"{stack.base_url}/#incidents/{iid}")
    await operator.reload()
    await operator.locator("#inc-status", has_text="Closed").wait_for()
    assert await operator.locator("#inc-edit").count() == 0
    assert await operator.input_value("#inc-entry-kind") == "correction"
    status = await operator.evaluate(
        """async (id) => (await fetch('/api/v1/incidents/' + id, {method: 'PATCH', credentials: 'same-origin',
             headers: {'Content-Type': 'application/json', 'X-CSRF-Token': sessionStorage.getItem('controlroom.csrf')},
             body: JSON.stringify({summary: 'nothing happened'})})).status""", iid)
    assert status == 409
    await operator.fill("#inc-entry-text", "It was outside the Swan, not the Crown")
    await operator.click("#inc-entry-add")
    await operator.locator("#inc-log li[data-kind='correction']", has_text="the Swan").wait_for()
    async with stack.app[SESSIONS]() as session:
        inc = await get_incident(session, iid)
    assert (inc.status, inc.closed_by, inc.outcome, inc.summary, inc.police_reference) == (
        "closed", SUPERVISOR, "police_attended", "", "CAD 1142")
    assert inc.told == ["police"]
    assert [e.kind for e in inc.entries][-2:] == ["status", "correction"]
    assert operator.errors == []
