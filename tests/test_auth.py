"""Logins, sessions, CSRF, lockout, TOTP, API tokens, narrowing, first run, headers, escaping
and path traversal, through the real app and aiohttp's test client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from pathlib import Path

import aiohttp
import pyotp
import pytest
from conftest import TEST_PASSWORD
from sqlalchemy import select, text

from controlroom.app import create_app
from controlroom.auth import COOKIE
from controlroom.context import SESSIONS
from storage import Invalid, accounts, audit
from storage.audit import AuditEntry
from storage.catalogue import safe_path
from storage.db import transaction

WEB_JS = Path(__file__).resolve().parent.parent / "controlroom" / "web"


async def make_client(aiohttp_client, settings, **overrides):
    if overrides:
        settings = settings.with_overrides(**overrides)
    return await aiohttp_client(create_app(settings, record=False))


@contextlib.asynccontextmanager
async def other_browser(client):
    """Another browser (its own cookie jar) talking to the same running service."""
    async with aiohttp.ClientSession(base_url=str(client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield Browser(session, client.server)


class Browser:
    """Enough of a test client for these tests and the login fixture."""

    def __init__(self, session: aiohttp.ClientSession, server) -> None:
        self.session, self.server = session, server

    def __getattr__(self, name: str):
        return getattr(self.session, name)  # get, post, patch, delete


async def add_user(client, name: str, role: str, password: str = TEST_PASSWORD, **kw) -> None:
    hashed = await asyncio.to_thread(accounts.hash_password, password)
    async with transaction(client.server.app[SESSIONS]) as session:
        await accounts.create_user(session, name, role, hashed, **kw)


async def entries(client, action: str | None = None) -> list[AuditEntry]:
    async with client.server.app[SESSIONS]() as session:
        q = select(AuditEntry).order_by(AuditEntry.seq)
        if action:
            q = q.where(AuditEntry.action == action)
        return list((await session.execute(q)).scalars())


async def post_login(client, username: str, password: str = TEST_PASSWORD, totp: str | None = None):
    body = {"username": username, "password": password}
    if totp is not None:
        body["totp"] = totp
    return await client.post("/api/v1/session", json=body)


# --- sessions and CSRF ----------------------------------------------------------------------


async def test_login_sets_a_strict_cookie_and_returns_csrf(aiohttp_client, settings):
    client = await make_client(aiohttp_client, settings)
    await add_user(client, "olive", "operator")
    r = await post_login(client, "olive")
    assert r.status == 200
    body = await r.json()
    assert body["user"]["username"] == "olive" and body["user"]["role"] == "operator"
    assert len(body["csrf_token"]) >= 32
    cookie = r.headers["Set-Cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # no TLS here
    assert body["csrf_token"] not in cookie
    # The stored session is a hash: the cookie value is nowhere in the database.
    token = r.cookies[COOKIE].value
    async with client.server.app[SESSIONS]() as session:
        stored = (await session.execute(select(accounts.LoginSession.token_hash))).scalars().all()
    assert token not in stored and accounts.token_hash(token) in stored
    who = await (await client.get("/api/v1/session")).json()
    assert who["user"]["username"] == "olive" and who["csrf_token"] == body["csrf_token"]
    assert [e.actor for e in await entries(client, "session.login")] == ["olive"]


async def test_cookie_is_secure_under_tls(aiohttp_client, settings):
    client = await make_client(aiohttp_client, settings, **{"http.tls_cert": "/x.pem", "http.tls_key": "/x.key"})
    await add_user(client, "olive", "operator")
    r = await post_login(client, "olive")
    assert "Secure" in r.headers["Set-Cookie"]
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_csrf_required_on_state_changing_requests(aiohttp_client, settings, login):
    client = await make_client(aiohttp_client, settings)
    headers = await login(client, "administrator")
    assert (await client.get("/api/v1/cameras")).status == 200  # safe methods need no token
    r = await client.post("/api/v1/cameras", json={"name": "north"})
    assert r.status == 403 and "X-CSRF-Token" in (await r.json())["error"]
    r = await client.post("/api/v1/cameras", json={"name": "north"}, headers={"X-CSRF-Token": "forged"})
    assert r.status == 403
    denials = await entries(client, "access.denied")
    assert len(denials) == 2 and "CSRF" in denials[0].details and denials[0].target == "POST /api/v1/cameras"
    r = await client.post("/api/v1/cameras", json={"name": "north"}, headers=headers)
    assert r.status == 201
    # The token of another session does not work for this one.
    other = await make_client(aiohttp_client, settings)
    other_headers = await login(other, "administrator")
    r = await client.post("/api/v1/cameras", json={"name": "south"}, headers=other_headers)
    assert r.status == 403


async def test_cross_origin_requests_with_the_cookie_are_refused(aiohttp_client, settings, login):
    """A cross-site page cannot ride the cookie, not even into a WebSocket (which has no CSRF
    header): a foreign Origin is refused; the same origin, or none (curl), is fine."""
    client = await make_client(aiohttp_client, settings)
    headers = await login(client, "operator")
    host = client.make_url("/").authority
    assert (await client.get("/api/v1/session", headers={"Origin": f"http://{host}"})).status == 200
    r = await client.get("/api/v1/session", headers={"Origin": "https://evil.example"})
    assert r.status == 403 and "cross-origin" in (await r.json())["error"]
    r = await client.delete("/api/v1/session", headers={**headers, "Origin": "null"})
    assert r.status == 403
    assert (await client.get("/api/v1/session")).status == 200


async def test_logout_ends_the_session_server_side(aiohttp_client, settings, login):
    client = await make_client(aiohttp_client, settings)
    headers = await login(client, "operator")
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    assert (await client.delete("/api/v1/session")).status == 403  # needs CSRF too
    assert (await client.delete("/api/v1/session", headers=headers)).status == 200
    assert (await client.get("/api/v1/session")).status == 401
    # Replaying the old cookie gets nothing either.
    r = await client.get("/api/v1/session", cookies={COOKIE: cookie})
    assert r.status == 401
    assert len(await entries(client, "session.logout")) == 1


async def test_idle_and_absolute_expiry(aiohttp_client, settings, login):
    client = await make_client(aiohttp_client, settings, **{"security.session_idle_s": 1.5, "security.auth_cache_s": 0})
    await login(client, "operator")
    for _ in range(4):  # activity keeps it alive past the idle limit
        await asyncio.sleep(0.5)
        assert (await client.get("/api/v1/session")).status == 200
    await asyncio.sleep(1.8)
    assert (await client.get("/api/v1/session")).status == 401
    assert json_reason(await entries(client, "session.expired")) == ["idle"]

    client = await make_client(aiohttp_client, settings, **{"security.session_absolute_s": 1})
    await login(client, "operator")
    assert (await client.get("/api/v1/session")).status == 200
    await asyncio.sleep(1.1)
    assert (await client.get("/api/v1/session")).status == 401
    assert json_reason(await entries(client, "session.expired")) == ["idle", "absolute"]  # same database


def json_reason(rows: list[AuditEntry]) -> list[str]:
    import json

    return [json.loads(r.details)["reason"] for r in rows]


async def test_disabled_user_loses_access_at_once(aiohttp_client, settings, login):
    client = await make_client(aiohttp_client, settings)
    h = await login(client, "administrator")
    async with other_browser(client) as olive:
        await login(olive, "operator", "olive")
        assert (await olive.get("/api/v1/cameras")).status == 200
        r = await client.patch("/api/v1/users/olive", json={"disabled": True}, headers=h)
        assert r.status == 200 and (await r.json())["disabled"] is True
        assert (await olive.get("/api/v1/cameras")).status == 401
    r = await post_login(client, "olive")
    assert r.status == 403 and "disabled" in (await r.json())["error"]


async def test_last_administrator_cannot_be_disabled(aiohttp_client, settings, login):
    client = await make_client(aiohttp_client, settings)
    h = await login(client, "administrator", "root2")
    async with transaction(client.server.app[SESSIONS]) as session:
        await accounts.set_disabled(session, await accounts.get_user(session, "admin"), True)
    r = await client.patch("/api/v1/users/root2", json={"disabled": True}, headers=h)
    assert r.status == 400 and "no enabled administrator" in (await r.json())["error"]


# --- lockout and throttling -----------------------------------------------------------------


async def test_lockout_after_repeated_failures_is_audited(aiohttp_client, settings, login):
    client = await make_client(aiohttp_client, settings, **{"security.lockout_failures": 3, "security.lockout_s": 1.5})
    await add_user(client, "olive", "operator")
    for _ in range(2):
        r = await post_login(client, "olive", "wrong password!")
        assert r.status == 401 and (await r.json())["error"] == "wrong username or password"
    r = await post_login(client, "olive", "wrong password!")
    assert r.status == 423 and "locked until" in (await r.json())["error"]
    # Locked: even the right password is refused, and says why.
    r = await post_login(client, "olive")
    assert r.status == 423 and "locked" in (await r.json())["error"]
    actions = [(e.action, e.target) for e in await entries(client) if e.action.startswith(("session.", "user.locked"))]
    assert actions == [
        ("session.login_failed", "user:olive"), ("session.login_failed", "user:olive"),
        ("session.login_failed", "user:olive"), ("user.locked", "user:olive"),
        ("session.login_refused", "user:olive"),
    ]
    for e in await entries(client):
        assert "wrong password!" not in e.details and TEST_PASSWORD not in e.details
    # It unlocks itself after lockout_s (test_administrator_unlocks: or an administrator does).
    await asyncio.sleep(1.6)
    assert (await post_login(client, "olive")).status == 200


async def test_lockout_answers_do_not_tell_which_accounts_exist(aiohttp_client, settings):
    """Issue 11, found 14: a known account locked after N failures (423) while an unknown name
    kept answering 401, so lockout told which usernames exist. Both now get the same answers
    (status, message, fields); only the audit trail says which name was unknown."""
    client = await make_client(aiohttp_client, settings, **{"security.lockout_failures": 3})
    await add_user(client, "olive", "operator")

    async def answers(name: str, password: str) -> tuple[int, str, list[str]]:
        r = await post_login(client, name, password)
        body = await r.json()
        return r.status, re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z?", "TIME", body["error"]), sorted(body)

    for password in ("wrong password!", "wrong password!", "wrong password!", TEST_PASSWORD, "wrong password!"):
        known, unknown = await answers("olive", password), await answers("ghost", password)
        assert known == unknown, (password, known, unknown)
    assert known[0] == 423
    truth = [(e.target, json.loads(e.details)["reason"]) for e in await entries(client, "session.login_refused")]
    assert ("user:olive", "account locked") in truth
    assert ("user:ghost", "unknown user, answered as a locked account") in truth
    assert [e.target for e in await entries(client, "user.locked")] == ["user:olive"]


async def test_common_passwords_are_refused(aiohttp_client, settings, login):
    """Issue 11, found 14: Password1234 was accepted. The one strength check refuses common
    passwords and their variants (zxcvbn), wherever a password is set; long ones are judged too."""
    client = await make_client(aiohttp_client, settings)
    h = await login(client, "administrator")
    for weak in ("Password1234", "qwertyuiop123", "Summer20242024"):
        r = await client.post("/api/v1/users", json={"username": "olive", "role": "operator", "password": weak}, headers=h)
        assert r.status == 400 and "too easy to guess" in (await r.json())["error"], weak
    r = await client.post("/api/v1/session/password", json={"current_password": TEST_PASSWORD,
                                                             "new_password": "Password1234"}, headers=h)
    assert r.status == 400 and "too easy to guess" in (await r.json())["error"]
    accounts.check_password_strength("x7 " + "pale moon river " * 10, "olive")  # over 72 characters: fine
    r = await client.post("/api/v1/users", json={"username": "olive", "role": "operator",
                                                 "password": "pale moon river lantern"}, headers=h)
    assert r.status == 201


async def test_administrator_unlocks(aiohttp_client, settings, login):
    client = await make_client(aiohttp_client, settings, **{"security.lockout_failures": 2})
    await add_user(client, "olive", "operator")
    for _ in range(2):
        await post_login(client, "olive", "nope nope nope")
    assert (await post_login(client, "olive")).status == 423
    h = await login(client, "administrator")
    r = await client.patch("/api/v1/users/olive", json={"unlock": True}, headers=h)
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    assert (await post_login(client, "olive")).status == 200


async def test_unknown_users_are_throttled_per_address(aiohttp_client, settings):
    client = await make_client(aiohttp_client, settings, **{"security.address_max_failures": 3})
    await add_user(client, "olive", "operator")
    for i in range(3):
        assert (await post_login(client, f"nobody{i}", "whatever")).status == 401
    r = await post_login(client, "olive")  # even a right password, from this address, waits
    assert r.status == 429 and int(r.headers["Retry-After"]) > 0
    assert len(await entries(client, "session.throttled")) == 1


# --- TOTP -----------------------------------------------------------------------------------


async def test_totp_enrolment_and_login(aiohttp_client, settings, login):
    client = await make_client(aiohttp_client, settings)
    h = await login(client, "supervisor", "sam")
    r = await client.post("/api/v1/session/totp", json={"password": "wrong"}, headers=h)
    assert r.status == 403
    r = await client.post("/api/v1/session/totp", json={"password": TEST_PASSWORD}, headers=h)
    assert r.status == 200
    secret = (await r.json())["secret"]
    assert (await r.json())["uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(secret)
    r = await client.post("/api/v1/session/totp/confirm", json={"totp": "000000" if totp.now() != "000000" else "111111"}, headers=h)
    assert r.status == 400
    r = await client.post("/api/v1/session/totp/confirm", json={"totp": totp.now()}, headers=h)
    assert r.status == 200
    # The secret is stored encrypted, never in clear.
    async with client.server.app[SESSIONS]() as session:
        row = await accounts.get_user(session, "sam")
        assert row.totp_secret_enc and secret not in row.totp_secret_enc
    for e in await entries(client):
        assert secret not in e.details
    await client.delete("/api/v1/session", headers=h)

    r = await post_login(client, "sam")
    assert r.status == 401 and (await r.json())["totp_required"] is True
    r = await post_login(client, "sam", totp="123456" if totp.now() != "123456" else "654321")
    assert r.status == 401
    code = totp.at(time.time() + 30)  # the next step: the current one was used to enrol
    r = await post_login(client, "sam", totp=code)
    assert r.status == 200, await r.text()
    # A code is good once: replaying it is refused.
    r = await post_login(client, "sam", totp=code)
    assert r.status == 401
    assert "wrong TOTP code" in (await entries(client, "session.login_failed"))[-1].details


async def test_totp_mandatory_for_administrators(aiohttp_client, settings):
    client = await make_client(aiohttp_client, settings, **{"security.require_totp_for": ["administrator"]})
    await add_user(client, "ada", "administrator")
    r = await post_login(client, "ada")
    assert r.status == 200 and (await r.json())["totp_enrolment_required"] is True
    h = {"X-CSRF-Token": (await r.json())["csrf_token"]}
    r = await client.get("/api/v1/users")
    assert r.status == 403 and (await r.json())["error"] == "TOTP enrolment required"
    secret = (await (await client.post("/api/v1/session/totp", json={"password": TEST_PASSWORD}, headers=h)).json())["secret"]
    r = await client.post("/api/v1/session/totp/confirm", json={"totp": pyotp.TOTP(secret).now()}, headers=h)
    assert r.status == 200
    assert (await client.get("/api/v1/users")).status == 200


# --- API tokens -----------------------------------------------------------------------------


async def test_api_tokens_scopes_expiry_revocation(aiohttp_client, settings, login):
    async with contextlib.AsyncExitStack() as stack:
        await _tokens(stack, await make_client(aiohttp_client, settings), login)


async def _tokens(stack, client, login):
    h = await login(client, "administrator")
    await add_user(client, "robot", "operator")
    # The token's user creates it through their own session (rights are not transferable).
    robot = await stack.enter_async_context(other_browser(client))
    r = await post_login(robot, "robot")
    rh = {"X-CSRF-Token": (await r.json())["csrf_token"]}
    r = await robot.post("/api/v1/tokens", json={"name": "nvr-sync", "scopes": ["playback"], "expires": "1h"}, headers=rh)
    assert r.status == 201
    token = (await r.json())["token"]
    # Listing never shows it; the database holds only its hash.
    listing = await (await client.get("/api/v1/tokens")).text()
    assert token not in listing and "nvr-sync" in listing
    async with client.server.app[SESSIONS]() as session:
        assert (await session.execute(text("SELECT count(*) FROM api_tokens WHERE token_hash = :h"),
                                      {"h": accounts.token_hash(token)})).scalar_one() == 1

    bare = await stack.enter_async_context(other_browser(client))  # no cookie at all
    bearer = {"Authorization": f"Bearer {token}"}
    # In scope: past the middleware (the camera does not exist).
    r = await bare.get("/api/v1/cameras/5/recordings?from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z", headers=bearer)
    assert r.status == 404
    # Out of scope, though the role could: refused and audited.
    r = await bare.get("/api/v1/cameras", headers=bearer)
    assert r.status == 403 and "scope" in (await r.json())["error"]
    # A scope beyond the user's role is refused at creation, so it can grant nothing.
    r = await robot.post("/api/v1/tokens", json={"name": "greedy", "scopes": ["admin"], "expires": "1h"}, headers=rh)
    assert r.status == 403 and "beyond" in (await r.json())["error"]
    # State-changing requests with a token need no CSRF header.
    r = await robot.post("/api/v1/tokens", json={"name": "ops", "scopes": ["inventory_read", "authenticated"],
                                                 "expires": "1h"}, headers=rh)
    ops = {"Authorization": f"Bearer {(await r.json())['token']}"}
    assert (await bare.get("/api/v1/cameras", headers=ops)).status == 200
    assert (await bare.delete("/api/v1/session", headers=ops)).status == 400  # no session to end
    # A token cannot mint tokens.
    r = await bare.post("/api/v1/tokens", json={"name": "child", "scopes": ["inventory_read"], "expires": "1h"}, headers=ops)
    assert r.status == 403
    # Its user lists their own tokens, and may revoke them; not another user's.
    mine = await (await robot.get("/api/v1/session/tokens")).json()
    assert sorted(t["name"] for t in mine["tokens"]) == ["nvr-sync", "ops"] and token not in json.dumps(mine)
    r = await client.post("/api/v1/tokens", json={"name": "admins", "scopes": ["audit_read"], "expires": "1h"}, headers=h)
    assert r.status == 201
    assert (await robot.delete("/api/v1/session/tokens/admins", headers=rh)).status == 404
    listed = {t["name"]: t for t in (await (await client.get("/api/v1/tokens")).json())["tokens"]}
    assert listed["admins"]["revoked"] is None  # the refused revocation changed nothing
    r = await robot.post("/api/v1/tokens", json={"name": "spare", "scopes": ["playback"], "expires": "1h"}, headers=rh)
    spare = {"Authorization": f"Bearer {(await r.json())['token']}"}
    assert (await robot.delete("/api/v1/session/tokens/spare", headers=rh)).status == 200
    r = await bare.get("/api/v1/cameras/5/recordings?from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z", headers=spare)
    assert r.status == 401 and "revoked" in (await r.json())["error"]
    assert (await client.get("/api/v1/session/tokens")).status == 200

    # Expired.
    async with transaction(client.server.app[SESSIONS]) as session:
        await session.execute(text("UPDATE api_tokens SET expires_us = 1 WHERE name = 'ops'"))
    app_auth = client.server.app
    from controlroom.context import AUTH

    app_auth[AUTH].forget_user(await _user_id(client, "robot"))
    r = await bare.get("/api/v1/cameras", headers=ops)
    assert r.status == 401 and (await r.json())["error"] == "API token expired"
    # Revoked.
    assert (await client.delete("/api/v1/tokens/nvr-sync", headers=h)).status == 200
    r = await bare.get("/api/v1/cameras/5/recordings?from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z", headers=bearer)
    assert r.status == 401 and "revoked" in (await r.json())["error"]
    # Garbage.
    assert (await bare.get("/api/v1/cameras", headers={"Authorization": "Bearer crt_nope"})).status == 401
    assert (await bare.get("/api/v1/cameras", headers={"Authorization": "Basic eDp5"})).status == 401
    denials = [e.details for e in await entries(client, "access.denied")]
    assert any("expired" in d for d in denials) and any("scope" in d for d in denials)
    for e in await entries(client):
        assert token not in e.details


async def test_tokens_are_not_transferable(aiohttp_client, settings, login):
    """Issue 11, found 3: an administrator made out a playback token to an operator and watched
    footage through it. Tokens are created only by their own user, through their own session,
    within their own rights; entries written under a token name it."""
    client = await make_client(aiohttp_client, settings)
    h = await login(client, "administrator", "root")
    await add_user(client, "olive", "operator")
    for body in ({"name": "t1", "user": "olive", "scopes": ["playback", "live_view"], "expires": "1h"},
                 {"name": "t2", "scopes": ["playback"], "expires": "1h"}):  # for oneself, beyond one's rights
        r = await client.post("/api/v1/tokens", json=body, headers=h)
        assert r.status == 403, await r.text()
    async with client.server.app[SESSIONS]() as session:
        assert (await session.execute(text("SELECT count(*) FROM api_tokens"))).scalar_one() == 0
    # The administrator's own token, within their rights, is fine.
    r = await client.post("/api/v1/tokens", json={"name": "mine", "scopes": ["audit_read"], "expires": "1h"}, headers=h)
    assert r.status == 201 and (await r.json())["user"] == "root"
    # Every entry written under a token names it, as well as its user.
    async with other_browser(client) as bare:
        bearer = {"Authorization": f"Bearer {(await r.json())['token']}"}
        assert (await bare.get("/api/v1/audit", headers=bearer)).status == 200
    reads = await entries(client, "audit.read")
    assert [(e.actor, json.loads(e.details).get("token")) for e in reads] == [("root", "mine")]
    assert all("token" not in json.loads(e.details) for e in await entries(client, "session.login"))


async def _user_id(client, name: str) -> int:
    async with client.server.app[SESSIONS]() as session:
        return (await accounts.get_user(session, name)).id


# --- narrowing by site and camera -----------------------------------------------------------


async def test_rights_narrowed_to_a_site(aiohttp_client, settings, login):
    client = await make_client(aiohttp_client, settings)
    h = await login(client, "administrator")
    ids = {}
    for name in ("north-1", "south-1"):
        r = await client.post("/api/v1/cameras", json={"name": name}, headers=h)
        ids[name] = (await r.json())["id"]
    async with transaction(client.server.app[SESSIONS]) as session:
        await session.execute(text("INSERT INTO sites (id, name, location, notes) VALUES (7, 'North', '', '')"))
        await session.execute(text("UPDATE cameras SET site_id = 7 WHERE id = :i"), {"i": ids["north-1"]})
    await add_user(client, "nora", "operator", site_ids=[7])
    await login(client, "operator", "nora")
    q = "?from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z"
    assert (await client.get(f"/api/v1/cameras/{ids['north-1']}/recordings{q}")).status == 200
    assert (await client.get(f"/api/v1/cameras/{ids['south-1']}/recordings{q}")).status == 403
    assert (await client.get(f"/api/v1/cameras/south-1/recordings{q}")).status == 403  # by name too
    assert (await client.get("/api/v1/cameras/south-1")).status == 403
    listed = (await (await client.get("/api/v1/cameras")).json())["cameras"]
    assert [c["name"] for c in listed] == ["north-1"]  # the listing is narrowed too
    who = await (await client.get("/api/v1/session")).json()
    assert who["user"]["site_ids"] == [7]


# --- first run ------------------------------------------------------------------------------


async def test_first_run_prints_a_one_time_admin_password(aiohttp_client, settings, caplog):
    caplog.set_level(logging.WARNING, logger="controlroom.auth")
    client = await make_client(aiohttp_client, settings)
    lines = [r.getMessage() for r in caplog.records if "one-time password" in r.getMessage()]
    assert len(lines) == 1
    password = lines[0].split("one-time password ")[1].split(" ")[0]
    r = await post_login(client, "admin", password)
    assert r.status == 200 and (await r.json())["password_change_required"] is True
    h = {"X-CSRF-Token": (await r.json())["csrf_token"]}
    r = await client.get("/api/v1/users")
    assert r.status == 403 and (await r.json())["error"] == "password change required"
    r = await client.post("/api/v1/session/password", json={"current_password": password,
                                                             "new_password": "short"}, headers=h)
    assert r.status == 400
    r = await client.post("/api/v1/session/password", json={"current_password": password,
                                                             "new_password": "a much better passphrase"}, headers=h)
    assert r.status == 200
    assert (await client.get("/api/v1/users")).status == 200
    for e in await entries(client):
        assert password not in e.details and "a much better passphrase" not in e.details
    # A second start finds the administrator and prints nothing.
    caplog.clear()
    await make_client(aiohttp_client, settings)
    assert not [r for r in caplog.records if "one-time password" in r.getMessage()]


async def test_first_run_password_from_file(aiohttp_client, settings, tmp_path, caplog):
    pw = tmp_path / "admin-password"
    pw.write_text("from a file, long enough\n")
    caplog.set_level(logging.WARNING)
    client = await make_client(aiohttp_client, settings, **{"security.admin_password_file": str(pw)})
    assert not [r for r in caplog.records if "one-time password" in r.getMessage()]
    r = await post_login(client, "admin", "from a file, long enough")
    assert r.status == 200 and (await r.json())["password_change_required"] is False


async def test_api_action_fails_when_the_audit_cannot_be_written(aiohttp_client, settings, login):
    client = await make_client(aiohttp_client, settings)
    h = await login(client, "administrator")
    async with transaction(client.server.app[SESSIONS]) as session:
        await session.execute(text("ALTER TABLE audit RENAME TO audit_elsewhere"))
    r = await client.post("/api/v1/users", json={"username": "ghost", "role": "operator",
                                                 "password": "a fine long password"}, headers=h)
    assert r.status == 500
    async with transaction(client.server.app[SESSIONS]) as session:
        await session.execute(text("ALTER TABLE audit_elsewhere RENAME TO audit"))
        assert await accounts.find_user(session, "ghost") is None


async def test_a_read_is_not_answered_when_its_audit_entry_cannot_be_written(aiohttp_client, settings, login):
    """Reads audit through the group-commit writer: the reply waits for the entry, and fails
    (503, saying why) when it cannot be written."""
    client = await make_client(aiohttp_client, settings)
    h = await login(client, "police")
    assert (await client.get("/api/v1/evidence/requests", headers=h)).status == 200
    async with transaction(client.server.app[SESSIONS]) as session:
        await session.execute(text("ALTER TABLE audit RENAME TO audit_elsewhere"))
    try:
        r = await client.get("/api/v1/evidence/requests", headers=h)
        assert r.status == 503
        assert "audit trail not writable" in (await r.json())["error"]
    finally:
        async with transaction(client.server.app[SESSIONS]) as session:
            await session.execute(text("ALTER TABLE audit_elsewhere RENAME TO audit"))
    async with client.server.app[SESSIONS]() as session:
        assert [e.action async for e in audit.entries(session)].count("evidence.list") == 1


async def test_require_totp_for_names_real_roles(aiohttp_client, settings):
    with pytest.raises(Exception, match="unknown role"):
        await make_client(aiohttp_client, settings, **{"security.require_totp_for": ["admins"]})


def test_production_hashes_are_argon2id():
    from argon2 import PasswordHasher

    default = PasswordHasher()  # what storage.accounts uses outside the test suite
    assert (default.time_cost, default.memory_cost) == (3, 65536)
    assert accounts.hash_password("some password here").startswith("$argon2id$")


# --- headers, escaping, paths ---------------------------------------------------------------


async def test_security_headers_on_api_pages_and_errors(aiohttp_client, settings):
    client = await make_client(aiohttp_client, settings)
    for path in ("/healthz", "/api/v1/cameras", "/no/such/page", "/login", "/"):
        r = await client.get(path)
        csp = r.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, path
        assert r.headers["X-Content-Type-Options"] == "nosniff", path
        assert "Strict-Transport-Security" not in r.headers  # plain HTTP: no HSTS
    assert (await client.get("/api/v1/cameras")).headers["Cache-Control"] == "no-store"


async def test_script_in_a_name_comes_back_as_json_not_html(aiohttp_client, settings, login):
    client = await make_client(aiohttp_client, settings)
    h = await login(client, "administrator")
    evil = "<script>alert(1)</script>"
    r = await client.post("/api/v1/cameras", json={"name": evil, "position": evil}, headers=h)
    assert r.status == 201
    r = await client.get("/api/v1/cameras")
    assert r.headers["Content-Type"].startswith("application/json")
    assert (await r.json())["cameras"][0]["name"] == evil
    # Errors that quote the input are JSON (or aiohttp's plain text), never an HTML page.
    for ref in ("<img src=x onerror=alert(1)>", evil):
        r = await client.get(f"/api/v1/cameras/{ref}")
        assert r.status == 404 and not r.headers["Content-Type"].startswith("text/html")
    # Every HTML page the service renders: the name never appears unescaped.
    for path in ("/", "/login"):
        page = await client.get(path)
        if page.status == 200 and page.headers["Content-Type"].startswith("text/html"):
            assert evil not in await page.text()
    # The pages' scripts put data into the DOM as text, never as markup.
    for js in WEB_JS.rglob("*.js"):
        source = js.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert sink not in source, f"{js.name} uses {sink}"


def test_safe_path_refuses_escapes(tmp_path):
    root = tmp_path / "recordings"
    (root / "1").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (root / "1" / "link").symlink_to(tmp_path / "secret")
    assert safe_path(root, "1/2026-01-01/a.mkv") == (root / "1/2026-01-01/a.mkv").resolve()
    for bad in ("../secret", "1/../../secret", "/etc/passwd", "1/link", "1/./../../secret"):
        with pytest.raises(Invalid):
            safe_path(root, bad)


TRAVERSALS = ["../../../secret.key", "..%2f..%2f..%2fsecret.key", "%2e%2e/%2e%2e/%2e%2e/secret.key",
              "....//....//secret.key", "..%5c..%5csecret.key", "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd"]


async def test_no_file_route_serves_outside_its_root(aiohttp_client, settings, login):
    """Every route whose last parameter takes a path (or a file name) is fed traversals; no reply
    may carry the key file or /etc/passwd."""
    client = await make_client(aiohttp_client, settings)
    app = client.server.app
    await login(client, "administrator")
    key_bytes = (settings.key_file).read_text()
    secret_fragment = key_bytes[10:40]
    tried = 0
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        if route.method != "GET" or "formatter" not in info:
            continue
        pattern = info["pattern"].pattern
        if ".+" not in pattern and ".*" not in pattern and "{filename" not in info["formatter"]:
            continue
        prefix = info["formatter"].split("{")[0]
        for t in TRAVERSALS:
            r = await client.get(prefix + t)
            body = await r.read()
            tried += 1
            assert secret_fragment.encode() not in body and b"root:x:0:0" not in body, (prefix, t, r.status)
            assert r.status != 200 or not body.startswith(b"{\"fernet\""), (prefix, t)
    assert tried >= len(TRAVERSALS)  # at least the static-file route is exercised
    assert (await client.get("/static/%2e%2e/%2e%2e/auth.py")).status == 404


async def test_tls_from_settings_with_hsts_and_secure_cookie(settings, tmp_path):
    """The certificate and key named in the settings: HTTPS on loopback, HSTS on every reply,
    the session cookie marked Secure."""
    import datetime
    import ipaddress
    import ssl

    from aiohttp import web
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from controlroom.commands.serve import ssl_context

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    settings = settings.with_overrides(**{"http.tls_cert": str(tmp_path / "cert.pem"),
                                          "http.tls_key": str(tmp_path / "key.pem"), "mqtt.enabled": False})
    app = create_app(settings, record=False)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context(settings))
        await site.start()
        port = runner.addresses[0][1]
        hashed = await asyncio.to_thread(accounts.hash_password, TEST_PASSWORD)
        async with transaction(app[SESSIONS]) as session:
            await accounts.create_user(session, "olive", "operator", hashed)
        client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as http:
            async with http.get(f"https://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200 and r.headers["Strict-Transport-Security"].startswith("max-age=")
            async with http.post(f"https://127.0.0.1:{port}/api/v1/session",
                                 json={"username": "olive", "password": TEST_PASSWORD}) as r:
                assert r.status == 200
                cookie = r.headers["Set-Cookie"]
                assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        # Plain HTTP to the TLS port gets nowhere.
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    await r.read()
    finally:
        await runner.cleanup()


@pytest.mark.postgres
async def test_accounts_on_postgresql(pg_url, aiohttp_client, settings, login):
    """The same flows on PostgreSQL: login, CSRF, narrowing (JSON columns), tokens, lockout."""
    client = await make_client(aiohttp_client, settings, database_url=pg_url, **{"security.lockout_failures": 2})
    h = await login(client, "administrator")
    r = await client.post("/api/v1/cameras", json={"name": "north-1"}, headers=h)
    north = (await r.json())["id"]
    r = await client.post("/api/v1/cameras", json={"name": "south-1"}, headers=h)
    south = (await r.json())["id"]
    assert (await client.post("/api/v1/cameras", json={"name": "x"})).status == 403
    r = await client.post("/api/v1/users", json={"username": "nora", "role": "operator", "password": TEST_PASSWORD,
                                                 "camera_ids": [north], "must_change_password": False}, headers=h)
    assert r.status == 201
    async with other_browser(client) as nora:  # a token is made by its own user
        r = await post_login(nora, "nora")
        r = await nora.post("/api/v1/tokens", json={"name": "t1", "scopes": ["playback"], "expires": "1h"},
                            headers={"X-CSRF-Token": (await r.json())["csrf_token"]})
        bearer = {"Authorization": f"Bearer {(await r.json())['token']}"}
    q = "?from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z"
    assert (await client.get(f"/api/v1/cameras/{north}/recordings{q}", headers=bearer)).status == 200
    assert (await client.get(f"/api/v1/cameras/{south}/recordings{q}", headers=bearer)).status == 403
    client.session.cookie_jar.clear()
    for _ in range(2):
        await post_login(client, "nora", "not the password")
    assert (await post_login(client, "nora")).status == 423
    assert [e.action for e in await entries(client, "user.locked")] == ["user.locked"]
    async with client.server.app[SESSIONS]() as session:
        report = await audit.verify_chain(session)
    assert report.ok and report.entries > 5
