"""Administering users and API tokens: /api/v1/users..., /api/v1/tokens... (administrators;
any user creates tokens for themselves).

Listings never include a password hash, a TOTP secret or a token: a token is shown once, in
the reply that creates it. Every change is audited in the same transaction.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field

from controlroom import disclosure
from controlroom.auth import actor, current_user
from controlroom.context import AUTH, SESSIONS, SETTINGS
from controlroom.contract import Body, Name, RowId, body_of
from controlroom.errors import Forbidden
from controlroom.permissions import Disclosure, Permission, requires
from controlroom.timefmt import us_to_iso
from storage import Invalid, NotFound, accounts, audit
from storage.db import now_us, transaction

routes = web.RouteTableDef()
Role = Literal["administrator", "supervisor", "operator", "police"]
Password = Annotated[str, Field(max_length=1024)]  # a passphrase, not a document to hash
Scope = Literal[tuple(p.value for p in Permission if p is not Permission.PUBLIC)]  # type: ignore[valid-type]


class UserCreate(Body):
    username: Name
    role: Role
    password: Password
    site_ids: list[RowId] | None = Field(None, max_length=1000)
    camera_ids: list[RowId] | None = Field(None, max_length=1000)
    must_change_password: bool = True


class UserUpdate(Body):
    role: Role | None = None
    disabled: bool | None = None
    password: Password | None = None
    site_ids: list[RowId] | None = Field(None, max_length=1000)
    camera_ids: list[RowId] | None = Field(None, max_length=1000)
    unlock: bool | None = None
    reset_totp: bool | None = None


class TokenCreate(Body):
    name: Name
    user: Name | None = None  # if sent, it must name the caller (rights are not transferable)
    scopes: list[Scope] = Field(min_length=1, max_length=len(Permission))
    # 90m, 12h, 30d, 2w or seconds (storage.accounts.parse_duration_s); six digits at most, so
    # the expiry stays a 64-bit number of microseconds.
    expires: str = Field(pattern=r"^[0-9]{1,6}[mhdw]?$")


def user_json(row: accounts.User) -> dict[str, Any]:
    data = accounts.user_public(row)
    for key in ("locked_until", "created", "last_login"):
        data[key] = us_to_iso(data.pop(f"{key}_us"))
    return data


def token_json(row: accounts.ApiToken, username: str) -> dict[str, Any]:
    data = accounts.token_public(row, username)
    for key in ("created", "expires", "revoked", "last_used"):
        data[key] = us_to_iso(data.pop(f"{key}_us"))
    return data


def check_scopes(scopes: Any) -> list[str]:
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise Invalid("scopes must be a non-empty list of permission names")
    known = {p.value for p in Permission} - {Permission.PUBLIC.value}
    unknown = sorted(set(scopes) - known)
    if unknown:
        raise Invalid(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return sorted(set(scopes))


def check_scopes_held(scopes: list[str], held: frozenset[Permission]) -> None:
    """A token grants at most what its user holds: refuse scopes beyond the user's own rights."""
    beyond = sorted(set(scopes) - {p.value for p in held})
    if beyond:
        raise Forbidden(f"scope(s) {', '.join(beyond)} beyond the user's own rights")


async def _enabled_admins(session) -> int:
    return sum(1 for u in await accounts.list_users(session) if u.role == "administrator" and not u.disabled)


