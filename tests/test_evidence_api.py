"""Evidence through the HTTP API with real logins: request, hold, approval, background export,
download with Range and one-time links, verification, the register, custody, who sees what."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from evidence_media import SEGMENT_US, catalogue_footage, make_segments
from sqlalchemy import select

from controlroom.app import create_app
from controlroom.context import KEYS, SESSIONS
from controlroom.evidence.verify import check_custody, verify_package
from controlroom.timefmt import us_to_iso
from storage.audit import AuditEntry
from storage.holds import list_holds
from storage.models import Hold

FIELDS = {
    "officer_name": "PC Jane Smith", "collar_number": "4521", "force": "Anyshire Police",
    "crime_reference": "AS/12345/26", "offence": "Robbery",
    "necessity": "The robbery happened in view of the cameras; needed to identify the suspect",
    "lawful_basis": "DPA 2018 Schedule 2 Part 1 paragraph 2",
    "authorised_by": "Insp. R. Khan 1022",
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    return make_segments(tmp_path_factory.mktemp("media"), 3)


class Users:
    """Log in as named users on one test client (a login replaces the client's session)."""

    def __init__(self, client, login) -> None:
        self.client, self.login = client, login

    async def as_(self, role: str, name: str) -> dict[str, str]:
        self.client.session.cookie_jar.clear()
        return await self.login(self.client, role, username=name)


@pytest.fixture
async def app_client(db_url, aiohttp_client, settings):
    app = create_app(settings.with_overrides(database_url=db_url), record=False)
    return await aiohttp_client(app)


async def wait_export(client, headers, rid: int, timeout_s: float = 60) -> dict:
    """The request once its export has ended (ready, or the job failed or was cancelled)."""
    async with asyncio.timeout(timeout_s):
        while True:
            resp = await client.get(f"/api/v1/evidence/requests/{rid}", headers=headers)
            body = await resp.json()
            if body["state"] == "ready" or (body["export"] or {}).get("state") in ("failed", "cancelled"):
                return body
            await asyncio.sleep(0.2)


async def audit_actions(app) -> list[str]:
    async with app[SESSIONS]() as session:
        return list((await session.execute(select(AuditEntry.action).order_by(AuditEntry.seq))).scalars())


async def test_whole_flow_request_hold_approve_export_download_verify(app_client, login, sources, settings, tmp_path):
    client, app = app_client, app_client.server.app
    footage = await catalogue_footage(app[SESSIONS], settings.storage_root, sources, cameras=2, skip={1: {1}})
    users = Users(client, login)
    start, end = footage.base_us + 1_000_000, footage.base_us + 3 * SEGMENT_US - 1_000_000
    windows = [{"camera": c, "from": us_to_iso(start), "to": us_to_iso(end)} for c in footage.camera_ids]

    police_a = await users.as_("police", "pc4521")
    resp = await client.post("/api/v1/evidence/requests", json={**FIELDS, "windows": windows}, headers=police_a)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    rid = created["id"]
    assert created["state"] == "submitted" and created["exhibit_reference"].startswith("CR-")
    # What the council recorded (gaps, clock flags) is not shown to the police.
    assert "findings" not in created
    # The hold is in place at once.
    async with app[SESSIONS]() as session:
        holds = [h for h in await list_holds(session) if h.reference == f"evidence:{rid}"]
    assert len(holds) == 1 and {w.camera_id for w in holds[0].windows} == set(footage.camera_ids)

    # Police cannot approve their own (or any) request.
    resp = await client.post(f"/api/v1/evidence/requests/{rid}/approve", json={"reason": "x"}, headers=police_a)
    assert resp.status == 403
    # Officer B sees nothing of it: 404, not 403.
    police_b = await users.as_("police", "pc9999")
    for path in ("", "/package", "/custody"):
        resp = await client.get(f"/api/v1/evidence/requests/{rid}{path}", headers=police_b)
        assert resp.status == 404, path
    resp = await client.post(f"/api/v1/evidence/requests/{rid}/links", headers=police_b)
    assert resp.status == 404
    assert (await (await client.get("/api/v1/evidence/requests", headers=police_b)).json())["requests"] == []

    supervisor = await users.as_("supervisor", "sgt1")
    listed = (await (await client.get("/api/v1/evidence/requests", headers=supervisor)).json())["requests"]
    assert [r["id"] for r in listed] == [rid]
    # The approver sees the hole in camera B's recording before deciding.
    gaps = {w["camera_id"]: w["gaps"] for w in listed[0]["findings"]["windows"]}
    assert gaps[footage.camera_ids[0]] == [] and len(gaps[footage.camera_ids[1]]) == 1
    resp = await client.post(f"/api/v1/evidence/requests/{rid}/approve", json={}, headers=supervisor)
    assert resp.status == 400  # a reason is required
    resp = await client.post(f"/api/v1/evidence/requests/{rid}/approve",
                             json={"reason": "Necessary and proportionate for a robbery investigation"},
                             headers=supervisor)
    assert resp.status == 200, await resp.text()
    ready = await wait_export(client, supervisor, rid)
    assert ready["state"] == "ready", ready["export"]
    assert ready["export"]["state"] == "done" and ready["export"]["percent"] == 100.0
    package_bytes = ready["package"]["bytes"]

    # Download as officer A, resumably: the first 1000 bytes, then the rest.
    police_a = await users.as_("police", "pc4521")
    resp = await client.get(f"/api/v1/evidence/requests/{rid}/package", headers={**police_a, "Range": "bytes=0-999"})
    assert resp.status == 206 and resp.headers["Content-Range"] == f"bytes 0-999/{package_bytes}"
    head = await resp.read()
    resp = await client.get(f"/api/v1/evidence/requests/{rid}/package", headers={**police_a, "Range": "bytes=1000-"})
    assert resp.status == 206
    data = head + await resp.read()
    assert len(data) == package_bytes
    got = tmp_path / "download.zip"
    got.write_bytes(data)
    report = verify_package(got, app[KEYS].public_key_pem())
    assert report.ok, report.problems
    assert report.manifest["produced_for"]["collar_number"] == "4521"

    shown = await (await client.get(f"/api/v1/evidence/requests/{rid}", headers=police_a)).json()
    assert shown["state"] == "downloaded"
    # One-time link: works once, then 410.
    resp = await client.post(f"/api/v1/evidence/requests/{rid}/links", headers=police_a)
    assert resp.status == 201
    url = (await resp.json())["url"]
    client.session.cookie_jar.clear()
    resp = await client.get(url)
    assert resp.status == 200 and len(await resp.read()) == package_bytes
    assert (await client.get(url)).status == 410
    assert (await client.get(url.rsplit("/", 1)[0] + "/not-a-token")).status == 404

    # Register and custody: two releases (session download, link download), each recorded.
    supervisor = await users.as_("supervisor", "sgt1")
    register = (await (await client.get("/api/v1/evidence/register", headers=supervisor)).json())["register"]
    assert len(register) == 2
    entry = register[0]
    assert entry["to"] == "PC Jane Smith (4521), Anyshire Police" and "AS/12345/26" in entry["why"]
    assert entry["lawful_basis"] == FIELDS["lawful_basis"] and entry["what"]["exhibit"] == shown["exhibit_reference"]
    # A HEAD releases nothing; a first download that starts mid-file is still a release.
    resp = await client.head(f"/api/v1/evidence/requests/{rid}/package", headers=supervisor)
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == package_bytes
    resp = await client.get(f"/api/v1/evidence/requests/{rid}/package", headers={**supervisor, "Range": "bytes=5-"})
    assert resp.status == 206 and len(await resp.read()) == package_bytes - 5
    register = (await (await client.get("/api/v1/evidence/register", headers=supervisor)).json())["register"]
    assert [e["released_by"] for e in register] == ["pc4521", "pc4521", "sgt1"]
    custody = await (await client.get(f"/api/v1/evidence/requests/{rid}/custody", headers=supervisor)).read()
    actions = [json.loads(line)["action"] for line in custody.decode().splitlines()]
    assert actions[:4] == ["request.submitted", "request.approved", "export.started", "package.produced"]
    assert actions.count("package.downloaded") == 3
    assert check_custody(custody, app[KEYS].public_key) == []

    # Closing releases the hold, with a review date.
    resp = await client.post(f"/api/v1/evidence/requests/{rid}/close",
                             json={"reason": "Case concluded", "review": "2027-06-01T00:00:00+01:00"}, headers=supervisor)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "closed"
    async with app[SESSIONS]() as session:
        hold = await session.get(Hold, holds[0].id)
    assert hold.released_us is not None and hold.released_by == "sgt1"
    assert (await client.get(f"/api/v1/evidence/requests/{rid}/package", headers=supervisor)).status == 404

    actions = await audit_actions(app)
    for action in ("evidence.request", "evidence.approve", "evidence.export_start", "evidence.export",
                   "evidence.download", "evidence.download_resume", "evidence.link", "evidence.close"):
        assert action in actions, action


async def test_refused_request_produces_nothing(app_client, login, sources, settings):
    client, app = app_client, app_client.server.app
    footage = await catalogue_footage(app[SESSIONS], settings.storage_root, sources, cameras=1)
    users = Users(client, login)
    police = await users.as_("police", "pc1")
    window = {"camera": footage.camera_ids[0], "from": us_to_iso(footage.base_us),
              "to": us_to_iso(footage.base_us + SEGMENT_US)}
    rid = (await (await client.post("/api/v1/evidence/requests", json={**FIELDS, "windows": [window]},
                                    headers=police)).json())["id"]
    supervisor = await users.as_("supervisor", "sgt2")
    resp = await client.post(f"/api/v1/evidence/requests/{rid}/refuse", json={"reason": "Not proportionate"},
                             headers=supervisor)
    assert resp.status == 200 and (await resp.json())["state"] == "refused"
    resp = await client.post(f"/api/v1/evidence/requests/{rid}/approve", json={"reason": "again"}, headers=supervisor)
    assert resp.status == 400
    await asyncio.sleep(0.5)
    body = await (await client.get(f"/api/v1/evidence/requests/{rid}", headers=supervisor)).json()
    assert body["state"] == "refused" and body["export"] is None and body["package"] is None
    async with app[SESSIONS]() as session:  # a refused request holds no footage
        hold = (await session.execute(select(Hold).where(Hold.reference == f"evidence:{rid}"))).scalar_one()
    assert hold.released_us is not None and hold.released_by == "sgt2"
    assert (await client.get(f"/api/v1/evidence/requests/{rid}/package", headers=supervisor)).status == 404
    assert not settings.evidence_root.exists() or not list(settings.evidence_root.rglob("*.zip"))


async def test_bad_requests_are_refused_with_reasons(app_client, login, sources, settings):
    client, app = app_client, app_client.server.app
    footage = await catalogue_footage(app[SESSIONS], settings.storage_root, sources, cameras=1)
    police = await Users(client, login).as_("police", "pc2")
    cam = footage.camera_ids[0]
    good = {"camera": cam, "from": us_to_iso(footage.base_us), "to": us_to_iso(footage.base_us + SEGMENT_US)}
    cases = [
        ({**FIELDS, "necessity": " ", "windows": [good]}, "necessity"),
        ({**FIELDS, "windows": []}, "windows"),
        ({**FIELDS, "windows": [{**good, "from": "2026-11-28T10:00:00"}]}, "offset"),
        ({**FIELDS, "windows": [{**good, "to": good["from"]}]}, "end after"),
        ({**FIELDS, "windows": [{**good, "camera": 424242}]}, "no camera"),
        ({**FIELDS, "colour": "red", "windows": [good]}, "unknown"),
        ({**FIELDS, "windows": [good] * 17}, "at most 16"),
    ]
    for body, words in cases:
        resp = await client.post("/api/v1/evidence/requests", json=body, headers=police)
        assert resp.status == 400, (words, await resp.text())
        assert words in (await resp.json())["error"], words
    async with app[SESSIONS]() as session:
        assert not [h for h in await list_holds(session) if h.reference.startswith("evidence:")]


async def test_operator_cannot_approve_and_admin_cannot_see_requests(app_client, login, sources, settings):
    client, app = app_client, app_client.server.app
    footage = await catalogue_footage(app[SESSIONS], settings.storage_root, sources, cameras=1)
    users = Users(client, login)
    operator = await users.as_("operator", "op1")
    window = {"camera": footage.camera_ids[0], "from": us_to_iso(footage.base_us),
              "to": us_to_iso(footage.base_us + SEGMENT_US)}
    resp = await client.post("/api/v1/evidence/requests", json={**FIELDS, "windows": [window]}, headers=operator)
    assert resp.status == 201  # on an officer's behalf
    rid = (await resp.json())["id"]
    assert (await client.post(f"/api/v1/evidence/requests/{rid}/approve", json={"reason": "x"},
                              headers=operator)).status == 403
    admin = await users.as_("administrator", "admin1")
    assert (await client.get("/api/v1/evidence/requests", headers=admin)).status == 403
    assert "evidence.denied" in await audit_actions(app)


async def test_one_time_link_sends_each_byte_once_whatever_the_range(app_client, login, sources, settings):
    """A used one-time link gave the package again to a Range request (any range not starting at
    byte 0, and several spellings of a whole-file range). Resuming the first download is allowed;
    nothing already sent is sent again, and the refusals are audited."""
    client, app = app_client, app_client.server.app
    footage = await catalogue_footage(app[SESSIONS], settings.storage_root, sources, cameras=1)
    users = Users(client, login)
    window = {"camera": footage.camera_ids[0], "from": us_to_iso(footage.base_us),
              "to": us_to_iso(footage.base_us + 2 * SEGMENT_US)}
    police = await users.as_("police", "pc77")
    rid = (await (await client.post("/api/v1/evidence/requests", json={**FIELDS, "windows": [window]},
                                    headers=police)).json())["id"]
    supervisor = await users.as_("supervisor", "sgt77")
    resp = await client.post(f"/api/v1/evidence/requests/{rid}/approve", json={"reason": "Proportionate"},
                             headers=supervisor)
    assert resp.status == 200, await resp.text()
    size = (await wait_export(client, supervisor, rid))["package"]["bytes"]
    police = await users.as_("police", "pc77")
    url = (await (await client.post(f"/api/v1/evidence/requests/{rid}/links", headers=police)).json())["url"]
    client.session.cookie_jar.clear()

    head = await client.head(url)  # sizing the file releases nothing
    assert head.status == 200 and int(head.headers["Content-Length"]) == size
    first = await client.get(url, headers={"Range": "bytes=0-999"})
    assert first.status == 206 and first.headers["Content-Range"] == f"bytes 0-999/{size}"
    part = await first.read()
    # Nothing before byte 1000 again, however the range is spelt.
    for spelling in ("bytes=0-", "bytes = 0 -", "bytes=500-", "bytes=999-", None):
        resp = await client.get(url, headers={"Range": spelling} if spelling else {})
        assert resp.status == 410, (spelling, resp.status)
    for odd in ("bytes=-100", "bytes=0-0,1-", "items=0-", f"bytes={size}-"):
        assert (await client.get(url, headers={"Range": odd})).status == 416, odd
    rest = await client.get(url, headers={"Range": "bytes=1000-"})  # the resume
    assert rest.status == 206
    data = part + await rest.read()
    assert len(data) == size
    for spelling in ("bytes=1000-", f"bytes={size - 1}-", None):
        resp = await client.get(url, headers={"Range": spelling} if spelling else {})
        assert resp.status == 410, spelling
    actions = await audit_actions(app)
    assert actions.count("evidence.download") == 1 and actions.count("evidence.download_resume") == 1
    assert actions.count("evidence.link_reuse_refused") == 8
    assert actions.count("evidence.download_head") == 1
    async with app[SESSIONS]() as session:
        entries = (await session.execute(select(AuditEntry).where(AuditEntry.action.like("evidence.download%")))).scalars().all()
    assert {e.actor for e in entries} == {"pc77"}
    assert all(json.loads(e.details)["via"] == "link" for e in entries)
