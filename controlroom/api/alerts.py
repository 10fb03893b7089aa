"""Alerts for operators: list, live feed over WebSocket, acknowledge.

- ``GET /api/v1/alerts?limit=100&open=1``: newest first; ``open=1`` only unacknowledged ones.
- ``GET /api/v1/alerts/ws`` (WebSocket): every new alert as a JSON text message
  ``{"type": "alert", "alert": {...}}``, and ``{"type": "ack", "alert": {...}}`` when someone
  acknowledges one, so every screen clears it at once.
- ``POST /api/v1/alerts/{id}/ack`` ``{"note"?}``: records who, when and the note (audited);
  acknowledging twice keeps the first acknowledgement and its note.

Permission: LIVE_VIEW for all three. Alerts of ANPR hits carry the registration, hotlist and
reason, so reading the list and opening the feed are disclosures of plate data (audited once per
request and once per connection, by controlroom.disclosure). The alerts panel sits on the live screen and its alerts
(camera lost, clock off, recording stopped) are about what the operator is watching; a user who
confirms ANPR hits without live view does that on the ANPR screen (ANPR_ALERTS).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import Field
from sqlalchemy import select

from controlroom import disclosure
from controlroom.api.live import WS_CLOSE_TIMEOUT_S, check_origin, open_socket
from controlroom.auth import actor, allowed_camera_ids
from controlroom.context import ALERT_ACKS, ALERTS, SESSIONS, SETTINGS
from controlroom.contract import Body, Flag, Query, Text, body_of, limit, query_of
from controlroom.permissions import Disclosure, Permission, requires
from controlroom.timefmt import us_to_iso
from storage import NotFound, audit
from storage.alerts import Alert, AlertHub, announce
from storage.db import now_us, row_id, transaction
from storage.models import Camera

routes = web.RouteTableDef()
MAX_LIMIT = 500


class AlertsQuery(Query):
    limit: int = limit(100, MAX_LIMIT)
    open: Flag = Field(False, description="only alerts nobody has acknowledged")


class AckBody(Body):
    note: Text = Field("", description="what the operator did or saw (kept with the acknowledgement)")


def alert_json(data: dict[str, Any], tz: str, camera_names: dict[int, str] | None = None) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    out = dict(data)
    out["at"] = us_to_iso(data["at_us"])
    out["at_local"] = us_to_iso(data["at_us"], ZoneInfo(tz))
    out["acknowledged"] = us_to_iso(data.get("acknowledged_us"))
    if camera_names is not None:
        out["camera"] = camera_names.get(data.get("camera_id") or -1)
    return out


async def _camera_names(request: web.Request) -> dict[int, str]:
    async with request.app[SESSIONS]() as session:
        return dict((await session.execute(select(Camera.id, Camera.name))).all())


async def alerts_ctx(app: web.Application) -> Any:
    app[ALERT_ACKS] = AlertHub()
    yield


@routes.get("/api/v1/alerts")
@requires(Permission.LIVE_VIEW, discloses=Disclosure.PLATES, action="alerts.list", query=AlertsQuery)
async def list_alerts(request: web.Request) -> web.Response:
    params = query_of(request, AlertsQuery)
    query = select(Alert).order_by(Alert.at_us.desc(), Alert.id.desc()).limit(params.limit)
    if params.open:
        query = query.where(Alert.acknowledged_us.is_(None))
    allowed = await allowed_camera_ids(request)  # a user limited to some cameras sees theirs
    if allowed is not None:
        query = query.where(Alert.camera_id.is_(None) | Alert.camera_id.in_(sorted(allowed)))
    async with request.app[SESSIONS]() as session:
        rows = (await session.execute(query)).scalars().all()
    tz = request.app[SETTINGS].display_timezone
    names = await _camera_names(request)
    disclosure.note(request, "alerts", open_only=request.query.get("open") == "1", results=len(rows))
    return web.json_response({"alerts": [alert_json(a.to_dict(), tz, names) for a in rows]})


async def _alert_cameras(request: web.Request) -> set[int] | None:
    """The camera of the alert in the path (narrowing, controlroom.auth)."""
    alert_id = row_id(request.match_info["alert"])
    async with request.app[SESSIONS]() as session:
        alert = await session.get(Alert, alert_id) if alert_id else None
    return {alert.camera_id} if alert is not None and alert.camera_id is not None else None


@routes.post("/api/v1/alerts/{alert}/ack")
@requires(Permission.LIVE_VIEW, cameras=_alert_cameras, body=AckBody)
async def ack_alert(request: web.Request) -> web.Response:
    note = body_of(request, AckBody).note.strip()
    alert_id = row_id(request.match_info["alert"])
    if alert_id is None:
        raise NotFound(f"no alert {request.match_info['alert'][:40]!r}")
    who = actor(request)
    async with transaction(request.app[SESSIONS]) as session:
        alert = await session.get(Alert, alert_id)
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        if alert.acknowledged_us is None:
            alert.acknowledged_by, alert.acknowledged_us, alert.ack_note = who, now_us(), note
            await audit.append(session, who, "alert.ack", f"alert:{alert.id}", kind=alert.kind,
                               camera_id=alert.camera_id, note=note)
            # The other API nodes clear it from their screens too (at the commit).
            await announce(session, request.app[ALERTS].origin, "ack", alert.id)
        data = alert.to_dict()
    request.app[ALERT_ACKS].publish(data)
    tz = request.app[SETTINGS].display_timezone
    return web.json_response(alert_json(data, tz, await _camera_names(request)))


@routes.get("/api/v1/alerts/ws")
@requires(Permission.LIVE_VIEW, discloses=Disclosure.PLATES, action="alerts.watch", produces="", status=101)
async def alerts_ws(request: web.Request) -> web.StreamResponse:
    check_origin(request)
    ws = web.WebSocketResponse(heartbeat=20.0, timeout=WS_CLOSE_TIMEOUT_S)
    disclosure.note(request, "alerts")
    try:
        await ws.prepare(request)  # writes the alerts.watch entry first (controlroom.disclosure)
    except ConnectionError:
        return ws  # the browser left before the upgrade completed (a tile changed meanwhile)
    open_socket(request, ws)  # closed when the service stops (controlroom.api.live.on_shutdown)
    tz = request.app[SETTINGS].display_timezone
    allowed = await allowed_camera_ids(request)
    new, acks = request.app[ALERTS].subscribe(), request.app[ALERT_ACKS].subscribe()

    async def forward(queue: asyncio.Queue[dict[str, Any]], kind: str) -> None:
        while True:
            data = await queue.get()
            if allowed is not None and data.get("camera_id") is not None and data["camera_id"] not in allowed:
                continue
            names = await _camera_names(request)
            await ws.send_json({"type": kind, "alert": alert_json(data, tz, names)})

    tasks = [asyncio.create_task(forward(new, "alert")), asyncio.create_task(forward(acks, "ack"))]
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
    finally:
        request.app[ALERTS].unsubscribe(new)
        request.app[ALERT_ACKS].unsubscribe(acks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
                await task
    return ws
