"""Logging an incident from the live view as an operator does it, counting clicks and seconds:
shared by tests/test_ui_incidents.py (which asserts the count) and bench/incidents.py (which
repeats it against a baseline)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Logged:
    incident_id: int
    clicks: int
    seconds: float  # from the first click to the confirmation on screen
    clicked_at_ms: int  # wall clock (UTC ms) of the first click: the time the incident should carry


async def log_from_live_view(page, category: str) -> Logged:
    """On a page showing a camera's live view (#camera/ID): "New incident", then the category."""
    clicks = 0
    await page.locator("#qi-done").evaluate("e => { e.hidden = true; }")
    clicked_at_ms = int(time.time() * 1000)
    start = time.perf_counter()
    await page.click("#single-incident")
    clicks += 1
    await page.click(f"#qi-categories [data-category='{category}']")
    clicks += 1
    done = page.locator("#qi-done .qi-done-text")
    await done.wait_for(state="visible")
    seconds = time.perf_counter() - start
    return Logged(int(await done.get_attribute("data-incident")), clicks, seconds, clicked_at_ms)


async def api_round_trip(page, camera_id: int, category: str) -> float:
    """The baseline: the same incident opened by one fetch from the page (no screen), seconds."""
    return await page.evaluate(
        """async ([camera, category]) => {
             const t0 = performance.now();
             const r = await fetch('/api/v1/incidents', {method: 'POST', credentials: 'same-origin',
               headers: {'Content-Type': 'application/json', 'X-CSRF-Token': sessionStorage.getItem('controlroom.csrf')},
               body: JSON.stringify({category, camera})});
             if (r.status !== 201) throw new Error('baseline POST: ' + r.status);
             return (performance.now() - t0) / 1000; }""",
        [camera_id, category])
