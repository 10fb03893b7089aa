"""Evidence in the browser, end to end: real service, simulated cameras recording real 2 s
segments, real Chromium with two users side by side (a police officer and a supervisor).

The officer fills the form in London local time and submits (the request is held at once); the
supervisor sees what its windows hold (a real gap: the window starts before recording did)
and approves; the export runs while the progress bar shows; the officer sees "Ready" and
downloads the package, which the verifier accepts. Then: an API refusal is shown beside the
form with what was typed kept, a refused request shows its reason and is closed, and a time in
the October hour that happens twice is not guessed. Tests run in file order on one stack.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select
from ui_stack import running_stack, signed_in, wait_for

from controlroom.context import KEYS, SESSIONS
from controlroom.evidence.verify import verify_package
from storage.audit import AuditEntry
from storage.evidence import get_request
from storage.models import Hold, Segment

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

LONDON = ZoneInfo("Europe/London")
POLICE, SUPERVISOR = "pc4521", "sup1"
FIELDS = {
    "officer_name": "PC Jane Smith", "collar_number": "4521", "force": "Anyshire Police",
    "crime_reference": "AS/12345/26", "offence": "Robbery",
    "necessity": "The robbery happened in view of the camera; needed to identify the suspect",
    "authorised_by": "Insp. R. Khan 1022",
}


def local_input(us: int) -> str:
    """What an officer types: London wall-clock time, to the second."""
    return datetime.fromtimestamp(us / 1e6, LONDON).strftime("%Y-%m-%d %H:%M:%S")


def whole_second(us: int) -> int:
    return us // 1_000_000 * 1_000_000


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    async with running_stack(tmp_path_factory.mktemp("ui-evidence"), cameras=2, live=0, ptz=0,
                             users={POLICE: "police", SUPERVISOR: "supervisor"}, **{"recording.segment_s": 2}) as st:
        yield st


async def on_evidence(browser, stack, username: str):
    """A page of its own browser context, signed in and on the evidence view."""
    page = await signed_in(browser, stack.base_url, username, "#evidence")
    await page.wait_for_selector("#view-evidence:not([hidden])")
    await page.wait_for_function("() => document.getElementById('ev-fingerprint').textContent.length > 0")
    return page


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def police(browser, stack):
    page = await on_evidence(browser, stack, POLICE)
    yield page
    await page.context.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def supervisor(browser, stack):
    page = await on_evidence(browser, stack, SUPERVISOR)
    yield page
    await page.context.close()


async def fill_request(page, windows: list[tuple[int, str, str]]) -> None:
    """The form as an officer fills it: the fields, then one row per (camera id, from, to)."""
    await page.click("#ev-new")
    await page.wait_for_selector("#ev-form:not([hidden])")
    for key, value in FIELDS.items():
        await page.fill(f"#ev-{key}", value)
    for n, (camera_id, start, end) in enumerate(windows, 1):
        if n > 1:
            await page.click("#ev-add-window")
        await page.locator(f"#ev-w{n}-camera option[value='{camera_id}']").wait_for(state="attached")
        await page.select_option(f"#ev-w{n}-camera", str(camera_id))
        await page.fill(f"#ev-w{n}-from", start)
        await page.fill(f"#ev-w{n}-to", end)


async def submitted_id(page) -> int:
    await page.wait_for_url(re.compile(r"#evidence/\d+$"))
    rid = int(page.url.rsplit("/", 1)[1])
    await page.locator("#ev-detail .ev-state").wait_for()
    return rid


async def state_shown(page) -> str:
    return (await page.text_content("#ev-detail .ev-state") or "").strip()


async def test_police_land_on_evidence_and_see_the_key(stack, police, artifacts: Path):
    assert await police.evaluate("location.hash") == "#evidence"
    await police.goto(f"{stack.base_url}/")  # the plain address too: police have no grid
    await police.wait_for_selector("#view-evidence:not([hidden])")
    assert await police.evaluate("location.hash") == "#evidence"
    assert await police.is_hidden("#nav-grid") and await police.is_hidden("#nav-playback")
    assert await police.is_visible("#nav-evidence") and await police.is_hidden("#alerts")
    fingerprint = stack.app[KEYS].public_key_fingerprint()
    assert await police.text_content("#ev-fingerprint") == fingerprint
    await police.click(".ev-key-note summary")
    assert "BEGIN PUBLIC KEY" in await police.text_content("#ev-pem")
    assert "sha256sum -c SHA256SUMS" in await police.text_content(".ev-key-note")
    await police.click(".ev-key-note summary")
    # The screen asked for nothing police may not have: no refusal is in the audit trail.
    async with stack.app[SESSIONS]() as session:
        denied = (await session.execute(select(AuditEntry.target).where(
            AuditEntry.actor == POLICE, AuditEntry.action.in_(("access.denied", "evidence.denied"))))).scalars().all()
    assert denied == []
    assert not police.errors


async def test_request_approve_export_download(stack, police, supervisor, artifacts: Path, tmp_path: Path):
    cam_name = next(iter(stack.cameras))
    cam_id = stack.camera_id(cam_name)

    async def footage():
        """(first segment's start, end of the catalogued footage) once 5 s are recorded."""
        async with stack.app[SESSIONS]() as session:
            rows = (await session.execute(select(Segment.start_us, Segment.end_us).where(
                Segment.camera_id == cam_id).order_by(Segment.start_us))).all()
        return (rows[0][0], rows[-1][1]) if rows and rows[-1][1] - rows[0][0] >= 5_000_000 else None

    recorded = await wait_for(footage, 60, 0.5)
    assert recorded, "the camera did not record 5 s within 60 s"
    # From 3 s before recording began (a real gap) to 4 s into the footage.
    start_us = whole_second(recorded[0]) - 3_000_000
    end_us = whole_second(recorded[0]) + 4_000_000

    # 1. An error from the API is shown beside the form, and the form keeps what was typed.
    future = whole_second(int(time.time() * 1e6)) + 3600_000_000
    await fill_request(police, [(cam_id, local_input(future), local_input(future + 5_000_000))])
    shown = datetime.fromtimestamp(future / 1e6, LONDON).strftime("%d/%m/%Y %H:%M:%S %z")
    assert await police.text_content(".ev-when") == f"= {shown[:-2]}:{shown[-2:]}"  # the instant meant, with its offset
    await police.click("#ev-submit")
    error = police.locator("#ev-form-error")
    await error.filter(has_text="the window starts in the future").wait_for(timeout=10_000)
    assert (await error.text_content()).startswith("Not submitted:")
    assert await police.input_value("#ev-officer_name") == FIELDS["officer_name"]
    assert await police.input_value("#ev-necessity") == FIELDS["necessity"]
    assert await police.input_value("#ev-lawful_basis") == "DPA 2018 Schedule 2 Part 1 paragraph 2"
    assert await police.input_value("#ev-w1-camera") == str(cam_id)
    await police.screenshot(path=str(artifacts / "ui-evidence-form-error.png"))

    # 2. The officer corrects the times and submits: submitted, and the footage is held.
    await police.fill("#ev-w1-from", local_input(start_us))
    await police.fill("#ev-w1-to", local_input(end_us))
    async with police.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/v1/evidence/requests")) as sent:
        await police.click("#ev-submit")
    body = json.loads((await sent.value).post_data)
    assert body["windows"] == [{"camera": cam_id,
                                "from": datetime.fromtimestamp(start_us / 1e6, LONDON).isoformat(),
                                "to": datetime.fromtimestamp(end_us / 1e6, LONDON).isoformat()}]
    rid = await submitted_id(police)
    assert await state_shown(police) == "Submitted"
    async with stack.app[SESSIONS]() as session:
        req = await get_request(session, rid)
        hold = await session.get(Hold, req.hold_id)
        assert req.state == "submitted" and req.requested_by == POLICE
        assert [(w.camera_id, w.start_us, w.end_us) for w in req.windows] == [(cam_id, start_us, end_us)]
        assert hold.reference == f"evidence:{rid}" and hold.released_us is None
        exhibit = req.exhibit_ref
    held = police.locator("#ev-detail dd", has_text=f"hold {req.hold_id}")
    assert "keeps these windows from deletion" in await held.text_content()
    assert await police.locator("#ev-list-body tr", has_text=exhibit).locator(".ev-badge").text_content() == "Submitted"
    assert await police.input_value("#ev-officer_name") == ""  # a fresh form for the next request
    await police.screenshot(path=str(artifacts / "ui-evidence-police-submitted.png"))

    # 3. The supervisor sees it with what its window holds, and approves.
    await supervisor.click("#ev-refresh")
    await supervisor.click(f"#ev-list-body a:has-text('{exhibit}')")
    await supervisor.locator("#ev-approve").wait_for()
    gaps = req.findings["windows"][0]["gaps"]
    assert gaps and gaps[0]["reason"] == "no recorded segment" and gaps[0]["duration_s"] >= 2.5, gaps
    shown = await supervisor.locator("#ev-detail .ev-gaps li").all_text_contents()
    assert len(shown) == len(gaps) and "no recorded segment" in shown[0], shown
    assert "Found: there are gaps." in await supervisor.text_content("#ev-detail .ev-findings")
    assert "Recorded" in await supervisor.text_content("#ev-detail .ev-window-finding")
    await supervisor.screenshot(path=str(artifacts / "ui-evidence-supervisor-review.png"))
    await supervisor.click("#ev-approve")  # without a reason: refused in the page, nothing sent
    assert "needs a reason" in await supervisor.text_content("#ev-detail .ev-action-error")
    await supervisor.evaluate("""() => { window.progressSeen = [];
        new MutationObserver(() => { const p = document.getElementById('ev-progress');
          if (p) window.progressSeen.push(p.hasAttribute('value') ? p.value : -1); })
        .observe(document.getElementById('ev-detail'), {childList: true, subtree: true}); }""")
    await supervisor.fill("#ev-decision-reason", "Necessary and proportionate: robbery in view of the camera")
    await supervisor.click("#ev-approve")
    try:  # the bar as it is drawn (the export of 7 s of footage may finish in a second)
        await supervisor.locator("#ev-progress").wait_for(timeout=2000)
        await supervisor.screenshot(path=str(artifacts / "ui-evidence-exporting.png"))
    except Exception:  # noqa: BLE001 - already gone: progressSeen below says whether it was shown
        pass
    await supervisor.locator("#ev-detail .ev-state", has_text="Ready").wait_for(timeout=90_000)
    seen = await supervisor.evaluate("window.progressSeen")
    assert seen, "the progress bar was never shown while the export was queued or running"
    assert all(-1 <= v <= 100 for v in seen), seen
    assert await supervisor.is_hidden("#ev-progress")

    # 4. The officer's page follows on its own; the officer downloads the package.
    await police.click(f"#ev-list-body a:has-text('{exhibit}')")
    await police.locator("#ev-detail .ev-state", has_text="Ready").wait_for(timeout=30_000)
    async with stack.app[SESSIONS]() as session:
        req = await get_request(session, rid)
    assert await police.text_content("#ev-manifest-sha") == req.manifest_sha256
    assert await police.locator("#ev-approve").count() == 0  # police decide nothing
    await police.screenshot(path=str(artifacts / "ui-evidence-police-ready.png"))
    async with police.expect_download() as info:
        await police.click("#ev-download")
    download = await info.value
    assert download.suggested_filename == f"{exhibit}.zip"
    path = tmp_path / download.suggested_filename
    await download.save_as(path)
    data = path.read_bytes()
    assert data[:4] == b"PK\x03\x04" and len(data) == req.package_bytes
    with zipfile.ZipFile(path) as zf:
        manifest = zf.read(f"{exhibit}/manifest.json")
    assert hashlib.sha256(manifest).hexdigest() == req.manifest_sha256
    report = await asyncio.to_thread(verify_package, path, stack.app[KEYS].public_key_pem())
    assert report.ok, [str(p) for p in report.problems]
    assert report.exhibit == exhibit and report.key_source == "given"
    await police.locator("#ev-detail .ev-state", has_text="Downloaded").wait_for(timeout=10_000)
    # A one-time link for another machine: it fetches the same bytes once, without a session.
    await police.click("#ev-make-link")
    link_text = await police.locator("#ev-detail .ev-link").filter(has_text="one download").text_content()
    url = link_text.split(" ", 1)[0]
    assert url.startswith(f"{stack.base_url}/api/v1/evidence/download/"), link_text
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200 and await resp.read() == data
        async with http.get(url) as resp:
            assert resp.status == 410
    async with stack.app[SESSIONS]() as session:
        actions = (await session.execute(select(AuditEntry.action).where(
            AuditEntry.target == f"evidence:{rid}").order_by(AuditEntry.seq))).scalars().all()
    assert actions[:1] == ["evidence.request"] and "evidence.approve" in actions and "evidence.download" in actions

    # 5. The supervisor reads the disclosure register: when, to whom, why, the lawful basis and
    # what was released (two releases: the officer's download and the one-time link's).
    assert await police.locator("#ev-register-open").is_hidden()  # police do not read it
    await supervisor.click("#ev-register-open")
    rows = supervisor.locator("#ev-register-body tr", has_text=exhibit)
    await rows.first.wait_for(timeout=10_000)
    assert await rows.count() == 2
    cells = await rows.first.locator("td").all_text_contents()
    assert cells[1] == f"{FIELDS['officer_name']} ({FIELDS['collar_number']}), {FIELDS['force']}"
    assert cells[2].startswith(f"{FIELDS['crime_reference']}: {FIELDS['offence']}.") and FIELDS["necessity"] in cells[2]
    assert cells[3] == "DPA 2018 Schedule 2 Part 1 paragraph 2"
    assert exhibit in cells[4] and f"{cam_name}, " in cells[4]
    assert cells[5] == POLICE
    await supervisor.screenshot(path=str(artifacts / "ui-evidence-register.png"))
    await supervisor.click(f"#ev-register-body a:has-text('{exhibit}')")  # back to the request
    await supervisor.locator("#ev-detail .ev-state", has_text="Downloaded").wait_for(timeout=10_000)
    assert await supervisor.is_hidden("#ev-register")
    async with stack.app[SESSIONS]() as session:
        reads = (await session.execute(select(AuditEntry.actor).where(
            AuditEntry.action == "evidence.register_read"))).scalars().all()
    assert reads == [SUPERVISOR]
    assert not police.errors and not supervisor.errors


async def test_refused_request_shows_its_reason_and_is_closed(stack, police, supervisor, artifacts: Path):
    cam_id = list(stack.cameras.values())[1]
    end_us = whole_second(int(time.time() * 1e6)) - 10_000_000
    await fill_request(police, [(cam_id, local_input(end_us - 4_000_000), local_input(end_us))])
    await police.click("#ev-submit")
    rid = await submitted_id(police)
    await supervisor.goto(f"{stack.base_url}/#evidence/{rid}")
    await supervisor.locator("#ev-refuse").wait_for()
    reason = "Not proportionate: the offence is not serious enough for this footage"
    await supervisor.fill("#ev-decision-reason", reason)
    await supervisor.click("#ev-refuse")
    await supervisor.locator("#ev-detail .ev-state", has_text="Refused").wait_for(timeout=10_000)
    # The officer's open detail follows within its 2 s poll, reason included.
    await police.locator("#ev-detail .ev-state", has_text="Refused").wait_for(timeout=10_000)
    facts = police.locator("#ev-detail .ev-facts")
    assert reason in await facts.locator("dt:has-text('Reason for refusal') + dd").text_content()
    assert SUPERVISOR in await facts.locator("dt:has-text('Refused by') + dd").text_content()
    await police.screenshot(path=str(artifacts / "ui-evidence-refused.png"))
    # Closing releases the hold, with the review date the supervisor chose.
    review = (datetime.now(UTC) + timedelta(days=400)).astimezone(LONDON).date().isoformat()
    await supervisor.fill("#ev-close-reason", "Refused; nothing to keep")
    await supervisor.fill("#ev-close-review", review)
    await supervisor.click("#ev-close")
    await supervisor.locator("#ev-detail .ev-state", has_text="Closed").wait_for(timeout=10_000)
    async with stack.app[SESSIONS]() as session:
        req = await get_request(session, rid)
        hold = await session.get(Hold, req.hold_id)
    assert req.state == "closed" and hold.released_us is not None
    assert datetime.fromtimestamp(req.review_us / 1e6, LONDON).isoformat().startswith(f"{review}T00:00:00")
    assert review[:4] in await supervisor.text_content("#ev-detail .ev-facts dt:has-text('Review on') + dd")
    await supervisor.locator("#ev-close").wait_for(state="detached")
    assert not police.errors and not supervisor.errors


async def test_the_october_hour_is_chosen_not_guessed(stack, police, supervisor, artifacts: Path):
    cam_id = next(iter(stack.cameras.values()))
    await fill_request(police, [(cam_id, "2026-10-25 01:30:00", "2026-10-25T02:10:00")])
    when = police.locator("#ev-windows .ev-window").first.locator(".ev-when").first  # the "from" time
    assert "2026-10-25 01:30:00 happens twice in London" in await when.text_content()
    choice = when.locator(".ev-occurrence")
    options = await choice.locator("option").all_text_contents()
    assert options[1:] == ["25/10/2026 01:30:00 +01:00 (first, BST)", "25/10/2026 01:30:00 +00:00 (second, GMT)"]
    await police.screenshot(path=str(artifacts / "ui-evidence-october-hour.png"))
    await police.click("#ev-submit")  # not chosen yet: nothing is sent
    assert "happens twice in London; choose which one" in await police.text_content("#ev-form-error")
    # The March hour that never happens is refused in the page.
    await police.fill("#ev-w1-from", "2026-03-29 01:30:00")
    assert "does not exist in London" in await when.text_content()
    await police.click("#ev-submit")
    assert "does not exist in London" in await police.text_content("#ev-form-error")
    await police.fill("#ev-w1-from", "2026-02-30 10:00")
    assert "there is no date 30/02/2026" in await when.text_content()
    await police.fill("#ev-w1-from", "2026-10-25 01:30:00")
    await choice.select_option(index=2)  # the second 01:30, in GMT
    async with police.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/v1/evidence/requests")) as sent:
        await police.click("#ev-submit")
    body = json.loads((await sent.value).post_data)
    assert body["windows"][0]["from"] == "2026-10-25T01:30:00+00:00"
    assert body["windows"][0]["to"] == "2026-10-25T02:10:00+00:00"
    rid = await submitted_id(police)
    async with stack.app[SESSIONS]() as session:
        req = await get_request(session, rid)
    assert req.windows[0].start_us == int(datetime(2026, 10, 25, 1, 30, tzinfo=UTC).timestamp() * 1e6)
    # Nothing was recorded then: said to the supervisor who decides, not hidden; what the council
    # recorded is not shown to the police.
    await police.locator("#ev-detail .ev-facts").wait_for()
    assert await police.locator("#ev-detail .ev-findings").count() == 0
    await supervisor.goto(f"{stack.base_url}/#evidence/{rid}")
    await supervisor.locator("#ev-detail .ev-findings").wait_for()
    assert "No footage at all in this window." in await supervisor.text_content("#ev-detail .ev-findings")
    assert not police.errors and not supervisor.errors
