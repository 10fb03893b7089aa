"""One ONVIF conversation with one camera, over onvif-zeep-async.

:func:`connect` opens an :class:`OnvifSession`: it learns the camera's clock offset first (an
unauthenticated GetSystemDateAndTime), so WS-Security timestamps are shifted to the camera's
clock and a camera whose clock is off still authenticates; then it learns the service
addresses (GetServices, or GetCapabilities on older cameras). Every call goes through
:meth:`OnvifSession.call`, which holds the camera's lock (at most one request in flight per
camera, so a burst never overwhelms one device), bounds the wait and sorts failures into
:mod:`cameras.onvif.errors`.

The WSDLs are the ones shipped inside the onvif package; zeep's on-disk cache is not used
(``no_cache``): everything is loaded from local files, so there is nothing to cache.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from lxml import etree

from cameras.onvif.errors import ClockUnreported, ServiceMissing, translate

_root = logging.getLogger()
_handlers_before = list(_root.handlers)
from onvif import ONVIFCamera  # noqa: E402
from onvif.client import ONVIFService  # noqa: E402

# onvif.client calls logging.basicConfig() when imported; undo that, so the service's own
# logging set-up (and the CLI's --verbose) decides where log lines go.
for _h in list(_root.handlers):
    if _h not in _handlers_before:
        _root.removeHandler(_h)

log = logging.getLogger(__name__)
# At DEBUG these log every SOAP envelope sent, WS-Security UsernameToken included (a password
# digest with its nonce can be attacked offline): keep them above DEBUG even under --verbose.
for _name in ("onvif.zeep_aiohttp", "zeep.transports"):
    logging.getLogger(_name).setLevel(logging.INFO)

DEFAULT_TIMEOUT_S = 10.0
NS_PTZ = "http://www.onvif.org/ver20/ptz/wsdl"
NS_MEDIA = "http://www.onvif.org/ver10/media/wsdl"
NS_EVENTS = "http://www.onvif.org/ver10/events/wsdl"
NS_MEDIA2 = "http://www.onvif.org/ver20/media/wsdl"
# onvif-zeep-async ships no Media2 WSDL: ours covers its privacy masks (cameras/onvif/wsdl/).
MEDIA2_WSDL = str(Path(__file__).with_name("wsdl") / "media2.wsdl")

# One lock per camera address and event loop: per camera at most one request in flight, shared
# by adoption, the clock check, PTZ and everything else in this process that talks to it.
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()


def camera_lock(xaddr: str) -> asyncio.Lock:
    locks = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    key = urlsplit(xaddr).netloc
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = asyncio.Lock()
    return lock


def normalize_xaddr(xaddr: str) -> str:
    """``10.0.0.5`` or ``http://10.0.0.5:8080`` -> the full device-service address."""
    xaddr = xaddr.strip()
    parts = urlsplit(xaddr if "://" in xaddr else f"http://{xaddr}")
    path = parts.path if parts.path not in ("", "/") else "/onvif/device_service"
    return parts._replace(path=path).geturl()


