"""This process as a node of a cluster (docs/design/cluster.md): its heartbeat row and, for a
recorder node, the loop that renews and claims camera leases. Started only with
``cluster.enabled`` (PostgreSQL); on one machine nothing here runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from controlroom.background import watched
from controlroom.context import ALERT_ACKS, ALERTS, ENGINE, NODE, SESSIONS, SETTINGS
from controlroom.relay import RelayServer
from storage.alerts import ALERT_CHANNEL, Alert
from storage.loops import run_every
from storage.nodes import LeaseKeeper, load_or_create_node_id

log = logging.getLogger(__name__)


LISTEN_CHECK_S = 5.0  # how often an API node checks that it still listens for alerts


class AlertListener:
    """An API node's ear for the alerts raised and acknowledged on the other nodes: PostgreSQL
    ``LISTEN`` on :data:`storage.alerts.ALERT_CHANNEL`, on a connection of its own. Each
    notification names the node, the event and the alert (:func:`storage.alerts.announce`); one
    from another node is read from the database and published to this node's WebSocket clients
    (``app[ALERTS]`` for a new alert, ``app[ALERT_ACKS]`` for an acknowledgement), as if it
    happened here. :meth:`listen` (re)connects when the connection is gone; what happened while
    it was gone is in the alert list, not pushed."""

    def __init__(self, app: web.Application, node_id: str) -> None:
        self.app, self.node_id = app, node_id
        self.conn: Any = None  # the SQLAlchemy connection holding the asyncpg one
        self.raw: Any = None  # the asyncpg connection that listens
        self._tasks: set[asyncio.Task[None]] = set()
        self.heard = 0

    async def listen(self) -> None:
        if self.raw is not None and not self.raw.is_closed():
            return
        if self.raw is not None:
            log.error("node %s: the connection listening for alerts was lost; listening again", self.node_id)
        await self.close()
        self.conn = await self.app[ENGINE].connect()
        self.raw = (await self.conn.get_raw_connection()).driver_connection
        await self.raw.add_listener(ALERT_CHANNEL, self._heard)

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, _, rest = payload.partition(":")
        event, _, alert_id = rest.rpartition(":")
        if origin == self.node_id or event not in ("raised", "ack") or not alert_id.isdigit():
            if origin != self.node_id:
                log.warning("node %s: a notification on the alert channel not understood: %r", self.node_id,
                            payload[:200])
            return  # here: already published at its commit
        task = asyncio.get_running_loop().create_task(self._publish(event, int(alert_id)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, event: str, alert_id: int) -> None:
        try:
            async with self.app[SESSIONS]() as session:
                alert = await session.get(Alert, alert_id)
        except Exception:
            log.exception("node %s: alert %s %s on another node could not be read; the alert list has it but "
                          "this node's screens were not told", self.node_id, alert_id, event)
            return
        if alert is not None:
            self.heard += 1
            self.app[ALERTS if event == "raised" else ALERT_ACKS].publish(alert.to_dict())

    async def close(self) -> None:
        conn, self.conn, self.raw = self.conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def node_ctx(roles: tuple[str, ...]) -> Callable[[web.Application], Any]:
    """The cleanup context of this node with ``roles``: register, heartbeat (and for a recorder
    claim and renew leases) every ``cluster.heartbeat_s``; at the stop, after the recorders have
    finalised their segments (this context starts before theirs, so it stops after), release
    every lease so that the other nodes take the cameras at once."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS].cluster
        node_id = await asyncio.to_thread(load_or_create_node_id, app[SETTINGS].data_dir, settings.node_id)
        # A recorder node relays the live view of its cameras to the other nodes (controlroom.relay).
        relay = RelayServer(app) if "recorder" in roles else None
        relay_url = await relay.start() if relay is not None else ""
        keeper = LeaseKeeper(app[SESSIONS], node_id, roles, capacity=settings.capacity,
                             anpr_capacity=settings.anpr_capacity, heartbeat_s=settings.heartbeat_s,
                             ttl_s=settings.lease_ttl_s, relay_url=relay_url)
        await keeper.start()
        await keeper.tick()  # the first claim, before the recorders start

        def failed(exc: Exception, failures: int) -> None:  # shown by /healthz until a step works
            keeper.error = f"heartbeat failing ({failures} in a row): {type(exc).__name__}: {str(exc)[:200]}"

        task = asyncio.create_task(run_every(settings.heartbeat_s, keeper.tick, name=f"node {node_id}: heartbeat",
                                             log=log, wait_first=True, on_error=failed), name="node-heartbeat")
        app[NODE] = keeper
        app[ALERTS].origin = node_id  # alerts raised here are announced to the other nodes
        listener = AlertListener(app, node_id) if "api" in roles else None
        listening = None
        if listener is not None:
            await listener.listen()
            listening = asyncio.create_task(watched(
                app, "alert_listener", LISTEN_CHECK_S, listener.listen, what="listening for the other nodes' alerts",
                log=log, wait_first=True).run(), name="alert-listener")
        yield
        for t in (task, listening):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        if listener is not None:
            await listener.close()
        try:
            await keeper.stop()
        except Exception:  # the leases then expire by time: the others take over within lease_ttl_s
            log.exception("node %s: could not release its leases at the stop; they expire in %g s",
                          node_id, settings.lease_ttl_s)
        if relay is not None:
            await relay.stop()

    return ctx
