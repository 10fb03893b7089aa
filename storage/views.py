"""Views: named layouts and camera tours kept by the service, and site plans with camera pins.

A *view* is a named layout (a grid size and the camera of each tile) or a *tour* (a sequence
of cameras or layouts with a dwell time), owned by the user who saved it and shared with
nobody (``own``), with the users of one site (``site``) or with the whole control room
(``team``). Its content is JSON in ``spec`` (checked by the API, controlroom/api/views.py).

A *site map* is an uploaded plan or map picture (PNG or JPEG, decoded once to check it and to
learn its size) with pins: ``[{"camera": id, "x": 0..1, "y": 0..1}]``, fractions of the
picture's width and height, so a pin stays on its spot however large the picture is drawn.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, LargeBinary, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import NotFound
from storage.db import Base

VIEW_KINDS = ("layout", "tour")
SCOPES = ("own", "site", "team")


class View(Base):
    __tablename__ = "views"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10))  # VIEW_KINDS
    owner: Mapped[str] = mapped_column(String(100), index=True)
    scope: Mapped[str] = mapped_column(String(10), default="own")  # SCOPES
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_us: Mapped[int] = mapped_column(BigInteger)
    updated_us: Mapped[int] = mapped_column(BigInteger)


class SiteMap(Base):
    __tablename__ = "site_maps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), nullable=True)
    media_type: Mapped[str] = mapped_column(String(20))  # image/png or image/jpeg
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    image: Mapped[bytes] = mapped_column(LargeBinary)
    pins: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(100))
    created_us: Mapped[int] = mapped_column(BigInteger)
    updated_us: Mapped[int] = mapped_column(BigInteger)


async def get_view(session: AsyncSession, view_id: int) -> View:
    view = await session.get(View, view_id)
    if view is None:
        raise NotFound(f"no view {view_id}")
    return view


async def list_views(session: AsyncSession) -> list[View]:
    return list((await session.execute(select(View).order_by(View.name, View.id))).scalars())


async def get_map(session: AsyncSession, map_id: int) -> SiteMap:
    site_map = await session.get(SiteMap, map_id)
    if site_map is None:
        raise NotFound(f"no map {map_id}")
    return site_map


async def list_maps(session: AsyncSession) -> list[SiteMap]:
    """Every map without its picture (read by ``get_map`` when it is asked for)."""
    from sqlalchemy.orm import defer

    return list((await session.execute(
        select(SiteMap).options(defer(SiteMap.image)).order_by(SiteMap.name, SiteMap.id))).scalars())