@routes.get("/api/v1/users")
@requires(Permission.ADMIN, discloses=Disclosure.PERSONAL, action="user.list")
async def list_users(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        rows = await accounts.list_users(session)
    disclosure.note(request, "users", count=len(rows))
    return web.json_response({"users": [user_json(u) for u in rows]})


@routes.get("/api/v1/users/{username}")
@requires(Permission.ADMIN, discloses=Disclosure.PERSONAL, action="user.view")
async def show_user(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        row = await accounts.get_user(session, request.match_info["username"])
    return web.json_response(user_json(row))


@routes.post("/api/v1/users")
@requires(Permission.ADMIN, body=UserCreate, status=201)
async def add_user(request: web.Request) -> web.Response:
    """``{"username", "role", "password", "site_ids"?, "camera_ids"?, "must_change_password"?}``.
    A password set by an administrator must be changed at first login unless told otherwise."""
    new = body_of(request, UserCreate)
    username, role, password = new.username, new.role, new.password
    accounts.check_password_strength(password, username, request.app[SETTINGS].security.password_min_length)
    password_hash = await asyncio.to_thread(accounts.hash_password, password)
    async with transaction(request.app[SESSIONS]) as session:
        row = await accounts.create_user(
            session, username, role, password_hash, must_change_password=new.must_change_password,
            site_ids=new.site_ids, camera_ids=new.camera_ids,
        )
        await audit.append(session, actor(request), "user.add", f"user:{username}", role=role,
                           site_ids=row.site_ids, camera_ids=row.camera_ids)
    return web.json_response(user_json(row), status=201)


@routes.patch("/api/v1/users/{username}")
@requires(Permission.ADMIN, body=UserUpdate)
async def update_user(request: web.Request) -> web.Response:
    """Any of ``{"role", "disabled", "password", "site_ids", "camera_ids", "unlock": true,
    "reset_totp": true}``. Disabling ends the user's sessions and revokes their tokens."""
    body = body_of(request, UserUpdate).model_dump(exclude_unset=True, exclude_none=True)
    if not body:
        raise Invalid(f"send one or more of {', '.join(sorted(UserUpdate.model_fields))}")
    name = request.match_info["username"]
    new_hash = None
    if "password" in body:
        if not isinstance(body["password"], str):
            raise Invalid("password must be a string")
        accounts.check_password_strength(body["password"], name, request.app[SETTINGS].security.password_min_length)
        new_hash = await asyncio.to_thread(accounts.hash_password, body["password"])
    async with transaction(request.app[SESSIONS]) as session:
        row = await accounts.get_user(session, name)
        changed: list[str] = []
        if "role" in body:
            accounts.set_role(row, str(body["role"]))
            changed.append("role")
        if "site_ids" in body or "camera_ids" in body:
            accounts.set_scope(row, body.get("site_ids"), body.get("camera_ids"))
            changed.append("scope")
        if body.get("unlock"):
            accounts.unlock(row)
            changed.append("unlock")
        if body.get("reset_totp"):
            accounts.totp_reset(row)
            changed.append("reset_totp")
        if new_hash:
            await accounts.set_password(session, row, new_hash, must_change=True)
            changed.append("password")
        if "disabled" in body:
            await accounts.set_disabled(session, row, bool(body["disabled"]))
            changed.append("disabled" if body["disabled"] else "enabled")
        await session.flush()
        if await _enabled_admins(session) == 0:
            raise Invalid("this would leave no enabled administrator")
        await audit.append(session, actor(request), "user.update", f"user:{name}", changes=changed,
                           role=row.role, disabled=row.disabled, site_ids=row.site_ids, camera_ids=row.camera_ids)
    request.app[AUTH].forget_user(row.id)
    return web.json_response(user_json(row))


@routes.get("/api/v1/tokens")
@requires(Permission.ADMIN, discloses=Disclosure.PERSONAL, action="token.list")
async def list_tokens(request: web.Request) -> web.Response:
    """Who holds which token, with which rights, and when it was last used: people's data."""
    async with request.app[SESSIONS]() as session:
        rows = await accounts.list_tokens(session)
    disclosure.note(request, "tokens", count=len(rows))
    return web.json_response({"tokens": [token_json(t, u) for t, u in rows]})


@routes.post("/api/v1/tokens")
@requires(Permission.AUTHENTICATED, body=TokenCreate, status=201)
async def create_token(request: web.Request) -> web.Response:
    """``{"name", "scopes": [...], "expires": "30d"}``: the caller makes a token for themselves,
    through their own login session, with scopes within their own rights. ``"user"`` may be
    sent but must name the caller: rights are not transferable, not even by an administrator
    (docs/design/security-model.md, "API tokens"). The token is in this reply only."""
    caller = current_user(request)
    body = body_of(request, TokenCreate)
    name, username = body.name, body.user or caller.username
    if caller.via != "session":
        raise Forbidden("a token is created through its user's own login session, not with another token")
    if username != caller.username:
        raise Forbidden(f"a token acts as the user who creates it: {username} must log in and create their own")
    scopes = check_scopes(list(body.scopes))
    check_scopes_held(scopes, caller.permissions)
    expires_us = now_us() + accounts.parse_duration_s(body.expires) * 1_000_000
    async with transaction(request.app[SESSIONS]) as session:
        user = await accounts.get_user(session, username)
        token, row = await accounts.create_token(session, name, user, scopes, expires_us, actor(request))
        await audit.append(session, actor(request), "token.create", f"token:{name}", user=username,
                           scopes=scopes, expires_us=expires_us)
    return web.json_response({**token_json(row, username), "token": token}, status=201)


@routes.get("/api/v1/session/tokens")
@requires(Permission.AUTHENTICATED)
async def list_own_tokens(request: web.Request) -> web.Response:
    """The caller's own tokens (never the token itself)."""
    caller = current_user(request)
    async with request.app[SESSIONS]() as session:
        rows = await accounts.list_tokens(session)
    return web.json_response({"tokens": [token_json(t, u) for t, u in rows if t.user_id == caller.id]})


@routes.delete("/api/v1/session/tokens/{name}")
@requires(Permission.AUTHENTICATED)
async def revoke_own_token(request: web.Request) -> web.Response:
    """Revoke one of the caller's own tokens (another user's is "no such token")."""
    caller, name = current_user(request), request.match_info["name"]
    async with transaction(request.app[SESSIONS]) as session:
        row = await accounts.revoke_token(session, name)
        if row.user_id != caller.id:
            raise NotFound(f"no token {name!r}")  # rolls the revocation back
        await audit.append(session, actor(request), "token.revoke", f"token:{name}", own=True)
    request.app[AUTH].forget_user(caller.id)
    return web.json_response({"ok": True})


@routes.delete("/api/v1/tokens/{name}")
@requires(Permission.ADMIN)
async def revoke_token(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    async with transaction(request.app[SESSIONS]) as session:
        row = await accounts.revoke_token(session, name)
        await audit.append(session, actor(request), "token.revoke", f"token:{name}")
        user_id = row.user_id
    request.app[AUTH].forget_user(user_id)
    return web.json_response({"ok": True})
