"""GET /healthz: is the service up, and is every camera recording?"""

from aiohttp import web
from sqlalchemy import func, select

from controlroom.context import SESSIONS
from controlroom.permissions import Permission, requires
from storage.models import Camera

routes = web.RouteTableDef()


@routes.get("/healthz")
@requires(Permission.PUBLIC)
async def healthz(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        states = dict((await session.execute(select(Camera.state, func.count()).group_by(Camera.state))).all())
    return web.json_response({"status": "ok", "cameras": states})
