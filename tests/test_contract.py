"""The input contract holds at its edges (issue 11, Found 12 and 14): each case here was a server
error, or input silently taken, before controlroom.contract; each now answers 400 (or the JSON
404 of an unknown path) naming what is wrong. Run on SQLite and on the real PostgreSQL, which
refuses NUL in text and numbers past BIGINT where SQLite stores them.
"""

from __future__ import annotations

import pytest

from controlroom.app import create_app
from storage import Invalid

ISO_PLUS = "%2B"  # a literal "+" in a query string is a space


@pytest.fixture
async def client(db_url, aiohttp_client, settings):
    app = create_app(settings.with_overrides(database_url=db_url), record=False)
    return await aiohttp_client(app)


async def _error(resp, status: int = 400) -> str:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    return (await resp.json())["error"]


async def test_deep_and_huge_json_bodies_are_400(client, login):
    admin = await login(client, "administrator")
    cases = {
        b'{"name": ' + b"[" * 50_000 + b"]" * 50_000 + b"}": "nests deeper",  # was RecursionError: 500
        b'{"name": "a", "default_priority": ' + b"9" * 5000 + b"}": "64 bits",  # was ValueError: 500
        b'{"name": "a", "default_priority": NaN}': "NaN",
        b'{"name": "a", "default_priority": 1e999}': "out of range",
        b'{"name": "a", "x": ' + b"[" * 40 + b"]" * 40 + b"}": "nests deeper",
    }
    for raw, words in cases.items():
        resp = await client.post("/api/v1/anpr/hotlists", data=raw, headers={**admin, "Content-Type": "application/json"})
        assert words in await _error(resp), raw[:60]


async def test_control_characters_are_refused_everywhere(client, login):
    admin = await login(client, "administrator")
    # In a JSON body (was stored by SQLite and broke `cameras export`; a 500 on PostgreSQL).
    resp = await client.post("/api/v1/cameras", json={"name": "cam\x00one"}, headers=admin)
    assert "U+0000" in await _error(resp)
    resp = await client.post("/api/v1/cameras", json={"name": "cam\x1bone"}, headers=admin)
    assert "U+001B" in await _error(resp)
    resp = await client.post("/api/v1/cameras", json={"name": "two\nlines"}, headers=admin)
    assert "name" in await _error(resp)
    resp = await client.post("/api/v1/anpr/hotlists", json={"name": "ok", "description": "x\ud800"}, headers=admin)
    assert "U+D800" in await _error(resp)
    # In a path parameter and in a query value, on every route.
    assert "camera" in await _error(await client.get("/api/v1/cameras/a%00b", headers=admin))
    assert "site" in await _error(await client.get("/api/v1/cameras?site=%00", headers=admin))
    # Line breaks stay allowed in free text.
    resp = await client.post("/api/v1/anpr/hotlists", json={"name": "multi", "description": "one\ntwo"}, headers=admin)
    assert resp.status == 201, await resp.text()


async def test_extreme_times_are_400(client, login):
    supervisor = await login(client, "supervisor")
    for text in ("0001-01-01T00:00:00" + ISO_PLUS + "01:00", "9999-12-31T23:59:59-01:00",
                 "2026-01-01T00:00:00" + ISO_PLUS + "99:00", "1969-12-31T23:59:59Z"):
        resp = await client.get(f"/api/v1/audit?from={text}", headers=supervisor)
        assert "from" in await _error(resp), text
    admin = await login(client, "administrator")
    hotlist = await (await client.post("/api/v1/anpr/hotlists", json={"name": "stolen"}, headers=admin)).json()
    resp = await client.post(f"/api/v1/anpr/hotlists/{hotlist['id']}/entries", headers=admin,
                             json={"vrm": "AB12CDE", "reason": "stolen", "source": "PNC", "expires": "9999-12-31"})
    assert "1970 to 2200" in await _error(resp)  # was OverflowError: 500


