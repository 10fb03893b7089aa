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
from cameras.onvif import masks as camera_masks
from cameras.onvif.session import OnvifSession, SessionPool, connect, normalize_xaddr
from controlroom.settings import Settings
from controlroom.timefmt import us_to_iso
from storage import Invalid, audit, inventory, masks, ripa
from storage.alerts import AlertHub
from storage.db import now_us, transaction
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


# -- privacy masks the camera paints (ONVIF Media2; docs/design/lawful-use.md) -------------------
MASKS_ACTOR = "system:masks"
# camera_state prefixes: the camera cannot paint this set (tried again only when it changes) or
# could not be reached (tried again at the next check).
UNSUPPORTED, UNREACHABLE, DRIFT = "unsupported: ", "unreachable: ", "drift: "


async def _record_service(sessions: async_sessionmaker[AsyncSession], camera_id: int, version: int,
                          state: str) -> None:
    """The service paints this set, and why; written (and audited) only when it changes."""
    async with transaction(sessions) as session:
        row = await masks.get(session, camera_id)
        if row is not None and row.version == version and (row.applied_by, row.camera_state) != (masks.SERVICE, state):
            await masks.mark_applied(session, camera_id, version, masks.SERVICE, [], by=MASKS_ACTOR, detail=state)


async def push_masks(sessions: async_sessionmaker[AsyncSession], keys: Keys, pool: SessionPool | None,
                     camera_id: int, *, timeout_s: float, clear: bool = False, note: str = "") -> str | None:
    """Give an ONVIF camera its privacy masks to paint (Media2), or take them back (``clear``:
    the set was removed). Who paints the set afterwards (``camera`` or ``service``), or None
    when the camera is not ONVIF or has no set. A camera that cannot (no Media2, a fault on
    CreateMask, too many masks) or cannot be reached leaves the set to the service: logged,
    and visible in ``camera_state``."""
    async with sessions() as session:
        cam = await session.get(Camera, camera_id)
        row = await masks.get(session, camera_id)
    if cam is None or not cam.onvif_xaddr or (row is None and not clear):
        return None
    version = row.version if row is not None else 0
    try:
        async with _camera_session(cam, keys, pool, timeout_s) as onvif:
            if row is None:  # cleared: the camera stops painting what we gave it
                if onvif.has("media2"):
                    await camera_masks.push(onvif, [])
                    log.info("camera %s: privacy masks removed from the camera", camera_id)
                return None
            tokens = await camera_masks.push(onvif, row.polygons)
            confirmed_us = now_us()
    except camera_masks.MasksUnsupported as exc:
        log.warning("camera %s: privacy masks v%s are painted by the service: %s", camera_id, version, exc)
        await _record_service(sessions, camera_id, version, UNSUPPORTED + str(exc))
        return masks.SERVICE
    except CameraError as exc:
        log.warning("camera %s: privacy masks v%s not pushed (%s); the service paints them until the camera "
                    "takes them", camera_id, version, exc)
        if row is not None:
            await _record_service(sessions, camera_id, version, UNREACHABLE + str(exc))
        return masks.SERVICE if row is not None else None
    async with transaction(sessions) as session:
        taken = await masks.mark_applied(session, camera_id, version, masks.CAMERA, tokens, by=MASKS_ACTOR,
                                         detail=note, at_us=confirmed_us)
    if not taken:  # changed meanwhile: the newer set is pushed by whoever changed it
        return None
    log.info("camera %s: privacy masks v%s painted by the camera (%d masks)", camera_id, version, len(tokens))
    return masks.CAMERA


async def check_masks(sessions: async_sessionmaker[AsyncSession], keys: Keys, pool: SessionPool | None,
                      camera_id: int, *, timeout_s: float) -> str | None:
    """Reconcile one camera: its masks read back (GetMasks) against ours. Intact: footage up to
    now is painted at source. Drift (removed or changed on the camera): logged, the service
    paints the set from now on (``masks.drift``), and it is pushed again. A set the service
    paints for a passing reason (unreachable, never tried) is pushed. Who paints it now."""
    async with sessions() as session:
        cam = await session.get(Camera, camera_id)
        row = await masks.get(session, camera_id)
    if cam is None or row is None or not cam.onvif_xaddr or not cam.enabled:
        return None
    if row.applied_by != masks.CAMERA:
        if row.camera_state.startswith(UNSUPPORTED):
            return masks.SERVICE  # tried when the set changes, not every minute
        return await push_masks(sessions, keys, pool, camera_id, timeout_s=timeout_s)
    try:
        async with _camera_session(cam, keys, pool, timeout_s) as onvif:
            read_us = now_us()
            held = await camera_masks.read(onvif)
    except CameraError as exc:  # not checked: footage from now on is painted by the service too
        log.warning("camera %s: its privacy masks could not be read back (%s); recorded footage after %s is "
                    "masked by the service until they are", camera_id, exc, row.camera_checked_us)
        return masks.CAMERA
    drift = camera_masks.compare(row.polygons, held)
    if not drift:
        async with transaction(sessions) as session:
            await masks.mark_checked(session, camera_id, row.version, read_us)
        return masks.CAMERA
    log.warning("camera %s: privacy masks drift: %s; the service paints them and pushes them again", camera_id, drift)
    async with transaction(sessions) as session:
        await masks.mark_drift(session, camera_id, row.version, drift, by=MASKS_ACTOR)
    return await push_masks(sessions, keys, pool, camera_id, timeout_s=timeout_s,
                            note=f"pushed again after drift at {us_to_iso(read_us)}: {drift}")


async def check_all_masks(sessions: async_sessionmaker[AsyncSession], keys: Keys, pool: SessionPool | None, *,
                          timeout_s: float) -> dict[int, str | None]:
    """:func:`check_masks` for every ONVIF camera with a set (at start, then periodically)."""
    async with sessions() as session:
        ids = sorted((await masks.all_sets(session)).keys())
    return {cid: await check_masks(sessions, keys, pool, cid, timeout_s=timeout_s) for cid in ids}
