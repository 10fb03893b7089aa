"""The supervisor's reports in the browser, end to end: real service, real Chromium.

Incidents are seeded at known London times in 2026-W48; a supervisor opens the Reports view on
that week and sees the same figures (by category, the heat-map cell, repeat locations), downloads
the PDF (a PDF of that week) and the CSV (the same counts), sends the police edition to an
officer, then opens the statistics table against a comparison period. An operator is offered
no Reports view at all.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import pytest_asyncio
from test_reports import at, pdf_text, seed
from ui_stack import OPERATOR, running_stack, signed_in

from controlroom.context import SESSIONS

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]
SUPERVISOR, POLICE = "sup.rita", "pc.reports"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    async with running_stack(tmp_path_factory.mktemp("ui-reports"), cameras=2, live=0, ptz=0, record=False, users={SUPERVISOR: "supervisor", POLICE: "police"}) as st:
        cam = sorted(st.cameras.values())[0]
        await seed(st.app[SESSIONS], [
            (at(2026, 11, 24, 14, 5), "shoplifting", cam, OPERATOR, "", "arrest_assisted"),
            (at(2026, 11, 24, 14, 35), "shoplifting", cam, OPERATOR, "", None),
            (at(2026, 11, 24, 14, 50), "asb_nuisance", cam, OPERATOR, "", None),
            (at(2026, 11, 28, 22, 15), "violence", None, OPERATOR, "Taxi rank", "police_attended"),
            (at(2025, 11, 25, 10, 0), "shoplifting", cam, OPERATOR, "", None),
        ])
        yield st


async def test_supervisor_reads_downloads_and_sends_the_pack(stack, browser, artifacts: Path, tmp_path: Path):
    page = await signed_in(browser, stack.base_url, SUPERVISOR, "#reports/2026-W48")
    await page.wait_for_selector("#view-reports:not([hidden])")
    await page.wait_for_function("() => document.querySelector('#rp-summary').textContent.includes('incidents')")
    assert "4 incidents, against 0 the week before" in await page.text_content("#rp-summary")
    assert await page.input_value("#rp-week") == "2026-W48"
    row = page.locator('#rp-categories tr[data-key="shoplifting"] td')
    assert await row.all_text_contents() == ["Shoplifting", "2", "0"]
    assert await page.text_content('#rp-heat td[data-cell="1-14"]') == "3"  # Tuesday 14:00
    assert await page.text_content('#rp-heat td[data-cell="5-22"]') == "1"  # Saturday 22:00
    assert "3" in await page.locator("#rp-repeats").text_content()
    await page.wait_for_function("() => ['#rp-chart-heatmap', '#rp-chart-categories'].every("
                                 "s => document.querySelector(s).complete && document.querySelector(s).naturalWidth > 0)")
    await page.screenshot(path=str(artifacts / "reports-tasking.png"), full_page=True)

    async with page.expect_download() as info:
        await page.click("#rp-pdf")
    download = await info.value
    assert download.suggested_filename == "tasking-2026-W48.pdf"
    await download.save_as(tmp_path / "pack.pdf")
    text = pdf_text((tmp_path / "pack.pdf").read_bytes())
    assert "Weekly tasking pack, week 2026-W48" in text and "Busiest hour: Tue 2026-11-24 14:00 with 3" in text

    async with page.expect_download() as info:
        await page.click("#rp-csv")
    download = await info.value
    await download.save_as(tmp_path / "pack.csv")
    rows = list(csv.reader(io.StringIO((tmp_path / "pack.csv").read_text())))
    assert ["category", "Shoplifting", "shoplifting", "2", "0"] in rows
    assert ["hour_of_week", "Tue 14:00", "2026-11-24", "3", ""] in rows

    await page.fill("#rp-recipient", POLICE)
    await page.click("#rp-send")
    await page.wait_for_function("() => document.querySelector('#rp-send-done').textContent !== ''")
    assert await page.text_content("#rp-send-done") == f"Sent the police edition of 2026-W48 to {POLICE}."

    await page.click("#rp-tab-stats")
    await page.wait_for_selector("#rp-part-stats:not([hidden])")
    for field, value in (("#rp-from", "2026-11-01"), ("#rp-to", "2026-11-30"), ("#rp-cfrom", "2025-11-01"),
                         ("#rp-cto", "2025-11-30")):
        await page.fill(field, value)
    await page.click("#rp-stats-show")
    await page.wait_for_function("() => document.querySelector('#rp-stats tr[data-key=\"total\"]') !== null && "
                                 "document.querySelector('#rp-stats').textContent.includes('2026-11-01')")
    cells = await page.locator('#rp-stats tr[data-key="shoplifting"] td').all_text_contents()
    assert cells == ["Shoplifting", "2", "1", "+100.0%"]
    assert await page.locator('#rp-stats tr[data-key="total"] td').all_text_contents() == [
        "All incidents", "4", "1", "+300.0%"]
    assert await page.get_attribute("#rp-stats-csv", "href") == (
        "/api/v1/reports/stats.csv?from=2026-11-01&to=2026-11-30&compare_from=2025-11-01&compare_to=2025-11-30")
    await page.screenshot(path=str(artifacts / "reports-stats.png"), full_page=True)
    assert page.errors == []


async def test_an_operator_has_no_reports_view(stack, browser):
    page = await signed_in(browser, stack.base_url, OPERATOR, "#reports")
    await page.wait_for_selector("#view-grid:not([hidden])")
    assert await page.is_hidden("#nav-reports")
    assert await page.is_hidden("#view-reports")
    assert page.errors == []
