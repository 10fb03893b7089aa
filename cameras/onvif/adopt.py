"""Adoption: from an ONVIF device address and credentials to a camera in the inventory.

:func:`inspect` asks the camera what it is (clock offset, device information, scopes, profiles,
stream and snapshot URIs, PTZ and presets, events) without touching the database;
:func:`save` puts the result in the inventory (the password encrypted by storage.keys) inside
the caller's transaction, so the caller can audit in the same one.

Main stream: the profile with the highest resolution; sub stream: the lowest. Stream URLs are
stored without credentials (the recorder adds them from username / password_enc).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cameras import CameraError
from cameras.onvif.clock import ClockReading, measure_offset, record_offset
from cameras.onvif.errors import ClockUnreported, NotOnvifDevice
from cameras.onvif.session import OnvifSession, connect
from storage import Invalid, inventory
from storage.alerts import AlertHub
from storage.keys import Keys
from storage.models import Camera, CameraKind

log = logging.getLogger(__name__)


@dataclass
class ProfileInfo:
    token: str
    name: str
    width: int
    height: int
    encoding: str
    stream_url: str = ""
    ptz: bool = False


@dataclass
class CameraFacts:
    """What adoption learnt from a camera. No secrets."""

    xaddr: str
    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    serial: str = ""
    hardware_id: str = ""
    scope_name: str = ""
    scope_location: str = ""
    scope_hardware: str = ""
    clock: ClockReading | None = None
    profiles: list[ProfileInfo] = field(default_factory=list)
    main_url: str = ""
    sub_url: str = ""
    snapshot_url: str = ""
    ptz: bool = False
    ptz_profile: str = ""
    presets: list[dict[str, str]] = field(default_factory=list)
    events: bool = False

    def suggested_name(self) -> str:
        return self.scope_name or " ".join(p for p in (self.model, self.serial) if p) or urlsplit(self.xaddr).netloc

    def onvif_extra(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("clock")
        return data


def strip_credentials(url: str) -> str:
    """A URL without ``user:password@`` (some cameras put them in stream URIs)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _scope(scopes: list[str], kind: str) -> str:
    prefix = f"onvif://www.onvif.org/{kind}/"
    for s in scopes:
        if s.startswith(prefix):
            return unquote(s[len(prefix):])
    return ""


async def _stream_uri(onvif: OnvifSession, token: str) -> str:
    reply = await onvif.call("media", "GetStreamUri", {
        "ProfileToken": token,
        "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
    })
    return strip_credentials(str(reply.Uri or ""))


async def inspect_session(onvif: OnvifSession, *, precise_clock: bool = True) -> CameraFacts:
    facts = CameraFacts(xaddr=onvif.xaddr)
    try:
        facts.clock = await measure_offset(onvif, max_samples=12 if precise_clock else 1)
    except ClockUnreported as exc:  # adopt it all the same; its offset stays unknown
        log.warning("%s", exc)
    info = await onvif.call("devicemgmt", "GetDeviceInformation")
    facts.manufacturer, facts.model = str(info.Manufacturer or ""), str(info.Model or "")
    facts.firmware, facts.serial = str(info.FirmwareVersion or ""), str(info.SerialNumber or "")
    facts.hardware_id = str(info.HardwareId or "")
    try:
        scopes = [str(s.ScopeItem) for s in await onvif.call("devicemgmt", "GetScopes") or []]
    except CameraError as exc:  # optional: the name can come from elsewhere
        log.info("%s: no scopes (%s)", onvif.xaddr, exc)
        scopes = []
    facts.scope_name = _scope(scopes, "name")
    facts.scope_location = _scope(scopes, "location")
    facts.scope_hardware = _scope(scopes, "hardware")

    profiles = await onvif.call("media", "GetProfiles") or []
    for p in profiles:
        enc = p.VideoEncoderConfiguration
        if enc is None or enc.Resolution is None:
            continue  # audio-only or metadata profiles
        facts.profiles.append(ProfileInfo(
            token=str(p.token), name=str(p.Name or p.token), width=int(enc.Resolution.Width),
            height=int(enc.Resolution.Height), encoding=str(enc.Encoding or ""), ptz=p.PTZConfiguration is not None,
        ))
    if not facts.profiles:
        raise NotOnvifDevice(f"{onvif.xaddr}: the camera has no video profiles to record")
    by_size = sorted(facts.profiles, key=lambda pi: (pi.width * pi.height, pi.token))
    main, sub = by_size[-1], by_size[0]
    main.stream_url = await _stream_uri(onvif, main.token)
    sub.stream_url = main.stream_url if sub is main else await _stream_uri(onvif, sub.token)
    facts.main_url, facts.sub_url = main.stream_url, sub.stream_url
    try:
        snap = await onvif.call("media", "GetSnapshotUri", {"ProfileToken": main.token})
        facts.snapshot_url = strip_credentials(str(snap.Uri or ""))
    except CameraError as exc:
        log.info("%s: no snapshot URI (%s)", onvif.xaddr, exc)

    facts.events = onvif.has("events")
    if onvif.has("ptz"):
        ptz_profiles = [pi for pi in facts.profiles if pi.ptz] or [main]
        facts.ptz, facts.ptz_profile = True, (main if main in ptz_profiles else ptz_profiles[0]).token
        presets = await onvif.call("ptz", "GetPresets", {"ProfileToken": facts.ptz_profile}) or []
        facts.presets = [{"token": str(pr.token), "name": str(pr.Name or pr.token)} for pr in presets]
    return facts


