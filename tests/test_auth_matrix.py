"""The route-by-role matrix, generated from the app's router so a new route cannot escape it.

Every route must declare a permission. Every route is then called as anonymous and as each role
(a real login, a real session cookie and CSRF header): a role without the route's permission
gets 403 and an ``access.denied`` audit entry; a role with it gets past the middleware (whatever
the handler then says about the placeholder ids); anonymous gets 401 on every non-public route.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web
from sqlalchemy import func, select

from controlroom.app import create_app
from controlroom.context import SESSIONS
from controlroom.permissions import ROLE_PERMISSIONS, Permission, declared, role_permissions
from storage.audit import AuditEntry

PLACEHOLDER = "999999"
REQUEST_TIMEOUT_S = 10
# The named must-deny cases of issue 4.
POLICE_NEVER = {Permission.LIVE_VIEW, Permission.PLAYBACK, Permission.ANPR_SEARCH, Permission.ADMIN,
                Permission.INVENTORY_READ, Permission.PTZ, Permission.EXPORT, Permission.AUDIT_READ}
OPERATOR_NEVER = {Permission.APPROVE, Permission.ADMIN}


def app_routes(app: web.Application) -> list[tuple[str, str, web.AbstractRoute]]:
    """(method, url, route) for every route but the HEAD twins aiohttp adds to GETs, with
    placeholders in the path. The own-session routes come last: logging out ends the session."""
    out = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        if "path" in info:
            url = info["path"]
        elif "formatter" in info:
            url = info["formatter"]
            for name, pattern in re.findall(r"\(\?P<(\w+)>(.*?)\)(?=[^)]|$)", info["pattern"].pattern):
                url = url.replace("{" + name + "}", sample_value(pattern))
            assert route.resource._match(url) is not None, f"no sample URL for {route.resource.canonical}"
        else:  # static directories and the like: a file that does not exist
            url = info.get("prefix", "/") + "/" + PLACEHOLDER
        out.append((route.method, url, route))
    return sorted(out, key=lambda t: (t[1].startswith("/api/v1/session"), t[1] == "/api/v1/session", t[1], t[0]))


def sample_value(pattern: str) -> str:
    """A value for a path parameter that its regex (if any) accepts."""
    if not pattern or pattern == "[^{}/]+":  # aiohttp's default: any one path segment
        return PLACEHOLDER
    candidates = [PLACEHOLDER, *(alt.strip("()") for alt in pattern.split("|")), "x", "x/y", "x.jpg"]
    return next((c for c in candidates if re.fullmatch(pattern, c)), PLACEHOLDER)


async def denied_count(app: web.Application) -> int:
    async with app[SESSIONS]() as session:
        return int((await session.execute(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "access.denied")
        )).scalar_one())


async def call(client, method: str, url: str, headers: dict[str, str]) -> int:
    kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            async with client.request(method, url, headers=headers, allow_redirects=False, **kwargs) as resp:
                return resp.status  # headers only: a stream the handler starts is not read
    except TimeoutError:
        return 0  # the handler is still working: it got past the middleware


def test_mapping_named_cases():
    assert set(ROLE_PERMISSIONS) == {"administrator", "supervisor", "operator", "police"}
    assert not POLICE_NEVER & role_permissions("police")
    assert Permission.EVIDENCE_REQUEST in role_permissions("police")
    assert not OPERATOR_NEVER & role_permissions("operator")
    assert {Permission.APPROVE, Permission.HOLDS, Permission.AUDIT_READ} <= role_permissions("supervisor")
    assert Permission.ADMIN in role_permissions("administrator")
    assert role_permissions("no such role") == frozenset({Permission.PUBLIC})


async def test_every_route_declares_a_permission(settings):
    app = create_app(settings, record=False)
    missing = [f"{m} {u}" for m, u, r in app_routes(app) if declared(r.handler) is None]
    assert not missing, f"routes without @requires: {missing}"
    assert len(app_routes(app)) > 5


async def test_route_matrix(aiohttp_client, settings, login):
    app = create_app(settings, record=False)
    client = await aiohttp_client(app)
    routes = app_routes(app)
    problems: list[str] = []
    checked = {"deny": 0, "allow": 0}

    # Anonymous: 401 (audited) on everything that is not public.
    for method, url, route in routes:
        perm = declared(route.handler)
        before = await denied_count(app)
        status = await call(client, method, url, {})
        if perm is Permission.PUBLIC:
            if status in (401, 403):
                problems.append(f"anonymous {method} {url} (public): {status}")
        elif status != 401 or await denied_count(app) != before + 1:
            problems.append(f"anonymous {method} {url} ({perm}): {status}, denial audited: "
                            f"{await denied_count(app) - before}")

    for role in ROLE_PERMISSIONS:
        client.session.cookie_jar.clear()
        headers = await login(client, role)
        allowed = role_permissions(role)
        for method, url, route in routes:
            perm = declared(route.handler)
            if perm is Permission.PUBLIC:
                continue
            before = await denied_count(app)
            status = await call(client, method, url, headers)
            if status == 401 and perm in allowed:  # an earlier route ended the session: log in again
                headers = await login(client, role)
                before = await denied_count(app)
                status = await call(client, method, url, headers)
            denied = await denied_count(app) - before
            if perm in allowed:
                checked["allow"] += 1
                if denied or status == 401:
                    problems.append(f"{role} {method} {url} ({perm}) should pass the middleware: {status}")
            else:
                checked["deny"] += 1
                if status != 403 or denied != 1:
                    problems.append(f"{role} {method} {url} ({perm}) should be 403 and audited: "
                                    f"{status}, audited {denied}")
            # The named cases, spelled out.
            if role == "police" and perm in POLICE_NEVER:
                assert status == 403, f"police reached {method} {url}"
            if role == "operator" and perm in OPERATOR_NEVER:
                assert status == 403, f"operator reached {method} {url}"
    assert not problems, "\n".join(problems)
    assert checked["deny"] > 0 and checked["allow"] > 0


async def test_named_routes_refused(aiohttp_client, settings, login):
    """Spelled out for a reader: police cannot browse recordings or administer; operators cannot
    manage users."""
    client = await aiohttp_client(create_app(settings, record=False))
    h = await login(client, "police")
    r = await client.get("/api/v1/cameras/1/recordings?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z")
    assert r.status == 403
    assert (await client.post("/api/v1/cameras", json={"name": "x"}, headers=h)).status == 403
    assert (await client.get("/api/v1/cameras")).status == 403
    assert (await client.get("/api/v1/users")).status == 403
    h = await login(client, "operator")
    assert (await client.post("/api/v1/users", json={}, headers=h)).status == 403
    assert (await client.get("/api/v1/audit")).status == 403
    h = await login(client, "supervisor")
    assert (await client.get("/api/v1/audit")).status == 200
    assert (await client.post("/api/v1/users", json={}, headers=h)).status == 403


@pytest.mark.parametrize("role", list(ROLE_PERMISSIONS))
async def test_undeclared_route_fails_closed(aiohttp_client, settings, login, role):
    app = create_app(settings, record=False)

    async def naked(request: web.Request) -> web.Response:
        return web.json_response({"secret": True})

    app.router.add_get("/api/v1/naked", naked)
    client = await aiohttp_client(app)
    await login(client, role)
    r = await client.get("/api/v1/naked")
    assert r.status == 500
    assert "secret" not in await r.text()


async def test_input_is_checked_only_after_the_right(aiohttp_client, settings, login):
    """The contract (controlroom.contract) validates a route's declared query and body only for
    a caller allowed to call it: anyone else gets 401/403 (audited) whatever they send, and
    learns nothing of the route's input from a 400."""
    from controlroom.permissions import route_spec

    app = create_app(settings, record=False)
    client = await aiohttp_client(app)
    routes = [(m, u, r) for m, u, r in app_routes(app)
              if route_spec(r.handler) and (route_spec(r.handler).query or route_spec(r.handler).body)]
    assert len(routes) > 20
    garbage = {"no_such_field": "\x00", "limit": -1}
    problems = []
    for method, url, route in routes:
        if declared(route.handler) is Permission.PUBLIC:
            continue
        status = (await client.request(method, url + "?limit=-1&from=x", json=garbage)).status
        if status != 401:
            problems.append(f"anonymous {method} {url}: {status}")
    for role in ROLE_PERMISSIONS:
        client.session.cookie_jar.clear()
        headers = await login(client, role)
        for method, url, route in routes:
            perm = declared(route.handler)
            if perm in role_permissions(role):
                continue
            before = await denied_count(app)
            status = (await client.request(method, url + "?limit=-1&from=x", json=garbage, headers=headers)).status
            if status != 403 or await denied_count(app) != before + 1:
                problems.append(f"{role} {method} {url} ({perm}): {status}")
    assert not problems, "\n".join(problems)


async def test_openapi_document_needs_a_login(aiohttp_client, settings, login):
    client = await aiohttp_client(create_app(settings, record=False))
    assert (await client.get("/api/v1/openapi.json")).status == 401
    await login(client, "police")
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["paths"]["/api/v1/audit"]["get"]["x-permission"] == Permission.AUDIT_READ.value
