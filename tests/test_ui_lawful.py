"""Lawful use in the browser: a supervisor's RIPA register shows an authorisation expiring.

Real service (the reminder loop ticking every half second), real Chromium. An authorisation is
recorded through storage with the service's own clock (storage.db.now_us) ending a few seconds
from now: the screen shows it live with its expiry highlighted as due; when the expiry passes the
service's reminder check raises the ``ripa_expired`` alert, the alerts panel shows it, the
register reads itself again and shows the authorisation expired, its expiry in red. Then a police
request that cites surveillance of a named person without an authorisation carries the warning
in the supervisor's evidence view; a SAR is recorded and its footage held from the screen; and
an operator links a PTZ camera to an authorisation from the PTZ panel, so the moves they make
with its buttons are audited with the authorisation's reference.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from ui_stack import OPERATOR, running_stack, signed_in, wait_for

from controlroom.context import SESSIONS
from controlroom.timefmt import us_to_iso
from storage import ripa
from storage.audit import AuditEntry
from storage.db import now_us, transaction

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]
SUPERVISOR, POLICE = "sup1", "pc1"
EXPIRES_IN_S = 8


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    async with running_stack(tmp_path_factory.mktemp("ui-lawful"), cameras=1, live=0, ptz=1, record=False,
                             onvif=True, users={SUPERVISOR: "supervisor", POLICE: "police"}, **{"lawful.check_interval_s": 0.5}) as st:
        yield st


async def test_a_ripa_authorisation_expiring_is_flagged(stack, browser, artifacts: Path):
    page = await signed_in(browser, stack.base_url, SUPERVISOR, "#lawful/ripa")
    await page.wait_for_selector("#view-lawful:not([hidden])")
    await page.wait_for_selector("#lw-ripa")
    assert await page.is_visible("#nav-lawful")
    async with transaction(stack.app[SESSIONS]) as session:
        now = now_us()
        await ripa.create(session, by=SUPERVISOR, reference="OP-EXPIRING", kind="directed_surveillance",
                          authorising_officer="Supt A Jones", grounds="prevention of crime",
                          subject="Male, 30s, red jacket", authorised_us=now,
                          expires_us=now + EXPIRES_IN_S * 1_000_000)
    # The reminder check raises "expires soon" at once (within the warning period): the alert
    # makes the register read itself again, and the new row shows, live, its expiry due.
    row = page.locator('#lw-ripa-body tr[data-ref="OP-EXPIRING"]')
    await row.wait_for(timeout=10_000)
    assert await row.locator(".lw-state").get_attribute("data-state") == "live"
    assert "lw-due" in (await row.locator("td.lw-expires").get_attribute("class"))
    await page.screenshot(path=str(artifacts / "ui-lawful-ripa-live.png"))

    # At the expiry the service raises "RIPA expired"; the screen follows without a reload.
    await page.locator('#lw-ripa-body tr[data-ref="OP-EXPIRING"] .lw-state[data-state="expired"]').wait_for(
        timeout=(EXPIRES_IN_S + 10) * 1000)
    assert now_us() >= now + EXPIRES_IN_S * 1_000_000
    assert "lw-past" in (await row.locator("td.lw-expires").get_attribute("class"))
    alerts = await page.text_content("#alerts-list")
    assert "RIPA expired" in alerts and "OP-EXPIRING" in alerts
    # Expired: no review, renewal or cancellation is offered.
    await row.click()
    await page.wait_for_selector("#lw-ripa-detail")
    assert await page.is_disabled("#lw-ripa-renew")
    await page.screenshot(path=str(artifacts / "ui-lawful-ripa-expired.png"))
    assert page.errors == []
    await page.context.close()


async def test_evidence_request_citing_a_named_person_warns_the_supervisor(stack, browser):
    police = await signed_in(browser, stack.base_url, POLICE, "#evidence")
    await police.wait_for_selector("#view-evidence:not([hidden])")
    cam = next(iter(stack.cameras.values()))
    body = {"officer_name": "PC Jane Smith", "collar_number": "4521", "force": "Anyshire Police",
            "crime_reference": "AS/777/26", "offence": "Supply of drugs", "necessity": "to follow the suspect",
            "lawful_basis": "DPA 2018 Sch. 2 para 2", "authorised_by": "Insp. R. Khan", "directed_surveillance": True,
            "windows": [{"camera": cam, "from": us_to_iso(now_us() - 7_200_000_000),
                         "to": us_to_iso(now_us() - 3_600_000_000)}]}
    created = await police.evaluate(
        """async (body) => { const r = await fetch("/api/v1/evidence/requests", {method: "POST",
             headers: {"Content-Type": "application/json", "X-CSRF-Token": sessionStorage.getItem("controlroom.csrf")},
             body: JSON.stringify(body)}); return [r.status, await r.json()]; }""", body)
    assert created[0] == 201, created
    await police.context.close()
    page = await signed_in(browser, stack.base_url, SUPERVISOR, f"#evidence/{created[1]['id']}")
    warning = page.locator("#ev-ripa-warning")
    await warning.wait_for(timeout=10_000)
    assert "names no RIPA authorisation" in await warning.text_content()
    assert page.errors == []
    await page.context.close()


async def test_a_sar_recorded_and_its_footage_held_from_the_screen(stack, browser, artifacts: Path):
    page = await signed_in(browser, stack.base_url, SUPERVISOR, "#lawful/sar")
    await page.wait_for_selector("#lw-sar-form")
    await page.fill("#lw-sar-name", "Jane Doe")
    await page.fill("#lw-sar-identity", "passport seen at the counter")
    await page.fill("#lw-sar-description", "woman, 40s, green coat")
    await page.fill("#lw-sar-places", "Market Square, this morning")
    await page.click("#lw-sar-submit")
    detail = page.locator("#lw-sar-detail")
    await detail.wait_for(timeout=10_000)
    assert "(the whole day)" in await detail.text_content()
    row = page.locator("#lw-sar-body tr").first
    assert await row.locator(".lw-state").get_attribute("data-state") == "open"
    # Footage: a window on the camera an hour ago, when nothing was recorded (record=False): the
    # catalogue's answer is shown, and the window is held.
    cam_name = next(iter(stack.cameras))
    start = now_us() - 3_600_000_000
    from datetime import datetime
    from zoneinfo import ZoneInfo

    def typed(us: int) -> str:
        return datetime.fromtimestamp(us / 1e6, ZoneInfo("Europe/London")).strftime("%Y-%m-%d %H:%M:%S")

    await page.fill("#lw-sar-camera", cam_name)
    await page.fill("#lw-sar-from", typed(start))
    await page.fill("#lw-sar-to", typed(start + 600_000_000))
    await page.click("#lw-sar-add-window")
    window = page.locator("#lw-sar-detail .lw-windows li")
    await window.wait_for(timeout=10_000)
    assert "no footage recorded" in await window.text_content()
    async with stack.app[SESSIONS]() as session:
        from storage import sar
        from storage.models import Hold

        (request,) = await sar.list_all(session)
        hold = await session.get(Hold, request.hold_id)
        assert hold.reference == f"sar:{request.id}" and hold.released_us is None and len(request.windows) == 1
    await page.screenshot(path=str(artifacts / "ui-lawful-sar.png"))
    assert page.errors == []
    await page.context.close()


async def test_an_operator_links_ptz_moves_to_an_authorisation(stack, browser):
    ptz_id = next(cid for name, cid in stack.cameras.items() if name.startswith("PTZ"))
    async with transaction(stack.app[SESSIONS]) as session:
        await ripa.create(session, by=SUPERVISOR, reference="OP-FOLLOW", kind="directed_surveillance",
                          authorising_officer="Supt A Jones", grounds="prevention of crime",
                          subject="Woman, yellow coat", authorised_us=now_us(), camera_ids=[ptz_id])
    page = await signed_in(browser, stack.base_url, OPERATOR, f"#camera/{ptz_id}")
    await page.wait_for_selector("#ptz:not([hidden])")
    await page.click("#du-pick")
    await page.select_option("#du-authorisation", "OP-FOLLOW")
    await page.fill("#du-purpose", "at the request of DC Smith")
    await page.click("#du-start")
    status = page.locator("#du-status.du-linked")
    await status.wait_for(timeout=10_000)
    assert "OP-FOLLOW" in await status.text_content()
    right = page.locator("[data-ptz='right']")
    await right.hover()
    await page.mouse.down()
    await asyncio.sleep(0.5)
    await page.mouse.up()

    async def entries() -> list[tuple[str, str | None]]:
        async with stack.app[SESSIONS]() as session:
            rows = (await session.execute(select(AuditEntry).where(AuditEntry.action.in_(["ptz.move", "ptz.stop"]))
                                          .order_by(AuditEntry.seq))).scalars().all()
        return [(e.action, json.loads(e.details).get("ripa")) for e in rows]

    assert await wait_for(lambda: _has_stop(entries), 10)
    assert await entries() == [("ptz.move", "OP-FOLLOW"), ("ptz.stop", "OP-FOLLOW")]
    await page.click("#du-end")
    await page.locator("#du-pick").wait_for(timeout=10_000)
    async with stack.app[SESSIONS]() as session:
        assert await ripa.open_uses(session, operator=OPERATOR) == []
    assert page.errors == []
    await page.context.close()


async def _has_stop(entries) -> bool:
    return any(action == "ptz.stop" for action, _ in await entries())
