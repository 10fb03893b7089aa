"""When each synthetic vehicle passes each simulated ANPR camera: a pure, deterministic schedule.

Standard library only: the GStreamer subprocess (``/usr/bin/python3``) loads this file by path
to draw the vehicles, and tests in the virtualenv call :func:`passes` for the ground truth.

Time is cut into slots of ``SLOT_US`` (10 s) counted from the Unix epoch. Each (site, lane) has
one vehicle per slot, passing at a seeded offset of 3 to 7 s into the slot, so passes are 6 to
14 s apart and never overlap (each vehicle is on screen for ``VISIBLE_US``, 2 s). ``time_us`` is
the instant the plate is fully visible in the middle of the frame.

Journeys: lane 1 runs westbound from Horns Bridge roundabout to West Bars roundabout, lane 2
eastbound the other way. About 40% of the vehicles seen at the origin site are seen again at the
other site in the same lane exactly ``TRAVEL_US`` (40 s, four slots) later, same plate.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

HORNS_BRIDGE = "Horns Bridge roundabout"
WEST_BARS = "West Bars roundabout"
SITES = (HORNS_BRIDGE, WEST_BARS)
SHORT_NAMES = {HORNS_BRIDGE: "Horns Bridge", WEST_BARS: "West Bars"}

SLOT_US = 10_000_000
VISIBLE_US = 2_000_000
TRAVEL_US = 40_000_000
JOURNEY_SHARE = 0.4
_TRAVEL_SLOTS = TRAVEL_US // SLOT_US

# DVLA rules: I and Q never appear; Z is avoided here too (it is not a memory tag letter).
_LETTERS = "ABCDEFGHJKLMNOPRSTUVWXY"
_AREA_FIRST = "ABCDEFGHKLMNOPRSVWY"  # current-format memory tag regions
_OLD_AGE_LETTERS = "ABCDEFGHJKLMNPRSTVWXY"  # prefix/suffix year letters: no I, O, Q, U, Z
_AGE_IDS = [f"{y:02d}" for y in range(2, 25)] + [f"{y:02d}" for y in range(51, 75)]


@dataclass(frozen=True)
class Pass:
    plate: str
    time_us: int
    site: str
    camera: str
    lane: int
    direction: str
    colour: str = "yellow"  # "yellow" (rear plate) or "white" (front plate)
    vehicle_colour: tuple[int, int, int] = (90, 90, 100)


def camera_name(site: str, lane: int) -> str:
    return f"ANPR {SHORT_NAMES[site]} {lane}"


def site_and_lane(camera: str) -> tuple[str, int]:
    """``"ANPR Horns Bridge 1"`` -> (Horns Bridge roundabout, 1)."""
    for site, short in SHORT_NAMES.items():
        prefix = f"ANPR {short} "
        if camera.startswith(prefix) and camera[len(prefix):].isdigit():
            return site, int(camera[len(prefix):])
    raise ValueError(f"not a simulated ANPR camera name: {camera!r}")


def direction(lane: int) -> str:
    return "westbound" if lane % 2 == 1 else "eastbound"


def origin_site(lane: int) -> str:
    return HORNS_BRIDGE if lane % 2 == 1 else WEST_BARS


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def make_plate(rng: random.Random) -> str:
    """A valid UK registration: mostly the current format, some prefix and suffix plates."""
    kind = rng.random()
    if kind < 0.8:  # current (2001-): AB12 CDE
        return (
            rng.choice(_AREA_FIRST) + rng.choice(_LETTERS) + rng.choice(_AGE_IDS) + " "
            + "".join(rng.choice(_LETTERS) for _ in range(3))
        )
    digits = str(rng.randint(1, 999))
    letters = "".join(rng.choice(_LETTERS) for _ in range(3))
    if kind < 0.95:  # prefix (1983-2001): P123 ABC
        return f"{rng.choice(_OLD_AGE_LETTERS)}{digits} {letters}"
    return f"{letters} {digits}{rng.choice(_OLD_AGE_LETTERS)}"  # suffix (1963-1983): ABC 123D


def _vehicle(site: str, lane: int, slot: int) -> tuple[str, int, str, tuple[int, int, int]]:
    """The vehicle an origin-site lane sees in ``slot``: plate, offset in slot, colours."""
    rng = _rng("anpr-sim-v1", site, lane, slot)
    plate = make_plate(rng)
    offset_us = rng.randint(3_000_000, 7_000_000) // 40_000 * 40_000
    colour = "yellow" if rng.random() < 0.7 else "white"
    body = (rng.randint(30, 220), rng.randint(30, 220), rng.randint(30, 220))
    return plate, offset_us, colour, body


def _is_journey(lane: int, slot: int) -> bool:
    return _rng("anpr-journey-v1", lane, slot).random() < JOURNEY_SHARE


def _slot_pass(site: str, lane: int, slot: int) -> Pass:
    origin = origin_site(lane)
    if site != origin and _is_journey(lane, slot - _TRAVEL_SLOTS):
        plate, offset_us, colour, body = _vehicle(origin, lane, slot - _TRAVEL_SLOTS)
    else:
        plate, offset_us, colour, body = _vehicle(site, lane, slot)
    return Pass(
        plate=plate,
        time_us=slot * SLOT_US + offset_us,
        site=site,
        camera=camera_name(site, lane),
        lane=lane,
        direction=direction(lane),
        colour=colour,
        vehicle_colour=body,
    )


def passes(where: str, from_us: int, to_us: int, lanes: tuple[int, ...] = (1, 2)) -> list[Pass]:
    """Every pass with ``from_us <= time_us < to_us``, ordered by time.

    ``where`` is a camera name (``"ANPR West Bars 1"``) or a site name (then ``lanes`` of it).
    """
    if where in SITES:
        targets = [(where, lane) for lane in lanes]
    else:
        targets = [site_and_lane(where)]
    found = []
    for site, lane in targets:
        for slot in range(from_us // SLOT_US, to_us // SLOT_US + 1):
            p = _slot_pass(site, lane, slot)
            if from_us <= p.time_us < to_us:
                found.append(p)
    return sorted(found, key=lambda p: (p.time_us, p.camera))


def journeys(from_us: int, to_us: int, lanes: tuple[int, ...] = (1, 2)) -> list[tuple[Pass, Pass]]:
    """Pairs (seen at origin, seen at destination) whose origin pass lies in the range."""
    pairs = []
    for lane in lanes:
        origin = origin_site(lane)
        other = WEST_BARS if origin == HORNS_BRIDGE else HORNS_BRIDGE
        for first in passes(origin, from_us, to_us, lanes=(lane,)):
            slot = first.time_us // SLOT_US
            if _is_journey(lane, slot):
                pairs.append((first, _slot_pass(other, lane, slot + _TRAVEL_SLOTS)))
    return sorted(pairs, key=lambda pair: pair[0].time_us)


def visible_at(camera: str, time_us: int) -> list[tuple[Pass, float]]:
    """Passes on screen at ``time_us`` and their progress (-1 entering, 0 mid-frame, 1 leaving)."""
    half = VISIBLE_US // 2
    return [
        (p, (time_us - p.time_us) / half)
        for p in passes(camera, time_us - half, time_us + half + 1)
    ]
