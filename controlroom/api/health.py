"""GET /healthz: is the service up, and is every camera's footage being catalogued?

"Still running" is not "healthy": the recorders' health is judged by progress (see
cameras.recorder.CameraRecorder.problem and docs/design/recording-store.md, Health). The answer
is 200 ``{"status": "ok"}`` or 503 ``{"status": "degraded", "problems": [...]}`` with the reason
per camera (by id: the endpoint is public), for the disk and for the database. It is meant for a
monitor that alerts a person; it is not a liveness probe (a restart is never the cure here).
"""

import asyncio

from aiohttp import web
from sqlalchemy import func, select

from controlroom.context import SESSIONS, SUPERVISOR
from controlroom.permissions import Permission, requires
from storage.models import Camera

routes = web.RouteTableDef()
# The database gets this long to answer; a locked or restarting one makes the service degraded.
DB_TIMEOUT_S = 2.0


@routes.get("/healthz")
@requires(Permission.PUBLIC)
async def healthz(request: web.Request) -> web.Response:
    problems: list[dict[str, object]] = []
    states: dict[str, int] = {}
    try:
        async with asyncio.timeout(DB_TIMEOUT_S), request.app[SESSIONS]() as session:
            states = dict((await session.execute(select(Camera.state, func.count()).group_by(Camera.state))).all())
    except Exception as exc:  # noqa: BLE001 - reported in the answer
        problems.append({"component": "database", "reason": f"the database did not answer: {type(exc).__name__}"})
    supervisor = request.app.get(SUPERVISOR)
    if supervisor is not None:
        if supervisor.disk_low:
            problems.append({"component": "disk", "reason": f"free space {supervisor.disk_free_bytes} bytes is below "
                             f"the floor of {supervisor.floor_bytes}: purging the oldest unheld footage"})
        for component, reason in sorted(supervisor.notes.items()):
            problems.append({"component": component, "reason": reason})
        for cam_id, reason in sorted(supervisor.problems.items()):
            problems.append({"component": "camera", "camera_id": cam_id, "reason": reason})
    body: dict[str, object] = {"status": "degraded" if problems else "ok", "cameras": states}
    if problems:
        body["problems"] = problems
    return web.json_response(body, status=503 if problems else 200)
