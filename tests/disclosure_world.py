"""One small, real world for the disclosure walk and the narrowing matrix (tests/test_disclosure.py,
tests/test_narrowing.py): two sites, one camera on each, and on each camera everything a route
can disclose, so that every disclosing route can be called and succeed.

- Cameras "Camera Alpha" (site "Site Alpha") and "Camera Bravo" (site "Site Bravo"), streaming
  from the project's simulator (live view and snapshots are real ffmpeg over real RTSP).
- Two catalogued segments of real H.264 footage on each (tests/evidence_media.py).
- ANPR: a read with plate and overview images on each (AA11AAA on Alpha, BB22BBB on Bravo), a
  journey (JJ11JJJ seen on Alpha, then on Bravo), a hotlist hit and its alert on each.
- A camera event on each (storage.onvif).
- An evidence request per camera, submitted by a police officer, approved by a supervisor and
  exported to a package (the real exporter of the app).
- An incident in the occurrence book and a bookmark on each camera, made by the operator.
- A RIPA authorisation per camera (reference ``RIPA-A``, covering that camera) and a subject
  access request per camera with a footage window on it (storage.ripa, storage.sar).
- One logged-in user of each role, each with an API token holding all the role's rights.

Each user is called through explicit headers (a session cookie or a bearer token); the test
client keeps no cookies, so a call is made exactly as the headers say.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from evidence_media import SEGMENT_US
from sqlalchemy import select
from test_evidence_api import FIELDS, wait_export

from controlroom import jobs
from controlroom.app import create_app
from controlroom.auth import COOKIE
from controlroom.context import ALERTS, AUTH, KEYS, SESSIONS, SETTINGS
from controlroom.permissions import Permission, role_permissions
from controlroom.timefmt import us_to_iso
from simulator import Simulation
from storage import accounts, audit, redaction, ripa, sar
from storage.alerts import raise_alert
from storage.anpr.hits import add_hit
from storage.anpr.hotlists import EntrySpec, add_entries, add_hotlist
from storage.anpr.images import save_read_images
from storage.anpr.reads import NewRead, add_read
from storage.audit import AuditEntry
from storage.catalogue import NewSegment, commit_segment
from storage.db import now_us, transaction
from storage.health import open_fault
from storage.holds import add_hold
from storage.inventory import CameraSpec, add_camera
from storage.jobs import Job
from storage.onvif import CameraEvent, add_events
from storage.views import SiteMap, View

S = 1_000_000
PASSWORD = "correct horse battery staple"
JUSTIFIED = {"reason": "disclosure walk", "reference": "TEST/1"}
CAMS = ("A", "B")
VRM = {"A": "AA11AAA", "B": "BB22BBB"}
JOURNEY_VRM = "JJ11JJJ"
NAME = {"A": "Camera Alpha", "B": "Camera Bravo"}
SITE = {"A": "Site Alpha", "B": "Site Bravo"}
ROLES = ("operator", "supervisor", "administrator", "police")
_HASH: list[str] = []


@dataclass
class Who:
    """A user and the two ways they can call: a session cookie (with its CSRF token) or a token."""

    username: str
    role: str
    user_id: int
    cookie: str = ""
    csrf: str = ""
    token: str = ""
    token_name: str = ""

    def headers(self, via: str) -> dict[str, str]:
        if via == "session":
            return {"Cookie": f"{COOKIE}={self.cookie}", "X-CSRF-Token": self.csrf}
        assert via == "token"
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    client: Any
    app: Any
    cam: dict[str, int] = field(default_factory=dict)
    site: dict[str, int] = field(default_factory=dict)
    base_us: int = 0
    read: dict[str, int] = field(default_factory=dict)
    hit: dict[str, int] = field(default_factory=dict)
    alert: dict[str, int] = field(default_factory=dict)
    event: dict[str, int] = field(default_factory=dict)
    fault: dict[str, int] = field(default_factory=dict)  # a camera fault of each camera
    hold: dict[str, int] = field(default_factory=dict)  # a hold on each camera's footage
    request: dict[str, int] = field(default_factory=dict)
    exhibit: dict[str, str] = field(default_factory=dict)
    crime_ref: dict[str, str] = field(default_factory=dict)
    incident: dict[str, int] = field(default_factory=dict)
    bookmark: dict[str, int] = field(default_factory=dict)
    users: dict[str, Who] = field(default_factory=dict)  # by role: the un-narrowed user of each role
    ripa: dict[str, str] = field(default_factory=dict)  # RIPA authorisation reference per camera
    sar: dict[str, int] = field(default_factory=dict)  # subject access request id per camera
    redaction: dict[str, int] = field(default_factory=dict)  # a finished redaction job of each SAR
    sar_window: dict[str, int] = field(default_factory=dict)  # the SAR's window
    release: dict[str, int] = field(default_factory=dict)  # a tasking pack sent to the police user

    def markers(self, c: str) -> list[str]:
        """Strings that only camera ``c``'s data carries (a list naming one of them leaks it)."""
        return [VRM[c], NAME[c], SITE[c], self.exhibit[c], self.crime_ref[c]]

    async def audit_head(self) -> int:
        async with self.app[SESSIONS]() as session:
            return int(await session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1)) or 0)

    async def entries_after(self, seq: int) -> list[tuple[AuditEntry, dict[str, Any]]]:
        async with self.app[SESSIONS]() as session:
            rows = (await session.execute(
                select(AuditEntry).where(AuditEntry.seq > seq).order_by(AuditEntry.seq))).scalars().all()
        return [(e, json.loads(e.details or "{}")) for e in rows]

    async def user(self, role: str, username: str, *, site_ids: list[int] | None = None,
                   camera_ids: list[int] | None = None, scopes: list[str] | None = None) -> Who:
        """A new user of ``role`` (optionally narrowed), logged in, with a token of ``scopes``
        (default: every right of the role)."""
        if not _HASH:
            _HASH.append(await asyncio.to_thread(accounts.hash_password, PASSWORD))
        all_scopes = sorted(p.value for p in role_permissions(role) - {Permission.PUBLIC})
        async with transaction(self.app[SESSIONS]) as session:
            row = await accounts.create_user(session, username, role, _HASH[0], site_ids=site_ids,
                                             camera_ids=camera_ids)
            await audit.append(session, "test", "user.add", f"user:{username}", role=role)
            token, _ = await accounts.create_token(session, f"tok-{username}", row, scopes or all_scopes,
                                                   now_us() + 3600 * S, "test")
        resp = await self.client.post("/api/v1/session", json={"username": username, "password": PASSWORD})
        assert resp.status == 200, await resp.text()
        return Who(username, role, row.id, resp.cookies[COOKIE].value, (await resp.json())["csrf_token"],
                   token, f"tok-{username}")

    async def token_for(self, who: Who, name: str, scopes: list[str]) -> str:
        async with transaction(self.app[SESSIONS]) as session:
            row = await accounts.get_user(session, who.username)
            token, _ = await accounts.create_token(session, name, row, scopes, now_us() + 3600 * S, "test")
        return token

    async def set_scope(self, who: Who, site_ids: list[int] | None, camera_ids: list[int] | None) -> None:
        """Narrow (or widen) an existing user, effective at once (as the API's user update does)."""
        async with transaction(self.app[SESSIONS]) as session:
            row = await accounts.get_user(session, who.username)
            accounts.set_scope(row, site_ids, camera_ids)
        self.app[AUTH].forget_user(who.user_id)


