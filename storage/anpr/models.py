"""ANPR tables: reads, hotlists and their entries, hits (and the states of a hit).

Registrations (VRMs) are stored normalised (storage.anpr.vrm); times are integer UTC microseconds.
"""

from __future__ import annotations

import enum

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import Base


class HitState(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


class AnprRead(Base):
    """One vehicle passing one ANPR camera, read once (after voting across frames)."""

    __tablename__ = "anpr_reads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vrm: Mapped[str] = mapped_column(String(16))  # normalised
    raw_text: Mapped[str] = mapped_column(String(64), default="")
    plate_format: Mapped[str] = mapped_column(String(32), default="")  # e.g. uk_current, generic
    confidence: Mapped[float] = mapped_column(Float)  # 0..1
    read_us: Mapped[int] = mapped_column(BigInteger)  # UTC time of the frame the read comes from
    stored_us: Mapped[int] = mapped_column(BigInteger)
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id", ondelete="SET NULL"), nullable=True)
    # Site, lane and direction as configured when the read was made (a camera may move later).
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"), nullable=True)
    site_name: Mapped[str] = mapped_column(String(200), default="")
    lane: Mapped[str] = mapped_column(String(50), default="")
    direction: Mapped[str] = mapped_column(String(50), default="")
    box: Mapped[list[int]] = mapped_column(JSON, default=list)  # x, y, w, h in the overview frame
    char_confidences: Mapped[list[float]] = mapped_column(JSON, default=list)
    frames: Mapped[int] = mapped_column(Integer, default=1)  # frames that voted for this read
    plate_path: Mapped[str] = mapped_column(String(300), default="")  # relative to the image root
    overview_path: Mapped[str] = mapped_column(String(300), default="")

    __table_args__ = (
        Index("ix_anpr_reads_vrm_read", "vrm", "read_us"),
        Index("ix_anpr_reads_site_read", "site_id", "read_us"),
        Index("ix_anpr_reads_read_us", "read_us"),
    )


class Hotlist(Base):
    __tablename__ = "anpr_hotlists"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(200), default="")  # default for its entries
    default_priority: Mapped[int] = mapped_column(Integer, default=3)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_us: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class HotlistEntry(Base):
    """A VRM or a wildcard pattern of interest. Removed entries are kept (hits refer to them)."""

    __tablename__ = "anpr_hotlist_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hotlist_id: Mapped[int] = mapped_column(ForeignKey("anpr_hotlists.id", ondelete="CASCADE"))
    pattern: Mapped[str] = mapped_column(String(16))  # normalised VRM, or with * and ?
    is_pattern: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(Integer, default=3)
    expires_us: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    removed_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    removed_by: Mapped[str] = mapped_column(String(200), default="")

    __table_args__ = (Index("ix_anpr_hotlist_entries_pattern", "pattern"),)


class AnprHit(Base):
    """A read that matched a hotlist entry; an operator confirms or dismisses it."""

    __tablename__ = "anpr_hits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    read_id: Mapped[int] = mapped_column(ForeignKey("anpr_reads.id", ondelete="CASCADE"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("anpr_hotlist_entries.id", ondelete="CASCADE"))
    hotlist_id: Mapped[int] = mapped_column(ForeignKey("anpr_hotlists.id", ondelete="CASCADE"))
    at_us: Mapped[int] = mapped_column(BigInteger, index=True)
    vrm: Mapped[str] = mapped_column(String(16))
    camera_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    alert_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=HitState.PENDING.value, index=True)
    decided_by: Mapped[str] = mapped_column(String(200), default="")
    decided_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
