"""Accounts: users, login sessions, API tokens, lockout state and TOTP secrets.

What is stored, and how (see docs/design/security-model.md):

- passwords: Argon2id hashes (argon2-cffi), never the password;
- login sessions and API tokens: the SHA-256 of a 256-bit random token, never the token, so a
  copy of the database lets nobody log in;
- TOTP secrets: encrypted with the key file (:class:`storage.keys.Keys`), never in clear;
- lockout: consecutive failed logins per account and the time the lock ends.

Roles are plain names here; what each role may do is decided in ``controlroom.permissions``.
Password hashing is blocking (tens of milliseconds): callers run it off the event loop.
Times are integer UTC microseconds (``*_us``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import pyotp
import zxcvbn
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    case,
    delete,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import Invalid, NotFound
from storage.db import Base, insert_for, now_us
from storage.keys import Keys

ROLES = ("administrator", "supervisor", "operator", "police")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
TOKEN_PREFIX = "crt_"  # makes a leaked token recognisable to secret scanners
PASSWORD_MIN_LENGTH = 12
# zxcvbn's score (0 to 4) a password must reach. 3 is zxcvbn's "safely unguessable: moderate
# protection from offline slow-hash attacks" (about 10^10 guesses); our hashes are Argon2id,
# and below 3 are the common passwords and their variants (Password1234 scores 1).
PASSWORD_MIN_SCORE = 3
ZXCVBN_MAX_CHARS = 72  # zxcvbn 4.5 raises on longer input
TOTP_STEP_S = 30


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200))
    password_changed_us: Mapped[int] = mapped_column(BigInteger)
    # Set for a generated or administrator-set password: the user must choose their own first.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_secret_enc: Mapped[str] = mapped_column(Text, default="")  # Fernet token
    totp_pending_enc: Mapped[str] = mapped_column(Text, default="")  # enrolment not yet confirmed
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)  # refuses a code's replay
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Narrowing: empty lists mean every site / camera. Otherwise the union of both.
    site_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    camera_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_us: Mapped[int] = mapped_column(BigInteger)
    last_login_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    @property
    def totp_enabled(self) -> bool:
        return bool(self.totp_secret_enc)


class LoginSession(Base):
    __tablename__ = "login_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Not a credential on its own (useless without the cookie); kept so the UI can fetch it again.
    csrf_token: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_us: Mapped[int] = mapped_column(BigInteger)
    last_seen_us: Mapped[int] = mapped_column(BigInteger)
    expires_us: Mapped[int] = mapped_column(BigInteger)  # absolute expiry
    address: Mapped[str] = mapped_column(String(64), default="")


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scopes: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of permission names
    created_us: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    expires_us: Mapped[int] = mapped_column(BigInteger)
    revoked_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_used_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    @property
    def scope_list(self) -> list[str]:
        return list(json.loads(self.scopes or "[]"))


# --- secrets and hashes -------------------------------------------------------------------

_HASHER = PasswordHasher()  # Argon2id, the library's defaults (RFC 9106 "low memory" profile)
# Verified against when the user does not exist, so an unknown name costs as long as a wrong
# password. Made at the first login, not at import (a hash is CPU work every CLI command would pay).
_DUMMY_HASH: str | None = None


def set_hash_cost(*, time_cost: int, memory_kib: int, parallelism: int = 1) -> None:
    """Make Argon2id cheaper. For the test suite only, where hundreds of logins at production
    cost (about 0.1 s each, far more on a loaded machine) would dominate the run. Hashes record
    their own parameters, so either kind verifies; a cheap hash is upgraded at the next login."""
    global _HASHER, _DUMMY_HASH
    _HASHER = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    _DUMMY_HASH = None


def hash_password(password: str) -> str:
    """Argon2id hash. Blocking (tens of ms): run it with ``asyncio.to_thread``."""
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Blocking. ``password_hash=None`` verifies against a dummy, to keep timing even."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


def check_password_strength(password: str, username: str = "", min_length: int = PASSWORD_MIN_LENGTH) -> None:
    if len(password) < min_length:
        raise Invalid(f"the password must have at least {min_length} characters")
    if username and username.lower() in password.lower():
        raise Invalid("the password must not contain the username")
    if len(set(password)) < 5:
        raise Invalid("the password is too repetitive")
    # zxcvbn raises on more than 72 characters; the first 72 of a long one are judged.
    judged = zxcvbn.zxcvbn(password[:ZXCVBN_MAX_CHARS], user_inputs=[username] if username else [])
    if judged["score"] < PASSWORD_MIN_SCORE:
        warning = judged["feedback"].get("warning") or "it is too easy to guess"
        raise Invalid(f"the password is too easy to guess: {warning.rstrip('.').lower()}; "
                      "a few unrelated words make a strong one")


def generate_password() -> str:
    """A one-time password for a new account: 20 URL-safe characters (about 120 bits)."""
    return secrets.token_urlsafe(15)


def token_hash(token: str) -> str:
    """How session and API tokens are stored and looked up: SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# --- users ---------------------------------------------------------------------------------


