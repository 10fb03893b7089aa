"""Authentication and authorisation: who is asking, and may they.

Every route declares a permission (``controlroom.permissions.requires``); a route without one is
refused with 500, so a forgotten declaration fails closed. The middleware then:

1. identifies the caller: ``Authorization: Bearer TOKEN`` (an API token: no cookie, no CSRF),
   else the session cookie, else anonymous;
2. on a cookie session, requires ``X-CSRF-Token`` on every state-changing request;
3. checks the route's permission against the caller's role (and a token's scopes), and a
   ``{camera}`` in the path against the caller's site/camera narrowing;
4. audits every denial (``access.denied``), then answers 401 or 403.

Sessions and tokens are cached per process for ``security.auth_cache_s`` so a request costs no
database round trip; logout, password change and disabling through this process take effect
at once, changes made from another process (the CLI) within that time.

Handlers read the caller with :func:`current_user` and record it with :func:`actor`; routes
that list cameras narrow them with :func:`allowed_camera_ids` / :func:`can_access_camera`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlroom.context import AUDIT, AUTH, KEYS, SESSIONS, SETTINGS
from controlroom.errors import error_response
from controlroom.permissions import Permission, RouteSpec, role_permissions, route_spec
from controlroom.settings import SecuritySettings, Settings, SettingsError
from controlroom.timefmt import us_to_iso
from storage import Invalid, accounts, audit
from storage.db import now_us, row_id, transaction
from storage.keys import Keys
from storage.models import Camera

log = logging.getLogger(__name__)

COOKIE = "controlroom_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# last_seen of a session / last_used of a token is written at most this often (idle expiry is
# in tens of minutes; writing on every request would double the cost of a request).
TOUCH_EVERY_US = 60_000_000
_CAMERA_PARAMS = ("camera", "camera_id")
CACHE_MAX = 10_000  # cached sessions / tokens per process
# A name or address with no failed login for this long is forgotten (login_failures is pruned):
# a slow guesser at a name that is no account keeps counting towards its "lockout" as long as one
# at an account does, for a week at least.
FAILURES_KEEP_S = 7 * 86_400
ALLOWED_CAMERAS = web.RequestKey("allowed_cameras", frozenset)


@dataclass(frozen=True)
class CurrentUser:
    """The caller of a request, as handlers see it (``current_user(request)``)."""

    id: int
    username: str
    role: str
    permissions: frozenset[Permission]
    site_ids: frozenset[int] = frozenset()
    camera_ids: frozenset[int] = frozenset()
    via: str = "anonymous"  # "session", "token" or "anonymous"
    token_name: str = ""
    # Non-empty: the user may only act on their own session until this is done
    # ("password change required", "TOTP enrolment required").
    restricted: str = ""

    @property
    def authenticated(self) -> bool:
        return self.via != "anonymous"

    @property
    def narrowed(self) -> bool:
        """True when the user may see only some sites or cameras."""
        return bool(self.site_ids or self.camera_ids)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def public(self) -> dict:
        return {
            "id": self.id,
            "username": self.username,
            "role": self.role,
            "permissions": sorted(p.value for p in self.permissions),
            "site_ids": sorted(self.site_ids),
            "camera_ids": sorted(self.camera_ids),
            "via": self.via,
            "restricted": self.restricted,
        }


ANONYMOUS = CurrentUser(0, "anonymous", "", frozenset({Permission.PUBLIC}))
_RESTRICTED_PERMISSIONS = frozenset({Permission.PUBLIC, Permission.AUTHENTICATED})


USER = web.RequestKey("user", CurrentUser)


def current_user(request: web.Request) -> CurrentUser:
    """The caller (set by the middleware; anonymous before it or on a public route)."""
    return request.get(USER, ANONYMOUS)


def actor(request: web.Request) -> str:
    """The name audit entries record for this request's user."""
    return current_user(request).username


def client_address(request: web.Request) -> str:
    return request.remote or ""


