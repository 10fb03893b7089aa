"""GET /api/v1/openapi.json: the API contract, generated from the routes (controlroom.contract).

Declared AUTHENTICATED, not PUBLIC: every legitimate consumer (the screens, a force's system
with an API token) has an account, and an anonymous caller on the council's network has no
need for a map of the routes, their rights and what each discloses. The code is open source,
so this hides nothing from a determined reader; it only keeps the anonymous surface to the
login page, the health check and static assets.
"""

from __future__ import annotations

from aiohttp import web

from controlroom.contract import openapi_document
from controlroom.permissions import Permission, requires

routes = web.RouteTableDef()


@routes.get("/api/v1/openapi.json")
@requires(Permission.AUTHENTICATED)
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this service's API."""
    return web.json_response(openapi_document(request.app), headers={"Cache-Control": "no-store"})
