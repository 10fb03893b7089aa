"""Odd values in every path parameter of every route, as every role: a clear 4xx, never a
server error, and nothing changed. The walk is over the router, so a new route is walked the
day it is added (the OpenAPI fuzz covers only the documented API; this also covers the pages
and the static files)."""

from __future__ import annotations

import re

import pytest
from test_auth_matrix import app_routes

from controlroom.app import create_app

ROLES = ("administrator", "supervisor", "operator", "police")
# Ids that are no id (a fraction, negative, beyond BIGINT, a word, an encoded NUL, a lone
# surrogate, dot-dot, a name longer than any file system allows) and an id of no row. Anonymous
# callers are refused before any handler (tests/test_auth_matrix.py), so the roles suffice.
ODD = ["0", "-1", "1.5", "99999999999999999999", "abc", "%00", "%ED%A0%80", "..%2F..%2Fetc%2Fpasswd", "x" * 300]


async def test_odd_path_values_get_a_clear_4xx_on_every_route(db_url, aiohttp_client, settings, login):
    client = await aiohttp_client(create_app(settings.with_overrides(database_url=db_url), record=False, anpr=False))
    sessions = {role: await login(client, role) for role in ROLES}
    routes = [(method, route) for method, _, route in app_routes(client.server.app)
              if "{" in (route.resource.get_info().get("formatter") or "") and method in ("GET", "POST", "PATCH",
                                                                                          "PUT", "DELETE")]
    assert len(routes) >= 40, routes  # the walk reaches the routes with parameters
    bad = []
    for method, route in routes:
        formatter = route.resource.get_info()["formatter"]
        for odd in ODD:
            path = re.sub(r"\{[^}]+\}", odd, formatter)
            for who, headers in sessions.items():
                resp = await client.request(method, path, headers=headers,
                                            json={} if method in ("POST", "PATCH", "PUT") else None)
                body = await resp.read()
                if resp.status >= 500 or (method != "GET" and resp.status < 400):
                    bad.append(f"{who} {method} {formatter} with {odd[:20]!r}: {resp.status} {body[:120]!r}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", ["x" * 300, "a/" * 2000 + "b"])
async def test_a_static_file_name_too_long_is_not_found(aiohttp_client, settings, name):
    client = await aiohttp_client(create_app(settings, record=False, anpr=False))
    resp = await client.get(f"/static/{name}")
    assert resp.status == 404 and (await resp.json())["error"]
