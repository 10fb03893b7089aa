"""The reports' API (controlroom.api.reports) through the real app: a supervisor's pack as JSON,
PDF and CSV, the statistics table, sending the police edition to an officer (audited, with no
names, plates or free text in it), the officer reading it, and who is refused."""

from __future__ import annotations

import csv
import io
import json

from evidence_media import add_cameras
from sqlalchemy import select
from test_reports import at, pdf_text, seed

from controlroom.app import create_app
from controlroom.context import AUTH, SESSIONS
from storage.audit import AuditEntry
from storage.db import transaction
from storage.reports import ReportRelease


async def entries(app, action: str) -> list[tuple[AuditEntry, dict]]:
    async with app[SESSIONS]() as session:
        rows = (await session.execute(select(AuditEntry).where(AuditEntry.action == action)
                                      .order_by(AuditEntry.seq))).scalars().all()
    return [(e, json.loads(e.details or "{}")) for e in rows]


async def test_supervisor_reads_sends_and_police_receive(db_url, aiohttp_client, settings, login):
    app = create_app(settings.with_overrides(database_url=db_url), record=False)
    client = await aiohttp_client(app)
    market, = await add_cameras(app[SESSIONS], ["Market Cross"])
    await seed(app[SESSIONS], [
        (at(2026, 11, 24, 14, 5), "shoplifting", market, "op.amy", "Boots doorway", None),
        (at(2026, 11, 24, 14, 20), "shoplifting", market, "op.amy", "", "arrest_assisted"),
        (at(2026, 11, 25, 9, 0), "asb_personal", market, "op.ben", "", None),
        (at(2025, 11, 25, 9, 0), "asb_personal", market, "op.ben", "", None),
    ])

    headers = await login(client, "operator")
    assert (await client.get("/api/v1/reports/tasking?week=2026-W48")).status == 403

    headers = await login(client, "supervisor", "sup.sam")
    resp = await client.get("/api/v1/reports/tasking?week=2026-W48")
    assert resp.status == 200, await resp.text()
    pack = await resp.json()
    assert pack["edition"] == "supervisor" and pack["week"] == "2026-W48" and pack["total"] == 3
    assert pack["heatmap"][1][14] == 2
    assert {c["key"]: c["count"] for c in pack["by_category"]}["shoplifting"] == 2
    assert [c["key"] for c in pack["by_operator"]] == ["op.amy", "op.ben"]
    (entry, details), = await entries(app, "reports.tasking")
    assert entry.actor == "sup.sam" and details["disclosed"] == "personal" and details["week"] == "2026-W48"

    resp = await client.get("/api/v1/reports/tasking.pdf?week=2026-W48")
    assert resp.status == 200 and resp.content_type == "application/pdf"
    assert 'filename="tasking-2026-W48.pdf"' in resp.headers["Content-Disposition"]
    text = pdf_text(await resp.read())
    assert "week 2026-W48" in text and "op.amy" in text
    resp = await client.get("/api/v1/reports/tasking.csv?week=2026-W48")
    rows = list(csv.reader(io.StringIO(await resp.text())))
    assert ["category", "Shoplifting", "shoplifting", "2", "0"] in rows
    resp = await client.get("/api/v1/reports/tasking/chart.png?week=2026-W48&chart=heatmap")
    assert resp.status == 200 and (await resp.read()).startswith(b"\x89PNG")
    assert (await client.get("/api/v1/reports/tasking?week=2026-W60")).status == 400
    assert (await client.get("/api/v1/reports/tasking?week=0001-W01")).status == 400

    resp = await client.get("/api/v1/reports/stats?from=2026-11-01&to=2026-11-30"
                            "&compare_from=2025-11-01&compare_to=2025-11-30")
    table = await resp.json()
    assert resp.status == 200, table
    assert [(r["key"], r["current"], r["previous"], r["change_pct"]) for r in table["rows"][:2]] == [
        ("asb", 1, 1, 0.0), ("asb_personal", 1, 1, 0.0)]
    assert (table["total"]["current"], table["total"]["previous"], table["total"]["change_pct"]) == (3, 1, 200.0)
    resp = await client.get("/api/v1/reports/stats?from=2026-11-30&to=2026-11-01"
                            "&compare_from=2025-11-01&compare_to=2025-11-30")
    assert resp.status == 400 and "ends before it starts" in (await resp.json())["error"]

    # Sending: only to an enabled police account; audited; the content kept is the police edition.
    police_headers = await login(client, "police", "pc.pat")
    headers = await login(client, "supervisor", "sup.sam")
    resp = await client.post("/api/v1/reports/tasking/send", json={"week": "2026-W48", "recipient": "sup.sam"},
                             headers=headers)
    assert resp.status == 400, await resp.text()
    resp = await client.post("/api/v1/reports/tasking/send",
                             json={"week": "2026-W48", "recipient": "pc.pat", "note": "for Thursday"}, headers=headers)
    assert resp.status == 201, await resp.text()
    release_id = (await resp.json())["id"]
    (entry, details), = await entries(app, "reports.send")
    assert entry.actor == "sup.sam" and entry.target == f"report_release:{release_id}"
    assert details["recipient"] == "pc.pat" and details["week"] == "2026-W48" and details["edition"] == "police"
    async with app[SESSIONS]() as session:
        kept = (await session.get(ReportRelease, release_id)).content
    assert kept["edition"] == "police" and kept["total"] == 3
    for private in ("op.amy", "op.ben", "Boots", "sup.sam"):
        assert private.lower() not in json.dumps(kept).lower(), private

    police_headers = await login(client, "police", "pc.pat")
    assert (await client.get("/api/v1/reports/tasking?week=2026-W48")).status == 403
    listing = await (await client.get("/api/v1/reports/released")).json()
    assert [r["id"] for r in listing["releases"]] == [release_id]
    resp = await client.get(f"/api/v1/reports/released/{release_id}")
    got = await resp.json()
    assert resp.status == 200 and got["pack"] == kept and got["note"] == "for Thursday"
    resp = await client.get(f"/api/v1/reports/released/{release_id}.pdf")
    text = pdf_text(await resp.read())
    assert "police edition" in text and "Market Cross" in text and "op.amy" not in text
    assert len(await entries(app, "reports.release_read")) == 2

    # Another officer is not told the pack exists.
    await login(client, "police", "pc.other")
    assert (await client.get(f"/api/v1/reports/released/{release_id}")).status == 404
    assert (await client.get("/api/v1/reports/released/3000000000")).status == 404  # past int4: names nothing
    assert (await (await client.get("/api/v1/reports/released")).json())["releases"] == []
    assert police_headers


async def test_a_narrowed_supervisor_is_refused_the_reports(aiohttp_client, settings, login):
    """A pack counts every camera, site and operator: it cannot be cut to some cameras."""
    from storage import accounts

    app = create_app(settings, record=False)
    client = await aiohttp_client(app)
    cam, _ = await add_cameras(app[SESSIONS], ["Their Camera", "Another Camera"])
    await login(client, "supervisor", "sup.narrow")
    async with transaction(app[SESSIONS]) as session:
        user = await accounts.get_user(session, "sup.narrow")
        accounts.set_scope(user, None, [cam])
    app[AUTH].forget_user(user.id)
    resp = await client.get("/api/v1/reports/tasking?week=2026-W48")
    assert resp.status == 403, await resp.text()
    assert (await client.get("/api/v1/reports/stats?from=2026-11-01&to=2026-11-30"
                             "&compare_from=2025-11-01&compare_to=2025-11-30")).status == 403
