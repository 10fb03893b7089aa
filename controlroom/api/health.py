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

from controlroom.context import ANPR_LIVE, HEALTH_NOTES, NODE, SESSIONS, SETTINGS, SUPERVISOR
from controlroom.permissions import Permission, requires
from storage import nodes
from storage.db import now_us
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
    for component, reason in sorted(request.app[HEALTH_NOTES].items()):  # failing loops: controlroom.background
        problems.append({"component": component, "reason": reason})
    supervisor = request.app.get(SUPERVISOR)
    if supervisor is not None:
        if supervisor.disk_low:
            problems.append({"component": "disk", "reason": f"free space {supervisor.disk_free_bytes} bytes is below "
                             f"the floor of {supervisor.floor_bytes}: purging the oldest unheld footage"})
        for cam_id, reason in sorted(supervisor.problems.items()):
            problems.append({"component": "camera", "camera_id": cam_id, "reason": reason})
    body: dict[str, object] = {"status": "degraded" if problems else "ok", "cameras": states}
    keeper = request.app.get(NODE)
    if keeper is not None:  # a node of a cluster (docs/design/cluster.md): this node, then the others
        body["node"] = await _node_state(request, keeper, problems)
        body["status"] = "degraded" if problems else "ok"
    if problems:
        body["problems"] = problems
    return web.json_response(body, status=503 if problems else 200)


async def _node_state(request: web.Request, keeper: nodes.LeaseKeeper, problems: list[dict[str, object]]) -> dict:
    """This node's id, roles, cameras held and heartbeat; the cluster's lost nodes and the
    cameras nobody records are problems (by id and node id: no host or address here)."""
    supervisor = request.app.get(SUPERVISOR)
    state: dict[str, object] = {
        "id": keeper.node_id, "roles": list(keeper.roles), "cameras": sorted(keeper.held),
        "capacity": keeper.capacity, "segments_fenced": supervisor.segments_fenced if supervisor else 0,
        "segments_catalogued_late": supervisor.segments_late if supervisor else 0,
        "anpr_cameras": sorted(keeper.leases["anpr"].held) if "anpr" in keeper.leases else [],
        "anpr_capacity": keeper.anpr_capacity,
        "reads_fenced": request.app[ANPR_LIVE].reads_fenced if ANPR_LIVE in request.app else 0,
        "heartbeat_s_ago": round((now_us() - keeper.last_ok_us) / 1e6, 1) if keeper.last_ok_us else None,
    }
    if keeper.error:
        problems.append({"component": "node", "reason": keeper.error})
    try:
        async with asyncio.timeout(DB_TIMEOUT_S), request.app[SESSIONS]() as session:
            found = await nodes.list_nodes(session, request.app[SETTINGS].cluster.lease_ttl_s)
            unleased = await nodes.unleased_cameras(session)
            anpr_nodes = any("anpr" in n.roles for n in found)
            unread = await nodes.unleased_cameras(session, "anpr") if anpr_nodes else []
    except Exception as exc:  # noqa: BLE001 - the database problem is listed above already
        state["cluster"] = f"unknown: {type(exc).__name__}"
        return state
    state["nodes"] = {n.id: {"state": n.state, "roles": list(n.roles), "cameras": n.cameras,
                             "anpr_cameras": n.anpr_cameras} for n in found}
    for n in found:
        if n.state == "lost":
            problems.append({"component": "node", "node_id": n.id, "reason": "no heartbeat: its cameras are "
                             "taken over by the other recorder nodes"})
    if unleased:
        problems.append({"component": "cameras", "camera_ids": unleased,
                         "reason": f"{len(unleased)} recording cameras have no recorder node (none has room, "
                         "or a takeover is under way)"})
    if unread:  # a cluster with anpr nodes: ANPR cameras nobody reads
        problems.append({"component": "anpr", "camera_ids": unread,
                         "reason": f"{len(unread)} ANPR cameras have no anpr node (none has room, or a takeover "
                         "is under way)"})
    return state
