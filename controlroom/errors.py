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
from storage import Conflict, Invalid, NotFound, StorageError
from storage.audit import AuditWriteError
from storage.text import bad_character

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
        case Conflict():
            return 409
        case CameraAuthError():
            return 502
        case CameraUnavailable() | AuditWriteError():
            return 503
        case CameraError() | AnprError() | StorageError():
            return 422
    return None


# The status logged for a response its client did not stay for (nginx's "client closed request").
CLIENT_GONE = 499


def client_gone(request: web.Request) -> bool:
    """Whether the request's connection is closed or closing (the client went away)."""
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        # aiohttp's own answers (no route: 404, wrong method: 405, a body over the size limit:
        # 413) and a bare HTTPNotFound are text/plain: every error of the API is JSON instead.
        resp = error_response(exc.status, exc.reason)
        for name, value in exc.headers.items():
            if name.lower() not in ("content-type", "content-length"):
                resp.headers[name] = value
        return resp
    except Exception as exc:  # noqa: BLE001 - this is the one place that maps them
        if isinstance(exc, ConnectionError) and client_gone(request):
            # The client went away mid-response (a player seeking, a tab closed): no trouble of
            # the service's, and nothing reaches the client any more. aiohttp tells a connection
            # lost while a write waited on back-pressure as a plain ConnectionError, which would
            # otherwise read as a 503 (the database's ConnectionRefusedError is one, rightly).
            log.info("%s %s: the client went away: %s", request.method, loggable_path(request), exc)
            return error_response(CLIENT_GONE, "the client closed the connection")
        status = status_for(exc)
        if status is None:
            log.exception("unhandled error in %s %s", request.method, loggable_path(request))
            return error_response(500, "internal error")
        if status >= 500:  # the service's trouble, not the caller's: logged with what was asked
            log.error("%s %s: %d: %s", request.method, request.path, status, exc, exc_info=True)
        return error_response(status, message_for(exc))


MAX_JSON_DEPTH = 32  # our bodies nest three deep; a parser's recursion limit is ~1000
MIN_INT, MAX_INT = -(2**63), 2**63 - 1  # a number must fit a BIGINT column


def _json_int(text: str) -> int:
    # Python refuses integers over 4300 digits with ValueError (a server error before); a
    # number past int64 would fail in the database instead. Both are bad input.
    if len(text.lstrip("-")) > 19 or not MIN_INT <= (value := int(text)) <= MAX_INT:
        raise Invalid(f"a number in the request body is beyond 64 bits: {text[:24]}...")
    return value


def _json_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise Invalid(f"a number in the request body is out of range: {text[:24]}")
    return value


def _json_constant(text: str) -> float:
    raise Invalid(f"{text} is not JSON")  # Python's parser accepts NaN and Infinity; JSON does not


def _check_tree(value: object) -> None:
    """At most MAX_JSON_DEPTH arrays and objects deep, and every key and string passes the one
    text rule (storage.text); checked without recursion."""
    todo: list[tuple[object, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, str):
            bad = bad_character(item)
            if bad is not None:
                raise Invalid(f"the request body holds control character U+{ord(bad):04X}, which is not allowed")
            continue
        children = [*item, *item.values()] if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_JSON_DEPTH:
            raise Invalid(f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
        todo.extend((child, depth + 1) for child in children)


def parse_json(raw: bytes) -> object:
    """Decode a request body as strict JSON (UTF-8, no NaN, numbers within int64 and double,
    nesting at most MAX_JSON_DEPTH, no control characters in any string), else :class:`Invalid`."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_int=_json_int, parse_float=_json_float,
                           parse_constant=_json_constant)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid("the request body is not valid JSON") from None
    except RecursionError:  # nesting deep enough to exhaust the parser's stack
        raise Invalid(f"the request body nests deeper than {MAX_JSON_DEPTH} levels") from None
    _check_tree(value)
    return value


async def json_body(request: web.Request) -> dict:
    """The request's JSON object body, or a 400 that says what is wrong."""
    body = parse_json(await request.read())
    if not isinstance(body, dict):
        raise Invalid("the request body must be a JSON object")
    return body
