"""The disclosure walk (issue 11, "What to build" 2): generated from the app's router, so that a new
route cannot escape it.

1. Declarations: every GET route must declare what it discloses (``@requires(...,
   discloses=...)``), unless it is in ``NOT_DISCLOSING`` below with the reason it hands out
   no footage, images, plate data or personal data.
2. Disclosures: every route that declares ``discloses`` is called, in a seeded world
   (tests/disclosure_world.py), by a user holding its right, once with a session and once with
   an API token: it succeeds and writes exactly one disclosure entry to the audit trail, under
   its declared action, naming the user, how they came and the token. ``URLS`` fills each route's
   path and query; a disclosing route missing from it fails the walk.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from disclosure_world import JUSTIFIED, SITE, World, world
from evidence_media import SEGMENT_US, make_segments
from test_auth_matrix import app_routes

from controlroom.app import create_app
from controlroom.context import SESSIONS
from controlroom.permissions import Permission, role_permissions, route_spec
from controlroom.timefmt import us_to_iso
from storage.db import now_us
from storage.evidence import custody_log

# Every GET route declares what it discloses, or is here with the reason it discloses nothing
# that the trail must record. A new GET route is in neither and fails the test until someone
# decides (the data rights are live view, playback, ANPR, audit, approve, admin, evidence).
NOT_DISCLOSING = {
    "/": "the web UI's page (no data; the data comes through the API)",
    "/login": "the login page",
    "/static/{path}": "the web UI's scripts and styles",
    "/healthz": "whether the service runs: no camera's data, no one's data",
    "/metrics": "recording health as numbers (states, bytes, reconnects): no footage, no one's data",
    "/api/v1/session": "the caller's own account and CSRF token",
    "/api/v1/session/tokens": "the caller's own API tokens (names, scopes, expiry; never a secret)",
    "/api/v1/openapi.json": "the API's contract: routes, rights and models, no data",
    "/api/v1/cameras": "camera configuration for the screens (names, sites, state): no footage, no people",
    "/api/v1/cameras/{camera}": "one camera's configuration (no credentials): no footage, no people",
    "/api/v1/cameras/{camera}/ptz": "where a PTZ camera points: no footage",
    "/api/v1/sar/requests/{id}/redaction": "a SAR's redaction jobs (progress, counts) and marks (frame numbers, "
                                           "boxes, staff names): no footage, nothing of anyone filmed",
    "/api/v1/cameras/{camera}/masks": "a camera's privacy mask polygons and who set them, when and why: "
                                       "the masks are configuration, not footage (each change audited)",
    "/api/v1/cameras/{camera}/ptz/presets": "a PTZ camera's preset names",
    "/api/v1/anpr/hotlists": "the hotlists' names and entry counts",
    "/api/v1/anpr/hotlists/{hotlist}": "the council's own watch list, kept by the supervisors and administrators "
                                       "who read it (each change audited): no camera's sightings of anyone",
    "/api/v1/evidence/public-key": "the service's public signing key: published on purpose, no one's data",
    "/api/v1/evidence/cameras": "camera id, name, site and position, for the police request form: "
                                "no footage, no state, no people (docs/design/security-model.md)",
    "/api/v1/audit/verify": "whether the chain verifies: counts and hashes, not the entries "
                            "(itself audited as audit.verify)",
    "/api/v1/incidents/vocabulary": "the occurrence book's fixed categories, outcomes and who-was-told labels",
    "/api/v1/duty": "the caller's own duty state and how many are on duty (no names)",
    "/api/v1/duty/week": "hours of a week staffed and planned, as numbers and intervals: no names",
    "/api/v1/rota": "the planned weekly coverage windows: times and staff numbers, no names",
    "/api/v1/faults": "camera faults: which camera, what, when, the contractor's reference; the staff "
                      "member who reported one is a work record, like an alert's acknowledgement",
    "/api/v1/views": "named layouts and tours: camera ids per tile or step, cut to the caller's cameras; "
                     "the owner's name is a work record",
    "/api/v1/maps": "site plans' names, sizes and pin positions of the caller's cameras: no footage",
    "/api/v1/maps/{map}/image": "a site plan or map picture a supervisor uploaded: a drawing of the site, not footage",
    "/api/v1/sites": "the sites' names, locations and camera counts: no footage, no people",
    "/api/v1/system": "disk space, each camera's recorder state and the database's answer: no footage, no people",
    "/api/v1/health/availability": "each camera's recorded share of a week and its gaps: no footage",
    "/api/v1/health/pictures": "measures of each camera's last picture check (brightness, sharpness, "
                               "a verdict): numbers, not the picture",
    "/api/v1/health/masks": "who paints each camera's privacy masks, since when and why: no polygons, no footage",
    "/api/v1/reports/stats": "incidents counted by category in two periods: no one's data",
    "/api/v1/reports/stats.pdf": "the same counts as a PDF",
    "/api/v1/reports/stats.csv": "the same counts as CSV",
    "/api/v1/reports/tasking/chart.png": "counts by category or hour of the week drawn as a chart: no names, "
                                         "plates or pictures of anyone",
    "/api/v1/reports/released": "the week and time of the packs sent to the caller",
}
REQUEST_TIMEOUT_S = 30


def get_routes(app) -> list[tuple[str, object]]:
    return [(r.resource.canonical, route_spec(r.handler)) for m, _, r in app_routes(app)
            if m == "GET" and r.resource is not None]


async def test_every_data_route_declares_what_it_discloses(settings):
    app = create_app(settings, record=False)
    missing, stale = [], []
    for canonical, spec in get_routes(app):
        if spec.discloses is not None:
            assert spec.action, f"{canonical} discloses {spec.discloses} under no audit action"
            if canonical in NOT_DISCLOSING:
                stale.append(canonical)
        elif canonical not in NOT_DISCLOSING:
            missing.append(f"GET {canonical} ({spec.permission.value})")
    assert not missing, f"routes that return data without declaring discloses=: {missing}"
    assert not stale, f"NOT_DISCLOSING names routes that now declare a disclosure: {stale}"
    known = {c for c, _ in get_routes(app)}
    assert set(NOT_DISCLOSING) <= known, f"NOT_DISCLOSING names routes that no longer exist: {set(NOT_DISCLOSING) - known}"


# --- the disclosure walk --------------------------------------------------------------------------

UrlBuilder = Callable[[World, str], "str | Awaitable[str]"]


def _iso(us: int) -> str:
    return quote(us_to_iso(us))  # "+00:00" in a query is a space unless encoded


async def _link(w: World, c: str, via: str = "session") -> str:
    """A fresh one-time link to camera ``c``'s package, made by its police officer."""
    resp = await w.client.post(f"/api/v1/evidence/requests/{w.request[c]}/links",
                               headers=w.users["police"].headers(via))
    assert resp.status == 201, await resp.text()
    return (await resp.json())["url"]


