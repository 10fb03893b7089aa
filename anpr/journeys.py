"""Journeys: a registration read at one site and then at another within a window.

The pairing is a pure function of reads (:func:`pair_journeys`), tested as one. For each
vehicle, reads are walked in time order; a read at the destination site ends a journey from the
*latest* earlier read at the origin site, when the gap is within the window. A vehicle read
twice at the origin (two cameras, or a loop round the roundabout) thus gives one journey, with
the shortest honest travel time. "Vehicles seen at both Horns Bridge and West Bars within 15
minutes" is :func:`find_journeys` with ``either_direction=True`` and ``within_s=900``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from storage import Invalid
from storage.anpr.reads import reads_at_both

MAX_WINDOW_S = 7 * 86_400


class ReadLike(Protocol):
    id: int
    vrm: str
    read_us: int
    site_name: str


@dataclass(frozen=True)
class Journey:
    vrm: str
    from_site: str
    to_site: str
    from_read_id: int
    to_read_id: int
    start_us: int
    end_us: int

    @property
    def travel_s(self) -> float:
        return (self.end_us - self.start_us) / 1e6


def pair_journeys(reads: Iterable[ReadLike], from_site: str, to_site: str, within_us: int,
                  either_direction: bool = False) -> list[Journey]:
    """Journeys from ``from_site`` to ``to_site`` (and back, if ``either_direction``)."""
    a, b = from_site.lower(), to_site.lower()
    if a == b:
        raise Invalid("a journey needs two different sites")
    ordered = sorted(reads, key=lambda r: (r.vrm, r.read_us, r.id))
    out: list[Journey] = []
    for vrm, group in groupby(ordered, key=lambda r: r.vrm):
        last: dict[str, ReadLike] = {}  # site (lower case) -> latest read there so far
        for read in group:
            site = read.site_name.lower()
            if site not in (a, b):
                continue
            origin = a if site == b else b
            start = last.get(origin)
            if start is not None and (site == b or either_direction) and read.read_us - start.read_us <= within_us:
                out.append(Journey(vrm, start.site_name, read.site_name, start.id, read.id, start.read_us, read.read_us))
                del last[origin]  # a read starts at most one journey
            last[site] = read
    return sorted(out, key=lambda j: (j.start_us, j.vrm))


async def find_journeys(session: AsyncSession, from_site: str, to_site: str, within_s: float,
                        from_us: int | None = None, to_us: int | None = None, vrm: str | None = None,
                        either_direction: bool = False,
                        allowed_camera_ids: frozenset[int] | None = None) -> list[Journey]:
    """Journeys between two sites whose start lies in [from_us, to_us)."""
    if not 0 < within_s <= MAX_WINDOW_S:
        raise Invalid(f"the window must be more than 0 and at most {MAX_WINDOW_S} seconds")
    within_us = int(within_s * 1_000_000)
    # Reads up to one window past the range end can still finish a journey that starts in it.
    end = None if to_us is None else to_us + within_us
    reads = await reads_at_both(session, from_site, to_site, from_us, end, vrm,
                                      allowed_camera_ids=allowed_camera_ids)
    journeys = pair_journeys(reads, from_site, to_site, within_us, either_direction)
    return [j for j in journeys if to_us is None or j.start_us < to_us]