def split_xaddr(xaddr: str) -> tuple[str, int]:
    """Host and port of a device-service address (``http://host[:port]/onvif/device_service``)."""
    parts = urlsplit(xaddr if "://" in xaddr else f"http://{xaddr}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        from cameras.onvif.errors import NotOnvifDevice

        raise NotOnvifDevice(f"{xaddr!r} is not an ONVIF device address (http://host[:port]/onvif/device_service)")
    host = parts.hostname
    if parts.scheme == "https":
        host = f"https://{host}"
    return host, parts.port or (443 if parts.scheme == "https" else 80)


class _Device(ONVIFCamera):
    """ONVIFCamera that talks to the device service at the address given, path included.

    The library assumes ``/onvif/device_service``; some cameras announce another path in their
    XAddrs, and an address with a wrong path must fail rather than be quietly corrected.
    """

    def __init__(self, xaddr: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._device_xaddr = xaddr

    async def _adjust_time(self, devicemgmt: ONVIFService) -> ONVIFService:
        """The library's clock-skew handshake, tolerant of a camera that does not report UTC
        (issue 11, found 13: the library raised AttributeError on a reply whose UTCDateTime was
        left out or unfilled, and the camera could not be used at all). Such a camera is
        spoken to with our own clock in WS-Security, as without ``adjust_time``; its offset is
        reported as unknown where it is asked for (:class:`ClockUnreported`)."""
        try:
            return await super()._adjust_time(devicemgmt)
        except (AttributeError, TypeError, ValueError) as exc:
            log.warning("%s: the camera does not report its UTC time (%s: %s); talking to it without "
                        "correcting for its clock", self._device_xaddr, type(exc).__name__, exc)
            self.dt_diff = dt.timedelta(0)
            return devicemgmt

    def get_definition(self, name: str, port_type: str | None = None) -> tuple[str, str, str]:
        if name == "media2":
            return self.xaddrs.get(NS_MEDIA2, ""), MEDIA2_WSDL, f"{{{NS_MEDIA2}}}Media2Binding"
        xaddr, wsdl, binding = super().get_definition(name, port_type)
        if name == "devicemgmt":
            xaddr = self._device_xaddr
        return xaddr, wsdl, binding


_TIME_REQUEST = (
    b'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">'
    b'<s:Body><GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/></s:Body></s:Envelope>'
)
_TT = "{http://www.onvif.org/ver10/schema}"


UNREPORTED_UTC = ("the camera does not report its UTC time (GetSystemDateAndTime has no usable "
                  "UTCDateTime): its clock offset cannot be measured; set its clock or turn on NTP on it")


def camera_utc_s(reply: Any, where: str = "") -> float:
    """Epoch seconds of a GetSystemDateAndTime reply's UTCDateTime (whole seconds).
    :class:`ClockUnreported` when it is left out or unfilled (a reply must not raise a library
    error at the user)."""
    utc = getattr(reply, "UTCDateTime", None)
    date, clock_time = getattr(utc, "Date", None), getattr(utc, "Time", None)
    try:
        return dt.datetime(date.Year, date.Month, date.Day, clock_time.Hour, clock_time.Minute,
                           clock_time.Second, tzinfo=dt.UTC).timestamp()
    except (AttributeError, TypeError, ValueError, OverflowError):
        raise ClockUnreported(f"{where + ': ' if where else ''}{UNREPORTED_UTC}") from None


def _utc_from_xml(body: bytes) -> float | None:
    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
        utc = root.find(f".//{_TT}UTCDateTime")
        if utc is None:
            return None
        part = {el.tag[len(_TT):]: int(el.text) for el in utc.iter() if el.text and el.text.strip().isdigit()}
        return dt.datetime(part["Year"], part["Month"], part["Day"], part["Hour"], part["Minute"], part["Second"],
                           tzinfo=dt.UTC).timestamp()
    except (etree.XMLSyntaxError, KeyError, ValueError):
        return None


@dataclass
class OnvifSession:
    """An open ONVIF connection to one camera. ``dt_diff_s``: camera clock minus ours."""

    xaddr: str
    device: ONVIFCamera
    timeout_s: float
    dt_diff_s: float = 0.0
    _http: aiohttp.ClientSession | None = None
    _raw_clock: bool = True

    async def read_clock(self) -> tuple[float, float, float]:
        """One clock reading: (sent, received, camera UTC epoch seconds), timed inside the lock.

        A plain unauthenticated GetSystemDateAndTime parsed with lxml: the clock check takes
        several readings, and zeep spends about 5 ms of CPU on each; the ONVIF core allows this
        call before authentication. A camera that refuses it falls back to the full client.
        """
        async with camera_lock(self.xaddr):
            with translate(self.where):
                async with asyncio.timeout(self.timeout_s):
                    if self._raw_clock:
                        if self._http is None:
                            self._http = aiohttp.ClientSession()
                        sent = time.time()
                        async with self._http.post(self.xaddr, data=_TIME_REQUEST, headers={
                                "Content-Type": "application/soap+xml; charset=utf-8"}) as resp:
                            body = await resp.read()
                        received = time.time()
                        cam_s = _utc_from_xml(body) if resp.status == 200 else None
                        if cam_s is not None:
                            return sent, received, cam_s
                        self._raw_clock = False
                    svc = await self._service("devicemgmt")
                    sent = time.time()
                    reply = await svc.GetSystemDateAndTime()
                    received = time.time()
                    return sent, received, camera_utc_s(reply, self.xaddr)

    @property
    def where(self) -> str:
        return self.xaddr

    async def call(self, service: str, operation: str, params: dict[str, Any] | None = None,
                   *, timeout_s: float | None = None) -> Any:
        """Call ``operation`` on ``service`` (devicemgmt, media, ptz, events...), one at a time."""
        async with camera_lock(self.xaddr):
            with translate(self.where):
                svc = await self._service(service)
                async with asyncio.timeout(timeout_s or self.timeout_s):
                    return await getattr(svc, operation)(params)

    async def call_service(self, svc: ONVIFService, operation: str, params: Any = None,
                           *, timeout_s: float | None = None, exclusive: bool = True) -> Any:
        """Call on a service object (e.g. a PullPoint subscription). ``exclusive=False`` skips the
        camera lock: for the long-polling PullMessages, which would otherwise hold PTZ up."""
        if not exclusive:
            with translate(self.where):
                async with asyncio.timeout(timeout_s or self.timeout_s):
                    return await getattr(svc, operation)(params)
        async with camera_lock(self.xaddr):
            with translate(self.where):
                async with asyncio.timeout(timeout_s or self.timeout_s):
                    return await getattr(svc, operation)(params)

    async def service(self, name: str) -> ONVIFService:
        with translate(self.where):
            return await self._service(name)

    async def _service(self, name: str) -> ONVIFService:
        creators: dict[str, Callable[[], Awaitable[ONVIFService]]] = {
            "devicemgmt": self.device.create_devicemgmt_service,
            "media": self.device.create_media_service,
            "ptz": self.device.create_ptz_service,
            "events": self.device.create_events_service,
            "media2": lambda: self.device.create_onvif_service("media2"),
        }
        if name in ("ptz", "media", "events", "media2") and not self.has(name):
            raise ServiceMissing(f"{self.where}: the camera does not offer the {name} service")
        return await creators[name]()

    def has(self, service: str) -> bool:
        ns = {"ptz": NS_PTZ, "media": NS_MEDIA, "events": NS_EVENTS, "media2": NS_MEDIA2}[service]
        return bool(self.device.xaddrs.get(ns))

    async def close(self) -> None:
        try:
            if self._http is not None:
                await self._http.close()
            await self.device.close()
        except Exception:  # noqa: BLE001 - closing sockets must not hide the caller's result
            log.debug("%s: error while closing the ONVIF session", self.where, exc_info=True)


_warm: dict[str, bool] = {}


async def preload_wsdls() -> None:
    """Parse the WSDLs we use once, before any burst of sessions.

    onvif-zeep-async caches each parsed WSDL, but sessions opened together before the cache is
    filled each parse them again (in threads, about a second of CPU each): with 32 adoptions at
    once that starved the machine and timed requests out. Building the services of a camera that
    is never contacted fills the cache, one WSDL at a time.
    """
    lock = _LOCKS.setdefault(asyncio.get_running_loop(), {}).setdefault("<wsdl>", asyncio.Lock())
    async with lock:
        if _warm.get("done"):
            return
        device = ONVIFCamera("192.0.2.1", 80, None, None, no_cache=True)
        device.xaddrs = {NS_MEDIA: "http://192.0.2.1/m", NS_PTZ: "http://192.0.2.1/p", NS_EVENTS: "http://192.0.2.1/e",
                         f"{NS_EVENTS}/PullPointSubscription": "http://192.0.2.1/s"}
        try:
            for create in (device.create_devicemgmt_service, device.create_media_service, device.create_ptz_service,
                           device.create_events_service, device.create_pullpoint_service):
                await create()
        finally:
            await device.close()
        _warm["done"] = True


async def open_session(xaddr: str, username: str, password: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> OnvifSession:
    if not _warm.get("done"):
        await preload_wsdls()
    xaddr = normalize_xaddr(xaddr)
    host, port = split_xaddr(xaddr)
    device = _Device(xaddr, host, port, username or None, password or None, no_cache=True, adjust_time=True)
    session = OnvifSession(xaddr, device, timeout_s)
    try:
        async with camera_lock(xaddr):
            with translate(xaddr):
                async with asyncio.timeout(timeout_s):
                    await device.update_xaddrs()
    except BaseException:
        await session.close()
        raise
    if device.dt_diff is not None:
        session.dt_diff_s = device.dt_diff.total_seconds()
    return session


@asynccontextmanager
async def connect(xaddr: str, username: str, password: str, *,
                  timeout_s: float = DEFAULT_TIMEOUT_S) -> AsyncIterator[OnvifSession]:
    """An open session for the duration of the block; closed afterwards."""
    session = await open_session(xaddr, username, password, timeout_s=timeout_s)
    try:
        yield session
    finally:
        await session.close()


class SessionPool:
    """Open sessions kept per camera id, for the service's PTZ and clock calls.

    A session is dropped (and reopened on next use) after any failure, and when the camera's
    address or credentials change.
    """

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._sessions: dict[int, tuple[tuple[str, str, str], OnvifSession]] = {}
        self._opening: dict[int, asyncio.Lock] = {}

    async def get(self, camera_id: int, xaddr: str, username: str, password: str) -> OnvifSession:
        key = (xaddr, username, password)
        lock = self._opening.setdefault(camera_id, asyncio.Lock())
        async with lock:
            held = self._sessions.get(camera_id)
            if held is not None and held[0] == key:
                return held[1]
            if held is not None:
                await held[1].close()
                del self._sessions[camera_id]
            session = await open_session(xaddr, username, password, timeout_s=self.timeout_s)
            self._sessions[camera_id] = (key, session)
            return session

    async def drop(self, camera_id: int) -> None:
        held = self._sessions.pop(camera_id, None)
        if held is not None:
            await held[1].close()

    async def close(self) -> None:
        for camera_id in list(self._sessions):
            await self.drop(camera_id)


def monotonic_s() -> float:
    return time.monotonic()
