"""One middleware maps exceptions to JSON HTTP errors, in one place.

Known errors ("bad input", "not found", "peer unavailable") become their status with the
message; a full disk (ENOSPC, SQLite's "database or disk is full") becomes 507 and an
unavailable database (locked, restarting) 503, each with a message that says so; anything else
is logged with its traceback and becomes a bare 500.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from anpr import AnprError
from cameras import CameraAuthError, CameraError, CameraUnavailable
from controlroom.access_log import loggable_path
from storage import Invalid, NotFound, StorageError
from storage.audit import AuditWriteError

log = logging.getLogger(__name__)


class Forbidden(Exception):
    """The user lacks the right for this."""


class Unauthorized(Exception):
    """No valid session or token."""


def error_response(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


# The storage's "no room" errors: the request may succeed once space is freed (507, RFC 4918).
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_MESSAGE = "the storage is full; the oldest unheld footage is being purged, try again shortly"
_DB_DOWN_MESSAGE = "the database is unavailable (locked or restarting); try again shortly"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from (an AuditWriteError carries the database's error)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__
    return chain


def storage_full(exc: BaseException) -> bool:
    """A full disk, however it reached us: an OSError from a file write, or SQLite's own
    "database or disk is full" through SQLAlchemy, possibly as the cause of another error."""
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno in _FULL_ERRNOS:
            return True
        if isinstance(cause, DBAPIError) and ("disk is full" in str(cause.orig)
                                              or getattr(cause.orig, "errno", None) in _FULL_ERRNOS):
            return True
    return False


# What drivers say when the database is there but cannot serve now (SQLite locked; PostgreSQL
# restarting or unreachable). Other OperationalErrors (SQLite's "no such table") stay bugs: 500.
_DB_DOWN_WORDS = ("locked", "busy", "unable to open", "connection", "connect call failed", "could not connect",
                  "terminating", "shutting down", "starting up", "recovery mode", "closed")


def database_down(exc: BaseException) -> bool:
    """The database cannot be reached or is locked: the peer is unavailable, not our bug."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    text = f"{type(exc.orig).__name__} {exc.orig}".lower()
    return isinstance(exc, (OperationalError, InterfaceError)) and any(w in text for w in _DB_DOWN_WORDS) or \
        "connectiondoesnotexist" in text or "cannotconnectnow" in text


def message_for(exc: BaseException) -> str:
    if storage_full(exc):
        return _FULL_MESSAGE
    if database_down(exc):
        return _DB_DOWN_MESSAGE
    if isinstance(exc, ConnectionError):
        return "a service this request needs (the database?) is unavailable; try again shortly"
    if isinstance(exc, json.JSONDecodeError):
        return "malformed JSON body"
    return str(exc)


def status_for(exc: BaseException) -> int | None:
    if storage_full(exc):
        return 507
    if database_down(exc) or isinstance(exc, ConnectionError):  # asyncpg's connect raises it bare
        return 503
    match exc:
        case Invalid() | json.JSONDecodeError():
            return 400
        case Unauthorized():
            return 401
        case Forbidden():
            return 403
        case NotFound():
            return 404
        case CameraAuthError():
            return 502
        case CameraUnavailable() | AuditWriteError():
            return 503
        case CameraError() | AnprError() | StorageError():
            return 422
    return None


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - this is the one place that maps them
        status = status_for(exc)
        if status is None:
            log.exception("unhandled error in %s %s", request.method, loggable_path(request))
            return error_response(500, "internal error")
        if status >= 500:  # the service's trouble, not the caller's: logged with what was asked
            log.error("%s %s: %d: %s", request.method, request.path, status, exc, exc_info=True)
        return error_response(status, message_for(exc))


MAX_ID = 2**63 - 1  # ids are BIGINT in PostgreSQL: anything larger names nothing


def as_id(text: str | None) -> int | None:
    """A row id written in a path or query (ASCII digits, within BIGINT), else None.

    ``str.isdigit`` alone accepts other scripts' digits and superscripts, which ``int`` then
    refuses or a database rejects: both were server errors."""
    if not text or len(text) > 19 or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


async def json_body(request: web.Request) -> dict:
    """The request's JSON object body, or a 400 that says what is wrong."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Invalid("the request body must be a JSON object")
    return body