# How to call each disclosing route on camera ``c``'s data ("GET <canonical>" -> URL).
URLS: dict[str, UrlBuilder] = {
    "/api/v1/alerts": lambda w, c: "/api/v1/alerts?limit=100",
    "/api/v1/alerts/ws": lambda w, c: "/api/v1/alerts/ws",
    "/api/v1/anpr/hits": lambda w, c: "/api/v1/anpr/hits",
    "/api/v1/anpr/hits/{hit}": lambda w, c: f"/api/v1/anpr/hits/{w.hit[c]}",
    "/api/v1/anpr/hits/{hit}/{image}.jpg": lambda w, c: f"/api/v1/anpr/hits/{w.hit[c]}/plate.jpg",
    "/api/v1/anpr/journeys": lambda w, c: (f"/api/v1/anpr/journeys?from_site={SITE['A']}&to_site={SITE['B']}"
                                           f"&reason={JUSTIFIED['reason']}&reference={JUSTIFIED['reference']}"),
    "/api/v1/anpr/reads": lambda w, c: f"/api/v1/anpr/reads?vrm=*&reason={JUSTIFIED['reason']}&reference=T1",
    "/api/v1/anpr/reads.csv": lambda w, c: f"/api/v1/anpr/reads.csv?vrm=*&reason={JUSTIFIED['reason']}&reference=T1",
    "/api/v1/anpr/reads/{read}/{image}.jpg": lambda w, c: f"/api/v1/anpr/reads/{w.read[c]}/overview.jpg",
    "/api/v1/audit": lambda w, c: "/api/v1/audit?limit=20",
    "/api/v1/cameras/{camera}/events": lambda w, c: f"/api/v1/cameras/{w.cam[c]}/events",
    "/api/v1/cameras/{camera}/live": lambda w, c: f"/api/v1/cameras/{w.cam[c]}/live?stream=sub",
    "/api/v1/cameras/{camera}/playback": lambda w, c: f"/api/v1/cameras/{w.cam[c]}/playback?at={_iso(w.base_us + 1_000_000)}",
    "/api/v1/cameras/{camera}/playback/stream.mp4":
        lambda w, c: f"/api/v1/cameras/{w.cam[c]}/playback/stream.mp4?start_us={w.base_us}",
    "/api/v1/cameras/{camera}/recordings":
        lambda w, c: (f"/api/v1/cameras/{w.cam[c]}/recordings?from={_iso(w.base_us - SEGMENT_US)}"
                      f"&to={_iso(w.base_us + 3 * SEGMENT_US)}"),
    "/api/v1/cameras/{camera}/still.png": lambda w, c: f"/api/v1/cameras/{w.cam[c]}/still.png?at={_iso(w.base_us + 1_000_000)}",
    "/api/v1/cameras/{camera}/clip.mp4":
        lambda w, c: f"/api/v1/cameras/{w.cam[c]}/clip.mp4?from={_iso(w.base_us + 1_000_000)}&to={_iso(w.base_us + 5_000_000)}",
    "/api/v1/cameras/{camera}/snapshot.jpg": lambda w, c: f"/api/v1/cameras/{w.cam[c]}/snapshot.jpg?stream=sub",
    "/api/v1/cameras/{camera}/masks/snapshot.jpg": lambda w, c: f"/api/v1/cameras/{w.cam[c]}/masks/snapshot.jpg",
    "/api/v1/duty/sessions": lambda w, c: "/api/v1/duty/sessions",
    "/api/v1/evidence/download/{token}": _link,
    "/api/v1/evidence/register": lambda w, c: "/api/v1/evidence/register",
    "/api/v1/evidence/requests": lambda w, c: "/api/v1/evidence/requests",
    "/api/v1/evidence/requests/{id}": lambda w, c: f"/api/v1/evidence/requests/{w.request[c]}",
    "/api/v1/evidence/requests/{id}/custody": lambda w, c: f"/api/v1/evidence/requests/{w.request[c]}/custody",
    "/api/v1/evidence/requests/{id}/package": lambda w, c: f"/api/v1/evidence/requests/{w.request[c]}/package",
    "/api/v1/incidents": lambda w, c: "/api/v1/incidents",
    "/api/v1/holds": lambda w, c: "/api/v1/holds",
    "/api/v1/incidents/{incident}": lambda w, c: f"/api/v1/incidents/{w.incident[c]}",
    "/api/v1/bookmarks": lambda w, c: "/api/v1/bookmarks",
    "/api/v1/ripa/authorisations": lambda w, c: "/api/v1/ripa/authorisations",
    "/api/v1/ripa/authorisations/{id}": lambda w, c: f"/api/v1/ripa/authorisations/{w.ripa[c]}",
    "/api/v1/ripa/directed-use": lambda w, c: "/api/v1/ripa/directed-use",
    "/api/v1/ripa/in-force": lambda w, c: "/api/v1/ripa/in-force",
    "/api/v1/ripa/report": lambda w, c: f"/api/v1/ripa/report?from={_iso(w.base_us)}&to={_iso(now_us() + 1_000_000)}",
    "/api/v1/sar/requests": lambda w, c: "/api/v1/sar/requests",
    "/api/v1/sar/requests/{id}": lambda w, c: f"/api/v1/sar/requests/{w.sar[c]}",
    "/api/v1/sar/requests/{id}/redaction/{job}/package":
        lambda w, c: f"/api/v1/sar/requests/{w.sar[c]}/redaction/{w.redaction[c]}/package",
    "/api/v1/sar/requests/{id}/windows/{window}/boxes":
        lambda w, c: f"/api/v1/sar/requests/{w.sar[c]}/windows/{w.sar_window[c]}/boxes?frame=3",
    "/api/v1/sar/requests/{id}/windows/{window}/frame.jpg":
        lambda w, c: f"/api/v1/sar/requests/{w.sar[c]}/windows/{w.sar_window[c]}/frame.jpg?frame=3",
    "/api/v1/reports/released/{release}": lambda w, c: f"/api/v1/reports/released/{w.release[c]}",
    "/api/v1/reports/released/{release}.pdf": lambda w, c: f"/api/v1/reports/released/{w.release[c]}.pdf",
    "/api/v1/reports/tasking": lambda w, c: "/api/v1/reports/tasking?week=2026-W48",
    "/api/v1/reports/tasking.csv": lambda w, c: "/api/v1/reports/tasking.csv?week=2026-W48",
    "/api/v1/reports/tasking.pdf": lambda w, c: "/api/v1/reports/tasking.pdf?week=2026-W48",
    "/api/v1/tokens": lambda w, c: "/api/v1/tokens",
    "/api/v1/users": lambda w, c: "/api/v1/users",
    "/api/v1/users/{username}": lambda w, c: f"/api/v1/users/{w.users['police'].username}",
}
WEBSOCKETS = {"/api/v1/alerts/ws", "/api/v1/cameras/{camera}/live"}


