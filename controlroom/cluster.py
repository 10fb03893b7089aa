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

from controlroom.context import NODE, SESSIONS, SETTINGS
from storage.loops import run_every
from storage.nodes import LeaseKeeper, load_or_create_node_id

log = logging.getLogger(__name__)


def node_ctx(roles: tuple[str, ...]) -> Callable[[web.Application], Any]:
    """The cleanup context of this node with ``roles``: register, heartbeat (and for a recorder
    claim and renew leases) every ``cluster.heartbeat_s``; at the stop, after the recorders have
    finalised their segments (this context starts before theirs, so it stops after), release
    every lease so that the other nodes take the cameras at once."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS].cluster
        node_id = await asyncio.to_thread(load_or_create_node_id, app[SETTINGS].data_dir, settings.node_id)
        keeper = LeaseKeeper(app[SESSIONS], node_id, roles, capacity=settings.capacity if "recorder" in roles else 0,
                             heartbeat_s=settings.heartbeat_s, ttl_s=settings.lease_ttl_s)
        await keeper.start()
        await keeper.tick()  # the first claim, before the recorders start

        def failed(exc: Exception, failures: int) -> None:  # shown by /healthz until a step works
            keeper.error = f"heartbeat failing ({failures} in a row): {type(exc).__name__}: {str(exc)[:200]}"

        task = asyncio.create_task(run_every(settings.heartbeat_s, keeper.tick, name=f"node {node_id}: heartbeat",
                                             log=log, wait_first=True, on_error=failed), name="node-heartbeat")
        app[NODE] = keeper
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await keeper.stop()
        except Exception:  # the leases then expire by time: the others take over within lease_ttl_s
            log.exception("node %s: could not release its leases at the stop; they expire in %g s",
                          node_id, settings.lease_ttl_s)

    return ctx
