"""What the API and the CLI both do with ONVIF: adopt, discover, steer, set clocks; audited.

Each action names its actor (a user, or ``cli:<os user>``). PTZ actions and clock settings are
audited after the camera answered, with the outcome, so a refused or failed attempt is on the
record too; the audit entry is written in its own transaction because the action itself is on
the camera, not in the database (holding a database write lock across a network call would
stall every other writer on SQLite). While the operator has a directed use open on the camera
(storage.ripa), each PTZ entry carries the RIPA authorisation's reference.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cameras import CameraError
from cameras.onvif import adopt, clock, discovery, ptz
from cameras.onvif.session import OnvifSession, SessionPool, connect, normalize_xaddr
from controlroom.settings import Settings
from storage import Invalid, audit, inventory, ripa
from storage.alerts import AlertHub
from storage.db import transaction
from storage.keys import Keys
from storage.models import Camera

log = logging.getLogger(__name__)

PTZ_ACTIONS = ("move", "stop", "goto", "set_preset", "home", "absolute", "relative")


async def adopt_camera(sessions: async_sessionmaker[AsyncSession], keys: Keys, hub: AlertHub | None,
                       settings: Settings, actor: str, *, xaddr: str, username: str, password: str,
                       name: str | None = None, site: str | None = None) -> tuple[Camera, adopt.CameraFacts]:
    """Inspect the camera, add it to the inventory and audit ``camera.adopt``."""
    if not xaddr:
        raise Invalid("xaddr is required: the camera's ONVIF device address")
    xaddr = normalize_xaddr(xaddr)
    async with sessions() as session:
        existing = (await adopt.adopted_xaddrs(session)).get(xaddr)
    if existing is not None:
        raise Invalid(f"{xaddr} is already adopted as camera {existing[0]} {existing[1]!r}")
    facts = await adopt.inspect(xaddr, username, password, timeout_s=settings.cameras.onvif_timeout_s)
    async with transaction(sessions) as session:
        previous = await adopt.same_device(session, facts)
        if previous is not None:
            # The same device (by serial) at a new address: re-adopt it, keeping its name,
            # history and settings, rather than add a second camera for it.
            old_xaddr = previous.onvif_xaddr
            cam = await adopt.readopt(session, keys, previous, facts, username, password,
                                      threshold_s=settings.cameras.clock_threshold_s, hub=hub)
            await audit.append(session, actor, "camera.readopt", f"camera:{cam.id}", name=cam.name, xaddr=xaddr,
                               previous_xaddr=old_xaddr, serial=facts.serial, model=facts.model)
        else:
            cam = await adopt.save(session, keys, facts, username, password, name=name, site=site,
                                   threshold_s=settings.cameras.clock_threshold_s, hub=hub)
            await audit.append(session, actor, "camera.adopt", f"camera:{cam.id}", name=cam.name, xaddr=xaddr,
                               model=facts.model, ptz=facts.ptz, clock_offset_s=cam.clock_offset_s)
    if previous is not None:
        log.info("camera %s: re-adopted %s at %s (was %s; serial %s)", cam.id, cam.name, xaddr, old_xaddr, facts.serial)
    else:
        log.info("camera %s: adopted %s (%s %s)", cam.id, cam.name, facts.manufacturer, facts.model)
    return cam, facts


def facts_json(facts: adopt.CameraFacts) -> dict[str, Any]:
    data = facts.onvif_extra()
    data["clock_offset_s"] = round(facts.clock.offset_s, 3) if facts.clock else None
    return data


async def discover_devices(sessions: async_sessionmaker[AsyncSession], *, targets: list[str], interfaces: list[str],
                           timeout_s: float, heard: dict[str, discovery.Device] | None = None) -> list[dict[str, Any]]:
    """Probe, merge what Hello announced meanwhile, and say which devices are adopted."""
    found = {d.endpoint: d for d in await discovery.discover(targets=targets, interfaces=interfaces,
                                                             timeout_s=timeout_s)} if (targets or interfaces) else {}
    for device in (heard or {}).values():
        discovery.merge(found, device)
    async with sessions() as session:
        adopted = await adopt.adopted_xaddrs(session)
    out = []
    for device in sorted(found.values(), key=lambda d: (d.name, d.endpoint)):
        row = device.to_dict()
        match = next((adopted[x] for x in device.xaddrs if x in adopted), None)
        row["adopted"] = match is not None
        row["camera_id"], row["camera"] = (match if match else (None, None))
        out.append(row)
    return out


@asynccontextmanager
async def _camera_session(cam: Camera, keys: Keys, pool: SessionPool | None,
                          timeout_s: float) -> AsyncIterator[OnvifSession]:
    if not cam.onvif_xaddr:
        raise Invalid(f"camera {cam.name!r} was not adopted over ONVIF: it has no device address")
    password = keys.decrypt(cam.password_enc)
    if pool is None:
        async with connect(cam.onvif_xaddr, cam.username, password, timeout_s=timeout_s) as onvif:
            yield onvif
        return
    onvif = await pool.get(cam.id, cam.onvif_xaddr, cam.username, password)
    try:
        yield onvif
    except CameraError:
        await pool.drop(cam.id)  # reopen next time: the camera may have rebooted
        raise


async def ptz_call(sessions: async_sessionmaker[AsyncSession], keys: Keys, pool: SessionPool | None, actor: str,
                   camera_ref: int | str, action: str, *, request_timeout_s: float = 10.0, allowed: Any = None,
                   **params: Any) -> Any:
    """Run one PTZ action (or read: status, presets) on a camera; actions are audited."""
    async with sessions() as session:
        cam = await inventory.get_camera(session, camera_ref)
    if allowed is not None and not await allowed(cam.id):
        from storage import NotFound

        raise NotFound(f"no camera {camera_ref!r}")
    if not cam.ptz:
        raise Invalid(f"camera {cam.name!r} is not a PTZ camera")
    stored_token = ((cam.extra or {}).get("onvif") or {}).get("ptz_profile", "")
    outcome, result = "ok", None
    try:
        async with _camera_session(cam, keys, pool, request_timeout_s) as onvif:
            token = await ptz.profile_token(onvif, stored_token)
            match action:
                case "status":
                    return (await ptz.status(onvif, token)).to_dict()
                case "presets":
                    return await ptz.presets(onvif, token)
                case "move":
                    await ptz.move(onvif, token, pan=params.get("pan", 0.0), tilt=params.get("tilt", 0.0),
                                   zoom=params.get("zoom", 0.0), timeout_s=params.get("timeout_s"))
                case "stop":
                    await ptz.stop(onvif, token)
                case "goto":
                    result = {"preset": await ptz.goto(onvif, token, str(params["preset"]))}
                case "set_preset":
                    result = {"preset": await ptz.set_preset(onvif, token, str(params["name"]))}
                case "home":
                    await ptz.home(onvif, token)
                case "absolute":
                    await ptz.absolute(onvif, token, pan=params["pan"], tilt=params["tilt"], zoom=params["zoom"])
                case "relative":
                    await ptz.relative(onvif, token, pan=params.get("pan", 0.0), tilt=params.get("tilt", 0.0),
                                       zoom=params.get("zoom", 0.0))
                case _:
                    raise Invalid(f"unknown PTZ action {action!r}")
    except (CameraError, Invalid) as exc:
        outcome = f"failed: {exc}"
        raise
    finally:
        if action in PTZ_ACTIONS:
            async with transaction(sessions) as session:
                link = await ripa.audit_link(session, actor, cam.id)  # directed use: its authorisation
                await audit.append(session, actor, f"ptz.{action}", f"camera:{cam.id}", outcome=outcome[:300],
                                   **{k: v for k, v in params.items() if v is not None}, **link)
    return result or {"ok": True}


async def check_clock(sessions: async_sessionmaker[AsyncSession], keys: Keys, hub: AlertHub | None,
                      settings: Settings, camera_ref: int | str) -> dict[str, Any]:
    async with sessions() as session:
        cam = await inventory.get_camera(session, camera_ref)
    if not cam.onvif_xaddr:
        raise Invalid(f"camera {cam.name!r} has no ONVIF address: its clock cannot be read")
    async with _camera_session(cam, keys, None, settings.cameras.onvif_timeout_s) as onvif:
        reading = await clock.measure_offset(onvif)
    async with transaction(sessions) as session:
        row = await session.get(Camera, cam.id)
        assert row is not None
        flagged = await clock.record_offset(session, hub, row, reading, settings.cameras.clock_threshold_s)
    return {"camera_id": cam.id, "camera": cam.name, "offset_s": round(reading.offset_s, 3),
            "uncertainty_s": round(reading.uncertainty_s, 3), "flagged": flagged}


async def set_clock(sessions: async_sessionmaker[AsyncSession], keys: Keys, hub: AlertHub | None,
                    settings: Settings, actor: str, camera_ref: int | str) -> dict[str, Any]:
    """Set the camera's clock to ours, measure again, store, audit ``camera.clock_set``."""
    async with sessions() as session:
        cam = await inventory.get_camera(session, camera_ref)
    if not cam.onvif_xaddr:
        raise Invalid(f"camera {cam.name!r} has no ONVIF address: its clock cannot be set")
    before = cam.clock_offset_s
    outcome = "ok"
    try:
        async with _camera_session(cam, keys, None, settings.cameras.onvif_timeout_s) as onvif:
            await clock.set_camera_clock(onvif)
            reading = await clock.measure_offset(onvif)
    except CameraError as exc:
        outcome = f"failed: {exc}"
        raise
    finally:
        if outcome != "ok":
            async with transaction(sessions) as session:
                await audit.append(session, actor, "camera.clock_set", f"camera:{cam.id}", outcome=outcome[:300])
    async with transaction(sessions) as session:
        row = await session.get(Camera, cam.id)
        assert row is not None
        flagged = await clock.record_offset(session, hub, row, reading, settings.cameras.clock_threshold_s)
        await audit.append(session, actor, "camera.clock_set", f"camera:{cam.id}", outcome="ok",
                           offset_before_s=before, offset_after_s=round(reading.offset_s, 3))
    return {"camera_id": cam.id, "camera": cam.name, "offset_before_s": before,
            "offset_s": round(reading.offset_s, 3), "flagged": flagged}