async def test_limits_and_offsets_are_bounded_in_one_place(client, login):
    supervisor = await login(client, "supervisor")
    # limit=-1 was taken: SQLite reads LIMIT -1 as "no limit", past the cap of 5000.
    assert "limit" in await _error(await client.get("/api/v1/audit?limit=-1", headers=supervisor))
    assert "limit" in await _error(await client.get("/api/v1/audit?limit=99999", headers=supervisor))
    assert "limit" in await _error(await client.get("/api/v1/alerts?limit=-1", headers=supervisor))
    search = "/api/v1/anpr/reads?vrm=AB12CDE&reason=test&reference=REF1"
    assert "offset" in await _error(await client.get(f"{search}&offset=-1", headers=supervisor))
    # A huge offset overflowed SQLite's integer (500) and PostgreSQL's BIGINT (500).
    assert "offset" in await _error(await client.get(f"{search}&offset={10**30}", headers=supervisor))
    assert "limit" in await _error(await client.get(f"{search}&limit=abc", headers=supervisor))
    assert (await client.get(f"{search}&offset=10&limit=5", headers=supervisor)).status == 200


async def test_hotlist_csv_with_control_characters_is_400(client, login):
    admin = await login(client, "administrator")
    hotlist = await (await client.post("/api/v1/anpr/hotlists", json={"name": "csv"}, headers=admin)).json()
    # NUL in free text: SQLite stored it, PostgreSQL refused it (a server error).
    csv = "vrm,reason,source,expires\nAB12CDE,stolen\x00car,PNC,2030-01-01\n"
    resp = await client.post(f"/api/v1/anpr/hotlists/{hotlist['id']}/import", data=csv.encode(), headers=admin)
    assert "U+0000" in await _error(resp)


async def test_every_error_is_json(client, login):
    admin = await login(client, "administrator")
    # aiohttp's own answers were text/plain: no route, wrong method.
    assert await _error(await client.get("/api/v1/no-such-thing", headers=admin), 404)
    assert await _error(await client.put("/api/v1/cameras", headers=admin), 405)
    assert await _error(await client.get("/static/no-such-file.js"), 404)


async def test_a_bad_field_is_named(client, login):
    admin = await login(client, "administrator")
    resp = await client.post("/api/v1/users", json={"username": "x", "role": "emperor", "password": "p" * 20},
                             headers=admin)
    assert "role" in await _error(resp)
    resp = await client.post("/api/v1/users", json={"username": "x", "role": "operator", "password": "p" * 20,
                                                    "colour": "red"}, headers=admin)
    assert "colour: unknown field" in await _error(resp)


def test_parse_json_and_text_rule():
    from controlroom.errors import parse_json
    from storage.text import bad_character

    assert parse_json(b'{"a": [1, 2.5, "x\\ny"]}') == {"a": [1, 2.5, "x\ny"]}
    assert parse_json(b'{"a": -9223372036854775808}') == {"a": -(2**63)}
    for raw in (b'{"a": 9223372036854775808}', b"[Infinity]", b"\xff", b"[" * 33 + b"]" * 33):
        with pytest.raises(Invalid):
            parse_json(raw)
    assert bad_character("tab\tand\nline") is None
    assert bad_character("tab\tname", multiline=False) == "\t"
    assert bad_character("bell\x07") == "\x07"
    assert bad_character("c1\x85") == "\x85"


async def test_ids_past_bigint_or_in_other_scripts_name_nothing(client, login):
    """Found by tests/test_api_fuzz.py: a hotlist id past BIGINT overflowed the driver (500), and
    a superscript digit passed str.isdigit but not int() (500), and an id past 32 bits overflowed
    PostgreSQL's INTEGER keys (500, issue 13). storage.db.row_id is the one rule."""
    admin = await login(client, "administrator")
    for ref in ("9223372036854775808", "2147483648", "%C2%B2", "%D9%A3", "0"):
        resp = await client.patch(f"/api/v1/anpr/hotlists/{ref}", json={"enabled": False}, headers=admin)
        assert "no hotlist" in await _error(resp, 404), ref
        resp = await client.get(f"/api/v1/cameras/{ref}", headers=admin)
        assert "no camera" in await _error(resp, 404), ref


