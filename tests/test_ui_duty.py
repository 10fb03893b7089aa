"""Monitoring hours and camera health in the browser: real service, simulated cameras, real
Chromium. An operator signs on from the header, sees it, and signs off; a supervisor adds a
rota window and reports a fault in the health view."""

from __future__ import annotations

import re

import pytest
import pytest_asyncio
from playwright.async_api import expect
from sqlalchemy import select
from ui_stack import OPERATOR, PASSWORD, running_stack, signed_in, wait_for

from controlroom.context import SESSIONS
from storage import accounts, duty
from storage.audit import AuditEntry
from storage.db import transaction
from storage.health import list_faults

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]
SUPERVISOR = "sup1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    async with running_stack(tmp_path_factory.mktemp("ui-duty"), cameras=1, live=0, ptz=0, record=False, users={SUPERVISOR: "supervisor"}) as st:
        yield st


async def _open_session(stack, username: str):
    async with stack.app[SESSIONS]() as session:
        return await duty.current(session, username)


async def test_operator_signs_on_sees_it_and_signs_off(stack, browser):
    page = await signed_in(browser, stack.base_url, OPERATOR, "#grid")
    toggle = page.locator("#duty-toggle")
    await toggle.wait_for()
    assert await page.locator("#duty-state").text_content() == "Off duty"
    assert await toggle.text_content() == "Sign on"
    await toggle.click()
    await expect(page.locator("#duty-state")).to_have_text(re.compile(r"^On duty since \d\d:\d\d:\d\d [+-]\d\d:\d\d$"))
    assert await toggle.text_content() == "Sign off"
    assert (await _open_session(stack, OPERATOR)) is not None
    await page.reload()  # the state is the service's, not the page's
    await expect(page.locator("#duty-state")).to_have_text(re.compile("^On duty since"))
    await page.locator("#duty-toggle").click()
    await expect(page.locator("#duty-state")).to_have_text("Off duty")
    assert await wait_for(lambda: _none(stack), 5)
    assert page.errors == []
    async with stack.app[SESSIONS]() as session:
        actions = list((await session.execute(select(AuditEntry.action).where(AuditEntry.actor == OPERATOR)
                                              .where(AuditEntry.action.like("duty.%")))).scalars())
    assert actions == ["duty.on", "duty.off"]
    await page.context.close()


async def _none(stack) -> bool:
    return (await _open_session(stack, OPERATOR)) is None


async def test_supervisor_edits_the_rota_and_reports_a_fault(stack, browser):
    page = await signed_in(browser, stack.base_url, SUPERVISOR, "#health")
    await page.locator("#hh-rota-form").wait_for()
    await page.select_option("#hh-rota-day", "2")  # Wednesday
    await page.fill("#hh-rota-from", "08:00")
    await page.fill("#hh-rota-to", "16:00")
    await page.fill("#hh-rota-operators", "2")
    await page.click("#hh-rota-add")
    await expect(page.locator("#hh-rota-body tr")).to_have_count(1)
    assert await page.locator("#hh-rota-body tr td").all_text_contents() == ["Wed", "08:00", "16:00", "2", "Remove"]
    await page.fill("#hh-fault-description", "dome misted inside")
    await page.select_option("#hh-fault-kind", "blurred")
    await page.click("#hh-fault-add")
    await expect(page.locator("#hh-faults-body tr")).to_have_count(1)
    async with stack.app[SESSIONS]() as session:
        (fault,) = await list_faults(session)
    assert (fault.kind, fault.source, fault.description) == ("blurred", SUPERVISOR, "dome misted inside")
    # The availability table lists the camera; the coverage shows the rota's 8 planned hours.
    await expect(page.locator("#hh-avail-body tr")).to_have_count(1)
    await expect(page.locator("#hh-coverage")).to_contain_text("8.0 h")
    assert page.errors == []
    await page.context.close()


async def test_an_administrator_lands_on_health_without_duty_or_rota(stack, browser):
    hashed = accounts.hash_password(PASSWORD)
    async with transaction(stack.app[SESSIONS]) as session:
        await accounts.create_user(session, "admin2", "administrator", hashed)
    page = await signed_in(browser, stack.base_url, "admin2", "")
    await page.wait_for_url(f"{stack.base_url}/#health")
    await expect(page.locator("#hh-faults-body tr")).to_have_count(1)  # the supervisor's fault, with its controls
    await expect(page.locator("#hh-faults-body tr button")).to_have_text("Save")
    assert await page.locator("#duty").count() == 0  # administrators do not watch
    assert await page.locator("#hh-rota-form").count() == 0  # nor plan the rota
    assert page.errors == []
    await page.context.close()
