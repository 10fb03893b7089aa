"""Synchronised playback: time from an alert to its moment playing on 4 cameras (issue 14).

    .venv/bin/python -m bench.syncplay [--samples 5]

The service runs in this process (temporary data directory, SQLite) with four simulated cameras
recording 2 s segments; a real Chromium (Debian's, via Playwright) is the browser, 1600x900,
signed in as an operator on the live grid. Each sample raises a camera-offline alert, opens
its card and clicks "4 cameras": the time is taken in the page, from the click to all four
tiles playing (their own recording, not paused, enough data to play, no message), and the
spread of the four tiles' shown moments, and their distance from the alert's moment (30 s
before it), when they all play. Goal: under 3 s on two cores.

Bounded: about two minutes (a minute of footage is recorded first).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from sqlalchemy import update  # noqa: E402
from ui_stack import browser_page, log_in, running_stack, wait_for  # noqa: E402

from cameras.recorder import media_duration_s  # noqa: E402
from controlroom.context import ALERTS, SESSIONS  # noqa: E402
from storage.alerts import Alert, raise_alert  # noqa: E402
from storage.catalogue import find_run  # noqa: E402
from storage.db import now_us, transaction  # noqa: E402

MEASURE = """(clickSelector) => new Promise((resolve, reject) => {
  const link = document.querySelector(clickSelector);
  if (!link) { reject(new Error("no link " + clickSelector)); return; }
  const t0 = performance.now();
  link.click();
  const check = () => {
    const s = window.controlroom.sync;
    const tiles = s && s.active ? s.tiles.filter((t) => t.camId != null) : [];
    if (tiles.length === 4 && tiles.every((t) => t.plan && !t.video.paused && t.video.readyState >= 3 && !t.message.textContent)) {
      resolve({ ms: performance.now() - t0, walls: tiles.map((t) => t.wallOf(t.video.currentTime)) });
    } else if (performance.now() - t0 > 30000) reject(new Error("not all four played within 30 s"));
    else requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
})"""


async def recorded_for(st, cam_id: int, seconds: float) -> bool:
    at_us = int((time.time() - seconds) * 1e6)
    async with st.app[SESSIONS]() as session:
        run = await find_run(session, st.settings.storage_root, cam_id, at_us, media_duration_s)
    return bool(run) and run[0].start_us <= at_us


async def sample(st, page, cam_id: int) -> tuple[float, float, float]:
    await page.goto(f"{st.base_url}/#grid")
    await page.reload()  # a fresh alerts panel each time, listening before the alert is raised
    await page.locator("#alerts-conn", has_text="Live").wait_for(timeout=15_000)
    async with transaction(st.app[SESSIONS]) as s:
        alert = await raise_alert(s, st.app[ALERTS], "camera_offline", "Bench: camera offline", camera_id=cam_id)
    target_ms = alert.at_us / 1000 - 30e3
    card = page.locator(f"#alerts-list li.alert[data-id='{alert.id}']")
    await card.wait_for(timeout=15_000)
    if "expanded" not in (await card.get_attribute("class") or ""):
        await card.locator("button.alert-toggle").click()
    await card.locator("a.alert-sync").wait_for(timeout=5000)
    got = await page.evaluate(MEASURE, f"#alerts-list li.alert[data-id='{alert.id}'] a.alert-sync")
    walls = got["walls"]
    async with transaction(st.app[SESSIONS]) as s:  # handled: the next sample's card is the only one
        await s.execute(update(Alert).where(Alert.id == alert.id).values(acknowledged_us=now_us(), acknowledged_by="bench"))
    return got["ms"] / 1000, (max(walls) - min(walls)) / 1000, max(abs(w - target_ms) for w in walls) / 1000


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        async with running_stack(Path(tmp), cameras=4, live=0, ptz=0, **{"recording.segment_s": 2}) as st:
            cams = sorted(st.cameras.values())
            print(f"syncplay bench: {len(cams)} simulated cameras recording 2 s segments, service at {st.base_url}")
            for cam in cams:
                if not await wait_for(lambda cam=cam: recorded_for(st, cam, 60), 150, 1.0):
                    print(f"camera {cam} recorded no minute of footage in time")
                    return 1
            async with browser_page(st.base_url, width=1600, height=900) as page:
                await log_in(page, st.base_url)
                results = []
                for i in range(args.samples):
                    results.append(await sample(st, page, cams[i % len(cams)]))
                    await asyncio.sleep(1)
    secs = [r[0] for r in results]
    print(f"alert to synchronised playback of its moment on 4 cameras: median {statistics.median(secs):.2f} s, "
          f"max {max(secs):.2f} s over {len(secs)} samples (goal: under 3 s)")
    print(f"spread of the four tiles when all play: max {max(r[1] for r in results):.3f} s; "
          f"farthest tile from the alert's moment: max {max(r[2] for r in results):.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
