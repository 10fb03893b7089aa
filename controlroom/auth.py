"""Authentication and authorisation middleware.

Every route must declare a permission (controlroom.permissions.requires); an undeclared route
is refused with 500 and logged, so a forgotten declaration fails closed.
Until accounts land (issue 4) every declared permission is granted to the caller "anonymous".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from controlroom.errors import error_response
from controlroom.permissions import Permission, declared

log = logging.getLogger(__name__)
USER = web.RequestKey("user", str) if hasattr(web, "RequestKey") else "user"


def route_permission(request: web.Request) -> Permission | None:
    info = request.match_info
    if info.http_exception is not None:  # 404/405: let aiohttp answer
        return Permission.PUBLIC
    return declared(info.handler)


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    perm = route_permission(request)
    if perm is None:
        log.error("route %s %s declares no permission: refused", request.method, request.path)
        return error_response(500, "route declares no permission")
    request["user"] = "anonymous"
    return await handler(request)


def actor(request: web.Request) -> str:
    """The name audit entries record for this request's user."""
    return request.get("user", "anonymous")
