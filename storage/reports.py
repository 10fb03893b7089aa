"""The queries behind the reports (docs/design/reports.md), and the tasking packs sent to police.

Every count is made by the database (``GROUP BY``), never by loading incidents into Python: a
year holds some 20,000 incidents and the weekly pack is built while a supervisor waits. A
period is ``[start_us, end_us)`` in UTC microseconds by ``incidents.occurred_at_us`` (when it
happened, not when it was logged).

The hour-of-week heat map is counted by UTC hour since the week's local start (one row per
hour that has incidents, at most 169) and those hours are then named in local time by the
caller: Europe/London's offsets are whole hours, so each UTC hour is exactly one local hour.

A tasking pack sent to police (:class:`ReportRelease`) keeps the police-safe content exactly as
it was sent, so what was disclosed can always be shown again; the send is audited in the same
transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import Invalid, NotFound, audit
from storage.anpr.models import AnprHit, Hotlist
from storage.db import Base, now_us
from storage.evidence import DisclosureEntry, EvidenceRequest
from storage.incidents import Incident
from storage.models import Camera, Site

HOUR_US = 3_600_000_000
INT4_MAX = 2**31 - 1


# --- counts ----------------------------------------------------------------------------------

def _in(start_us: int, end_us: int) -> Any:
    return (Incident.occurred_at_us >= start_us) & (Incident.occurred_at_us < end_us)


async def count_incidents(session: AsyncSession, start_us: int, end_us: int) -> int:
    return int(await session.scalar(select(func.count()).select_from(Incident).where(_in(start_us, end_us))) or 0)


async def count_by(session: AsyncSession, column: Any, start_us: int, end_us: int) -> dict[Any, int]:
    """Incidents in the period grouped by one of their columns (category, outcome, opened_by,
    camera_id, site_id): {value: count}, None for rows without a value."""
    rows = await session.execute(
        select(column, func.count()).where(_in(start_us, end_us)).group_by(column))
    return {value: int(n) for value, n in rows}


async def by_category(session: AsyncSession, start_us: int, end_us: int) -> dict[str, int]:
    return await count_by(session, Incident.category, start_us, end_us)


async def by_category_two_periods(session: AsyncSession, period: tuple[int, int],
                                  compare: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """{category: (count in period, count in comparison period)} in one pass over the index."""
    in_a, in_b = _in(*period), _in(*compare)
    rows = await session.execute(
        select(Incident.category,
               func.sum(case((in_a, 1), else_=0)),
               func.sum(case((in_b, 1), else_=0)))
        .where(in_a | in_b).group_by(Incident.category))
    return {cat: (int(a or 0), int(b or 0)) for cat, a, b in rows}


async def by_camera(session: AsyncSession, start_us: int, end_us: int) -> list[tuple[int, str, str | None, int]]:
    """(camera id, camera name, site name, count), most incidents first."""
    n = func.count(Incident.id).label("n")
    rows = await session.execute(
        select(Camera.id, Camera.name, Site.name, n)
        .join(Incident, Incident.camera_id == Camera.id).outerjoin(Site, Site.id == Camera.site_id)
        .where(_in(start_us, end_us)).group_by(Camera.id, Camera.name, Site.name)
        .order_by(n.desc(), Camera.name))
    return [(cid, name, site, int(count)) for cid, name, site, count in rows]


async def by_site(session: AsyncSession, start_us: int, end_us: int) -> list[tuple[int, str, int]]:
    """(site id, site name, count), most incidents first."""
    n = func.count(Incident.id).label("n")
    rows = await session.execute(
        select(Site.id, Site.name, n).join(Incident, Incident.site_id == Site.id)
        .where(_in(start_us, end_us)).group_by(Site.id, Site.name).order_by(n.desc(), Site.name))
    return [(sid, name, int(count)) for sid, name, count in rows]


async def by_free_text(session: AsyncSession, start_us: int, end_us: int, limit: int = 20) -> list[tuple[str, int]]:
    """Free-text locations (case and surrounding spaces ignored), most incidents first."""
    place = func.lower(func.trim(Incident.location)).label("place")
    n = func.count(Incident.id).label("n")
    rows = await session.execute(
        select(place, n).where(_in(start_us, end_us), func.trim(Incident.location) != "")
        .group_by(place).order_by(n.desc(), place).limit(limit))
    return [(p, int(count)) for p, count in rows]


async def by_hour_offset(session: AsyncSession, start_us: int, end_us: int) -> dict[int, int]:
    """{whole hours since ``start_us``: count}. ``//`` is SQLAlchemy's integer division (``/``
    is true division since 2.0 and would round on PostgreSQL); the differences are positive."""
    hour = ((Incident.occurred_at_us - literal(start_us, BigInteger)) // literal(HOUR_US, BigInteger)).label("hour")
    rows = await session.execute(select(hour, func.count()).where(_in(start_us, end_us)).group_by(hour))
    return {int(h): int(n) for h, n in rows}


async def occurrence_times(session: AsyncSession, start_us: int, end_us: int) -> list[int]:
    """When each incident of the period happened (a week: a few hundred numbers), for matching
    against unmonitored hours (storage.duty.incidents_in_unmonitored)."""
    return list((await session.execute(
        select(Incident.occurred_at_us).where(_in(start_us, end_us)).order_by(Incident.occurred_at_us))).scalars())


async def hits_by_hotlist(session: AsyncSession, start_us: int, end_us: int) -> list[tuple[str, str, int]]:
    """ANPR hotlist hits in the period: (hotlist name, state, count)."""
    rows = await session.execute(
        select(Hotlist.name, AnprHit.state, func.count()).join(Hotlist, Hotlist.id == AnprHit.hotlist_id)
        .where(AnprHit.at_us >= start_us, AnprHit.at_us < end_us)
        .group_by(Hotlist.name, AnprHit.state).order_by(Hotlist.name, AnprHit.state))
    return [(name, state, int(n)) for name, state, n in rows]


async def hits_list(session: AsyncSession, start_us: int, end_us: int, limit: int = 200) -> list[dict[str, Any]]:
    """The period's hits themselves (plates: the supervisor's pack only), newest first."""
    rows = await session.execute(
        select(AnprHit.at_us, AnprHit.vrm, Camera.name, Hotlist.name, AnprHit.state, AnprHit.decided_by)
        .join(Hotlist, Hotlist.id == AnprHit.hotlist_id).outerjoin(Camera, Camera.id == AnprHit.camera_id)
        .where(AnprHit.at_us >= start_us, AnprHit.at_us < end_us)
        .order_by(AnprHit.at_us.desc()).limit(limit))
    return [{"at_us": at, "vrm": vrm, "camera": cam, "hotlist": hl, "state": state, "decided_by": by}
            for at, vrm, cam, hl, state, by in rows]


async def releases_in(session: AsyncSession, start_us: int, end_us: int) -> list[dict[str, Any]]:
    """Evidence released in the period, from the disclosure register (storage.evidence)."""
    rows = await session.execute(
        select(DisclosureEntry.at_us, DisclosureEntry.request_id, EvidenceRequest.exhibit_ref,
               EvidenceRequest.crime_reference, DisclosureEntry.recipient, DisclosureEntry.released_by)
        .join(EvidenceRequest, EvidenceRequest.id == DisclosureEntry.request_id)
        .where(DisclosureEntry.at_us >= start_us, DisclosureEntry.at_us < end_us)
        .order_by(DisclosureEntry.at_us))
    return [{"at_us": at, "request_id": rid, "exhibit": ex, "crime_reference": ref, "recipient": to,
             "released_by": by} for at, rid, ex, ref, to, by in rows]


# --- tasking packs sent to police ------------------------------------------------------------

class ReportRelease(Base):
    """A police-safe tasking pack a supervisor sent to a police account, as it was sent."""

    __tablename__ = "report_releases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    week: Mapped[str] = mapped_column(String(10))
    sent_at_us: Mapped[int] = mapped_column(BigInteger)
    sent_by: Mapped[str] = mapped_column(String(200))
    recipient: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text, default="")
    content: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_report_releases_recipient", "recipient", "sent_at_us"),)

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "week": self.week, "sent_at_us": self.sent_at_us, "sent_by": self.sent_by,
                "recipient": self.recipient, "note": self.note}


async def add_release(session: AsyncSession, *, week: str, by: str, recipient: str, content: dict[str, Any],
                      note: str = "") -> ReportRelease:
    """Keep the police-safe pack sent to ``recipient`` and audit the disclosure (one transaction)."""
    if not recipient.strip():
        raise Invalid("recipient: a police account is required")
    release = ReportRelease(week=week, sent_at_us=now_us(), sent_by=by, recipient=recipient, note=note.strip(),
                            content=content)
    session.add(release)
    await session.flush()
    await audit.append(session, by, "reports.send", f"report_release:{release.id}", week=week,
                       recipient=recipient, edition=content.get("edition"), incidents=content.get("total"),
                       disclosed="tasking pack (police-safe: no names, plates or images)")
    return release


async def releases_for(session: AsyncSession, recipient: str, limit: int = 200) -> list[ReportRelease]:
    return list((await session.execute(
        select(ReportRelease).where(ReportRelease.recipient == recipient)
        .order_by(ReportRelease.sent_at_us.desc(), ReportRelease.id.desc()).limit(limit))).scalars())


async def get_release(session: AsyncSession, release_id: int, recipient: str) -> ReportRelease:
    """The pack sent to ``recipient``; NotFound for any other (another officer's is not named)."""
    # The column is INTEGER (int4 on PostgreSQL): a larger id names nothing, and binding one
    # would be a driver error (the API accepts row ids up to 2**63).
    release = await session.get(ReportRelease, release_id) if 0 < release_id <= INT4_MAX else None
    if release is None or release.recipient != recipient:
        raise NotFound(f"no tasking pack {release_id} sent to you")
    return release
