"""Alerts for the operators: stored, then fanned out to live subscribers (WebSocket, MQTT).

Kinds: camera_offline, camera_online, clock_off, recording_stopped, disk_floor, anpr_hit,
camera_fault, picture_check, camera_repaired (controlroom.camera_health), ...
The hub is in-process; it lives on the app (controlroom.context.ALERTS) and is passed to whatever
raises alerts. A slow subscriber never blocks the publisher: its oldest alerts are dropped.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text, event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.db import Base, now_us


class Alert(Base):
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at_us: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(50))
    camera_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[str] = mapped_column(Text, default="{}")
    acknowledged_by: Mapped[str] = mapped_column(String(200), default="")
    acknowledged_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    ack_note: Mapped[str] = mapped_column(Text, default="", server_default="")  # what the acknowledging user wrote

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "at_us": self.at_us, "kind": self.kind, "camera_id": self.camera_id,
            "message": self.message, "data": json.loads(self.data or "{}"),
            "acknowledged_by": self.acknowledged_by, "acknowledged_us": self.acknowledged_us,
            "ack_note": self.ack_note,
        }


class AlertHub:
    """In-process fan-out of alert dicts to subscribers' bounded queues."""

    def __init__(self, queue_size: int = 256) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size
        # In a cluster, this node's id: each alert raised here is also announced to the other
        # nodes (PostgreSQL NOTIFY on ALERT_CHANNEL, "<origin>:<alert id>", sent at commit).
        self.origin: str | None = None

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def publish(self, alert: dict[str, Any]) -> None:
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # drop the oldest rather than block or grow
            queue.put_nowait(alert)


ALERT_CHANNEL = "controlroom_alerts"  # PostgreSQL NOTIFY channel of a cluster's alerts
_UNPUBLISHED = "controlroom.alerts.unpublished"  # session.info key: (hub, alert) to publish on commit


@event.listens_for(Session, "after_commit")
def _publish_committed(session: Session) -> None:
    for hub, alert in session.info.pop(_UNPUBLISHED, []):
        hub.publish(alert)


@event.listens_for(Session, "after_rollback")
def _drop_rolled_back(session: Session) -> None:
    session.info.pop(_UNPUBLISHED, None)


async def raise_alert(
    session: AsyncSession, hub: AlertHub | None, kind: str, message: str, camera_id: int | None = None, **data: Any
) -> Alert:
    """Store an alert in the caller's transaction; it is published when that transaction commits.

    Not before: a subscriber that reads what the alert names (an ANPR hit, its images) must find
    it, and a rolled-back transaction must not have told anyone of an alert that never existed.
    """
    alert = Alert(at_us=now_us(), kind=kind, camera_id=camera_id, message=message,
                  data=json.dumps(data, sort_keys=True, default=str))
    session.add(alert)
    await session.flush()
    if hub is not None:
        session.sync_session.info.setdefault(_UNPUBLISHED, []).append((hub, alert.to_dict()))
        await announce(session, hub.origin, "raised", alert.id)
    return alert


async def announce(session: AsyncSession, origin: str | None, event: str, alert_id: int) -> None:
    """Tell the other nodes of a cluster that alert ``alert_id`` was ``raised`` or ``ack``
    (acknowledged) here: PostgreSQL NOTIFY on :data:`ALERT_CHANNEL`, ``"<origin>:<event>:<id>"``.
    NOTIFY is transactional: they hear of it when (and only if) the caller's transaction commits.
    Nothing on one machine (``origin`` None) or on SQLite."""
    if origin is not None and session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, :payload)"),
                              {"channel": ALERT_CHANNEL, "payload": f"{origin}:{event}:{alert_id}"})