def _check_username(username: str) -> None:
    if not USERNAME.match(username or ""):
        raise Invalid("a username is 1 to 100 letters, digits or . _ @ - and starts with a letter or digit")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}; one of {', '.join(ROLES)}")


def _check_ids(ids: Any, what: str) -> list[int]:
    if ids is None:
        return []
    if not isinstance(ids, list | tuple | set | frozenset) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids
    ):
        raise Invalid(f"{what} must be a list of positive integer ids")
    return sorted(set(ids))


async def create_user(
    session: AsyncSession,
    username: str,
    role: str,
    password_hash: str,
    *,
    must_change_password: bool = False,
    site_ids: list[int] | None = None,
    camera_ids: list[int] | None = None,
) -> User:
    _check_username(username)
    _check_role(role)
    if await find_user(session, username) is not None:
        raise Invalid(f"user {username!r} already exists")
    now = now_us()
    user = User(
        username=username, role=role, password_hash=password_hash, password_changed_us=now,
        must_change_password=must_change_password, disabled=False, totp_secret_enc="",
        totp_pending_enc="", totp_last_step=0, failed_logins=0, locked_until_us=None,
        site_ids=_check_ids(site_ids, "site_ids"), camera_ids=_check_ids(camera_ids, "camera_ids"),
        created_us=now,
    )
    session.add(user)
    await session.flush()
    return user


async def find_user(session: AsyncSession, username: str) -> User | None:
    return (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()


async def get_user(session: AsyncSession, username: str) -> User:
    user = await find_user(session, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


async def get_user_by_id(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def list_users(session: AsyncSession) -> list[User]:
    return list((await session.execute(select(User).order_by(User.username))).scalars())


async def count_users(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(User))).scalar_one())


async def set_password(session: AsyncSession, user: User, password_hash: str, *, must_change: bool) -> None:
    user.password_hash = password_hash
    user.password_changed_us = now_us()
    user.must_change_password = must_change
    user.failed_logins = 0
    user.locked_until_us = None
    await end_sessions(session, user.id)


async def set_disabled(session: AsyncSession, user: User, disabled: bool) -> None:
    user.disabled = disabled
    if disabled:
        await end_sessions(session, user.id)
        await session.execute(
            ApiToken.__table__.update()
            .where(ApiToken.user_id == user.id, ApiToken.revoked_us.is_(None))
            .values(revoked_us=now_us())
        )


def set_role(user: User, role: str) -> None:
    _check_role(role)
    user.role = role


def set_scope(user: User, site_ids: list[int] | None, camera_ids: list[int] | None) -> None:
    if site_ids is not None:
        user.site_ids = _check_ids(site_ids, "site_ids")
    if camera_ids is not None:
        user.camera_ids = _check_ids(camera_ids, "camera_ids")


def user_public(user: User) -> dict[str, Any]:
    """A user as listings show it: no hash, no secret."""
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "disabled": user.disabled,
        "must_change_password": user.must_change_password,
        "totp_enabled": user.totp_enabled,
        "locked_until_us": user.locked_until_us,
        "failed_logins": user.failed_logins,
        "site_ids": list(user.site_ids or []),
        "camera_ids": list(user.camera_ids or []),
        "created_us": user.created_us,
        "last_login_us": user.last_login_us,
    }


# --- lockout -------------------------------------------------------------------------------


class LoginFailures(Base):
    """Failed logins that no account row counts, kept in the database so that every API node of
    a cluster sees the same counts (docs/design/cluster.md): per client address (the throttle,
    ``address:<ip>``) and per name that is no account (answered as an account would be and
    "locked" after as many failures, ``name:<username>``). An account's own count and lockout
    are columns of its row."""

    __tablename__ = "login_failures"
    key: Mapped[str] = mapped_column(String(320), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_us: Mapped[int] = mapped_column(BigInteger)  # the first failure counted (the window's start)
    last_us: Mapped[int] = mapped_column(BigInteger, index=True)  # the latest: stale rows are pruned by it
    locked_until_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


def _address_key(address: str) -> str:
    return f"address:{address}"[:320]


def _name_key(username: str) -> str:
    return f"name:{username}"[:320]


async def address_throttled(session: AsyncSession, address: str, at_us: int, max_failures: int, window_s: float) -> bool:
    """``max_failures`` failed logins from ``address`` in the window that began at its first
    counted failure: refuse logins from there until the window ends."""
    row = await session.get(LoginFailures, _address_key(address), populate_existing=True)
    return row is not None and row.failures >= max_failures and at_us - row.first_us < window_s * 1_000_000


async def _count(session: AsyncSession, key: str, at_us: int, restart_before_us: int) -> LoginFailures:
    """One failure more for ``key``, atomically on every node (an upsert); a count whose window
    began before ``restart_before_us`` starts again at 1."""
    stale = LoginFailures.first_us < restart_before_us
    stmt = insert_for(session)(LoginFailures).values(key=key, failures=1, first_us=at_us, last_us=at_us,
                                                     locked_until_us=None)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={
        "failures": case((stale, 1), else_=LoginFailures.failures + 1),
        "first_us": case((stale, at_us), else_=LoginFailures.first_us),
        "last_us": at_us,
    }).returning(LoginFailures)
    return (await session.execute(stmt, execution_options={"populate_existing": True})).scalar_one()