async def allowed_camera_ids(request: web.Request) -> frozenset[int] | None:
    """The camera ids this request's user may see, or None for "every camera"."""
    user = current_user(request)
    if not user.narrowed:
        return None
    if ALLOWED_CAMERAS not in request:
        ids = set(user.camera_ids)
        if user.site_ids:
            async with request.app[SESSIONS]() as session:
                rows = await session.execute(select(Camera.id).where(Camera.site_id.in_(sorted(user.site_ids))))
                ids.update(r[0] for r in rows)
        request[ALLOWED_CAMERAS] = frozenset(ids)
    return request[ALLOWED_CAMERAS]


async def every_camera(request: web.Request) -> set[int]:
    """A ``cameras=`` resolver for routes that reach every camera's data and cannot be cut to a
    user's cameras item by item (the audit trail, the metrics): a user narrowed to some sites or
    cameras is refused them by the middleware."""
    async with request.app[SESSIONS]() as session:
        return set((await session.execute(select(Camera.id))).scalars())


async def can_access_camera(request: web.Request, camera_id: int) -> bool:
    allowed = await allowed_camera_ids(request)
    return allowed is None or camera_id in allowed


def user_from_row(row: accounts.User, security: SecuritySettings) -> CurrentUser:
    restricted = ""
    if row.must_change_password:
        restricted = "password change required"
    elif row.role in security.require_totp_for and not row.totp_enabled:
        restricted = "TOTP enrolment required"
    perms = _RESTRICTED_PERMISSIONS if restricted else role_permissions(row.role)
    return CurrentUser(
        id=row.id, username=row.username, role=row.role, permissions=perms,
        site_ids=frozenset(row.site_ids or ()), camera_ids=frozenset(row.camera_ids or ()),
        via="session", restricted=restricted,
    )


@dataclass
class _Cached:
    user: CurrentUser
    expires_us: int
    loaded_s: float  # time.monotonic() when read from the database
    touched_us: int  # last time last_seen / last_used was written
    last_seen_us: int = 0
    csrf: str = ""
    row_id: int = 0  # the API token's id


class Denied(Exception):
    """Raised inside the auth layer: becomes an audited 401/403/423/429."""

    def __init__(self, status: int, reason: str, **extra: object) -> None:
        super().__init__(reason)
        self.status, self.reason, self.extra = status, reason, extra


@dataclass
class LoginResult:
    user: CurrentUser
    token: str
    csrf_token: str
    expires_us: int