async def _footage(w: World, sources: list[Path]) -> None:
    root = w.app[SETTINGS].storage_root
    for c in CAMS:
        incoming = root / str(w.cam[c]) / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        for i, src in enumerate(sources):
            tmp = incoming / f"{i}.mkv"
            shutil.copyfile(src, tmp)
            start = w.base_us + i * SEGMENT_US
            await commit_segment(w.app[SESSIONS], root, tmp, NewSegment(
                w.cam[c], start, start + SEGMENT_US, codec="h264", width=320, height=240, clock_offset_s=0.1))


async def _anpr(w: World) -> None:
    app = w.app
    root = app[SETTINGS].anpr_root
    t0 = now_us() - 600 * S
    async with transaction(app[SESSIONS]) as session:
        hotlist = await add_hotlist(session, "Walk list", created_by="test")
        entries = await add_entries(session, hotlist.id, [
            EntrySpec(VRM[c], f"wanted {c}", "test", 1, now_us() + 86_400 * S) for c in CAMS], created_by="test")
    for n, c in enumerate(CAMS):
        sightings = [(VRM[c], t0 + n * S), (JOURNEY_VRM, t0 + (100 + 60 * n) * S)]
        for vrm, t in sightings:
            plate, overview = save_read_images(root, t, w.cam[c], b"\xff\xd8\xffplate-" + vrm.encode(),
                                                     b"\xff\xd8\xffoverview-" + vrm.encode())
            async with transaction(app[SESSIONS]) as session:
                read = await add_read(session, NewRead(vrm=vrm, confidence=0.95, read_us=t,
                                                                   camera_id=w.cam[c], plate_path=plate,
                                                                   overview_path=overview))
                if vrm != VRM[c]:
                    continue
                w.read[c] = read.id
                hit = await add_hit(session, read, entries[n])
                alert = await raise_alert(session, app[ALERTS], "anpr_hit", f"{vrm} on hotlist 'Walk list'",
                                          w.cam[c], vrm=vrm, read_id=read.id, hit_id=hit.id)
                hit.alert_id = alert.id
                await session.flush()
                w.hit[c], w.alert[c] = hit.id, alert.id