async def address_failed(session: AsyncSession, address: str, at_us: int, window_s: float,
                         keep_s: float) -> None:
    """Count a failed login from ``address``; rows of any key untouched for ``keep_s`` go (a
    spray from many addresses or names does not grow the table for good)."""
    await _count(session, _address_key(address), at_us, at_us - int(window_s * 1_000_000))
    await session.execute(delete(LoginFailures).where(LoginFailures.last_us < at_us - int(keep_s * 1_000_000)))


async def unknown_locked_until(session: AsyncSession, username: str, at_us: int) -> int | None:
    row = await session.get(LoginFailures, _name_key(username), populate_existing=True)
    return row.locked_until_us if row is not None and (row.locked_until_us or 0) > at_us else None


async def unknown_failed(session: AsyncSession, username: str, at_us: int, threshold: int, lockout_s: float) -> int | None:
    """Count a failure for a name that is no account, as :func:`record_failure` counts one for
    an account (the count starts again after a lockout). The locked-until time if this failure
    "locked" it."""
    row = await _count(session, _name_key(username), at_us, 0)
    if row.failures < threshold:
        return None
    row.failures, row.first_us, row.locked_until_us = 0, at_us, at_us + int(lockout_s * 1_000_000)
    await session.flush()
    return row.locked_until_us


def locked(user: User, at_us: int) -> bool:
    return user.locked_until_us is not None and user.locked_until_us > at_us


def record_failure(user: User, at_us: int, threshold: int, lockout_s: float) -> bool:
    """Count a failed login; lock the account at ``threshold``. True if this failure locked it."""
    user.failed_logins = (user.failed_logins or 0) + 1
    if user.failed_logins >= threshold:
        user.locked_until_us = at_us + int(lockout_s * 1_000_000)
        user.failed_logins = 0
        return True
    return False


def record_success(user: User, at_us: int) -> None:
    user.failed_logins = 0
    user.locked_until_us = None
    user.last_login_us = at_us


def unlock(user: User) -> None:
    user.failed_logins = 0
    user.locked_until_us = None


