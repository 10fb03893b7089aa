"""The narrowing matrix (issue 11, "What to build" 3): route x role x narrowing x token scope,
generated from the app's router so that a new route cannot escape it.

In the seeded world of tests/disclosure_world.py (camera A on site A, camera B on site B, each
with footage, ANPR reads, hits, alerts, events and an evidence request), a user of each role
that holds a route's right, narrowed to camera A (and separately to site A), by session and by
API token:

- calls every route that reaches a camera (a ``{camera}`` path parameter, a declared
  ``cameras=`` resolver, ``?camera=``) with camera B's objects: 403, audited as access.denied;
- calls the same GET routes with camera A's objects (by session): the same answer as the un-narrowed user of
  the same role gets (narrowing to A changes nothing about A);
- calls every list and search of camera data: none of camera B's markers (its name, site, VRM,
  evidence references) is in the answer, and every marker of A that the un-narrowed user sees
  is still there.

And through an API token whose scopes lack the route's right: 403.

A route with a path parameter that is neither a camera nor known to name no camera, and a list
route of camera data missing from ``LISTS``, fail the declaration test.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from disclosure_world import NAME, ROLES, S, Who, World, world
from evidence_media import make_segments
from test_auth_matrix import app_routes
from test_disclosure import URLS, fetch
from test_evidence_api import FIELDS

from controlroom.app import create_app
from controlroom.context import ALERTS, SESSIONS
from controlroom.permissions import Permission, RouteSpec, role_permissions, route_spec
from controlroom.timefmt import us_to_iso
from storage.alerts import raise_alert
from storage.db import transaction

CAMERA_PARAMS = {"camera", "camera_id"}
# Path parameters that name no camera's object, and why.
NOT_CAMERA_PARAMS = {
    "hotlist": "a hotlist is the whole service's, not a camera's",
    "entry": "a hotlist entry (with its hotlist)",
    "username": "a user account",
    "name": "an API token's name",
    "token": "a one-time link: the link is the credential, made by someone who could reach the request",
    "path": "a static file of the web UI",
    "image": "which image of the read or hit (plate|overview): the read or hit is resolved",
    "decision": "confirm|dismiss of the hit that is resolved",
    "window": "a window of the control room's rota",
    "view": "a named layout or tour: its cameras are cut to the caller's at each read, and a view holding "
            "others' cameras cannot be changed (controlroom/api/views.py)",
    "map": "a site plan: its pins are cut to the caller's cameras, and a map of another site is not found",
    "release": "a police-safe tasking pack a supervisor sent to this police account (counts of every camera)",
}
# GET routes without path parameters that hold nothing of any camera, and why (every other
# one is a list walked below, or in EVERY_CAMERA).
NOT_CAMERA_LISTS = {
    "/api/v1/evidence/public-key": "the service's public key",
    "/api/v1/incidents/vocabulary": "the occurrence book's fixed categories and outcomes",
    "/api/v1/openapi.json": "the API's contract",
    "/api/v1/session": "the caller's own session",
    "/api/v1/session/tokens": "the caller's own API tokens",
    "/api/v1/tokens": "API tokens by name, owner, scopes and expiry: accounts, no camera data",
    "/api/v1/users": "accounts and their rights; a narrowing is a list of camera and site ids, not their data",
    "/api/v1/rota": "the planned weekly coverage windows: times and staff numbers",
    "/api/v1/duty": "the caller's own duty state and how many are on duty",
    "/api/v1/duty/week": "hours of a week staffed and planned",
    "/api/v1/duty/sessions": "who signed on and off duty when: staff records, no camera",
    "/api/v1/anpr/hotlists": "the hotlists are the whole service's (what is searched for, not where it was seen)",
    "/api/v1/reports/released": "police-safe packs sent to the caller: counts over every camera, by design",
    "/api/v1/ripa/directed-use": "the caller's own directed-use sessions (their cameras are theirs to reach)",
    "/api/v1/ripa/in-force": "authorisations in force, for linking a directed-use session: RIPA is network-wide",
}
# How to call each list (the walk's URLs where it has them; the WebSocket feed is tested apart).
LISTS: dict[str, Any] = {c: URLS[c] for c in (
    "/api/v1/alerts", "/api/v1/anpr/hits", "/api/v1/anpr/journeys", "/api/v1/anpr/reads",
    "/api/v1/anpr/reads.csv", "/api/v1/evidence/register", "/api/v1/evidence/requests", "/api/v1/incidents",
    "/api/v1/bookmarks")}
LISTS |= {
    "/api/v1/cameras": lambda w, c: "/api/v1/cameras",
    "/api/v1/evidence/cameras": lambda w, c: "/api/v1/evidence/cameras",
    "/api/v1/views": lambda w, c: "/api/v1/views",
    "/api/v1/maps": lambda w, c: "/api/v1/maps",
    "/api/v1/alerts/ws": None,  # test_alert_feed_is_narrowed
    "/api/v1/holds": lambda w, c: "/api/v1/holds?all=true",
    "/api/v1/system": lambda w, c: "/api/v1/system",
    "/api/v1/sites": lambda w, c: "/api/v1/sites",
    "/api/v1/faults": lambda w, c: "/api/v1/faults",
    "/api/v1/health/availability": lambda w, c: "/api/v1/health/availability",
    "/api/v1/health/pictures": lambda w, c: "/api/v1/health/pictures",
    "/api/v1/health/masks": lambda w, c: "/api/v1/health/masks",
}
# Lists whose every item is also another camera's: a journey from site A to site B is made of a
# read of each, so a user narrowed to A sees none of them (nothing of A's is expected to stay).
MIXED_ITEMS = {"/api/v1/anpr/journeys"}
# An evidence route declares AUTHENTICATED (police and operators share it) and its handler asks
# for one of these rights: a token lacking the route's right is one lacking all of them.
EVIDENCE_RIGHTS = {Permission.EVIDENCE_REQUEST, Permission.EXPORT, Permission.APPROVE}
# Routes that reach every camera's data and cannot be cut entry by entry: refused to any narrowed
# user, on A's side too (docs/design/security-model.md, the audit trail).
EVERY_CAMERA = {"/api/v1/audit", "/api/v1/audit/verify", "/metrics",
                # The RIPA and SAR registers: network-wide data protection work (docs/design/lawful-use.md).
                "/api/v1/ripa/authorisations", "/api/v1/ripa/authorisations/{id}", "/api/v1/ripa/report",
                "/api/v1/sar/requests", "/api/v1/sar/requests/{id}", "/api/v1/sar/requests/{id}/redaction",
                "/api/v1/sar/requests/{id}/redaction/{job}/package", "/api/v1/sar/requests/{id}/windows/{window}/boxes",
                "/api/v1/sar/requests/{id}/windows/{window}/frame.jpg",
                "/api/v1/reports/tasking", "/api/v1/reports/tasking.pdf", "/api/v1/reports/tasking.csv",
                "/api/v1/reports/tasking/chart.png", "/api/v1/reports/stats", "/api/v1/reports/stats.pdf",
                "/api/v1/reports/stats.csv"}
# Searches that take ?camera= (id or name), checked by the middleware.
QUERY_CAMERA = ("/api/v1/anpr/reads", "/api/v1/anpr/reads.csv")
REQUEST_TIMEOUT_S = 30


def params(canonical: str) -> set[str]:
    return set(re.findall(r"\{(\w+)", canonical))


def classify(app) -> tuple[dict[tuple[str, str], RouteSpec], dict[str, RouteSpec], list[str]]:
    """(routes that reach a camera by (method, canonical), list routes by canonical, problems)."""
    reached: dict[tuple[str, str], RouteSpec] = {}
    lists: dict[str, RouteSpec] = {}
    problems = []
    for method, _, route in app_routes(app):
        if route.resource is None:
            continue
        canonical, spec = route.resource.canonical, route_spec(route.handler)
        names = params(canonical)
        if names & CAMERA_PARAMS or spec.cameras is not None:
            reached[(method, canonical)] = spec
        elif names - set(NOT_CAMERA_PARAMS):
            problems.append(f"{method} {canonical}: {sorted(names - set(NOT_CAMERA_PARAMS))} may name a camera's "
                            f"object but the route declares no cameras= resolver")
        elif (method == "GET" and not names and canonical not in NOT_CAMERA_LISTS and canonical not in EVERY_CAMERA
              and spec.permission is not Permission.PUBLIC):
            lists[canonical] = spec
    return reached, lists, problems


def test_every_route_that_reaches_a_camera_is_known(settings):
    reached, lists, problems = classify(create_app(settings, record=False))
    assert not problems, "\n".join(problems)
    assert not set(lists) ^ set(LISTS), f"list routes of camera data not in LISTS (or gone): {set(lists) ^ set(LISTS)}"
    assert len(reached) >= 25


def object_url(w: World, method: str, canonical: str, c: str, *, by_name: bool = False) -> str:
    """The route's URL on camera ``c``'s objects (with the walk's query for a GET it knows)."""
    if method == "GET" and canonical in URLS and not by_name and "{token}" not in canonical:
        return URLS[canonical](w, c)
    values = {"camera": quote(NAME[c]) if by_name else w.cam[c], "camera_id": w.cam[c], "hit": w.hit[c],
              "read": w.read[c], "alert": w.alert[c], "id": w.request[c], "image": "plate", "decision": "confirm",
              "fault": w.fault[c], "hold": w.hold[c], "incident": w.incident[c], "bookmark": w.bookmark[c],
              "job": w.redaction[c], "window": w.sar_window[c]}
    url = canonical
    for name in params(canonical):
        assert name in values, f"{method} {canonical}: no object of camera {c} for {{{name}}} (add it here)"
        url = re.sub(r"\{" + name + r"(:[^}]*)?\}", str(values[name]), url)
    return url


async def call(w: World, method: str, canonical: str, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    if method == "GET":
        return await fetch(w, canonical, url, headers)
    async with asyncio.timeout(REQUEST_TIMEOUT_S):
        async with w.client.request(method, url, json={}, headers=headers) as resp:
            return resp.status, await resp.read()


def holders(spec: RouteSpec) -> list[str]:
    return [role for role in ROLES if spec.permission in role_permissions(role)]


async def denied_for_camera(w: World, before: int) -> bool:
    return any(e.action == "access.denied" and "camera" in (d.get("reason") or "")
               for e, d in await w.entries_after(before))


async def submit_request(w: World, who: Who, via: str, camera: int | str) -> tuple[int, bytes]:
    window = {"camera": camera, "from": us_to_iso(w.base_us + S), "to": us_to_iso(w.base_us + 2 * S)}
    resp = await w.client.post("/api/v1/evidence/requests", json={**FIELDS, "windows": [window]},
                               headers=who.headers(via))
    return resp.status, await resp.read()


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    return make_segments(tmp_path_factory.mktemp("media"), 2)


@pytest.mark.slow  # about 12 s: some 700 calls, real snapshots, playback remuxes and downloads
async def test_narrowing_matrix(aiohttp_client, settings, tmp_path, sources):
    async with world(aiohttp_client, settings, tmp_path, sources) as w:
        reached, lists, problems = classify(w.app)
        assert not problems
        gets = sorted(c for m, c in reached if m == "GET")

        # The un-narrowed user of each role on A's objects and lists: what narrowing must keep.
        twin: dict[tuple[str, str], tuple[int, bytes]] = {}
        for canonical in gets + sorted(c for c in lists if LISTS[c]):
            spec = reached.get(("GET", canonical)) or lists[canonical]
            for role in holders(spec):
                url = object_url(w, "GET", canonical, "A") if canonical in gets else LISTS[canonical](w, "A")
                twin[(role, canonical)] = await call(w, "GET", canonical, url, w.users[role].headers("session"))

        out: list[str] = []
        counts = {"refused": 0, "kept": 0, "hidden": 0}
        for narrowing in ("camera", "site"):
            scope = ([], [w.cam["A"]]) if narrowing == "camera" else ([w.site["A"]], [])
            users: dict[str, Who] = {}
            for role in ROLES:
                if role == "police":  # narrow the requests' owner, so they still see their own
                    users[role] = w.users[role]
                    await w.set_scope(users[role], *scope)
                else:
                    users[role] = await w.user(role, f"{role}-{narrowing}", site_ids=scope[0], camera_ids=scope[1])
            for via in ("session", "token"):
                for (method, canonical), spec in sorted(reached.items()):
                    for role in holders(spec):
                        who = users[role]
                        tag = f"{role} narrowed to {narrowing} A by {via}: {method} {canonical}"
                        # Camera B's objects: refused, audited.
                        urls = [object_url(w, method, canonical, "B")]
                        if "{camera}" in canonical and method == "GET":
                            urls.append(object_url(w, method, canonical, "B", by_name=True))
                        for url in urls:
                            before = await w.audit_head()
                            status, body = await call(w, method, canonical, url, who.headers(via))
                            counts["refused"] += 1
                            if status != 403 or not await denied_for_camera(w, before):
                                out.append(f"{tag} on B ({url}): {status} {body[:120]!r}")
                        # Camera A's objects: as for the un-narrowed user (GET: nothing changes). Once,
                        # by session: a token's user is narrowed by the same scope (B's side shows it).
                        if method == "GET" and via == "session":
                            status, body = await call(w, method, canonical, object_url(w, method, canonical, "A"),
                                                      who.headers(via))
                            counts["kept"] += 1
                            if canonical in EVERY_CAMERA:
                                if status != 403:
                                    out.append(f"{tag} on A: {status}, should be refused to a narrowed user")
                            elif status != twin[(role, canonical)][0]:
                                out.append(f"{tag} on A: {status}, un-narrowed {twin[(role, canonical)][0]}: {body[:120]!r}")
                            leaked = [m for m in w.markers("B") if m.encode() in body]
                            if leaked:
                                out.append(f"{tag} on A leaks B: {leaked}")
                for canonical, spec in sorted(lists.items()):
                    if LISTS[canonical] is None:
                        continue
                    for role in holders(spec):
                        tag = f"{role} narrowed to {narrowing} A by {via}: GET {canonical}"
                        status, body = await call(w, "GET", canonical, LISTS[canonical](w, "A"), users[role].headers(via))
                        twin_status, twin_body = twin[(role, canonical)]
                        if status != twin_status:
                            out.append(f"{tag}: {status}, un-narrowed {twin_status}: {body[:120]!r}")
                        leaked = [m for m in w.markers("B") if m.encode() in body]
                        lost = [m for m in w.markers("A") if m.encode() in twin_body and m.encode() not in body
                                and canonical not in MIXED_ITEMS]
                        if leaked or lost:
                            out.append(f"{tag}: shows B's {leaked}, lost A's {lost}")
                        counts["hidden"] += sum(m.encode() in twin_body for m in w.markers("B"))
                for canonical in QUERY_CAMERA:
                    for role in holders(lists[canonical]):
                        for c, ref in (("B", w.cam["B"]), ("B", quote(NAME["B"])), ("A", w.cam["A"])):
                            url = f"{LISTS[canonical](w, c)}&camera={ref}"
                            before = await w.audit_head()
                            status, body = await call(w, "GET", canonical, url, users[role].headers(via))
                            tag = f"{role} narrowed to {narrowing} A by {via}: GET {url}"
                            if c == "B" and (status != 403 or not await denied_for_camera(w, before)):
                                out.append(f"{tag}: {status}")
                            if c == "A" and (status != 200 or w.markers("A")[0].encode() not in body):
                                out.append(f"{tag}: {status} {body[:120]!r}")
                # Cameras named in a body: an evidence request for B is refused as if B did not exist.
                for role in ("police", "operator"):
                    for c, ref in (("B", w.cam["B"]), ("B", NAME["B"]), ("A", w.cam["A"])):
                        status, body = await submit_request(w, users[role], via, ref)
                        if (c == "B") != (status == 400) or status not in (201, 400):
                            out.append(f"{role} narrowed to {narrowing} A by {via}: evidence request for {ref}: "
                                       f"{status} {body[:120]!r}")
            await w.set_scope(w.users["police"], [], [])
        assert not out, f"{len(out)} problems:\n" + "\n".join(out)
        # Not vacuous: B's data was there to hide, and the matrix was walked.
        assert counts["hidden"] >= 10 and counts["refused"] >= 100 and counts["kept"] >= 20, counts


async def test_a_token_without_the_right_is_refused(aiohttp_client, settings, tmp_path, sources):
    """Every route that reaches camera data, on A's objects, through a token of an un-narrowed
    user whose scopes are all of their role's rights but the route's own: 403, audited."""
    async with world(aiohttp_client, settings, tmp_path, sources) as w:
        reached, lists, _ = classify(w.app)
        routes = sorted(reached.items()) + [(("GET", c), s) for c, s in sorted(lists.items()) if LISTS[c]]
        tokens: dict[tuple[str, Permission], str] = {}
        out, checked = [], 0
        for (method, canonical), spec in routes:
            lacking = EVIDENCE_RIGHTS if spec.permission is Permission.AUTHENTICATED else {spec.permission}
            for role in holders(spec):
                if not lacking & role_permissions(role):
                    continue  # the role itself lacks the right: the route matrix covers it
                scopes = sorted(p.value for p in role_permissions(role) - {Permission.PUBLIC, *lacking})
                key = (role, spec.permission)
                name = f"lacks-{spec.permission.value}-{role}"
                if key not in tokens:
                    tokens[key] = await w.token_for(w.users[role], name, scopes)
                url = object_url(w, method, canonical, "A") if (method, canonical) in reached else LISTS[canonical](w, "A")
                before = await w.audit_head()
                status, _ = await call(w, method, canonical, url, {"Authorization": f"Bearer {tokens[key]}"})
                checked += 1
                refusals = [d for e, d in await w.entries_after(before) if e.action.endswith(".denied")]
                if status != 403 or len(refusals) != 1 or refusals[0].get("token") != name:
                    out.append(f"{role} token without {spec.permission.value}: {method} {url}: {status}, {refusals}")
        assert not out, "\n".join(out)
        assert checked >= 40


async def test_alert_feed_is_narrowed(aiohttp_client, settings, tmp_path, sources):
    """The alerts WebSocket of a user narrowed to camera A (or site A) never carries B's alerts."""
    async with world(aiohttp_client, settings, tmp_path, sources) as w:
        for narrowing in ("camera", "site"):
            scope = ([], [w.cam["A"]]) if narrowing == "camera" else ([w.site["A"]], [])
            for role in ("operator", "supervisor"):
                who = await w.user(role, f"{role}-feed-{narrowing}", site_ids=scope[0], camera_ids=scope[1])
                for via in ("session", "token"):
                    async with w.client.ws_connect("/api/v1/alerts/ws", headers=who.headers(via)) as ws:
                        # The feed subscribes just after the upgrade: raise B's alert then A's (one
                        # commit publishes both, in that order) until the first message arrives.
                        raised: dict[str, list[int]] = {"A": [], "B": []}
                        msg = None
                        for _ in range(25):
                            async with transaction(w.app[SESSIONS]) as session:
                                for c in ("B", "A"):
                                    alert = await raise_alert(session, w.app[ALERTS], "camera_offline",
                                                              f"{NAME[c]} lost", w.cam[c])
                                    raised[c].append(alert.id)
                            try:
                                msg = await ws.receive_json(timeout=0.2)
                                break
                            except TimeoutError:
                                continue
                        assert msg is not None and msg["alert"]["id"] in raised["A"], (role, narrowing, via, msg, raised)
                        assert NAME["B"] not in str(msg)