async def _events(w: World) -> None:
    async with transaction(w.app[SESSIONS]) as session:
        for c in CAMS:
            event = CameraEvent(camera_id=w.cam[c], kind="motion", state=True, at_us=w.base_us + S,
                                camera_time_us=w.base_us + S, received_us=w.base_us + S,
                                topic="tns1:VideoSource/MotionAlarm", source="VideoSourceToken", data={})
            await add_events(session, [event])
            w.event[c] = event.id
            fault = await open_fault(session, "test", w.cam[c], "other", f"lens cracked on {NAME[c]}")
            w.fault[c] = fault.id
            hold = await add_hold(session, reason=f"keep {NAME[c]}", owner="test", review_us=w.base_us + 30 * 86400 * S,
                                  windows=[(w.cam[c], w.base_us, w.base_us + 2 * S)])
            w.hold[c] = hold.id
            # A layout and a site plan shared with the camera's site, named after the camera: a
            # user narrowed to the other camera must not be shown them (tests/test_narrowing.py).
            session.add(View(name=f"layout of {NAME[c]}", kind="layout", owner="test", scope="site", site_id=w.site[c],
                             spec={"layout": 1, "tiles": [w.cam[c]]}, created_us=w.base_us, updated_us=w.base_us))
            session.add(SiteMap(name=f"plan of {NAME[c]}", site_id=w.site[c], media_type="image/png", width=1, height=1,
                                image=b"\x89PNG", pins=[{"camera": w.cam[c], "x": 0.5, "y": 0.5}], created_by="test",
                                created_us=w.base_us, updated_us=w.base_us))


async def _evidence(w: World) -> None:
    police, supervisor = w.users["police"], w.users["supervisor"]
    start, end = w.base_us + S, w.base_us + 2 * SEGMENT_US - S
    for c in CAMS:
        body = {**FIELDS, "crime_reference": f"AS/{VRM[c]}/26",
                "windows": [{"camera": w.cam[c], "from": us_to_iso(start), "to": us_to_iso(end)}]}
        resp = await w.client.post("/api/v1/evidence/requests", json=body, headers=police.headers("session"))
        assert resp.status == 201, await resp.text()
        created = await resp.json()
        w.request[c], w.exhibit[c], w.crime_ref[c] = created["id"], created["exhibit_reference"], body["crime_reference"]
        resp = await w.client.post(f"/api/v1/evidence/requests/{created['id']}/approve",
                                   json={"reason": "necessary and proportionate"}, headers=supervisor.headers("session"))
        assert resp.status == 200, await resp.text()
    for c in CAMS:
        done = await wait_export(w.client, police.headers("session"), w.request[c])
        assert done["state"] == "ready", done