async def url_for(w: World, canonical: str, c: str, via: str = "session") -> str:
    built = URLS[canonical](w, c) if canonical != "/api/v1/evidence/download/{token}" else _link(w, c, via)
    return await built if inspect.isawaitable(built) else built


def walker(w: World, permission: Permission):
    """Who calls a route of this right: the requests' owner for the evidence routes every user
    may call (the handler then shows them their own), else the first role that holds it."""
    if permission is Permission.AUTHENTICATED:
        return w.users["police"]
    for role in ("operator", "supervisor", "administrator", "police"):
        if permission in role_permissions(role):
            return w.users[role]
    raise AssertionError(f"no role holds {permission}")


async def fetch(w: World, canonical: str, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """Call the route: (status, body). A WebSocket is opened (and, for live view, its first
    message read: the stream really started), then closed."""
    async with asyncio.timeout(REQUEST_TIMEOUT_S):
        if canonical in WEBSOCKETS:
            try:
                async with w.client.ws_connect(url, headers=headers) as ws:
                    first = b""
                    if canonical.endswith("/live"):
                        first = (await ws.receive_str(timeout=20)).encode()
                    return 101, first
            except Exception as exc:  # a refused upgrade: its status is the answer
                status = getattr(exc, "status", None)
                if status is None:
                    raise
                return status, str(exc).encode()
        async with w.client.get(url, headers=headers, allow_redirects=False) as resp:
            return resp.status, await resp.read()


async def custody_via(w: World, c: str) -> str | None:
    """How the newest download of camera ``c``'s package left, as its custody log records it."""
    async with w.app[SESSIONS]() as session:
        downloads = [e for e in await custody_log(session, w.request[c]) if e.action == "package.downloaded"]
    return json.loads(downloads[-1].details).get("via") if downloads else None


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    return make_segments(tmp_path_factory.mktemp("media"), 2)


async def test_every_disclosing_route_writes_exactly_one_entry(db_url, aiohttp_client, settings, tmp_path, sources):
    """On SQLite and on PostgreSQL (the audit writer's chain lock differs)."""
    async with world(aiohttp_client, settings.with_overrides(database_url=db_url), tmp_path, sources) as w:
        disclosing = {c: s for c, s in get_routes(w.app) if s.discloses is not None}
        unmapped = sorted(set(disclosing) - set(URLS))
        assert not unmapped, f"disclosing routes the walk cannot call (add them to URLS): {unmapped}"
        assert not set(URLS) - set(disclosing), f"URLS names routes that disclose nothing: {set(URLS) - set(disclosing)}"
        problems: list[str] = []
        walked = 0
        for canonical, spec in sorted(disclosing.items()):
            for via in ("session", "token"):
                public = spec.permission is Permission.PUBLIC
                who = w.users["police"] if public else walker(w, spec.permission)
                url = await url_for(w, canonical, "A", via)
                before = await w.audit_head()
                status, body = await fetch(w, canonical, url, {} if public else who.headers(via))
                walked += 1
                what = f"GET {canonical} as {who.username} by {via}"
                if status not in (101, 200, 206):
                    problems.append(f"{what}: {status} {body[:200]!r}")
                    continue
                if canonical.endswith("/live") and b'"init"' not in body:
                    problems.append(f"{what}: the live stream did not start: {body[:200]!r}")
                # The mechanism's entries carry "disclosed"; an entry a handler writes itself under
                # the same action would be a second record of one disclosure.
                found = [(e, d) for e, d in await w.entries_after(before)
                         if "disclosed" in d or e.action.startswith(spec.action)]
                if len(found) != 1:
                    problems.append(f"{what}: {len(found)} disclosure entries: {[e.action for e, _ in found]}")
                    continue
                entry, details = found[0]
                expected = {
                    "actor": who.username, "disclosed": spec.discloses.value, "route": f"GET {canonical}",
                    "via": "link" if public else via,
                }
                got = {"actor": entry.actor, "disclosed": details.get("disclosed"), "route": details.get("route"),
                       "via": details.get("via")}
                if got != expected or not entry.action.startswith(spec.action):
                    problems.append(f"{what}: entry {entry.action} {got}, expected {spec.action} {expected}")
                if canonical == "/api/v1/evidence/requests/{id}/package":  # the signed custody log says how it left, too
                    custody = await custody_via(w, "A")
                    if custody != ("session" if via == "session" else f"API token {who.token_name}"):
                        problems.append(f"{what}: the custody log records the download via {custody!r}")
                token = details.get("token")
                if public and not (token or "").startswith("link "):
                    problems.append(f"{what}: the entry does not name the link: {token!r}")
                elif not public and token != (who.token_name if via == "token" else None):
                    problems.append(f"{what}: the entry names token {token!r}")
        assert not problems, "\n".join(problems)
        assert walked == 2 * len(disclosing) and walked >= 40
