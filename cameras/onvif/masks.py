"""Privacy masks the camera paints itself: ONVIF Media2 GetMaskOptions, GetMasks, CreateMask,
DeleteMask (docs/design/lawful-use.md, "Masks the camera paints").

Our polygons are normalised 0..1 from the top left of the picture (storage.masks); ONVIF's are
in its normalised space, x from -1 (left) to 1 (right) and y from -1 (bottom) to 1 (top):
x' = 2x - 1, y' = 1 - 2y. A camera "takes" a set when every polygon was created (type
``Color``, black, enabled) on the video source configuration its profiles share; the camera
then holds exactly our masks (others it had are deleted first, so what it paints is what the
service believes it paints). :func:`compare` is the reconciliation: the camera's masks against
ours, within a rounding tolerance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cameras.onvif.errors import CameraError, OnvifFault
from cameras.onvif.session import OnvifSession

log = logging.getLogger(__name__)

TOLERANCE = 2e-3  # of ONVIF's 2-wide space: cameras keep a few digits
Polygon = list[list[float]]


class MasksUnsupported(CameraError):
    """The camera cannot paint these masks (no Media2, no mask support, or too many/too complex)."""


@dataclass(frozen=True)
class CameraMask:
    token: str
    config: str
    polygon: Polygon  # normalised 0..1 from the top left, as storage.masks keeps them
    enabled: bool


def to_onvif(polygon: Polygon) -> list[dict[str, float]]:
    return [{"x": round(2 * x - 1, 6), "y": round(1 - 2 * y, 6)} for x, y in polygon]


def from_onvif(points: Any) -> Polygon:
    return [[(float(p.x) + 1) / 2, (1 - float(p.y)) / 2] for p in points]


async def video_source_config(session: OnvifSession) -> str:
    """The video source configuration of the camera's profiles (masks are set on it)."""
    profiles = await session.call("media", "GetProfiles")
    for profile in profiles or []:
        config = getattr(profile, "VideoSourceConfiguration", None)
        if config is not None and getattr(config, "token", None):
            return str(config.token)
    raise MasksUnsupported(f"{session.where}: no profile names a video source configuration")


async def options(session: OnvifSession, config: str) -> Any:
    """The camera's mask options; :class:`MasksUnsupported` when it has no Media2 masks."""
    if not session.has("media2"):
        raise MasksUnsupported(f"{session.where}: the camera offers no ONVIF Media2 service (privacy masks)")
    try:
        return await session.call("media2", "GetMaskOptions", {"ConfigurationToken": config})
    except OnvifFault as exc:
        raise MasksUnsupported(f"{session.where}: GetMaskOptions refused: {exc}") from exc


async def read(session: OnvifSession) -> list[CameraMask]:
    """The masks the camera holds now (GetMasks)."""
    found = await session.call("media2", "GetMasks", {})
    return [CameraMask(str(m.token), str(m.ConfigurationToken), from_onvif(m.Polygon.Point), bool(m.Enabled))
            for m in found or []]


async def push(session: OnvifSession, polygons: list[Polygon]) -> list[str]:
    """Make the camera paint exactly ``polygons`` ([] removes every mask); their tokens.

    :class:`MasksUnsupported` when it cannot (checked against its options first, or its fault
    on CreateMask: the masks created before the fault are deleted again, so the camera is left
    with none rather than some)."""
    config = await video_source_config(session)
    opts = await options(session, config)
    max_masks, max_points = getattr(opts, "MaxMasks", None), getattr(opts, "MaxPoints", None)
    if max_masks is not None and len(polygons) > int(max_masks):
        raise MasksUnsupported(f"{session.where}: the camera takes {max_masks} masks, {len(polygons)} are set")
    if max_points is not None and any(len(p) > int(max_points) for p in polygons):
        raise MasksUnsupported(f"{session.where}: the camera takes masks of at most {max_points} points")
    if "Color" not in [str(t) for t in (getattr(opts, "Types", None) or [])]:
        raise MasksUnsupported(f"{session.where}: the camera offers no solid-colour masks")
    for old in await read(session):
        await session.call("media2", "DeleteMask", {"Token": old.token})
    tokens: list[str] = []
    try:
        for polygon in polygons:
            tokens.append(str(await session.call("media2", "CreateMask", {"Mask": {
                "ConfigurationToken": config, "Polygon": {"Point": to_onvif(polygon)}, "Type": "Color",
                "Color": {"X": 0, "Y": 0, "Z": 0}, "Enabled": True}})))
    except OnvifFault as exc:
        for token in tokens:
            try:
                await session.call("media2", "DeleteMask", {"Token": token})
            except CameraError:
                log.warning("%s: could not delete mask %s after CreateMask failed", session.where, token)
        raise MasksUnsupported(f"{session.where}: the camera refused CreateMask: {exc}") from exc
    return tokens


def compare(ours: list[Polygon], theirs: list[CameraMask]) -> str:
    """'' when the camera's enabled masks are ours (any order); else what differs, in words."""
    def key(polygon: Polygon) -> tuple:
        return tuple((round(x / TOLERANCE), round(y / TOLERANCE)) for x, y in polygon)

    def close(a: Polygon, b: Polygon) -> bool:
        return len(a) == len(b) and all(abs(p - q) <= TOLERANCE for pa, pb in zip(a, b, strict=True)
                                        for p, q in zip(pa, pb, strict=True))

    enabled = [m.polygon for m in theirs if m.enabled]
    left = list(enabled)
    missing = 0
    for polygon in sorted(ours, key=key):
        match = next((i for i, t in enumerate(left) if close(polygon, t)), None)
        if match is None:
            missing += 1
        else:
            left.pop(match)
    if not missing and not left:
        return ""
    return (f"the camera holds {len(enabled)} enabled mask(s) where {len(ours)} are set: "
            f"{missing} of ours missing, {len(left)} not ours")
