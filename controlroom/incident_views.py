"""JSON shapes of the occurrence book (incidents, entries, bookmarks) for the API and the CLI."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controlroom.timefmt import us_to_iso
from storage.incidents import CATEGORIES, OUTCOMES, TOLD, Bookmark, Incident, IncidentEntry
from storage.models import Camera, Hold, Site


class Names:
    """Camera and site names by id, read once per answer."""

    def __init__(self, cameras: dict[int, str], sites: dict[int, str]) -> None:
        self.cameras, self.sites = cameras, sites

    @classmethod
    async def load(cls, session: AsyncSession) -> Names:
        cameras = dict((await session.execute(select(Camera.id, Camera.name))).all())
        sites = dict((await session.execute(select(Site.id, Site.name))).all())
        return cls(cameras, sites)


def vocabulary() -> dict[str, Any]:
    """The choices a form offers, with their labels, in the order to show them."""
    return {
        "categories": [{"value": k, "label": v} for k, v in CATEGORIES.items()],
        "outcomes": [{"value": k, "label": v} for k, v in OUTCOMES.items()],
        "told": [{"value": k, "label": v} for k, v in TOLD.items()],
    }


def _times(name: str, us: int | None, tz: ZoneInfo) -> dict[str, Any]:
    return {name: us_to_iso(us), f"{name}_local": us_to_iso(us, tz)}


def entry_json(e: IncidentEntry, tz: ZoneInfo) -> dict[str, Any]:
    return {"id": e.id, **_times("at", e.at_us, tz), "author": e.author, "kind": e.kind, "text": e.text}


def incident_json(i: Incident, names: Names, tz: ZoneInfo, *, entries: bool = False,
                  evidence: list[int] | None = None, holds: list[Hold] | None = None,
                  bookmarks: list[Bookmark] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": i.id,
        **_times("occurred_at", i.occurred_at_us, tz),
        **_times("opened_at", i.opened_at_us, tz),
        "opened_by": i.opened_by,
        "status": i.status,
        **_times("closed_at", i.closed_at_us, tz),
        "closed_by": i.closed_by,
        "category": i.category, "category_label": CATEGORIES.get(i.category, i.category),
        "camera_id": i.camera_id, "camera": names.cameras.get(i.camera_id) if i.camera_id else None,
        "site_id": i.site_id, "site": names.sites.get(i.site_id) if i.site_id else None,
        "location": i.location,
        "told": list(i.told or []), "told_labels": [TOLD.get(t, t) for t in i.told or []],
        "police_reference": i.police_reference,
        "outcome": i.outcome, "outcome_label": OUTCOMES.get(i.outcome) if i.outcome else None,
        "summary": i.summary,
    }
    if entries:
        data["entries"] = [entry_json(e, tz) for e in i.entries]
    if evidence is not None:
        data["evidence_requests"] = evidence
    if holds is not None:
        data["holds"] = [{"id": h.id, **_times("review", h.review_us, tz), "released": us_to_iso(h.released_us)}
                         for h in holds]
    if bookmarks is not None:
        data["bookmarks"] = [bookmark_json(b, names, tz) for b in bookmarks]
    return data


def bookmark_json(b: Bookmark, names: Names, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": b.id, "camera_id": b.camera_id, "camera": names.cameras.get(b.camera_id),
        **_times("start", b.start_us, tz), **_times("end", b.end_us, tz),
        "start_us": b.start_us, "end_us": b.end_us,
        "note": b.note, "made_by": b.made_by, **_times("made_at", b.made_at_us, tz), "incident_id": b.incident_id,
    }
