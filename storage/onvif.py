"""Events the cameras report over ONVIF (motion, tamper), with camera and time.

``at_us`` is the event time on our clock: the camera's own UtcTime corrected by the camera's
measured clock offset at the time; ``camera_time_us`` keeps what the camera said, and
``received_us`` when we received it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import Base


class CameraEvent(Base):
    __tablename__ = "camera_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # motion, tamper
    state: Mapped[bool] = mapped_column(Boolean, default=True)  # started (True) or ended (False)
    at_us: Mapped[int] = mapped_column(BigInteger)
    camera_time_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    received_us: Mapped[int] = mapped_column(BigInteger)
    topic: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(200), default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_camera_events_camera_at", "camera_id", "at_us"),)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "camera_id": self.camera_id, "kind": self.kind, "state": self.state,
                "at_us": self.at_us, "camera_time_us": self.camera_time_us, "received_us": self.received_us,
                "topic": self.topic, "source": self.source, "data": self.data}


async def add_events(session: AsyncSession, events: list[CameraEvent]) -> None:
    session.add_all(events)
    await session.flush()


async def list_events(session: AsyncSession, camera_id: int | None = None, *, from_us: int | None = None,
                      to_us: int | None = None, kind: str | None = None, limit: int = 1000) -> list[CameraEvent]:
    query = select(CameraEvent).order_by(CameraEvent.at_us, CameraEvent.id).limit(limit)
    if camera_id is not None:
        query = query.where(CameraEvent.camera_id == camera_id)
    if from_us is not None:
        query = query.where(CameraEvent.at_us >= from_us)
    if to_us is not None:
        query = query.where(CameraEvent.at_us < to_us)
    if kind:
        query = query.where(CameraEvent.kind == kind)
    return list((await session.execute(query)).scalars())
