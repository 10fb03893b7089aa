"""The audit writer (group commit, ``app[AUDIT]``), and the loop that anchors the audit chain
head outside the database and purges expired login sessions.

``run_once()`` is what the loop does each interval (tests call it directly): it writes the
signed anchor file (storage.audit.write_anchor) and hands the anchor to the MQTT bridge where
one runs (``<topic_prefix>/audit/anchor``, retained). An anchor that the database contradicts
(its entry is gone or different) is never overwritten: the loop raises an ``audit.truncated``
alert instead, so the evidence stays on disk; so is a head shorter than the newest entry this
process's writer committed (the tail cut between two anchors). A missing or replaced anchor
file raises ``audit.anchor_missing`` and is written afresh; an anchor that cannot be written
at all (an unwritable folder) raises ``audit.anchor_failed`` once per run of failures. The
last anchor is written at shutdown, after the audit writer has written what was queued; if it
fails, that is logged with the head it could not anchor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from controlroom.context import ALERTS, AUDIT, ENGINE, KEYS, MQTT, SESSIONS, SETTINGS
from controlroom.mqtt import MqttBridge
from storage import accounts, audit
from storage.alerts import AlertHub, raise_alert
from storage.db import now_us, transaction
from storage.keys import Keys
from storage.loops import Every, describe_error

log = logging.getLogger(__name__)
ANCHOR_TOPIC = "audit/anchor"  # under the MQTT topic prefix
# The last anchor at shutdown normally takes milliseconds; a database or disk that does not
# answer must not hold up the stop (the whole stop has 30 s), so it is given up and logged.
FINAL_ANCHOR_TIMEOUT_S = 10.0


def send_anchor(bridge: MqttBridge, anchor: audit.Anchor) -> None:
    """The signed anchor, as in the file, retained on ``<prefix>/audit/anchor``: a subscriber
    that keeps every message holds a copy of each head the database cannot take back."""
    bridge.send(ANCHOR_TOPIC, json.dumps(anchor.to_json(), sort_keys=True).encode(), retain=True)


# The PostgreSQL advisory lock whose holder anchors for the whole cluster (any constant: ours).
ANCHOR_LOCK = 0x616E63686F72  # "anchor"


class AnchorLeader:
    """Which node of a cluster writes the anchor: the one holding a session-level PostgreSQL
    advisory lock, on a connection of its own kept for the node's life. When that node dies its
    connection closes, the lock is released, and the next node to ask takes it: PostgreSQL decides,
    with no election of ours. The connection is never left in a transaction (a server's
    ``idle_in_transaction_session_timeout`` would end it)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.conn: AsyncConnection | None = None

    async def holds(self) -> bool:
        """True if this node writes the anchor now (taking the lock if it is free)."""
        if self.conn is not None:
            try:
                await self.conn.execute(text("SELECT 1"))
                await self.conn.commit()
                return True
            except Exception as exc:  # noqa: BLE001 - the lock went with the connection: said, then asked again
                log.error("audit: the connection holding the anchor lock broke (%s); asking for the lock again",
                          describe_error(exc))
                await self.close()
        conn = await self.engine.connect()
        try:
            got = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ANCHOR_LOCK})).scalar())
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        log.warning("audit: this node now anchors the audit chain for the cluster")
        self.conn = conn
        return True

    async def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            with contextlib.suppress(Exception):
                await conn.close()