async def test_an_empty_query_value_means_absent(client, login):
    """As before the contract: a form's empty fields (``from=&limit=``) take the defaults."""
    operator = await login(client, "operator")
    resp = await client.get("/api/v1/anpr/reads?vrm=AB12CDE&reason=r&reference=x&from=&to=&limit=&offset=",
                            headers=operator)
    assert resp.status == 200, await resp.text()
    resp = await client.get("/api/v1/anpr/journeys?from_site=a&to_site=b&within_s=&reason=r&reference=x",
                            headers=operator)
    assert resp.status == 200, await resp.text()


async def test_text_longer_than_its_column_is_400(client, login):
    """A value past its String(n) column: PostgreSQL refused it mid-flush (500), SQLite stored it.
    storage.db checks every sized column before each flush, whichever way the value came in."""
    admin = await login(client, "administrator")
    # Through a model (which now says the size too) ...
    resp = await client.post("/api/v1/anpr/hotlists", json={"name": "long", "source": "s" * 300}, headers=admin)
    assert "source" in await _error(resp) and "200" in await _error(resp)
    resp = await client.post("/api/v1/cameras", json={"name": "long", "position": "p" * 401}, headers=admin)
    assert "position" in await _error(resp) and "400" in await _error(resp)
    assert (await client.get("/api/v1/cameras/long", headers=admin)).status == 404  # nothing stored
    # ... and where no model looks: a CSV line's source reaches the flush as it was typed.
    hotlist = await (await client.post("/api/v1/anpr/hotlists", json={"name": "csv"}, headers=admin)).json()
    csv = "vrm,reason,source,expires\nAB12CDE,stolen," + "s" * 300 + ",2030-01-01\n"
    resp = await client.post(f"/api/v1/anpr/hotlists/{hotlist['id']}/import", data=csv.encode(), headers=admin)
    assert "source: at most 200 characters" in await _error(resp)


async def test_a_camera_update_takes_only_stream_urls(client, login):
    """Found writing the camera models down: a PATCH skipped the rule a new camera obeys, so an
    administrator could point a recorder at file:///etc/shadow or put a password in the URL."""
    admin = await login(client, "administrator")
    cam = await (await client.post("/api/v1/cameras", json={"name": "gate"}, headers=admin)).json()
    for url in ("file:///etc/shadow", "rtsp://user:secret@127.0.0.1/main"):
        resp = await client.patch(f"/api/v1/cameras/{cam['id']}", json={"main_url": url}, headers=admin)
        assert "main_url" in await _error(resp), url
    resp = await client.patch(f"/api/v1/cameras/{cam['id']}", json={"main_url": "rtsp://127.0.0.1/main"}, headers=admin)
    assert resp.status == 200, await resp.text()


def test_every_route_that_reads_input_declares_it(tmp_path):
    """A handler that reads the query string or a JSON body declares the model it expects, so
    the input is validated in one place and published in the document: a new route cannot
    quietly parse its own."""
    import inspect

    from controlroom.permissions import route_spec
    from controlroom.settings import load_settings

    app = create_app(load_settings(tmp_path, environ={}), record=False)
    undeclared = []
    for route in app.router.routes():
        spec = route_spec(route.handler)
        if route.method == "HEAD" or spec is None:
            continue
        source = inspect.getsource(route.handler)
        if ("request.query" in source or "stream_of(request)" in source) and spec.query is None:
            undeclared.append(f"{route.method} {route.resource.canonical}: reads the query, declares no query=")
        if "json_body(" in source and spec.body is None:
            undeclared.append(f"{route.method} {route.resource.canonical}: reads JSON, declares no body=")
    assert not undeclared, "\n".join(undeclared)