# --- TOTP ----------------------------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str, issuer: str = "controlroom") -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def totp_match(secret: str, code: str, at_s: float, last_step: int = 0) -> int | None:
    """The time step ``code`` is valid for (now, or one step either side for clock drift),
    or None. A step at or before ``last_step`` is refused, so a code cannot be replayed."""
    code = (code or "").strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    step = int(at_s // TOTP_STEP_S)
    for candidate in (step, step - 1, step + 1):
        if candidate > last_step and same_secret(totp.at(candidate * TOTP_STEP_S), code):
            return candidate
    return None


def totp_begin(user: User, keys: Keys) -> str:
    """Start enrolment: a new pending secret (returned once, to show as a QR code or text)."""
    secret = new_totp_secret()
    user.totp_pending_enc = keys.encrypt(secret)
    return secret


def totp_confirm(user: User, keys: Keys, code: str, at_s: float) -> bool:
    """Finish enrolment with a code from the new secret."""
    if not user.totp_pending_enc:
        raise Invalid("no TOTP enrolment in progress; start one first")
    secret = keys.decrypt(user.totp_pending_enc)
    step = totp_match(secret, code, at_s)
    if step is None:
        return False
    user.totp_secret_enc, user.totp_pending_enc, user.totp_last_step = user.totp_pending_enc, "", step
    return True


def totp_check(user: User, keys: Keys, code: str, at_s: float) -> bool:
    step = totp_match(keys.decrypt(user.totp_secret_enc), code, at_s, user.totp_last_step or 0)
    if step is None:
        return False
    user.totp_last_step = step
    return True


def totp_reset(user: User) -> None:
    user.totp_secret_enc = ""
    user.totp_pending_enc = ""
    user.totp_last_step = 0


# --- login sessions ------------------------------------------------------------------------


@dataclass(frozen=True)
class NewSession:
    token: str  # goes in the cookie; only its hash is stored
    csrf_token: str
    row: LoginSession


async def create_session(
    session: AsyncSession, user: User, *, absolute_s: float, address: str = "", at_us: int | None = None
) -> NewSession:
    at = now_us() if at_us is None else at_us
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    row = LoginSession(
        token_hash=token_hash(token), csrf_token=csrf, user_id=user.id, created_us=at, last_seen_us=at,
        expires_us=at + int(absolute_s * 1_000_000), address=address[:64],
    )
    session.add(row)
    await session.flush()
    return NewSession(token, csrf, row)


async def find_session(session: AsyncSession, hashed: str) -> tuple[LoginSession, User] | None:
    row = (
        await session.execute(
            select(LoginSession, User).join(User, User.id == LoginSession.user_id).where(LoginSession.token_hash == hashed)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def touch_session(session: AsyncSession, hashed: str, at_us: int) -> None:
    await session.execute(
        LoginSession.__table__.update().where(LoginSession.token_hash == hashed).values(last_seen_us=at_us)
    )


async def end_session(session: AsyncSession, hashed: str) -> bool:
    result = await session.execute(delete(LoginSession).where(LoginSession.token_hash == hashed))
    return bool(result.rowcount)


async def end_sessions(session: AsyncSession, user_id: int) -> int:
    result = await session.execute(delete(LoginSession).where(LoginSession.user_id == user_id))
    return int(result.rowcount or 0)


async def purge_sessions(session: AsyncSession, at_us: int, idle_s: float) -> int:
    """Delete sessions past their absolute expiry or idle too long."""
    idle_before = at_us - int(idle_s * 1_000_000)
    result = await session.execute(
        delete(LoginSession).where((LoginSession.expires_us <= at_us) | (LoginSession.last_seen_us <= idle_before))
    )
    return int(result.rowcount or 0)


# --- API tokens ----------------------------------------------------------------------------


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_token(
    session: AsyncSession,
    name: str,
    user: User,
    scopes: list[str],
    expires_us: int,
    created_by: str,
) -> tuple[str, ApiToken]:
    """A new API token: the plaintext (shown once) and its row (which holds only the hash).
    ``scopes`` are permission names; the caller checks they exist."""
    if not TOKEN_NAME.match(name or ""):
        raise Invalid("a token name is 1 to 100 letters, digits or . _ - and starts with a letter or digit")
    if not scopes:
        raise Invalid("a token needs at least one scope")
    at = now_us()
    if expires_us <= at:
        raise Invalid("the token's expiry must be in the future")
    if (await session.execute(select(ApiToken.id).where(ApiToken.name == name))).first():
        raise Invalid(f"a token named {name!r} already exists")
    token = new_token()
    row = ApiToken(
        name=name, token_hash=token_hash(token), user_id=user.id, scopes=json.dumps(sorted(set(scopes))),
        created_us=at, created_by=created_by, expires_us=expires_us, revoked_us=None, last_used_us=None,
    )
    session.add(row)
    await session.flush()
    return token, row


async def find_token(session: AsyncSession, hashed: str) -> tuple[ApiToken, User] | None:
    row = (
        await session.execute(
            select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == hashed)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def list_tokens(session: AsyncSession) -> list[tuple[ApiToken, str]]:
    rows = await session.execute(
        select(ApiToken, User.username).join(User, User.id == ApiToken.user_id).order_by(ApiToken.name)
    )
    return [(t, u) for t, u in rows.all()]


async def revoke_token(session: AsyncSession, name: str) -> ApiToken:
    row = (await session.execute(select(ApiToken).where(ApiToken.name == name))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no token {name!r}")
    if row.revoked_us is None:
        row.revoked_us = now_us()
    return row


async def mark_token_used(session: AsyncSession, token_id: int, at_us: int) -> None:
    await session.execute(ApiToken.__table__.update().where(ApiToken.id == token_id).values(last_used_us=at_us))


def token_public(row: ApiToken, username: str) -> dict[str, Any]:
    return {
        "name": row.name,
        "user": username,
        "scopes": row.scope_list,
        "created_us": row.created_us,
        "created_by": row.created_by,
        "expires_us": row.expires_us,
        "revoked_us": row.revoked_us,
        "last_used_us": row.last_used_us,
    }


_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration_s(text: str) -> int:
    """``"90m"``, ``"12h"``, ``"30d"``, ``"2w"`` or plain seconds, to seconds."""
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    m = _DURATION.match(text.lower())
    if not m or int(m.group(1)) <= 0:
        raise Invalid(f"{text!r} is not a duration such as 90m, 12h, 30d or 2w")
    return int(m.group(1)) * _UNIT_S[m.group(2)]
