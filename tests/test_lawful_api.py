"""RIPA authorisations and subject access requests through the real app: the register's routes
and rights, directed use linking real PTZ moves on the simulator to an authorisation in the
audit trail, the IPCO report, the warning on police requests, SAR footage windows with the
catalogue's gaps and the hold, the reminder check raising alerts, and the CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from contextlib import redirect_stdout
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from evidence_media import add_cameras
from sqlalchemy import select
from test_evidence_api import FIELDS, Users

from controlroom.app import create_app
from controlroom.cli import main as cli_main
from controlroom.context import SESSIONS
from controlroom.lawful import check_reminders
from controlroom.timefmt import us_to_iso
from simulator import Simulation
from storage import sar
from storage.audit import AuditEntry
from storage.db import now_us, transaction
from storage.models import Hold
from storage.months import local_date, month_deadline

DAY = 86_400_000_000
HOUR = 3_600_000_000


def _authorisation(ref: str, **kw) -> dict:
    body = {"reference": ref, "authorising_officer": "Supt A Jones", "grounds": "prevention of crime",
            "subject": "Male, 30s, red jacket, known as 'Tall Tom'", "authorised": us_to_iso(now_us())}
    body.update(kw)
    return body


@pytest.fixture
async def client(db_url, aiohttp_client, settings):
    return await aiohttp_client(create_app(settings.with_overrides(database_url=db_url), record=False))


async def test_ripa_register_rights_and_lifecycle(client, login):
    users = Users(client, login)
    (cam,) = await add_cameras(client.server.app[SESSIONS], ["Market Cam"])
    sup = await users.as_("supervisor", "sup1")
    resp = await client.post("/api/v1/ripa/authorisations", json=_authorisation("OP-1", cameras=[cam]), headers=sup)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["state"] == "live" and created["cameras"] == [cam]
    # Expiry: three months beginning with the day granted, 00:00 London of the corresponding date.
    granted = local_date(now_us())
    assert created["expires"]["local"][:10] > str(granted + timedelta(days=85))
    resp = await client.post("/api/v1/ripa/authorisations", json=_authorisation("OP-1"), headers=sup)
    assert resp.status == 400 and "already" in (await resp.json())["error"]
    resp = await client.post("/api/v1/ripa/authorisations", headers=sup,
                             json=_authorisation("OP-2", expires=us_to_iso(now_us() + 120 * DAY)))
    assert resp.status == 400 and "at most 3 months" in (await resp.json())["error"]

    resp = await client.post("/api/v1/ripa/authorisations/OP-1/review", headers=sup,
                             json={"officer": "Supt A Jones", "note": "still necessary",
                                   "next_review": us_to_iso(now_us() + 14 * DAY)})
    assert resp.status == 200, await resp.text()
    resp = await client.post("/api/v1/ripa/authorisations/OP-1/renew", headers=sup,
                             json={"officer": "Supt A Jones", "note": "the operation continues"})
    renewed = await resp.json()
    assert resp.status == 200 and renewed["renewals"] == 1 and renewed["expires"]["utc"] > created["expires"]["utc"]
    resp = await client.get("/api/v1/ripa/authorisations/OP-1", headers=sup)
    shown = await resp.json()
    assert [e["kind"] for e in shown["events"]] == ["review", "renewal"]

    # Operators read what is in force (to link directed use), never the register or its changes.
    op = await users.as_("operator", "op1")
    resp = await client.get("/api/v1/ripa/in-force", headers=op)
    in_force = (await resp.json())["authorisations"]
    assert [a["reference"] for a in in_force] == ["OP-1"] and "grounds" not in in_force[0]
    assert (await client.get("/api/v1/ripa/authorisations", headers=op)).status == 403
    assert (await client.post("/api/v1/ripa/authorisations", json=_authorisation("OP-3"), headers=op)).status == 403
    police = await users.as_("police", "pc1")
    assert (await client.get("/api/v1/ripa/in-force", headers=police)).status == 403

    sup = await users.as_("supervisor", "sup1")
    resp = await client.post("/api/v1/ripa/authorisations/OP-1/cancel", headers=sup,
                             json={"officer": "Supt A Jones", "reason": "suspect arrested"})
    assert (await resp.json())["state"] == "cancelled"
    resp = await client.get("/api/v1/ripa/authorisations?state=cancelled", headers=sup)
    assert [a["reference"] for a in (await resp.json())["authorisations"]] == ["OP-1"]


async def test_police_request_citing_a_named_person_warns_the_supervisor(client, login):
    users = Users(client, login)
    (cam,) = await add_cameras(client.server.app[SESSIONS], ["Market Cam"])
    sup = await users.as_("supervisor", "sup1")
    resp = await client.post("/api/v1/ripa/authorisations", json=_authorisation("OP-LIVE"), headers=sup)
    assert resp.status == 201
    window = [{"camera": cam, "from": us_to_iso(now_us() - 2 * HOUR), "to": us_to_iso(now_us() - HOUR)}]
    police = await users.as_("police", "pc1")
    ids = {}
    for name, extra in (("none", {}), ("flagged", {"directed_surveillance": True}),
                        ("unknown", {"directed_surveillance": True, "ripa_reference": "OP-NOPE"}),
                        ("live", {"directed_surveillance": True, "ripa_reference": "OP-LIVE"})):
        resp = await client.post("/api/v1/evidence/requests", json={**FIELDS, "windows": window, **extra},
                                 headers=police)
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert "ripa_warning" not in body  # the police do not see the council's warning
        ids[name] = body["id"]
    sup = await users.as_("supervisor", "sup1")
    warnings = {}
    for name, rid in ids.items():
        warnings[name] = (await (await client.get(f"/api/v1/evidence/requests/{rid}", headers=sup)).json())["ripa_warning"]
    assert warnings["none"] is None and warnings["live"] is None
    assert "names no RIPA authorisation" in warnings["flagged"]
    assert "not in the register" in warnings["unknown"]
    # The supervisor deciding sees it in the decision's answer too.
    resp = await client.post(f"/api/v1/evidence/requests/{ids['flagged']}/refuse", headers=sup,
                             json={"reason": "no RIPA authorisation for surveillance of a named person"})
    assert "names no RIPA authorisation" in (await resp.json())["ripa_warning"]


async def test_sar_register_windows_gaps_hold_and_close(client, login):
    users = Users(client, login)
    (cam,) = await add_cameras(client.server.app[SESSIONS], ["Market Cam"])
    op = await users.as_("operator", "op1")
    assert (await client.get("/api/v1/sar/requests", headers=op)).status == 403
    sup = await users.as_("supervisor", "dpo1")
    resp = await client.post("/api/v1/sar/requests", headers=sup, json={
        "requester_name": "Jane Doe", "received": us_to_iso(now_us() - DAY),
        "description": "woman, 40s, green coat", "places_times": "Market Square, yesterday about 14:00"})
    assert resp.status == 201, await resp.text()
    s = await resp.json()
    assert s["state"] == "awaiting_identity" and s["deadline"]["utc"] is None
    resp = await client.post(f"/api/v1/sar/requests/{s['id']}/verify", json={"method": "passport seen"}, headers=sup)
    s = await resp.json()
    assert s["state"] == "open" and s["deadline"]["utc"] == us_to_iso(month_deadline(local_date(now_us()), 1))
    assert 27 < s["days_left"] < 32
    start = now_us() - 3 * HOUR
    resp = await client.post(f"/api/v1/sar/requests/{s['reference']}/windows", headers=sup, json={
        "camera": "Market Cam", "from": us_to_iso(start), "to": us_to_iso(start + HOUR)})
    assert resp.status == 201, await resp.text()
    s = await resp.json()
    # Nothing was recorded then: the catalogue's answer is shown, not hidden.
    (found,) = s["findings"]["windows"]
    assert found["missing"] is True and s["findings"]["any_missing"] is True
    async with client.server.app[SESSIONS]() as session:
        hold = await session.get(Hold, s["hold_id"])
        assert hold.reference == f"sar:{s['id']}" and hold.released_us is None
    resp = await client.post(f"/api/v1/sar/requests/{s['id']}/extend", json={"reason": "many cameras"}, headers=sup)
    assert (await resp.json())["extended"] is True
    resp = await client.post(f"/api/v1/sar/requests/{s['id']}/close", headers=sup,
                             json={"state": "refused", "outcome": "not disclosed"})
    assert resp.status == 400 and "exemption" in (await resp.json())["error"]
    resp = await client.post(f"/api/v1/sar/requests/{s['id']}/close", headers=sup,
                             json={"state": "disclosed", "outcome": "one redacted clip"})
    assert (await resp.json())["state"] == "disclosed"
    async with client.server.app[SESSIONS]() as session:
        assert (await session.get(Hold, s["hold_id"])).released_us is not None
    resp = await client.get("/api/v1/sar/requests?open=1", headers=sup)
    assert (await resp.json())["requests"] == []


async def test_reminders_raise_each_alert_once(client, login):
    app = client.server.app
    sessions = app[SESSIONS]
    async with transaction(sessions) as session:
        from storage import ripa

        await ripa.create(session, by="sup", reference="OP-SOON", kind="directed_surveillance",
                          authorising_officer="Supt A", grounds="g", subject="s", authorised_us=now_us(),
                          expires_us=now_us() + 2 * DAY, next_review_us=now_us() + DAY)
        await ripa.create(session, by="sup", reference="OP-LATER", kind="directed_surveillance",
                          authorising_officer="Supt A", grounds="g", subject="s", authorised_us=now_us(),
                          next_review_us=now_us() + 20 * DAY)
        await sar.create(session, by="dpo", requester_name="J", description="d", places_times="p",
                         received_us=now_us() - 28 * DAY, identity_method="passport")
    raised = await check_reminders(sessions, None, _lawful(app))
    kinds = sorted((a["kind"], a["data"]["reference"][:6]) for a in raised)
    assert kinds == [("ripa_expiry", "OP-SOO"), ("ripa_review", "OP-SOO"), ("sar_due", "SAR-20")], kinds
    assert await check_reminders(sessions, None, _lawful(app)) == []
    # At (and after) the expiry: expired, once.
    raised = await check_reminders(sessions, None, _lawful(app), now=now_us() + 3 * DAY)
    assert [a["kind"] for a in raised if a["kind"].startswith("ripa")] == ["ripa_expired"]


def _lawful(app):
    from controlroom.context import SETTINGS

    return app[SETTINGS].lawful


def _cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli_main(argv)
    return code, out.getvalue()


async def test_directed_use_links_ptz_moves_and_the_ipco_report(settings, tmp_path: Path, login):
    """A real PTZ camera (the simulator's), adopted over ONVIF: moves made during a directed use
    carry the authorisation in the audit trail; the report (API and CLI, JSON and CSV) lists them."""
    settings = settings.with_overrides(**{"mqtt.enabled": False})
    async with Simulation(tmp_path / "sim", cameras=0, ptz=1, onvif=True) as sim:
        (sc,) = sim.cameras
        app = create_app(settings, record=False)
        async with TestClient(TestServer(app)) as client:
            users = Users(client, login)
            admin = await users.as_("administrator", "admin1")
            resp = await client.post("/api/v1/cameras/adopt", headers=admin, json={
                "xaddr": sc.onvif_xaddr, "username": sc.username, "password": sc.password, "name": "PTZ 1"})
            assert resp.status == 201, await resp.text()
            cid = (await resp.json())["camera"]["id"]
            sup = await users.as_("supervisor", "sup1")
            resp = await client.post("/api/v1/ripa/authorisations", headers=sup,
                                     json=_authorisation("OP-FOLLOW", cameras=["PTZ 1"]))
            assert resp.status == 201, await resp.text()
            op = await users.as_("operator", "op1")
            move = {"pan": 0.5, "tilt": 0.0, "zoom": 0.0, "timeout_s": 0.3}
            assert (await client.post(f"/api/v1/cameras/{cid}/ptz/move", json=move, headers=op)).status == 200
            resp = await client.post("/api/v1/ripa/directed-use", headers=op, json={
                "authorisation": "OP-FOLLOW", "camera": cid, "purpose": "following the subject for DC Smith"})
            assert resp.status == 201, await resp.text()
            use = await resp.json()
            assert (await client.post(f"/api/v1/cameras/{cid}/ptz/move", json=move, headers=op)).status == 200
            resp = await client.post("/api/v1/ripa/directed-use/end", json={"use": use["id"]}, headers=op)
            assert resp.status == 200 and (await resp.json())["ended"]["utc"]
            assert (await client.post(f"/api/v1/cameras/{cid}/ptz/stop", headers=op)).status == 200
            async with app[SESSIONS]() as session:
                moves = (await session.execute(select(AuditEntry).where(AuditEntry.action.like("ptz.%"))
                                               .order_by(AuditEntry.seq))).scalars().all()
            linked = [json.loads(e.details).get("ripa") for e in moves]
            assert linked == [None, "OP-FOLLOW", None], linked

            sup = await users.as_("supervisor", "sup1")
            frm, to = us_to_iso(now_us() - HOUR), us_to_iso(now_us() + HOUR)
            resp = await client.get("/api/v1/ripa/report", params={"from": frm, "to": to}, headers=sup)
            report = await resp.json()
            (auth,) = report["authorisations"]
            assert auth["reference"] == "OP-FOLLOW" and len(auth["directed_uses"]) == 1
            actions = [e["action"] for e in auth["audit"]]
            assert actions == ["ripa.create", "ripa.use_start", "ptz.move", "ripa.use_end"], actions
            resp = await client.get("/api/v1/ripa/report", params={"from": frm, "to": to, "format": "csv"},
                                    headers=sup)
            rows = list(csv.DictReader(io.StringIO(await resp.text())))
            assert [r["row"] for r in rows] == ["authorisation", "directed_use", "audit", "audit", "audit", "audit"]

        code, out = await asyncio.to_thread(_cli, ["--data-dir", str(settings.data_dir), "ripa", "report",
                                                   "--from", frm, "--to", to, "--format", "csv"])
        assert code == 0 and "OP-FOLLOW" in out and "ptz.move" in out


def test_cli_ripa_and_sar(settings):
    d = ["--data-dir", str(settings.data_dir)]
    today = str(local_date(now_us()))
    code, out = _cli([*d, "ripa", "add", "OP-CLI", "--officer", "Supt B", "--grounds", "public safety",
                      "--subject", "woman in a yellow coat", "--authorised", today])
    assert code == 0 and "OP-CLI recorded: live" in out
    code, out = _cli([*d, "ripa", "list", "--json"])
    assert code == 0 and json.loads(out)[0]["reference"] == "OP-CLI"
    code, out = _cli([*d, "cameras", "add", "Cam CLI", "--main-url", "rtsp://127.0.0.1:1/main"])
    assert code == 0, out
    code, out = _cli([*d, "ripa", "use", "start", "OP-CLI", "Cam CLI", "--purpose", "following at police request"])
    assert code == 0 and "opened" in out, out
    code, out = _cli([*d, "ripa", "use", "list"])
    assert "OP-CLI" in out
    code, out = _cli([*d, "ripa", "cancel", "OP-CLI", "--officer", "Supt B", "--note", "done"])
    assert code == 0 and "now cancelled" in out
    code, out = _cli([*d, "ripa", "use", "list"])
    assert "OP-CLI" not in out  # the cancellation ended the use
    code, out = _cli([*d, "sar", "add", "John Roe", "--received", today, "--identity", "driving licence",
                      "--description", "man, blue cap", "--places-times", "bus station, 9am"])
    assert code == 0 and ": open, deadline " in out
    code, out = _cli([*d, "sar", "list", "--json"])
    (row,) = json.loads(out)
    assert row["deadline_day"] == str(local_date(month_deadline(local_date(now_us()), 1) - 1))
    code, out = _cli([*d, "sar", "close", row["reference"], "withdrawn", "--outcome", "requester withdrew"])
    assert code == 0 and "withdrawn" in out


async def test_a_failing_reminder_check_is_shown_by_healthz_until_one_succeeds(aiohttp_client, settings, monkeypatch):
    """The reminder loop (storage.loops) logs a failed check and /healthz says so; the next
    successful check clears it."""
    import controlroom.lawful as lawful

    broken = asyncio.Event()
    real = lawful.check_reminders

    async def check(*args, **kwargs):
        if broken.is_set():
            raise RuntimeError("database on fire")
        return await real(*args, **kwargs)

    monkeypatch.setattr(lawful, "check_reminders", check)
    broken.set()
    client = await aiohttp_client(create_app(settings.with_overrides(**{"lawful.check_interval_s": 0.2}), record=False))

    async def healthz() -> tuple[int, str]:
        answer = await client.get("/healthz")
        return answer.status, await answer.text()

    for _ in range(50):
        status, text = await healthz()
        if status == 503:
            break
        await asyncio.sleep(0.1)
    assert status == 503 and "RIPA/SAR reminder check failed: RuntimeError: database on fire" in text
    broken.clear()
    for _ in range(50):
        status, text = await healthz()
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert status == 200 and "reminder check failed" not in text