@dataclass
class Authenticator:
    """Sessions, tokens, logins and their caches, for one app (``app[AUTH]``)."""

    sessions: async_sessionmaker[AsyncSession]
    keys: Keys
    settings: Settings
    _by_session: dict[str, _Cached] = field(default_factory=dict)
    _by_token: dict[str, _Cached] = field(default_factory=dict)

    @property
    def security(self) -> SecuritySettings:
        return self.settings.security

    # --- identifying a request --------------------------------------------------------

    async def identify(self, request: web.Request) -> CurrentUser:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Denied(401, "the Authorization header must be 'Bearer TOKEN'")
            return await self._token_user(value.strip())
        cookie = request.cookies.get(COOKIE)
        if cookie:
            user = await self._session_user(cookie)
            if user is not None:
                return user
        return ANONYMOUS

    async def _session_user(self, token: str) -> CurrentUser | None:
        hashed = accounts.token_hash(token)
        now = now_us()
        mono = time.monotonic()
        cached = self._by_session.get(hashed)
        if cached is None or mono - cached.loaded_s > self.security.auth_cache_s:
            async with self.sessions() as session:
                found = await accounts.find_session(session, hashed)
            if found is None or found[1].disabled:
                self._by_session.pop(hashed, None)
                return None
            row, user_row = found
            last_seen = max(row.last_seen_us, cached.last_seen_us if cached else 0)
            cached = _Cached(
                user=replace(user_from_row(user_row, self.security), via="session"),
                expires_us=row.expires_us, loaded_s=mono, touched_us=row.last_seen_us,
                last_seen_us=last_seen, csrf=row.csrf_token,
            )
            self._remember(self._by_session, hashed, cached)
        idle_us = int(self.security.session_idle_s * 1_000_000)
        if now >= cached.expires_us or now - cached.last_seen_us > idle_us:
            self._by_session.pop(hashed, None)
            async with transaction(self.sessions) as session:
                if await accounts.end_session(session, hashed):
                    reason = "absolute" if now >= cached.expires_us else "idle"
                    await audit.append(session, cached.user.username, "session.expired", f"user:{cached.user.username}", reason=reason)
            return None
        cached.last_seen_us = now
        if now - cached.touched_us > TOUCH_EVERY_US:
            cached.touched_us = now
            async with transaction(self.sessions) as session:
                await accounts.touch_session(session, hashed, now)
        return cached.user

    async def _token_user(self, token: str) -> CurrentUser:
        hashed = accounts.token_hash(token)
        now = now_us()
        mono = time.monotonic()
        cached = self._by_token.get(hashed)
        if cached is None or mono - cached.loaded_s > self.security.auth_cache_s:
            async with self.sessions() as session:
                found = await accounts.find_token(session, hashed)
            if found is None:
                self._by_token.pop(hashed, None)
                raise Denied(401, "unknown API token")
            row, user_row = found
            if row.revoked_us is not None:
                raise Denied(401, "API token revoked", token=row.name)
            if user_row.disabled:
                raise Denied(401, "API token's user is disabled", token=row.name)
            scopes = set()
            for name in row.scope_list:
                try:
                    scopes.add(Permission(name))
                except ValueError:
                    log.warning("token %s: unknown scope %r ignored", row.name, name)
            perms = (role_permissions(user_row.role) & scopes) | _RESTRICTED_PERMISSIONS
            cached = _Cached(
                user=CurrentUser(
                    id=user_row.id, username=user_row.username, role=user_row.role, permissions=perms,
                    site_ids=frozenset(user_row.site_ids or ()), camera_ids=frozenset(user_row.camera_ids or ()),
                    via="token", token_name=row.name,
                ),
                expires_us=row.expires_us, loaded_s=mono, touched_us=row.last_used_us or 0, row_id=row.id,
            )
            self._remember(self._by_token, hashed, cached)
        if now >= cached.expires_us:
            raise Denied(401, "API token expired", token=cached.user.token_name)
        if now - cached.touched_us > TOUCH_EVERY_US:
            cached.touched_us = now
            async with transaction(self.sessions) as session:
                await accounts.mark_token_used(session, cached.row_id, now)
        return cached.user

    def _remember(self, cache: dict[str, _Cached], key: str, entry: _Cached) -> None:
        if len(cache) >= CACHE_MAX:  # sessions nobody uses any more: drop the stalest half
            for k, _ in sorted(cache.items(), key=lambda kv: kv[1].loaded_s)[: CACHE_MAX // 2]:
                cache.pop(k, None)
        cache[key] = entry

    def csrf_ok(self, request: web.Request) -> bool:
        cookie = request.cookies.get(COOKIE, "")
        cached = self._by_session.get(accounts.token_hash(cookie)) if cookie else None
        sent = request.headers.get(CSRF_HEADER, "")
        return bool(cached and sent and accounts.same_secret(cached.csrf, sent))

    def csrf_token(self, request: web.Request) -> str:
        cookie = request.cookies.get(COOKIE, "")
        cached = self._by_session.get(accounts.token_hash(cookie)) if cookie else None
        return cached.csrf if cached else ""

    def forget_user(self, user_id: int) -> None:
        """Drop cached sessions and tokens of a user (disabled, password or role changed)."""
        for cache in (self._by_session, self._by_token):
            for key in [k for k, v in cache.items() if v.user.id == user_id]:
                cache.pop(key, None)

    # --- logging in and out -----------------------------------------------------------

    # Failed logins that no account row counts (per address; per name that is no account, which
    # locks exactly as an account does, so the answers do not tell which accounts exist) are
    # rows of login_failures: every API node of a cluster counts the same failures.

    async def _address_failed(self, session: AsyncSession, address: str, at_us: int) -> None:
        sec = self.security
        await accounts.address_failed(session, address, at_us, sec.address_window_s,
                                      keep_s=max(sec.address_window_s, sec.lockout_s, FAILURES_KEEP_S))

    async def login(self, username: str, password: str, totp: str | None, address: str) -> LoginResult:
        """Check a login; audit it either way. Raises :class:`Denied` (401, 423 or 429).

        An unknown username gets the same answers as an account (a dummy Argon2 verification,
        the same lockout after the same number of failures, the same 423): only the audit
        trail says it was unknown."""
        sec = self.security
        async with self.sessions() as session:
            throttled = await accounts.address_throttled(session, address, now_us(), sec.address_max_failures,
                                                         sec.address_window_s)
        if throttled:
            async with transaction(self.sessions) as session:
                await audit.append(session, username or "anonymous", "session.throttled", f"address:{address}", address=address)
            raise Denied(429, "too many failed logins from this address; try again later",
                         retry_after_s=int(sec.address_window_s))
        now = now_us()
        async with self.sessions() as session:
            row = await accounts.find_user(session, username)
            password_hash = row.password_hash if row is not None else None
            user_id = row.id if row is not None else None
            if row is not None:
                locked_until_us = row.locked_until_us if accounts.locked(row, now) else None
            else:
                locked_until_us = await accounts.unknown_locked_until(session, username, now)
        if locked_until_us is not None:
            async with transaction(self.sessions) as session:
                await audit.append(session, username or "anonymous", "session.login_refused", f"user:{username}",
                                   address=address, reason="account locked" if row is not None
                                   else "unknown user, answered as a locked account")
            raise Denied(423, f"account locked until {us_to_iso(locked_until_us)}; "
                              "an administrator can unlock it", locked_until=us_to_iso(locked_until_us))
        ok = await asyncio.to_thread(accounts.verify_password, password_hash, password)
        async with transaction(self.sessions) as session:
            user = await accounts.get_user_by_id(session, user_id) if user_id is not None else None
            if user is None or not ok:
                await self._address_failed(session, address, now)
                locked_now = False
                if user is not None:
                    locked_now = accounts.record_failure(user, now, sec.lockout_failures, sec.lockout_s)
                    locked_until_us = user.locked_until_us
                else:
                    locked_until_us = await accounts.unknown_failed(session, username, now, sec.lockout_failures,
                                                                    sec.lockout_s)
                    locked_now = locked_until_us is not None
                await audit.append(session, username or "anonymous", "session.login_failed", f"user:{username}",
                                   address=address, reason="unknown user" if user is None else "wrong password",
                                   **({"answered": "as a locked account"} if user is None and locked_now else {}))
                if locked_now and user is not None:
                    await audit.append(session, "system", "user.locked", f"user:{username}", address=address,
                                       failures=sec.lockout_failures, until_us=user.locked_until_us)
            elif user.disabled:
                await audit.append(session, username, "session.login_refused", f"user:{username}",
                                   address=address, reason="account disabled")
                locked_now = None
            else:
                locked_now = None
        if user is None or not ok:
            if locked_now:
                raise Denied(423, f"account locked until {us_to_iso(locked_until_us)} after "
                                  f"{sec.lockout_failures} failed logins", locked_until=us_to_iso(locked_until_us))
            raise Denied(401, "wrong username or password")
        if user.disabled:
            raise Denied(403, "account disabled")
        if user.totp_enabled:
            if not totp:
                raise Denied(401, "a TOTP code is required", totp_required=True)
            async with transaction(self.sessions) as session:
                user = await accounts.get_user_by_id(session, user.id)
                totp_ok = accounts.totp_check(user, self.keys, totp, time.time())
                if not totp_ok:
                    await self._address_failed(session, address, now)
                    locked_now = accounts.record_failure(user, now, sec.lockout_failures, sec.lockout_s)
                    await audit.append(session, username, "session.login_failed", f"user:{username}",
                                       address=address, reason="wrong TOTP code")
                    if locked_now:
                        await audit.append(session, "system", "user.locked", f"user:{username}", address=address,
                                           failures=sec.lockout_failures, until_us=user.locked_until_us)
            if locked_now:
                raise Denied(423, f"account locked until {us_to_iso(user.locked_until_us)}",
                             locked_until=us_to_iso(user.locked_until_us))
            if not totp_ok:
                raise Denied(401, "wrong TOTP code", totp_required=True)
        rehash = await asyncio.to_thread(accounts.needs_rehash, user.password_hash)
        new_hash = await asyncio.to_thread(accounts.hash_password, password) if rehash else None
        async with transaction(self.sessions) as session:
            user = await accounts.get_user_by_id(session, user.id)
            if user.totp_enabled and not totp:  # enrolled between the two reads
                raise Denied(401, "a TOTP code is required", totp_required=True)
            now = now_us()  # after the (slow) hashing: the session starts now
            accounts.record_success(user, now)
            if new_hash:
                user.password_hash = new_hash
            new = await accounts.create_session(session, user, absolute_s=sec.session_absolute_s, address=address, at_us=now)
            await audit.append(session, username, "session.login", f"user:{username}", address=address,
                               totp=bool(user.totp_enabled))
            current = user_from_row(user, sec)
        self._remember(self._by_session, new.row.token_hash, _Cached(
            user=current, expires_us=new.row.expires_us, loaded_s=time.monotonic(), touched_us=now,
            last_seen_us=now, csrf=new.csrf_token,
        ))
        return LoginResult(current, new.token, new.csrf_token, new.row.expires_us)

    async def logout(self, request: web.Request) -> bool:
        cookie = request.cookies.get(COOKIE, "")
        if not cookie:
            return False
        hashed = accounts.token_hash(cookie)
        self._by_session.pop(hashed, None)
        async with transaction(self.sessions) as session:
            ended = await accounts.end_session(session, hashed)
            if ended:
                await audit.append(session, actor(request), "session.logout", f"user:{actor(request)}",
                                   address=client_address(request))
        return ended

    async def refresh(self, request: web.Request) -> CurrentUser | None:
        """Re-read the caller's session now (after a password change or TOTP enrolment)."""
        cookie = request.cookies.get(COOKIE, "")
        if not cookie:
            return None
        cached = self._by_session.get(accounts.token_hash(cookie))
        if cached is not None:
            cached.loaded_s = -1e18
        return await self._session_user(cookie)

    # --- denials ----------------------------------------------------------------------

    async def deny(
        self, request: web.Request, user: CurrentUser, status: int, reason: str,
        permission: Permission | None = None, **extra: object,
    ) -> web.Response:
        """Audit a refused request, then answer it. The refusal stands even if auditing fails."""
        try:
            await request.app[AUDIT].append(
                user.username, "access.denied", f"{request.method} {request.path}"[:400],
                status=status, reason=reason, permission=permission.value if permission else None,
                address=client_address(request), via=user.via, token=user.token_name or None,
            )
        except Exception:
            log.exception("could not audit a denied request %s %s", request.method, request.path)
        headers = {"WWW-Authenticate": 'Bearer realm="controlroom"'} if status == 401 else None
        resp = error_response(status, reason, **extra)
        if headers:
            resp.headers.update(headers)
        return resp


async def _camera_id(request: web.Request, ref: str) -> int | None:
    if ref.isascii() and ref.isdigit():
        return row_id(ref)
    async with request.app[SESSIONS]() as session:
        row = await session.execute(select(Camera.id).where(Camera.name == ref))
        found = row.first()
    return found[0] if found else None


def same_origin(request: web.Request) -> bool:
    """No Origin header (not a cross-site browser request), or one naming this host."""
    origin = request.headers.get("Origin")
    if not origin:
        return True
    return origin != "null" and origin.split("://", 1)[-1].rstrip("/") == request.host


def route_of(request: web.Request) -> RouteSpec | None:
    """The matched route's declaration (PUBLIC for aiohttp's own 404/405 answers)."""
    info = request.match_info
    if info.http_exception is not None:  # 404/405: let aiohttp answer
        return RouteSpec(Permission.PUBLIC)
    return route_spec(info.handler)


async def cameras_reached(request: web.Request, spec: RouteSpec) -> set[int]:
    """Every camera this request names or reaches: ``{camera}``/``{camera_id}`` in the path,
    ``camera=`` in the query (id or name), and the cameras of the route's object (its declared
    resolver). Unknown names are left to the handler (404)."""
    found: set[int] = set()
    refs = [request.match_info.get(name) for name in _CAMERA_PARAMS] + request.query.getall("camera", [])
    for ref in refs:
        if ref:
            cam = await _camera_id(request, ref)
            if cam is not None:
                found.add(cam)
    if spec.cameras is not None:
        found |= await spec.cameras(request) or set()
    return found


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    spec = route_of(request)
    if spec is None:
        log.error("route %s %s declares no permission: refused", request.method, request.path)
        return error_response(500, "route declares no permission")
    perm = spec.permission
    auth = request.app[AUTH]
    try:
        user = await auth.identify(request)
    except Denied as d:
        if perm is Permission.PUBLIC:
            user = ANONYMOUS
        else:
            return await auth.deny(request, ANONYMOUS, d.status, d.reason, perm)
    request[USER] = user
    # Every audit entry this request appends names the token it acts through (aiohttp runs each
    # request in a task of its own, so this does not leak into another request).
    audit.ACTING_TOKEN.set(user.token_name)
    if perm is Permission.PUBLIC:
        return await handler(request)
    if not user.authenticated:
        return await auth.deny(request, user, 401, "login required", perm)
    if user.via == "session":
        if request.method not in SAFE_METHODS and not auth.csrf_ok(request):
            return await auth.deny(request, user, 403, f"missing or wrong {CSRF_HEADER} header", perm)
        if not same_origin(request):  # a cross-site WebSocket carries no CSRF header: check Origin
            return await auth.deny(request, user, 403, "cross-origin request refused", perm)
    if perm not in user.permissions:
        reason = user.restricted or f"role {user.role} lacks the {perm.value} right"
        if user.via == "token" and perm in role_permissions(user.role):
            reason = f"API token lacks the {perm.value} scope"
        return await auth.deny(request, user, 403, reason, perm)
    if user.narrowed:
        allowed = await allowed_camera_ids(request)
        outside = await cameras_reached(request, spec) - (allowed or set())
        if outside:
            return await auth.deny(request, user, 403, "not allowed for this camera", perm)
    return await handler(request)


# --- first run ------------------------------------------------------------------------------


def read_password_file(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError as exc:
        raise Invalid(f"cannot read password file {path}: {exc.strerror}") from None
    lines = text.splitlines()
    return lines[0] if lines else ""


async def bootstrap_admin(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> str | None:
    """Create the first administrator when there are no users. Returns the generated one-time
    password (to print once) or None (a password file was used, or users exist)."""
    sec = settings.security
    async with sessions() as session:
        if await accounts.count_users(session):
            return None
    generated = None
    if sec.admin_password_file:
        password = await asyncio.to_thread(read_password_file, Path(sec.admin_password_file))
        accounts.check_password_strength(password, sec.admin_username, sec.password_min_length)
    else:
        password = generated = accounts.generate_password()
    password_hash = await asyncio.to_thread(accounts.hash_password, password)
    try:
        async with transaction(sessions) as session:
            if await accounts.count_users(session):  # another process was first
                return None
            await accounts.create_user(session, sec.admin_username, "administrator", password_hash,
                                       must_change_password=generated is not None)
            await audit.append(session, "system", "user.add", f"user:{sec.admin_username}", role="administrator",
                               first_run=True, password="generated" if generated else "from file")
    except IntegrityError:
        # Nodes of a cluster starting together on an empty database: another one created the
        # administrator between this one's count and its insert (found by bench.cluster: the
        # node died at start-up on uq_users_username).
        log.warning("first run: another node created the administrator %r first", sec.admin_username)
        return None
    return generated


async def accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    """After database_ctx: the authenticator, and the first administrator on first run."""
    settings = app[SETTINGS]
    unknown = set(settings.security.require_totp_for) - set(accounts.ROLES)
    if unknown:
        raise SettingsError(f"security.require_totp_for: unknown role(s) {sorted(unknown)}; "
                            f"roles are {', '.join(accounts.ROLES)}")
    app[AUTH] = Authenticator(app[SESSIONS], app[KEYS], settings)
    generated = await bootstrap_admin(app[SESSIONS], settings)
    if generated:
        # The one time this password exists anywhere: on the operator's console. It must be
        # changed at first login; the audit trail records only that it was generated.
        log.warning("first run: created administrator %r with one-time password %s (change it at first login)",
                    settings.security.admin_username, generated)
    yield
