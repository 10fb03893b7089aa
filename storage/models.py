"""Core models: sites, cameras, the segment catalogue, gaps, holds, retention receipts.

Other model modules (audit, accounts, anpr, evidence, events) share :class:`storage.db.Base`.
Times are integer UTC microseconds (``*_us``).
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.db import Base


class CameraKind(enum.StrEnum):
    FIXED = "fixed"
    PTZ = "ptz"
    ANPR = "anpr"


class CameraState(enum.StrEnum):
    RECORDING = "recording"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"
    DISABLED = "disabled"
    STARTING = "starting"
    # ffmpeg runs but nothing has been catalogued for two segment lengths (database or disk
    # trouble): "still running" is not "healthy" (docs/design/recording-store.md, Health).
    DEGRADED = "degraded"


class SegmentState(enum.StrEnum):
    OK = "ok"
    RECOVERED = "recovered"  # closed by start-up recovery after a crash, not by ffmpeg
    GARBAGE = "garbage"  # being deleted: the file may or may not still exist


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    location: Mapped[str] = mapped_column(String(400), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    cameras: Mapped[list[Camera]] = relationship(back_populates="site")


class Camera(Base):
    __tablename__ = "cameras"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), nullable=True)
    position: Mapped[str] = mapped_column(String(400), default="")
    kind: Mapped[str] = mapped_column(String(16), default=CameraKind.FIXED.value)
    # Stream URLs never carry credentials: those are in username / password_enc.
    main_url: Mapped[str] = mapped_column(String(1000), default="")
    sub_url: Mapped[str] = mapped_column(String(1000), default="")
    snapshot_url: Mapped[str] = mapped_column(String(1000), default="")
    onvif_xaddr: Mapped[str] = mapped_column(String(1000), default="")
    username: Mapped[str] = mapped_column(String(200), default="")
    password_enc: Mapped[str] = mapped_column(Text, default="")  # Fernet token, see storage.keys
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    recording: Mapped[bool] = mapped_column(Boolean, default=True)
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    notes: Mapped[str] = mapped_column(Text, default="")
    # ANPR cameras: which lane and direction of travel they watch.
    lane: Mapped[str] = mapped_column(String(50), default="")
    direction: Mapped[str] = mapped_column(String(50), default="")
    # Live status, written by the recorder supervisor.
    state: Mapped[str] = mapped_column(String(16), default=CameraState.STARTING.value)
    state_reason: Mapped[str] = mapped_column(Text, default="")
    state_since_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_segment_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Camera clock minus our clock, seconds; flagged above the configured threshold.
    clock_offset_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    clock_checked_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    clock_flag: Mapped[bool] = mapped_column(Boolean, default=False)
    ptz: Mapped[bool] = mapped_column(Boolean, default=False)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    site: Mapped[Site | None] = relationship(back_populates="cameras")


class Segment(Base):
    """One finished recorded file. Invariants: docs/design/recording-store.md."""

    __tablename__ = "segments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="RESTRICT"))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(500), unique=True)  # relative to the storage root
    codec: Mapped[str] = mapped_column(String(32), default="")
    width: Mapped[int] = mapped_column(Integer, default=0)
    height: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default=SegmentState.OK.value)
    clock_offset_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    clock_flag: Mapped[bool] = mapped_column(Boolean, default=False)

    # Covering: every column storage.catalogue.timeline reads, led by (camera_id, start_us), so a
    # camera-day is one range of the index and no lookups in the table (migration 0008).
    __table_args__ = (
        Index("ix_segments_timeline", "camera_id", "start_us", "end_us", "state", "id", "bytes", "sha256", "path",
              "codec", "width", "height", "clock_offset_s", "clock_flag"),
    )

    @property
    def duration_us(self) -> int:
        return self.end_us - self.start_us


class Gap(Base):
    """A span in which a camera recorded nothing; ``end_us`` is NULL while it lasts."""

    __tablename__ = "gaps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_gaps_camera_start", "camera_id", "start_us"),)


class Hold(Base):
    """A lock that keeps footage past its retention until released."""

    __tablename__ = "holds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(200))
    review_us: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    released_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    released_by: Mapped[str] = mapped_column(String(200), default="")
    reference: Mapped[str] = mapped_column(String(200), default="")  # e.g. evidence request id
    windows: Mapped[list[HoldWindow]] = relationship(
        back_populates="hold", cascade="all, delete-orphan", lazy="selectin"
    )


class HoldWindow(Base):
    """What a hold covers: one camera (or every camera when NULL) over [start_us, end_us)."""

    __tablename__ = "hold_windows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hold_id: Mapped[int] = mapped_column(ForeignKey("holds.id", ondelete="CASCADE"))
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id"), nullable=True)
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    hold: Mapped[Hold] = relationship(back_populates="windows")


class RetentionReceipt(Base):
    """What one retention run deleted and why (a summary per camera and reason)."""

    __tablename__ = "retention_receipts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_us: Mapped[int] = mapped_column(BigInteger)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    segments: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    summary: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