async def _occurrences(w: World) -> None:
    operator = w.users["operator"].headers("session")
    for c in CAMS:
        resp = await w.client.post("/api/v1/incidents", json={
            "category": "shoplifting", "camera": w.cam[c], "occurred_at": us_to_iso(w.base_us + S),
            "summary": f"seen on {NAME[c]}"}, headers=operator)
        assert resp.status == 201, await resp.text()
        w.incident[c] = (await resp.json())["id"]
        resp = await w.client.post("/api/v1/bookmarks", json={
            "camera": w.cam[c], "at": us_to_iso(w.base_us + 2 * S), "note": f"walk bookmark {c}",
            "incident": w.incident[c]}, headers=operator)
        assert resp.status == 201, await resp.text()
        w.bookmark[c] = (await resp.json())["id"]


async def _lawful(w: World) -> None:
    async with transaction(w.app[SESSIONS]) as session:
        for c in CAMS:
            auth = await ripa.create(session, by="test", reference=f"RIPA-{c}", kind="directed_surveillance",
                                     authorising_officer="Supt Walk", grounds="walk", subject="the walk's subject",
                                     authorised_us=now_us(), camera_ids=[w.cam[c]])
            request = await sar.create(session, by="test", requester_name=f"Requester {c}", description="coat",
                                       places_times="here", received_us=now_us(), identity_method="passport")
            window = await sar.add_window(session, request, by="test", camera_id=w.cam[c], start_us=w.base_us + S,
                                          end_us=w.base_us + 2 * S, max_window_us=3600 * S, hold_review_us=now_us())
            w.ripa[c], w.sar[c], w.sar_window[c] = auth.reference, request.id, window.id
            w.redaction[c] = (await redaction.queue(session, request, by="test")).id
    jobs.wake(w.app)  # the service's job runner takes them now: one second of footage each
    for _ in range(1200):
        async with w.app[SESSIONS]() as session:
            states = {(await session.get(Job, j, populate_existing=True)).state for j in w.redaction.values()}
        if states == {"done"}:
            break
        assert not states & {"failed", "cancelled"}, states
        await asyncio.sleep(0.1)


async def _reports(w: World) -> None:
    """A tasking pack sent to the police user, as a supervisor sends one (police edition)."""
    for c in CAMS:
        resp = await w.client.post("/api/v1/reports/tasking/send", json={
            "week": "2026-W48", "recipient": w.users["police"].username, "note": f"walk {c}"},
            headers=w.users["supervisor"].headers("session"))
        assert resp.status == 201, await resp.text()
        w.release[c] = (await resp.json())["id"]


@asynccontextmanager
async def world(aiohttp_client, settings, tmp_path: Path, sources: list[Path],
                prepare: Callable[[World], Awaitable[None]] | None = None,
                camera_painted: bool = False) -> AsyncIterator[World]:
    """``prepare`` runs once the cameras and users exist, before anything is recorded or exported.
    ``camera_painted``: camera Alpha is a live-encoded ONVIF camera that paints the privacy masks
    it is given itself (Media2), rather than a pre-encoded one the service masks."""
    painting = {"Live Town Centre 01": "media2"} if camera_painted else {}
    async with Simulation(tmp_path / "sim", cameras=1 if camera_painted else 2, live=1 if camera_painted else 0,
                          onvif=camera_painted, masks=painting) as sim:
        app = create_app(settings.with_overrides(**{"mqtt.enabled": False}), record=False)
        client = await aiohttp_client(app, cookie_jar=aiohttp.DummyCookieJar())
        w = World(client, app, base_us=(now_us() // S - 3600) * S)
        ordered = sorted(sim.cameras, key=lambda sc: sc.name not in painting)  # the painting one is Alpha
        async with transaction(app[SESSIONS]) as session:
            for c, sim_cam in zip(CAMS, ordered, strict=False):
                cam = await add_camera(session, CameraSpec(
                    name=NAME[c], site=SITE[c], position=f"{NAME[c]} column", main_url=sim_cam.main_url,
                    sub_url=sim_cam.sub_url, username=sim_cam.username, password=sim_cam.password,
                    onvif_xaddr=sim_cam.onvif_xaddr if sim_cam.name in painting else "", recording=False), app[KEYS])
                w.cam[c], w.site[c] = cam.id, cam.site_id
        for role in ROLES:
            w.users[role] = await w.user(role, f"{role}1")
        if prepare is not None:
            await prepare(w)
        await _footage(w, sources)
        await _anpr(w)
        await _events(w)
        await _evidence(w)
        await _occurrences(w)
        await _lawful(w)
        await _reports(w)
        yield w
