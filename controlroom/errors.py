"""One middleware maps exceptions to JSON HTTP errors, in one place.

Known errors ("bad input", "not found", "peer unavailable") become their status with the
message; anything else is logged with its traceback and becomes a bare 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

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


def status_for(exc: BaseException) -> int | None:
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
        message = "malformed JSON body" if isinstance(exc, json.JSONDecodeError) else str(exc)
        return error_response(status, message)


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
