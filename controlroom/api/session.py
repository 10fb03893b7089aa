"""Logging in and out, and the caller's own account: /api/v1/session...

``POST /api/v1/session`` with ``{"username", "password", "totp"?}`` sets the session cookie
(HttpOnly, SameSite=Strict, Secure under TLS) and returns the CSRF token, which every
state-changing request on that session sends back in ``X-CSRF-Token``. ``GET`` returns the
caller and the CSRF token again (for a page that was reloaded); ``DELETE`` logs out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from controlroom.auth import COOKIE, Denied, actor, client_address, current_user
from controlroom.context import AUTH, KEYS, SESSIONS, SETTINGS
from controlroom.contract import Body, body_of
from controlroom.errors import error_response
from controlroom.permissions import Permission, requires
from controlroom.security import tls_enabled
from controlroom.timefmt import us_to_iso
from storage import Invalid, accounts, audit
from storage.db import transaction

routes = web.RouteTableDef()
Secret = Annotated[str, Field(max_length=1024)]  # a passphrase; Argon2 of megabytes is a DoS
Code = Annotated[str, Field(max_length=16)]


class Login(Body):
    username: Annotated[str, Field(max_length=200)]
    password: Secret
    totp: Code | None = None


class PasswordChange(Body):
    current_password: Secret
    new_password: Secret


class PasswordProof(Body):
    password: Secret


class TotpCode(Body):
    totp: Code


class Caller(BaseModel):
    """The caller as ``CurrentUser.public()`` shows them."""

    id: int
    username: str
    role: str
    permissions: list[str]
    site_ids: list[int]
    camera_ids: list[int]
    via: Literal["session", "token"]
    restricted: str


class WhoAmI(BaseModel):
    user: Caller
    csrf_token: str | None = Field(description="send it back in X-CSRF-Token; null for an API token")


def _denied(d: Denied) -> web.Response:
    resp = error_response(d.status, d.reason, **{k: v for k, v in d.extra.items() if k != "retry_after_s"})
    if "retry_after_s" in d.extra:
        resp.headers["Retry-After"] = str(d.extra["retry_after_s"])
    return resp


@routes.post("/api/v1/session")
@requires(Permission.PUBLIC, body=Login)
async def login(request: web.Request) -> web.Response:
    body = body_of(request, Login)
    username, password, totp = body.username, body.password, body.totp
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
@requires(Permission.AUTHENTICATED, response=WhoAmI)
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
@requires(Permission.AUTHENTICATED, body=PasswordChange)
async def change_password(request: web.Request) -> web.Response:
    """``{"current_password", "new_password"}``: the caller changes their own password. Other
    sessions of the user end; this one stays."""
    user = current_user(request)
    if user.via != "session":
        raise Invalid("log in with a password to change it")
    body = body_of(request, PasswordChange)
    current, new = body.current_password, body.new_password
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
@requires(Permission.AUTHENTICATED, body=PasswordProof)
async def totp_begin(request: web.Request) -> web.Response:
    """``{"password"}``: start TOTP enrolment. Returns the secret and an otpauth:// URI once."""
    user = current_user(request)
    if user.via != "session":
        raise Invalid("log in with a password to enrol a second factor")
    password = body_of(request, PasswordProof).password
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
@requires(Permission.AUTHENTICATED, body=TotpCode)
async def totp_confirm(request: web.Request) -> web.Response:
    """``{"totp"}``: finish enrolment with a code from the authenticator app."""
    user = current_user(request)
    code = body_of(request, TotpCode).totp
    async with transaction(request.app[SESSIONS]) as session:
        row = await accounts.get_user(session, user.username)
        ok = accounts.totp_confirm(row, request.app[KEYS], code, time.time())
        await audit.append(session, actor(request), "user.totp_enrol" if ok else "user.totp_enrol_failed",
                           f"user:{user.username}")
    if not ok:
        return error_response(400, "the TOTP code does not match; check the phone's clock and try again")
    refreshed = await request.app[AUTH].refresh(request)
    return web.json_response({"ok": True, "user": (refreshed or user).public()})
