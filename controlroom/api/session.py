"""Logging in and out, and the caller's own account: /api/v1/session...

``POST /api/v1/session`` with ``{"username", "password", "totp"?}`` sets the session cookie
(HttpOnly, SameSite=Strict, Secure under TLS) and returns the CSRF token, which every
state-changing request on that session sends back in ``X-CSRF-Token``. ``GET`` returns the
caller and the CSRF token again (for a page that was reloaded); ``DELETE`` logs out.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from controlroom.auth import COOKIE, Denied, actor, client_address, current_user
from controlroom.context import AUTH, KEYS, SESSIONS, SETTINGS
from controlroom.errors import error_response, json_body
from controlroom.permissions import Permission, requires
from controlroom.security import tls_enabled
from controlroom.timefmt import us_to_iso
from storage import Invalid, accounts, audit
from storage.db import transaction

routes = web.RouteTableDef()


def _denied(d: Denied) -> web.Response:
    resp = error_response(d.status, d.reason, **{k: v for k, v in d.extra.items() if k != "retry_after_s"})
    if "retry_after_s" in d.extra:
        resp.headers["Retry-After"] = str(d.extra["retry_after_s"])
    return resp


@routes.post("/api/v1/session")
@requires(Permission.PUBLIC)
async def login(request: web.Request) -> web.Response:
    body = await json_body(request)
    username, password, totp = body.get("username"), body.get("password"), body.get("totp")
    if not isinstance(username, str) or not isinstance(password, str) or not (totp is None or isinstance(totp, str)):
        raise Invalid('send {"username": "...", "password": "...", "totp": "123456"?}')
    try:
        result = await request.app[AUTH].login(username, password, totp, client_address(request))
    except Denied as d:
        return _denied(d)
    resp = web.json_response({
        "user": result.user.public(),
        "csrf_token": result.csrf_token,
        "expires": us_to_iso(result.expires_us),
        "password_change_required": result.user.restricted == "password change required",
        "totp_enrolment_required": result.user.restricted == "TOTP enrolment required",
    })
    resp.set_cookie(COOKIE, result.token, httponly=True, samesite="Strict", secure=tls_enabled(request), path="/")
    return resp


@routes.get("/api/v1/session")
@requires(Permission.AUTHENTICATED)
async def whoami(request: web.Request) -> web.Response:
    user = current_user(request)
    return web.json_response({
        "user": user.public(),
        "csrf_token": request.app[AUTH].csrf_token(request) if user.via == "session" else None,
    })


@routes.delete("/api/v1/session")
@requires(Permission.AUTHENTICATED)
async def logout(request: web.Request) -> web.Response:
    if current_user(request).via != "session":
        raise Invalid("an API token has no session to end; revoke the token instead")
    await request.app[AUTH].logout(request)
    resp = web.json_response({"ok": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


@routes.post("/api/v1/session/password")
@requires(Permission.AUTHENTICATED)
async def change_password(request: web.Request) -> web.Response:
    """``{"current_password", "new_password"}``: the caller changes their own password. Other
    sessions of the user end; this one stays."""
    user = current_user(request)
    if user.via != "session":
        raise Invalid("log in with a password to change it")
    body = await json_body(request)
    current, new = body.get("current_password"), body.get("new_password")
    if not isinstance(current, str) or not isinstance(new, str):
        raise Invalid('send {"current_password": "...", "new_password": "..."}')
    sec = request.app[SETTINGS].security
    accounts.check_password_strength(new, user.username, sec.password_min_length)
    async with request.app[SESSIONS]() as session:
        row = await accounts.get_user(session, user.username)
        old_hash = row.password_hash
    if not await asyncio.to_thread(accounts.verify_password, old_hash, current):
        async with transaction(request.app[SESSIONS]) as session:
            await audit.append(session, actor(request), "user.password_change_failed", f"user:{user.username}",
                               address=client_address(request))
        return error_response(403, "the current password is wrong")
    if current == new:
        raise Invalid("the new password must differ from the current one")
    new_hash = await asyncio.to_thread(accounts.hash_password, new)
    async with transaction(request.app[SESSIONS]) as session:
        row = await accounts.get_user(session, user.username)
        await accounts.set_password(session, row, new_hash, must_change=False)
        # set_password ends every session of the user; this one carries on under a new row.
        new_session = await accounts.create_session(
            session, row, absolute_s=sec.session_absolute_s, address=client_address(request)
        )
        await audit.append(session, actor(request), "user.password_change", f"user:{user.username}",
                           address=client_address(request))
    request.app[AUTH].forget_user(user.id)
    resp = web.json_response({"ok": True, "csrf_token": new_session.csrf_token})
    resp.set_cookie(COOKIE, new_session.token, httponly=True, samesite="Strict", secure=tls_enabled(request), path="/")
    return resp


@routes.post("/api/v1/session/totp")
@requires(Permission.AUTHENTICATED)
async def totp_begin(request: web.Request) -> web.Response:
    """``{"password"}``: start TOTP enrolment. Returns the secret and an otpauth:// URI once."""
    user = current_user(request)
    if user.via != "session":
        raise Invalid("log in with a password to enrol a second factor")
    body = await json_body(request)
    password = body.get("password")
    if not isinstance(password, str):
        raise Invalid('send {"password": "..."}')
    async with request.app[SESSIONS]() as session:
        row = await accounts.get_user(session, user.username)
        password_hash, enrolled = row.password_hash, row.totp_enabled
    if not await asyncio.to_thread(accounts.verify_password, password_hash, password):
        return error_response(403, "the password is wrong")
    if enrolled:
        raise Invalid("TOTP is already enrolled; an administrator can reset it")
    async with transaction(request.app[SESSIONS]) as session:
        row = await accounts.get_user(session, user.username)
        secret = accounts.totp_begin(row, request.app[KEYS])
        await audit.append(session, actor(request), "user.totp_enrol_start", f"user:{user.username}")
    return web.json_response({"secret": secret, "uri": accounts.totp_uri(secret, user.username)})


@routes.post("/api/v1/session/totp/confirm")
@requires(Permission.AUTHENTICATED)
async def totp_confirm(request: web.Request) -> web.Response:
    """``{"totp"}``: finish enrolment with a code from the authenticator app."""
    user = current_user(request)
    body = await json_body(request)
    code = body.get("totp")
    if not isinstance(code, str):
        raise Invalid('send {"totp": "123456"}')
    async with transaction(request.app[SESSIONS]) as session:
        row = await accounts.get_user(session, user.username)
        ok = accounts.totp_confirm(row, request.app[KEYS], code, time.time())
        await audit.append(session, actor(request), "user.totp_enrol" if ok else "user.totp_enrol_failed",
                           f"user:{user.username}")
    if not ok:
        return error_response(400, "the TOTP code does not match; check the phone's clock and try again")
    refreshed = await request.app[AUTH].refresh(request)
    return web.json_response({"ok": True, "user": (refreshed or user).public()})