async def inspect(xaddr: str, username: str, password: str, *, timeout_s: float = 10.0,
                  precise_clock: bool = True) -> CameraFacts:
    """Everything adoption needs to know about the camera at ``xaddr``."""
    async with connect(xaddr, username, password, timeout_s=timeout_s) as onvif:
        return await inspect_session(onvif, precise_clock=precise_clock)


async def adopted_xaddrs(session: AsyncSession) -> dict[str, tuple[int, str]]:
    """Device addresses already in the inventory: xaddr -> (camera id, name)."""
    rows = await session.execute(select(Camera.onvif_xaddr, Camera.id, Camera.name).where(Camera.onvif_xaddr != ""))
    return {x: (i, n) for x, i, n in rows}


async def save(session: AsyncSession, keys: Keys, facts: CameraFacts, username: str, password: str, *,
               name: str | None = None, site: str | None = None, threshold_s: float = 1.0,
               hub: AlertHub | None = None) -> Camera:
    """Add the adopted camera to the inventory (in the caller's transaction)."""
    existing = (await adopted_xaddrs(session)).get(facts.xaddr)
    if existing is not None:
        raise Invalid(f"{facts.xaddr} is already adopted as camera {existing[0]} {existing[1]!r}")
    spec = inventory.parse_spec(inventory.CameraSpec, {
        "name": name or facts.suggested_name(),
        "site": site,
        "position": facts.scope_location,
        "kind": CameraKind.PTZ if facts.ptz else CameraKind.FIXED,
        "main_url": facts.main_url,
        "sub_url": facts.sub_url,
        "snapshot_url": facts.snapshot_url,
        "onvif_xaddr": facts.xaddr,
        "username": username,
        "password": password,
        "ptz": facts.ptz,
        "extra": {"onvif": facts.onvif_extra()},
    }, "adopted camera")
    cam = await inventory.add_camera(session, spec, keys)
    if facts.clock is not None:
        await record_offset(session, hub, cam, facts.clock, threshold_s)
    await session.flush()
    return cam


def identity(facts_or_extra: CameraFacts | dict[str, Any]) -> tuple[str, str, str] | None:
    """A device's lasting identity, (manufacturer, model, serial), or None when it has no serial
    to go by. Addresses change (DHCP, a restarted simulation); the serial does not."""
    data = facts_or_extra if isinstance(facts_or_extra, dict) else asdict(facts_or_extra)
    serial = str(data.get("serial") or "").strip()
    if not serial:
        return None
    return (str(data.get("manufacturer") or "").strip(), str(data.get("model") or "").strip(), serial)


async def same_device(session: AsyncSession, facts: CameraFacts) -> Camera | None:
    """The adopted camera that is this device at another address, if exactly one is."""
    wanted = identity(facts)
    if wanted is None:
        return None
    rows = (await session.execute(select(Camera).where(Camera.onvif_xaddr != ""))).scalars().all()
    matches = [c for c in rows if identity(((c.extra or {}).get("onvif")) or {}) == wanted]
    if len(matches) > 1:  # devices that share a serial (some firmwares ship one): go by address only
        log.warning("cameras %s report the same identity %s: not re-adopting by identity",
                    [c.id for c in matches], wanted)
        return None
    return matches[0] if matches else None


async def readopt(session: AsyncSession, keys: Keys, cam: Camera, facts: CameraFacts, username: str, password: str,
                  *, threshold_s: float = 1.0, hub: AlertHub | None = None) -> Camera:
    """Point an adopted camera at its device's new address (in the caller's transaction): the
    addresses, credentials and what ONVIF says change; the name, site, kind, lane and anything
    an administrator set stay."""
    update = inventory.CameraUpdate(
        onvif_xaddr=facts.xaddr, main_url=facts.main_url, sub_url=facts.sub_url,
        snapshot_url=facts.snapshot_url, username=username, password=password, ptz=facts.ptz,
    )
    cam = await inventory.update_camera(session, cam.id, update, keys)
    cam.extra = {**(cam.extra or {}), "onvif": facts.onvif_extra()}
    if facts.clock is not None:
        await record_offset(session, hub, cam, facts.clock, threshold_s)
    await session.flush()
    return cam


async def inspect_many(targets: list[tuple[str, str, str]], *, concurrency: int = 16, timeout_s: float = 10.0,
                       precise_clock: bool = True) -> list[CameraFacts | CameraError]:
    """Inspect many cameras, at most ``concurrency`` at a time (each camera one request at a time)."""
    limit = asyncio.Semaphore(concurrency)

    async def one(xaddr: str, user: str, password: str) -> CameraFacts | CameraError:
        async with limit:
            try:
                return await inspect(xaddr, user, password, timeout_s=timeout_s, precise_clock=precise_clock)
            except CameraError as exc:
                return exc

    return list(await asyncio.gather(*(one(*t) for t in targets)))
