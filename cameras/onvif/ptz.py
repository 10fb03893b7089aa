"""Steering a PTZ camera: move, stop, status, presets, go to a preset, set a preset, home.

Velocities and positions are in ONVIF's generic spaces: pan and tilt in [-1, 1], zoom in
[0, 1] (positions) or [-1, 1] (velocities). Every function takes an open
:class:`cameras.onvif.session.OnvifSession` and the PTZ profile token (adoption stores it in
``Camera.extra["onvif"]["ptz_profile"]``). Auditing who did what is the caller's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cameras.onvif.errors import OnvifFault
from cameras.onvif.session import OnvifSession
from storage import Invalid


@dataclass(frozen=True)
class PtzStatus:
    pan: float | None
    tilt: float | None
    zoom: float | None
    moving: bool
    utc: str

    def to_dict(self) -> dict[str, Any]:
        return {"pan": self.pan, "tilt": self.tilt, "zoom": self.zoom, "moving": self.moving, "utc": self.utc}


def _check(value: float, name: str, low: float = -1.0, high: float = 1.0) -> float:
    value = float(value)
    if not low <= value <= high:
        raise Invalid(f"{name} must be between {low} and {high}, not {value}")
    return value


async def profile_token(onvif: OnvifSession, stored: str = "") -> str:
    if stored:
        return stored
    profiles = await onvif.call("media", "GetProfiles") or []
    for p in profiles:
        if p.PTZConfiguration is not None:
            return str(p.token)
    if profiles:
        return str(profiles[0].token)
    raise OnvifFault(f"{onvif.xaddr}: the camera has no media profile to steer")


async def move(onvif: OnvifSession, token: str, *, pan: float = 0.0, tilt: float = 0.0, zoom: float = 0.0,
               timeout_s: float | None = None) -> None:
    """Continuous move at the given velocities; the camera stops by itself after ``timeout_s``."""
    params: dict[str, Any] = {"ProfileToken": token, "Velocity": {
        "PanTilt": {"x": _check(pan, "pan"), "y": _check(tilt, "tilt")}, "Zoom": {"x": _check(zoom, "zoom")}}}
    if timeout_s is not None:
        if not 0 < timeout_s <= 60:
            raise Invalid("timeout_s must be above 0 and at most 60")
        params["Timeout"] = f"PT{timeout_s:g}S"
    await onvif.call("ptz", "ContinuousMove", params)


async def relative(onvif: OnvifSession, token: str, *, pan: float = 0.0, tilt: float = 0.0, zoom: float = 0.0) -> None:
    await onvif.call("ptz", "RelativeMove", {"ProfileToken": token, "Translation": {
        "PanTilt": {"x": _check(pan, "pan", -2, 2), "y": _check(tilt, "tilt", -2, 2)}, "Zoom": {"x": _check(zoom, "zoom")}}})


async def absolute(onvif: OnvifSession, token: str, *, pan: float, tilt: float, zoom: float) -> None:
    await onvif.call("ptz", "AbsoluteMove", {"ProfileToken": token, "Position": {
        "PanTilt": {"x": _check(pan, "pan"), "y": _check(tilt, "tilt")}, "Zoom": {"x": _check(zoom, "zoom", 0, 1)}}})


async def stop(onvif: OnvifSession, token: str) -> None:
    await onvif.call("ptz", "Stop", {"ProfileToken": token, "PanTilt": True, "Zoom": True})


async def status(onvif: OnvifSession, token: str) -> PtzStatus:
    st = await onvif.call("ptz", "GetStatus", {"ProfileToken": token})
    pos = st.Position
    pan = tilt = zoom = None
    if pos is not None and pos.PanTilt is not None:
        pan, tilt = float(pos.PanTilt.x), float(pos.PanTilt.y)
    if pos is not None and pos.Zoom is not None:
        zoom = float(pos.Zoom.x)
    moving = False
    if st.MoveStatus is not None:
        moving = any(str(v or "").upper() == "MOVING" for v in (st.MoveStatus.PanTilt, st.MoveStatus.Zoom))
    return PtzStatus(pan, tilt, zoom, moving, str(st.UtcTime or ""))


async def presets(onvif: OnvifSession, token: str) -> list[dict[str, Any]]:
    out = []
    for p in await onvif.call("ptz", "GetPresets", {"ProfileToken": token}) or []:
        item: dict[str, Any] = {"token": str(p.token), "name": str(p.Name or p.token)}
        pos = p.PTZPosition
        if pos is not None and pos.PanTilt is not None:
            item.update(pan=float(pos.PanTilt.x), tilt=float(pos.PanTilt.y))
        if pos is not None and pos.Zoom is not None:
            item["zoom"] = float(pos.Zoom.x)
        out.append(item)
    return out


async def resolve_preset(onvif: OnvifSession, token: str, preset: str) -> str:
    """A preset token from a token or a name."""
    known = await presets(onvif, token)
    for p in known:
        if preset in (p["token"], p["name"]):
            return p["token"]
    names = ", ".join(f"{p['name']} ({p['token']})" for p in known) or "none"
    raise Invalid(f"no preset {preset!r} on this camera; it has: {names}")


async def goto(onvif: OnvifSession, token: str, preset: str) -> str:
    preset_token = await resolve_preset(onvif, token, preset)
    await onvif.call("ptz", "GotoPreset", {"ProfileToken": token, "PresetToken": preset_token})
    return preset_token


async def set_preset(onvif: OnvifSession, token: str, name: str) -> str:
    """Save the current position as preset ``name`` (overwriting one of that name)."""
    if not name.strip():
        raise Invalid("a preset needs a name")
    params: dict[str, Any] = {"ProfileToken": token, "PresetName": name}
    existing = next((p for p in await presets(onvif, token) if p["name"] == name), None)
    if existing is not None:
        params["PresetToken"] = existing["token"]
    reply = await onvif.call("ptz", "SetPreset", params)
    return str(reply)


async def home(onvif: OnvifSession, token: str) -> None:
    await onvif.call("ptz", "GotoHomePosition", {"ProfileToken": token})
