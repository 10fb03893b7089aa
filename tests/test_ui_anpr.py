"""ANPR in the browser, end to end: the real service, real Chromium, reads with real JPEG
pictures stored through storage.anpr, a hotlist entry through anpr.hotlist.

An operator searches with a wildcard (London local times) and sees the matching reads with
their plate thumbnails and not the others; opens one's overview picture; a search without a
reason is refused with the API's own words and the form keeps what was typed; the CSV link
downloads the same rows; a journeys query finds the seeded journey with its travel time. Then
a hit is raised while the page is open, through the live reader's own storing path
(LiveReading.store_vehicle: read, hotlist check, hit, alert on the hub), so it arrives over
the alerts WebSocket; it shows with its pictures and is confirmed, and the decision is stored,
audited and shown with who and when. No live plate reading here (CPU-heavy; test_anpr_e2e.py).
Tests run in file order on one stack.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
import pytest_asyncio
from sqlalchemy import select
from ui_stack import OPERATOR, PASSWORD, running_stack, signed_in

from anpr.frames import encode_jpeg, overview, plate_patch
from anpr.hotlist import parse_entry
from anpr.live import LiveReading
from anpr.tracking import Vehicle
from controlroom.anpr_service import live_options
from controlroom.context import ALERTS, KEYS, SESSIONS, SETTINGS
from storage import accounts, audit
from storage.alerts import Alert
from storage.anpr.hits import get_hit
from storage.anpr.hotlists import add_entries, add_hotlist, get_hotlist, list_entries
from storage.anpr.images import save_read_images
from storage.anpr.reads import NewRead, add_read
from storage.audit import AuditEntry
from storage.db import now_us, transaction
from storage.inventory import CameraSpec, add_camera

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

LONDON = ZoneInfo("Europe/London")
S = 1_000_000
HORNS, WEST = "Horns Bridge roundabout", "West Bars roundabout"
REASON, REFERENCE = "Stolen vehicle enquiry", "CR/4471/26"
SUPERVISOR = "sup1"
BOX = (520, 430, 240, 56)  # where the plate is in the 1280x720 frame


def local_input(us: int) -> str:
    """What an operator types: London wall-clock time, to the second."""
    return datetime.fromtimestamp(us / S, LONDON).strftime("%Y-%m-%d %H:%M:%S")


def frame_with_plate(text: str) -> np.ndarray:
    """A 1280x720 road scene with a yellow UK plate reading ``text`` at BOX."""
    frame = np.full((720, 1280, 3), (70, 70, 70), np.uint8)
    cv2.rectangle(frame, (300, 250), (980, 560), (150, 40, 30), -1)  # the car
    x, y, w, h = BOX
    cv2.rectangle(frame, (x, y), (x + w, y + h), (23, 209, 247), -1)  # BGR yellow
    cv2.putText(frame, text, (x + 10, y + h - 14), cv2.FONT_HERSHEY_DUPLEX, 1.3, (0, 0, 0), 3, cv2.LINE_AA)
    return frame


def jpegs(text: str) -> tuple[bytes, bytes]:
    frame = frame_with_plate(text)
    return encode_jpeg(plate_patch(frame, BOX), 85), encode_jpeg(overview(frame, 960), 85)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    # No recorders and no live ANPR: the reads and the hit are put in the way the reader would.
    async with running_stack(tmp_path_factory.mktemp("ui-anpr"), cameras=1, live=0, ptz=0, record=False) as st:
        app = st.app
        async with transaction(app[SESSIONS]) as s:
            hb = await add_camera(s, CameraSpec(name="HB ANPR 1", site=HORNS, kind="anpr", lane="1",
                                                direction="westbound", recording=False), app[KEYS])
            wb = await add_camera(s, CameraSpec(name="WB ANPR 1", site=WEST, kind="anpr", lane="2",
                                                direction="eastbound", recording=False), app[KEYS])
        t0 = (now_us() - 2 * 3600 * S) // S * S
        seeded = [("AB12CDE", hb.id, t0), ("AB12CDF", hb.id, t0 + 60 * S), ("XY34ZZZ", wb.id, t0 + 100 * S),
                  ("CD56EFG", hb.id, t0 + 120 * S), ("AB12CDE", wb.id, t0 + 450 * S),
                  ("CD56EFG", wb.id, t0 + 40 * 60 * S)]  # 40 min later: not a 15-minute journey
        reads = []
        for vrm, cam, t in seeded:
            plate, ov = save_read_images(app[SETTINGS].anpr_root, t, cam, *jpegs(vrm))
            async with transaction(app[SESSIONS]) as s:
                reads.append(await add_read(s, NewRead(vrm=vrm, confidence=0.93, read_us=t, camera_id=cam,
                                                                   plate_path=plate, overview_path=ov)))
        hashed = await asyncio.to_thread(accounts.hash_password, PASSWORD)
        async with transaction(app[SESSIONS]) as s:
            await accounts.create_user(s, SUPERVISOR, "supervisor", hashed)
            await audit.append(s, "test", "user.add", f"user:{SUPERVISOR}", role="supervisor")
        st.seed = {"hb": hb, "wb": wb, "t0": t0, "reads": reads}
        yield st


async def on_anpr(browser, stack, username: str, where: str):
    """A page of its own browser context, signed in and on the ANPR view."""
    pg = await signed_in(browser, stack.base_url, username, where)
    await pg.wait_for_selector("#view-anpr:not([hidden])")
    await pg.locator("#alerts-conn", has_text="Live").wait_for(timeout=10_000)
    return pg


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(browser, stack):
    pg = await on_anpr(browser, stack, OPERATOR, "#anpr")
    await pg.locator("#an-site option", has_text=WEST).wait_for(state="attached")
    yield pg
    await pg.context.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def supervisor(browser, stack):
    pg = await on_anpr(browser, stack, SUPERVISOR, "#anpr/hotlists")
    yield pg
    await pg.context.close()


async def audit_entries(stack, action: str) -> list[AuditEntry]:
    async with stack.app[SESSIONS]() as session:
        return list((await session.execute(select(AuditEntry).where(AuditEntry.action == action)
                                           .order_by(AuditEntry.seq))).scalars())


async def images_loaded(page, selector: str) -> None:
    await page.wait_for_function(
        "sel => { const imgs = [...document.querySelectorAll(sel)];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }", arg=selector, timeout=10_000)


async def test_search_refused_without_a_reason_keeps_the_form(stack, page, artifacts: Path):
    assert await page.get_attribute("#nav-anpr", "aria-pressed") == "true"
    assert await page.is_visible("#an-tab-journeys") and await page.is_hidden("#an-tab-hotlists")  # no hotlist_admin
    await page.fill("#an-vrm", "AB12*")
    await page.fill("#an-reference", REFERENCE)
    await page.click("#an-search-go")
    error = page.locator("#an-search-error")
    await error.filter(has_text="must state its reason").wait_for(timeout=10_000)
    # The API's own message, not one made up by the page.
    assert await error.text_content() == "Not searched: an ANPR search must state its reason (the search is audited)"
    assert await page.input_value("#an-vrm") == "AB12*" and await page.input_value("#an-reference") == REFERENCE
    assert await page.is_hidden("#an-reads") and await page.is_hidden("#an-csv")
    assert await audit_entries(stack, "anpr.search") == []
    await page.screenshot(path=str(artifacts / "ui-anpr-no-reason.png"))


async def test_wildcard_search_shows_matching_reads_with_thumbnails(stack, page, artifacts: Path):
    t0 = stack.seed["t0"]
    await page.fill("#an-from", local_input(t0 - 60 * S))
    await page.fill("#an-to", local_input(t0 + 3600 * S))
    shown = datetime.fromtimestamp((t0 - 60 * S) / S, LONDON).strftime("%d/%m/%Y %H:%M:%S %z")
    assert await page.text_content("#an-from-when") == f"= {shown[:-2]}:{shown[-2:]}"  # the instant meant, with its offset
    await page.fill("#an-reason", REASON)
    async with page.expect_request(lambda r: "/api/v1/anpr/reads?" in r.url) as sent:
        await page.click("#an-search-go")
    url = (await sent.value).url
    assert quote(datetime.fromtimestamp((t0 - 60 * S) / S, LONDON).isoformat(), safe="") in url  # ISO with offset
    await page.locator("#an-reads-body tr").first.wait_for(timeout=10_000)
    rows = page.locator("#an-reads-body tr")
    vrms = await rows.evaluate_all("rows => rows.map(r => r.dataset.vrm)")
    assert vrms == ["AB12CDE", "AB12CDF", "AB12CDE"]  # newest first; not XY34ZZZ or CD56EFG
    assert await page.text_content("#an-search-summary") == "3 reads, newest first."
    first = rows.first  # AB12CDE at West Bars, 450 s after t0
    cells = await first.locator("td").all_text_contents()
    assert cells[0] == "AB12CDE" and cells[2:7] == ["WB ANPR 1", WEST, "2", "eastbound", "93%"]
    when = datetime.fromtimestamp((t0 + 450 * S) / S, LONDON).strftime("%d/%m/%Y%H:%M:%S %z")
    assert cells[1] == f"{when[:-2]}:{when[-2:]}"
    await images_loaded(page, "#an-reads-body img.an-plate")
    assert await page.locator("#an-reads-body img.an-plate").count() == 3
    await page.screenshot(path=str(artifacts / "ui-anpr-search.png"))
    # The thumbnail opens the overview picture; Esc closes it and stays on the view.
    await first.locator("button.an-thumb").click()
    await page.locator("#image-dialog[open]").wait_for()
    await images_loaded(page, "#image-dialog-img")
    assert (await page.get_attribute("#image-dialog-img", "src")).endswith(f"/reads/{stack.seed['reads'][4].id}/overview.jpg")
    await page.screenshot(path=str(artifacts / "ui-anpr-overview.png"))
    await page.keyboard.press("Escape")
    await page.locator("#image-dialog[open]").wait_for(state="detached")
    assert await page.evaluate("location.hash") == "#anpr"
    (entry,) = await audit_entries(stack, "anpr.search")
    details = json.loads(entry.details)
    assert entry.actor == OPERATOR and (details["reason"], details["reference"]) == (REASON, REFERENCE)
    assert details["pattern"] == "AB12*" and details["results"] == 3 and details["from_us"] == t0 - 60 * S
    assert not page.errors


async def test_csv_link_downloads_the_same_rows(stack, page, tmp_path: Path):
    async with page.expect_download() as info:
        await page.click("#an-csv")
    download = await info.value
    assert download.suggested_filename == "anpr-reads.csv"
    path = tmp_path / "reads.csv"
    await download.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [r["vrm"] for r in rows] == ["AB12CDE", "AB12CDF", "AB12CDE"]
    assert rows[0]["site"] == WEST and rows[1]["site"] == HORNS and rows[0]["plate_url"].endswith("/plate.jpg")
    (entry,) = await audit_entries(stack, "anpr.export")
    details = json.loads(entry.details)
    assert (details["reason"], details["reference"], details["results"]) == (REASON, REFERENCE, 3)


async def test_journeys_between_the_two_sites(stack, page, artifacts: Path):
    await page.click("#an-tab-journeys")
    await page.wait_for_selector("#an-part-journeys:not([hidden])")
    assert await page.evaluate("location.hash") == "#anpr/journeys"
    await page.select_option("#an-j-from-site", HORNS)
    await page.select_option("#an-j-to-site", WEST)
    await page.fill("#an-j-within", "15")
    await page.fill("#an-j-reason", REASON)
    await page.fill("#an-j-reference", REFERENCE)
    await page.click("#an-j-go")
    await page.locator("#an-j-body tr").first.wait_for(timeout=10_000)
    rows = page.locator("#an-j-body tr")
    assert await rows.evaluate_all("rows => rows.map(r => r.dataset.vrm)") == ["AB12CDE"]  # CD56EFG took 40 min
    assert await rows.first.locator(".an-travel").text_content() == "7 min 30 s"
    assert await rows.first.get_attribute("data-travel-s") == "450"
    assert await page.text_content("#an-j-summary") == "1 journey within 15 min."
    await page.screenshot(path=str(artifacts / "ui-anpr-journeys.png"))
    (entry,) = await audit_entries(stack, "anpr.journeys")
    details = json.loads(entry.details)
    assert (details["from_site"], details["to_site"], details["within_s"]) == (HORNS, WEST, 900)
    assert details["either_direction"] is True and details["results"] == 1
    assert not page.errors


async def test_the_october_hour_is_chosen_not_guessed(stack, page):
    await page.click("#an-tab-reads")
    await page.fill("#an-from", "2026-10-25 01:30:00")
    await page.fill("#an-to", "")
    choice = page.locator("#an-part-reads .ev-occurrence").first
    options = await choice.locator("option").all_text_contents()
    assert options[1:] == ["25/10/2026 01:30:00 +01:00 (first, BST)", "25/10/2026 01:30:00 +00:00 (second, GMT)"]
    await page.click("#an-search-go")  # not chosen: nothing is sent
    assert "happens twice in London; choose which one" in await page.text_content("#an-search-error")
    await choice.select_option(index=2)
    async with page.expect_request(lambda r: "/api/v1/anpr/reads?" in r.url) as sent:
        await page.click("#an-search-go")
    assert f"from={quote('2026-10-25T01:30:00+00:00', safe='')}" in (await sent.value).url
    await page.locator("#an-search-summary", has_text="3 reads").wait_for(timeout=10_000)
    await page.fill("#an-from", "2026-03-29 01:30:00")  # the March hour that never happens
    await page.click("#an-search-go")
    assert "does not exist in London" in await page.text_content("#an-search-error")
    await page.fill("#an-from", "")
    assert not page.errors


async def test_hotlists_for_a_supervisor(stack, supervisor, artifacts: Path):
    page = supervisor
    await page.wait_for_selector("#an-part-hotlists:not([hidden])")
    await page.fill("#hl-new-name", "Watch <b>list</b>")
    await page.fill("#hl-new-source", "Local intelligence")
    await page.select_option("#hl-new-priority", "2")
    await page.click("#hl-new-go")
    await page.locator("#hl-name", has_text="Watch <b>list</b>").wait_for(timeout=10_000)  # a name, as text
    await page.fill("#hl-entry-vrm", "gh78 ijk")
    await page.fill("#hl-entry-reason", "Seen at a burglary")
    await page.fill("#hl-entry-expires", "2099-01-31")
    await page.click("#hl-entry-go")
    await page.locator("#hl-entries-body tr", has_text="GH78IJK").wait_for(timeout=10_000)
    cells = await page.locator("#hl-entries-body tr", has_text="GH78IJK").locator("td").all_text_contents()
    assert cells[:4] == ["GH78IJK", "Seen at a burglary", "Local intelligence", "2"]
    # Live to the end of that London day, shown as the day typed (issue 14), the instant in its title.
    assert cells[4:6] == ["31/01/2099", SUPERVISOR]
    expiry_cell = page.locator("#hl-entries-body tr", has_text="GH78IJK").locator("td").nth(4)
    assert await expiry_cell.get_attribute("title") == "Live until 01/02/2099 00:00:00 +00:00"
    # A file with a bad line: nothing imported, and each bad line named.
    bad = b"vrm,reason,expires\nEF56*,series,2099-01-01\nBAD%,x,2099-01-01\n"
    await page.set_input_files("#hl-import-file", files=[{"name": "bad.csv", "mimeType": "text/csv", "buffer": bad}])
    await page.click("#hl-import-go")
    await page.locator("#hl-import-error", has_text="Nothing imported: 1 bad line(s)").wait_for(timeout=10_000)
    assert "line 3:" in await page.text_content("#hl-import-error")
    good = b"vrm,reason,priority,expires\nEF56*,series of stolen plates,1,2099-01-01\nLM90NOP,stolen,,2099-01-01\n"
    await page.set_input_files("#hl-import-file", files=[{"name": "good.csv", "mimeType": "text/csv", "buffer": good}])
    await page.click("#hl-import-go")
    await page.locator("#hl-import-done", has_text="Imported 2 entries.").wait_for(timeout=10_000)
    await page.locator("#hl-entries-body tr", has_text="LM90NOP").wait_for(timeout=10_000)
    await page.screenshot(path=str(artifacts / "ui-anpr-hotlists.png"))
    async with stack.app[SESSIONS]() as s:
        hl = await get_hotlist(s, "Watch <b>list</b>")
        entries = {e.pattern: e for e in await list_entries(s, hl.id)}
    assert sorted(entries) == ["EF56*", "GH78IJK", "LM90NOP"] and entries["EF56*"].priority == 1
    assert entries["GH78IJK"].created_by == SUPERVISOR
    # Removing an entry.
    await page.locator("#hl-entries-body tr", has_text="LM90NOP").locator("button", has_text="Remove").click()
    await page.locator("#hl-entries-body tr", has_text="LM90NOP").wait_for(state="detached", timeout=10_000)
    assert [e.action for e in await audit_entries(stack, "hotlist.import")] == ["hotlist.import"]
    assert len(await audit_entries(stack, "hotlist.entry.remove")) == 1
    assert not page.errors


async def test_hit_arrives_live_with_its_pictures_and_is_confirmed(stack, page, supervisor, artifacts: Path):
    app = stack.app
    async with transaction(app[SESSIONS]) as s:
        hl = await add_hotlist(s, "Stolen vehicles", source="PNC", default_priority=1, created_by="test")
        (entry,) = await add_entries(s, hl.id, [parse_entry(
            {"vrm": "KM70*", "reason": "Stolen in a burglary", "expires": "2099-12-31"}, hl)], created_by="test")
    await page.locator("#alerts-conn", has_text="Live").wait_for(timeout=10_000)
    # The live reader's own storing path: the read, the hotlist check, the hit, the alert on the hub.
    live = LiveReading(app[SESSIONS], app[KEYS], app[ALERTS], app[SETTINGS].anpr_root, live_options(app[SETTINGS]))
    frame = frame_with_plate("KM70 XYZ")
    read_us = now_us()
    plate_rel, overview_rel = save_read_images(app[SETTINGS].anpr_root, read_us, stack.seed["hb"].id,
                                                     *jpegs("KM70 XYZ"))
    raised = time.monotonic()
    stored = await live.store_vehicle(stack.seed["hb"].id, Vehicle(
        text="KM70XYZ", confidence=0.97, read_us=read_us, commit_frame_us=read_us, box=BOX, char_confidences=[0.97] * 7,
        raw_text="KM70 XYZ", format="uk_current", frames=3, frame=frame), plate_rel, overview_rel)
    (hit_id,) = stored.hits
    item = page.locator(f"#alerts-list li.kind-anpr_hit[data-hit='{hit_id}']")
    await item.wait_for(timeout=10_000)
    arrived_s = time.monotonic() - raised
    assert arrived_s < 5, f"the hit took {arrived_s:.2f} s to reach the panel"
    assert await item.locator(".hit-vrm").text_content() == "KM70XYZ"
    assert await item.locator(".hit-why").text_content() == "Stolen vehicles: Stolen in a burglary (PNC)"
    assert await item.locator(".hit-priority").text_content() == "Priority 1"
    assert await item.locator(".hit-where").text_content() == f"HB ANPR 1 · {HORNS}, lane 1, westbound"
    shown = datetime.fromtimestamp(read_us / S, LONDON).strftime("%d/%m/%Y %H:%M:%S %z")
    assert await item.locator(".hit-read time").text_content() == f"{shown[:-2]}:{shown[-2:]}"
    await images_loaded(page, f"#alerts-list li[data-hit='{hit_id}'] .hit-images img")
    srcs = await item.locator(".hit-images img").evaluate_all("imgs => imgs.map(i => i.getAttribute('src'))")
    assert srcs == [f"/api/v1/anpr/hits/{hit_id}/plate.jpg", f"/api/v1/anpr/hits/{hit_id}/overview.jpg"]
    assert await page.text_content("#alerts-count") == "1"
    await page.screenshot(path=str(artifacts / "ui-anpr-hit.png"))
    other = supervisor.locator(f"#alerts-list li.kind-anpr_hit[data-hit='{hit_id}']")  # another screen has it too
    await other.locator("button.hit-confirm").wait_for(timeout=10_000)

    await item.locator(".hit-note-input").fill("Plate matches; vehicle colour matches the PNC record")
    await item.locator("button.hit-confirm").click()
    # Decided and acknowledged: the hit moves to the Handled section, shown on request (issue 14).
    await page.locator("#alerts-handled").evaluate("d => { d.open = true; }")
    decision = item.locator(".hit-decision")
    await decision.filter(has_text=f"Confirmed by {OPERATOR} at ").wait_for(timeout=10_000)
    async with app[SESSIONS]() as s:
        hit = await get_hit(s, hit_id)
        alert = await s.get(Alert, hit.alert_id)
    assert (hit.state, hit.decided_by, hit.note) == ("confirmed", OPERATOR,
                                                     "Plate matches; vehicle colour matches the PNC record")
    when = datetime.fromtimestamp(hit.decided_us / S, LONDON).strftime("%d/%m/%Y %H:%M:%S %z")
    assert await decision.text_content() == f"Confirmed by {OPERATOR} at {when[:-2]}:{when[-2:]}"
    assert "vehicle colour matches" in await item.locator(".hit-note").text_content()
    assert alert.acknowledged_by == OPERATOR  # the decision dealt with the alert: every panel clears it
    await page.locator("#alerts-count:empty").wait_for(state="attached", timeout=5000)
    assert await item.locator("button.hit-confirm").count() == 0
    (audited,) = await audit_entries(stack, "anpr.hit.confirm")
    details = json.loads(audited.details)
    assert audited.actor == OPERATOR and audited.target == f"anpr_hit:{hit_id}"
    assert (details["vrm"], details["read_id"], details["entry_id"]) == ("KM70XYZ", stored.read_id, entry.id)
    assert details["note"] == hit.note
    assert any(e.target == f"alert:{alert.id}" for e in await audit_entries(stack, "alert.ack"))
    await page.screenshot(path=str(artifacts / "ui-anpr-hit-confirmed.png"))
    # The other screen shows the decision without a reload, and offers it no more.
    await supervisor.locator("#alerts-handled").evaluate("d => { d.open = true; }")
    await other.locator(".hit-decision", has_text=f"Confirmed by {OPERATOR} at ").wait_for(timeout=10_000)
    assert await other.locator("button.hit-confirm").count() == 0
    assert await supervisor.locator("#alerts-count").text_content() == ""
    assert not page.errors and not supervisor.errors