class AnchorLoop:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], keys: Keys, anchor_file: Path,
        *, interval_s: float, session_idle_s: float, alerts: AlertHub | None = None,
        publish: Callable[[audit.Anchor], None] | None = None,
        writer: Callable[[], audit.AuditWriter | None] | None = None,
        leader: AnchorLeader | None = None,
    ) -> None:
        self.sessions, self.keys, self.anchor_file = sessions, keys, anchor_file
        # In a cluster only the holder of the anchor lock writes the (shared) anchor file.
        self.leader = leader
        self.interval_s, self.session_idle_s, self.alerts = interval_s, session_idle_s, alerts
        self.publish = publish
        self.writer = writer  # the process's audit writer, whose last committed entry is checked
        # An entry found cut: it stays the expectation (no anchor of the shorter chain, an
        # alert each interval) until the process restarts, as a contradicted anchor file does.
        self.cut: audit.WrittenEntry | None = None
        # The loop: a failure is logged each time and alerted once per run of failures (an
        # unwritable anchor folder would otherwise alert every five minutes).
        self.every = Every(interval_s, self.run_once, name=f"audit: anchoring the chain head in {anchor_file}",
                           log=log, on_error=self._alert_first)

    async def run_once(self) -> audit.AnchorResult | None:
        async with transaction(self.sessions) as session:
            await accounts.purge_sessions(session, now_us(), self.session_idle_s)
        return await self.anchor()

    async def anchor(self) -> audit.AnchorResult | None:
        """Anchor the head now; None when the existing anchor proves the chain was cut (alerted),
        or in a cluster when another node holds the anchor lock (it anchors)."""
        if self.leader is not None and not await self.leader.holds():
            return None
        try:
            writer = self.writer() if self.writer is not None else None
            committed = self.cut or (writer.committed if writer is not None else None)
            result = await audit.write_anchor(self.sessions, self.keys, self.anchor_file, committed)
        except audit.AnchorError as exc:
            if isinstance(exc, audit.TailCutError):
                self.cut = committed
            log.error("audit: %s", exc)
            async with transaction(self.sessions) as session:
                await raise_alert(session, self.alerts, "audit.truncated", str(exc), None)
            return None
        if result.warning:
            log.error("audit: %s", result.warning)
            async with transaction(self.sessions) as session:
                await raise_alert(session, self.alerts, "audit.anchor_missing", result.warning, None)
        if result.written and self.publish is not None:
            self.publish(result.anchor)
        return result

    async def _alert_first(self, exc: Exception, failures: int) -> None:
        if failures > 1:
            return
        message = (f"the audit chain head could not be anchored in {self.anchor_file} "
                   f"({type(exc).__name__}: {exc}); entries since the last anchor are unprotected")
        async with transaction(self.sessions) as session:
            await raise_alert(session, self.alerts, "audit.anchor_failed", message, None)

    async def tick(self) -> None:
        """One interval's work (:meth:`run_once`), a failure logged and alerted as the loop does."""
        await self.every.tick()

    async def run(self) -> None:
        await self.every.run()


async def audit_writer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Right after audit_anchor_ctx, so it stops before it: what is queued at shutdown is
    written, then anchored."""
    writer = audit.AuditWriter(app[SESSIONS])
    writer.start()
    app[AUDIT] = writer
    yield
    await writer.close()


async def audit_anchor_ctx(app: web.Application) -> AsyncIterator[None]:
    """Right after database_ctx: anchors at start-up, every interval, and last at shutdown."""
    settings = app[SETTINGS]

    def publish(anchor: audit.Anchor) -> None:
        bridge = app.get(MQTT)  # started after this context, stopped before it: absent at the edges
        if bridge is not None:
            send_anchor(bridge, anchor)

    loop = AnchorLoop(
        app[SESSIONS], app[KEYS], settings.audit_anchor_file,
        interval_s=settings.security.audit_anchor_interval_s,
        session_idle_s=settings.security.session_idle_s, alerts=app[ALERTS], publish=publish,
        writer=lambda: app.get(AUDIT),
        leader=AnchorLeader(app[ENGINE]) if settings.cluster.enabled else None,
    )
    task = asyncio.create_task(loop.run(), name="audit-anchor")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        await asyncio.wait_for(loop.anchor(), FINAL_ANCHOR_TIMEOUT_S)  # the head at shutdown
    except Exception:
        # Nothing is lost from the database, but entries since the last anchor are unprotected
        # until the next start: say which, so an operator can anchor by hand (audit anchor).
        try:
            async with app[SESSIONS]() as session:
                head = await asyncio.wait_for(audit.head(session), 2)
            head_text = f"entry {head[0]}"
        except Exception as exc:  # noqa: BLE001 - said in the line below, whose traceback is the anchor's
            head_text = f"unknown: it could not be read either ({describe_error(exc)})"
        log.exception("audit: the final anchor at shutdown failed (head %s, anchor file %s); run "
                      "`controlroom audit anchor` before trusting entries after the last anchor",
                      head_text, settings.audit_anchor_file)
    if loop.leader is not None:  # the lock goes with the connection: the next node anchors
        await loop.leader.close()
