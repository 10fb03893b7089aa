"""The simulated cameras' ONVIF side: one SOAP server per camera on its own port.

Each :class:`SimOnvifCamera` answers the device, media, PTZ and event services over real SOAP
1.2 on HTTP, checks WS-Security UsernameToken digests against its own (possibly skewed) clock,
and serves a real JPEG snapshot. Responses are written by hand, as a camera's firmware does,
and checked by the tests through onvif-zeep-async and the ONVIF WSDLs it ships.

Used two ways:

- ``OnvifSimulator(simulation)``: inside a running :class:`simulator.Simulation` (its
  ``onvif=True`` hook), one ONVIF camera per simulated RTSP camera, reached through
  :class:`simulator.link.SimulationLink`: PTZ really moves the RTSP picture through
  ``set_ptz`` / ``move_ptz`` and clocks follow ``clock_offsets_s``.
- ``OnvifSimulator(cameras=[SimOnvifCamera(...), ...])``: standalone, for tests and the
  benchmark that need the ONVIF side only.

Motion is reported on the PullPoint event service as ``tns1:VideoSource/MotionAlarm`` when
:meth:`OnvifSimulator.trigger_motion` is called, on a timer (``motion_every_s``), or when a
client POSTs to ``/sim/motion`` on the camera's port. The simulator never sends multicast unless
it is given a ``multicast_interface`` (only inside network namespaces a test creates).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import logging
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from aiohttp import web
from lxml import etree

from simulator import clips
from simulator.link import SimCamera, SimulationLink
from simulator.wsdiscovery import DiscoveryResponder

log = logging.getLogger(__name__)

NS = {
    "env": "http://www.w3.org/2003/05/soap-envelope",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tptz": "http://www.onvif.org/ver20/ptz/wsdl",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "tr2": "http://www.onvif.org/ver20/media/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "tns1": "http://www.onvif.org/ver10/topics",
    "ter": "http://www.onvif.org/ver10/error",
    "wsrf-rw": "http://docs.oasis-open.org/wsrf/rw-2",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
}
_XMLNS = " ".join(f'xmlns:{k}="{v}"' for k, v in NS.items() if k not in ("wsse", "wsu"))
SOAP_CONTENT_TYPE = "application/soap+xml; charset=utf-8"

# How far a UsernameToken's Created may be from the camera's own clock. Real firmware varies
# (a few seconds to several minutes); 30 s makes a 90 s skew fail unless the client adjusts
# its timestamps, which is what the clock-skew test needs to show.
CREATED_TOLERANCE_S = 30.0
# Operations a client may call before authenticating (ONVIF Core, PRE_AUTH class). Cameras
# differ; the strict choice here keeps wrong-credential detection honest.
PRE_AUTH = {"GetSystemDateAndTime"}
# Generic PTZ spaces: pan and tilt in [-1, 1], zoom in [0, 1].
PAN_TILT_SPACE = "http://www.onvif.org/ver10/tptz/PanTiltSpaces/PositionGenericSpace"
ZOOM_SPACE = "http://www.onvif.org/ver10/tptz/ZoomSpaces/PositionGenericSpace"
# Continuous-move speed at velocity 1.0, generic units per second (pan, tilt, zoom): full pan
# range in 4 s, as the RTSP simulator moves its picture.
PTZ_RATES = (0.5, 0.5, 0.25)
# A ContinuousMove without Timeout stops after this long, as real cameras do.
PTZ_DEFAULT_TIMEOUT_S = 5.0
# Longest PullMessages wait and default subscription length the camera grants.
PULL_MAX_TIMEOUT_S = 60.0
SUBSCRIPTION_DEFAULT_S = 60.0
# Media2 privacy masks (GetMaskOptions): how many the camera takes, of how many points.
MAX_MASKS, MAX_MASK_POINTS = 8, 16


class SoapFault(Exception):
    """A SOAP 1.2 fault the camera answers with: code, ONVIF subcode, reason, HTTP status."""

    def __init__(self, reason: str, subcode: str = "ter:InvalidArgVal", code: str = "env:Sender",
                 status: int = 400) -> None:
        super().__init__(reason)
        self.reason, self.subcode, self.code, self.status = reason, subcode, code, status


def envelope(body: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope {_XMLNS}>'
            f"<env:Header/><env:Body>{body}</env:Body></env:Envelope>")


def fault_xml(fault: SoapFault) -> str:
    return envelope(
        f"<env:Fault><env:Code><env:Value>{fault.code}</env:Value><env:Subcode><env:Value>"
        f"{fault.subcode}</env:Value></env:Subcode></env:Code><env:Reason>"
        f'<env:Text xml:lang="en">{escape(fault.reason)}</env:Text></env:Reason></env:Fault>'
    )


def xml_time(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_duration_s(text: str) -> float:
    """xs:duration as ONVIF uses it (``PT60S``, ``PT1M``, ``P1DT2H``) to seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise SoapFault(f"bad duration {text!r}", "ter:InvalidArgVal")
    d, h, mi, s = m.groups()
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


def parse_time_or_duration(text: str, camera_now_s: float) -> float:
    """A termination time: relative (xs:duration) or absolute (xs:dateTime), as camera epoch s."""
    text = text.strip()
    if text.startswith("P"):
        return camera_now_s + parse_duration_s(text)
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise SoapFault(f"bad termination time {text!r}", "ter:InvalidArgVal") from None


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


@dataclass
class Preset:
    token: str
    name: str
    pan: float
    tilt: float
    zoom: float


class LocalPtz:
    """A PTZ head that only exists in this process: position integrated from velocity."""

    def __init__(self) -> None:
        self._pos = (0.0, 0.0, 0.0)
        self._vel = (0.0, 0.0, 0.0)
        self._since = time.monotonic()
        self._until: float | None = None

    def now(self) -> tuple[float, float, float]:
        t = time.monotonic()
        end = min(t, self._until) if self._until is not None else t
        elapsed = max(0.0, end - self._since)
        p, tl, z = (a + v * r * elapsed for a, v, r in zip(self._pos, self._vel, PTZ_RATES, strict=True))
        return _clamp(p, -1, 1), _clamp(tl, -1, 1), _clamp(z, 0, 1)

    async def get(self) -> tuple[float, float, float]:
        return self.now()

    def moving(self) -> bool:
        active = self._until is None or time.monotonic() < self._until
        return active and any(self._vel)

    async def set(self, pan: float, tilt: float, zoom: float) -> None:
        self._pos, self._vel, self._since, self._until = (pan, tilt, zoom), (0.0, 0.0, 0.0), time.monotonic(), None

    async def move(self, vpan: float, vtilt: float, vzoom: float, timeout_s: float | None) -> None:
        self._pos = self.now()
        self._vel, self._since = (vpan, vtilt, vzoom), time.monotonic()
        self._until = self._since + timeout_s if timeout_s else None


class SimPtzBridge:
    """PTZ of a camera in a :class:`simulator.Simulation`: moves its RTSP picture.

    The simulation's ``set_ptz(name, pan, tilt, zoom)`` and ``move_ptz(name, vpan, vtilt,
    vzoom)`` (ONVIF generic velocities, same rates as :data:`PTZ_RATES`) change what its
    encoder draws; ``get_ptz(name)`` reads the position back. The continuous-move timeout is
    kept here, since the simulation does not know about it.
    """

    def __init__(self, sim: SimulationLink, name: str) -> None:
        self._sim, self._name, self._local = sim, name, LocalPtz()
        self._stopper: asyncio.Task[None] | None = None

    async def get(self) -> tuple[float, float, float]:
        pan, tilt, zoom = await self._sim.get_ptz(self._name)
        return float(pan), float(tilt), float(zoom)

    def moving(self) -> bool:
        return self._local.moving()

    async def set(self, pan: float, tilt: float, zoom: float) -> None:
        self._cancel_stop()
        await self._local.set(pan, tilt, zoom)
        await self._sim.move_ptz(self._name, 0.0, 0.0, 0.0)
        await self._sim.set_ptz(self._name, pan, tilt, zoom)

    async def move(self, vpan: float, vtilt: float, vzoom: float, timeout_s: float | None) -> None:
        self._cancel_stop()
        await self._local.move(vpan, vtilt, vzoom, timeout_s)
        await self._sim.move_ptz(self._name, vpan, vtilt, vzoom)
        if timeout_s and any((vpan, vtilt, vzoom)):
            self._stopper = asyncio.create_task(self._timed_stop(timeout_s))

    async def _timed_stop(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        self._stopper = None
        await self._sim.move_ptz(self._name, 0.0, 0.0, 0.0)

    def _cancel_stop(self) -> None:
        if self._stopper is not None and self._stopper is not asyncio.current_task():
            self._stopper.cancel()
        self._stopper = None


@dataclass
class Subscription:
    id: str
    terminate_at_s: float  # camera clock, epoch seconds
    messages: list[str] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class SimOnvifCamera:
    """One simulated ONVIF camera: identity, streams, credentials, clock, PTZ and events."""

    name: str
    main_url: str = ""
    sub_url: str = ""
    ptz: bool = False
    username: str = "admin"
    password: str = "admin"
    main_size: tuple[int, int] = (1920, 1080)
    sub_size: tuple[int, int] = (640, 360)
    manufacturer: str = "Controlroom Simulator"
    model: str = "SimCam 1080"
    hardware: str = "SimCam-1080"
    firmware: str = "1.0.0"
    location: str = "town-centre"
    serial: str = ""
    endpoint: str = field(default_factory=lambda: f"urn:uuid:{uuid.uuid4()}")
    # "" (a proper UTCDateTime), "absent" or "unfilled": how GetSystemDateAndTime gives UTC.
    utc_quirk: str = ""
    # Camera clock minus true time, seconds. A callable lets the simulation own it.
    clock_offset_s: float = 0.0
    clock_source: Callable[[], float] | None = None
    ptz_head: LocalPtz | SimPtzBridge = field(default_factory=LocalPtz)
    # Filled when serving.
    host: str = "127.0.0.1"
    port: int = 0
    presets: dict[str, Preset] = field(default_factory=dict)
    home: tuple[float, float, float] = (0.0, 0.0, 0.0)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    in_flight: int = 0
    peak_in_flight: int = 0
    requests: int = 0
    events_sent: int = 0
    # ONVIF Media2 privacy masks: "" (no Media2), "media2" (takes CreateMask and paints the masks
    # into its streams through ``paint_masks``), "refuse" (offers Media2, faults CreateMask).
    masks_support: str = ""
    masks: dict[str, dict] = field(default_factory=dict)  # token -> config, points (ONVIF -1..1), type
    paint_masks: Callable[[list[list[list[float]]]], Awaitable[None]] | None = None
    mask_tokens: int = 0

    @property
    def xaddr(self) -> str:
        return f"http://{self.host}:{self.port}/onvif/device_service"

    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def offset_s(self) -> float:
        return float(self.clock_source()) if self.clock_source is not None else self.clock_offset_s

    def now_s(self) -> float:
        """The camera's own clock, epoch seconds."""
        return time.time() + self.offset_s()

    def set_clock(self, camera_epoch_s: float) -> None:
        self.clock_source = None
        self.clock_offset_s = camera_epoch_s - time.time()

    def scopes(self) -> list[str]:
        from urllib.parse import quote

        return [
            "onvif://www.onvif.org/type/video_encoder",
            "onvif://www.onvif.org/Profile/Streaming",
            *(["onvif://www.onvif.org/type/ptz"] if self.ptz else []),
            f"onvif://www.onvif.org/name/{quote(self.name)}",
            f"onvif://www.onvif.org/hardware/{quote(self.hardware)}",
            f"onvif://www.onvif.org/location/{quote(self.location)}",
        ]

    # -- events -------------------------------------------------------------------------
    def publish(self, topic: str, data_name: str, state: bool, source: str = "VideoSource_1") -> None:
        """Queue one notification for every live subscription."""
        now = self.now_s()
        msg = (
            '<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/'
            f'ConcreteSet">{topic}</wsnt:Topic><wsnt:Message><tt:Message UtcTime="{xml_time(now)}" '
            'PropertyOperation="Changed"><tt:Source><tt:SimpleItem Name="Source" '
            f'Value="{source}"/></tt:Source><tt:Data><tt:SimpleItem Name="{data_name}" '
            f'Value="{"true" if state else "false"}"/></tt:Data></tt:Message></wsnt:Message>'
            "</wsnt:NotificationMessage>"
        )
        for sub in self.subscriptions.values():
            if sub.terminate_at_s >= now:
                sub.messages.append(msg)
                sub.wake.set()
        self.events_sent += 1

    def trigger_motion(self, state: bool = True) -> None:
        self.publish("tns1:VideoSource/MotionAlarm", "State", state)

    def trigger_tamper(self, state: bool = True) -> None:
        self.publish("tns1:VideoSource/GlobalSceneChange/ImagingService", "State", state)


# ---------------------------------------------------------------------------------------
# The SOAP service of one camera
# ---------------------------------------------------------------------------------------

def _text(node: etree._Element | None, path: str, default: str = "") -> str:
    if node is None:
        return default
    found = node.find(path, namespaces=NS)
    return found.text.strip() if found is not None and found.text else default


def check_security(cam: SimOnvifCamera, root: etree._Element) -> None:
    """Verify the WS-Security UsernameToken (digest or text) against the camera's clock."""
    token = root.find("env:Header/wsse:Security/wsse:UsernameToken", namespaces=NS)
    if token is None:
        raise SoapFault("Sender not Authorized", "ter:NotAuthorized")
    username = _text(token, "wsse:Username")
    pw_node = token.find("wsse:Password", namespaces=NS)
    password = pw_node.text or "" if pw_node is not None else ""
    kind = pw_node.get("Type", "") if pw_node is not None else ""
    if username != cam.username:
        raise SoapFault("Sender not Authorized", "ter:NotAuthorized")
    if kind.endswith("#PasswordText"):
        if password != cam.password:
            raise SoapFault("Sender not Authorized", "ter:NotAuthorized")
        return
    nonce_b64 = _text(token, "wsse:Nonce")
    created = _text(token, "wsu:Created")
    try:
        nonce = base64.b64decode(nonce_b64)
        created_s = dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise SoapFault("Sender not Authorized", "ter:NotAuthorized") from None
    expected = base64.b64encode(hashlib.sha1(nonce + created.encode() + cam.password.encode()).digest()).decode()
    if password != expected:
        raise SoapFault("Sender not Authorized", "ter:NotAuthorized")
    if abs(created_s - cam.now_s()) > CREATED_TOLERANCE_S:
        # What real firmware does with a stale or future Created: the same NotAuthorized.
        raise SoapFault("Sender not Authorized", "ter:NotAuthorized")


class CameraService:
    """Handlers of one camera's SOAP operations; each returns the response body XML."""

    def __init__(self, cam: SimOnvifCamera, sim: OnvifSimulator) -> None:
        self.cam, self.sim = cam, sim

    # -- device ---------------------------------------------------------------------------
    def GetDeviceInformation(self, req: etree._Element) -> str:  # noqa: N802 - SOAP names
        c = self.cam
        return (
            f"<tds:GetDeviceInformationResponse><tds:Manufacturer>{escape(c.manufacturer)}</tds:Manufacturer>"
            f"<tds:Model>{escape(c.model)}</tds:Model><tds:FirmwareVersion>{escape(c.firmware)}</tds:FirmwareVersion>"
            f"<tds:SerialNumber>{escape(c.serial or c.endpoint[-12:])}</tds:SerialNumber>"
            f"<tds:HardwareId>{escape(c.hardware)}</tds:HardwareId></tds:GetDeviceInformationResponse>"
        )

    def _service_urls(self) -> dict[str, tuple[str, str]]:
        base = self.cam.base()
        urls = {
            "device": (NS["tds"], f"{base}/onvif/device_service"),
            "media": (NS["trt"], f"{base}/onvif/media_service"),
            "events": (NS["tev"], f"{base}/onvif/events_service"),
        }
        if self.cam.ptz:
            urls["ptz"] = (NS["tptz"], f"{base}/onvif/ptz_service")
        if self.cam.masks_support:
            urls["media2"] = (NS["tr2"], f"{base}/onvif/media2_service")
        return urls

    def GetServices(self, req: etree._Element) -> str:  # noqa: N802
        # With IncludeCapability, each service carries its capabilities, as GetServiceCapabilities
        # of that service would answer (ONVIF Core 8.1.2.1; clients such as the npm onvif
        # package read them from here).
        include = _text(req, "tds:IncludeCapability").strip().lower() in ("true", "1")
        out = []
        for ns, url in self._service_urls().values():
            caps = f"<tds:Capabilities>{service_capabilities(ns)}</tds:Capabilities>" if include else ""
            out.append(f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{url}</tds:XAddr>{caps}"
                       "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>")
        return f"<tds:GetServicesResponse>{''.join(out)}</tds:GetServicesResponse>"

    def GetCapabilities(self, req: etree._Element) -> str:  # noqa: N802
        urls = self._service_urls()
        ptz = f"<tt:PTZ><tt:XAddr>{urls['ptz'][1]}</tt:XAddr></tt:PTZ>" if "ptz" in urls else ""
        return (
            "<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Device><tt:XAddr>{urls['device'][1]}</tt:XAddr>"
            "<tt:Network><tt:IPFilter>false</tt:IPFilter><tt:ZeroConfiguration>false</tt:ZeroConfiguration>"
            "<tt:IPVersion6>false</tt:IPVersion6><tt:DynDNS>false</tt:DynDNS></tt:Network>"
            "<tt:System><tt:DiscoveryResolve>false</tt:DiscoveryResolve><tt:DiscoveryBye>true</tt:DiscoveryBye>"
            "<tt:RemoteDiscovery>false</tt:RemoteDiscovery><tt:SystemBackup>false</tt:SystemBackup>"
            "<tt:SystemLogging>false</tt:SystemLogging><tt:FirmwareUpgrade>false</tt:FirmwareUpgrade>"
            "<tt:SupportedVersions><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tt:SupportedVersions></tt:System>"
            "<tt:Security><tt:TLS1.1>false</tt:TLS1.1><tt:TLS1.2>false</tt:TLS1.2>"
            "<tt:OnboardKeyGeneration>false</tt:OnboardKeyGeneration><tt:AccessPolicyConfig>false</tt:AccessPolicyConfig>"
            "<tt:X.509Token>false</tt:X.509Token><tt:SAMLToken>false</tt:SAMLToken>"
            "<tt:KerberosToken>false</tt:KerberosToken><tt:RELToken>false</tt:RELToken></tt:Security></tt:Device>"
            f"<tt:Events><tt:XAddr>{urls['events'][1]}</tt:XAddr><tt:WSSubscriptionPolicySupport>false"
            "</tt:WSSubscriptionPolicySupport><tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
            "<tt:WSPausableSubscriptionManagerInterfaceSupport>false</tt:WSPausableSubscriptionManagerInterfaceSupport>"
            "</tt:Events>"
            f"<tt:Media><tt:XAddr>{urls['media'][1]}</tt:XAddr><tt:StreamingCapabilities>"
            "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>"
            f"</tt:StreamingCapabilities></tt:Media>{ptz}</tds:Capabilities></tds:GetCapabilitiesResponse>"
        )

    def GetSystemDateAndTime(self, req: etree._Element) -> str:  # noqa: N802
        t = time.gmtime(self.cam.now_s())
        time_xml = (f"<tt:Time><tt:Hour>{t.tm_hour}</tt:Hour><tt:Minute>{t.tm_min}</tt:Minute>"
                    f"<tt:Second>{t.tm_sec}</tt:Second></tt:Time>"
                    f"<tt:Date><tt:Year>{t.tm_year}</tt:Year><tt:Month>{t.tm_mon}</tt:Month>"
                    f"<tt:Day>{t.tm_mday}</tt:Day></tt:Date>")
        utc = {
            "": f"<tt:UTCDateTime>{time_xml}</tt:UTCDateTime>",
            # Firmware seen in the field: UTCDateTime left out (it is optional in the schema), or
            # present with its fields unfilled; LocalDateTime is still there.
            "absent": f"<tt:LocalDateTime>{time_xml}</tt:LocalDateTime>",
            "unfilled": f"<tt:UTCDateTime><tt:Time/><tt:Date/></tt:UTCDateTime><tt:LocalDateTime>{time_xml}</tt:LocalDateTime>",
        }[self.cam.utc_quirk]
        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>Manual</tt:DateTimeType>"
            "<tt:DaylightSavings>false</tt:DaylightSavings><tt:TimeZone><tt:TZ>GMT0BST,M3.5.0/1,M10.5.0</tt:TZ>"
            f"</tt:TimeZone>{utc}</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    def SetSystemDateAndTime(self, req: etree._Element) -> str:  # noqa: N802
        kind = _text(req, "tds:DateTimeType")
        if kind == "NTP":
            raise SoapFault("NTP is not configured on this camera", "ter:NtpServerUndefined")
        utc = req.find("tds:UTCDateTime", namespaces=NS)
        if utc is None:
            raise SoapFault("UTCDateTime is required for a manual clock", "ter:InvalidDateTime")
        try:
            when = dt.datetime(
                int(_text(utc, "tt:Date/tt:Year")), int(_text(utc, "tt:Date/tt:Month")), int(_text(utc, "tt:Date/tt:Day")),
                int(_text(utc, "tt:Time/tt:Hour")), int(_text(utc, "tt:Time/tt:Minute")), int(_text(utc, "tt:Time/tt:Second")),
                tzinfo=dt.UTC,
            )
        except ValueError:
            raise SoapFault("the date and time are not valid", "ter:InvalidDateTime") from None
        # The camera's clock starts at the given second: a real RTC is set to whole seconds.
        self.cam.set_clock(when.timestamp())
        return "<tds:SetSystemDateAndTimeResponse/>"

    def GetScopes(self, req: etree._Element) -> str:  # noqa: N802
        items = "".join(f"<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>{escape(s)}</tt:ScopeItem></tds:Scopes>"
                        for s in self.cam.scopes())
        return f"<tds:GetScopesResponse>{items}</tds:GetScopesResponse>"

    # -- media ----------------------------------------------------------------------------
    def _profiles(self) -> list[tuple[str, str, tuple[int, int], int]]:
        return [("Profile_main", "mainStream", self.cam.main_size, 4096),
                ("Profile_sub", "subStream", self.cam.sub_size, 512)]

    def _profile_xml(self, token: str, name: str, size: tuple[int, int], kbps: int) -> str:
        w, h = size
        ptz = ""
        if self.cam.ptz:
            ptz = (
                '<tt:PTZConfiguration token="PTZConfig_1"><tt:Name>PTZ</tt:Name><tt:UseCount>2</tt:UseCount>'
                "<tt:NodeToken>PTZNode_1</tt:NodeToken>"
                f"<tt:DefaultAbsolutePantTiltPositionSpace>{PAN_TILT_SPACE}</tt:DefaultAbsolutePantTiltPositionSpace>"
                f"<tt:DefaultAbsoluteZoomPositionSpace>{ZOOM_SPACE}</tt:DefaultAbsoluteZoomPositionSpace>"
                "<tt:DefaultPTZTimeout>PT5S</tt:DefaultPTZTimeout></tt:PTZConfiguration>"
            )
        return (
            f'<trt:Profiles token="{token}" fixed="true"><tt:Name>{name}</tt:Name>'
            '<tt:VideoSourceConfiguration token="VideoSourceConfig_1"><tt:Name>VideoSource</tt:Name>'
            "<tt:UseCount>2</tt:UseCount><tt:SourceToken>VideoSource_1</tt:SourceToken>"
            f'<tt:Bounds x="0" y="0" width="{self.cam.main_size[0]}" height="{self.cam.main_size[1]}"/>'
            "</tt:VideoSourceConfiguration>"
            f'<tt:VideoEncoderConfiguration token="VideoEncoder_{token}"><tt:Name>{name}</tt:Name>'
            "<tt:UseCount>1</tt:UseCount><tt:Encoding>H264</tt:Encoding>"
            f"<tt:Resolution><tt:Width>{w}</tt:Width><tt:Height>{h}</tt:Height></tt:Resolution>"
            "<tt:Quality>5</tt:Quality><tt:RateControl><tt:FrameRateLimit>25</tt:FrameRateLimit>"
            f"<tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>{kbps}</tt:BitrateLimit></tt:RateControl>"
            "<tt:H264><tt:GovLength>50</tt:GovLength><tt:H264Profile>High</tt:H264Profile></tt:H264>"
            "<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address>"
            "<tt:Port>0</tt:Port><tt:TTL>1</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
            f"<tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:VideoEncoderConfiguration>{ptz}</trt:Profiles>"
        )

    def GetVideoSources(self, req: etree._Element) -> str:  # noqa: N802
        """The one sensor every profile's VideoSourceConfiguration names (``VideoSource_1``).
        Required of a Profile S device; a client that lists sources to pick the active one
        (and its PTZ) needs it (issue 11, found 13)."""
        w, h = self.cam.main_size
        return ('<trt:GetVideoSourcesResponse><trt:VideoSources token="VideoSource_1"><tt:Framerate>25</tt:Framerate>'
                f"<tt:Resolution><tt:Width>{w}</tt:Width><tt:Height>{h}</tt:Height></tt:Resolution>"
                "</trt:VideoSources></trt:GetVideoSourcesResponse>")

    def GetProfiles(self, req: etree._Element) -> str:  # noqa: N802
        return f"<trt:GetProfilesResponse>{''.join(self._profile_xml(*p) for p in self._profiles())}</trt:GetProfilesResponse>"

    def _profile_token(self, req: etree._Element, prefix: str = "trt") -> str:
        token = _text(req, f"{prefix}:ProfileToken")
        if token not in {p[0] for p in self._profiles()}:
            raise SoapFault(f"no profile {token!r}", "ter:NoProfile")
        return token

    def GetStreamUri(self, req: etree._Element) -> str:  # noqa: N802
        token = self._profile_token(req)
        uri = self.cam.main_url if token == "Profile_main" else self.cam.sub_url
        return (
            f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>{escape(uri)}</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
            "<tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>"
        )

    def GetSnapshotUri(self, req: etree._Element) -> str:  # noqa: N802
        token = self._profile_token(req)
        return (
            f"<trt:GetSnapshotUriResponse><trt:MediaUri><tt:Uri>{self.cam.base()}/snapshot/{token}.jpg</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
            "<tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetSnapshotUriResponse>"
        )

    # -- Media2 privacy masks ---------------------------------------------------------------
    # Polygons in ONVIF's normalised space: x -1 (left) to 1 (right), y -1 (bottom) to 1 (top).
    def _mask_config(self, req: etree._Element, required: bool = True) -> str:
        token = _text(req, "tr2:ConfigurationToken")
        if (token or required) and token != "VideoSourceConfig_1":
            raise SoapFault(f"no video source configuration {token!r}", "ter:NoConfig")
        return token

    def GetMaskOptions(self, req: etree._Element) -> str:  # noqa: N802
        self._mask_config(req)
        return (f'<tr2:GetMaskOptionsResponse><tr2:Options MaxMasks="{MAX_MASKS}" MaxPoints="{MAX_MASK_POINTS}" '
                'RectangleOnly="false" SingleColorOnly="true"><tr2:Types>Color</tr2:Types></tr2:Options>'
                "</tr2:GetMaskOptionsResponse>")

    def _mask_xml(self, token: str, mask: dict) -> str:
        points = "".join(f'<tt:Point x="{x:.6f}" y="{y:.6f}"/>' for x, y in mask["points"])
        return (f'<tr2:Masks token="{escape(token)}"><tr2:ConfigurationToken>{mask["config"]}</tr2:ConfigurationToken>'
                f"<tr2:Polygon>{points}</tr2:Polygon><tr2:Type>{mask['type']}</tr2:Type>"
                '<tr2:Color X="0" Y="0" Z="0"/>'
                f"<tr2:Enabled>{'true' if mask['enabled'] else 'false'}</tr2:Enabled></tr2:Masks>")

    def GetMasks(self, req: etree._Element) -> str:  # noqa: N802
        token = _text(req, "tr2:Token")
        config = self._mask_config(req, required=False)
        if token and token not in self.cam.masks:
            raise SoapFault(f"no mask {token!r}", "ter:NoConfig")
        found = [(t, m) for t, m in self.cam.masks.items()
                 if (not token or t == token) and (not config or m["config"] == config)]
        return f"<tr2:GetMasksResponse>{''.join(self._mask_xml(t, m) for t, m in found)}</tr2:GetMasksResponse>"

    async def _paint(self) -> None:
        """What the camera paints: its enabled masks, turned to 0..1 from the top left."""
        if self.cam.paint_masks is not None:
            await self.cam.paint_masks([[[(x + 1) / 2, (1 - y) / 2] for x, y in m["points"]]
                                        for m in self.cam.masks.values() if m["enabled"]])

    async def CreateMask(self, req: etree._Element) -> str:  # noqa: N802
        if self.cam.masks_support != "media2":
            raise SoapFault("The maximum number of supported masks by the specific VideoSourceConfiguration "
                            "has been reached.", "ter:MaxMasks", "env:Receiver")
        mask = req.find("tr2:Mask", namespaces=NS)
        if mask is None:
            raise SoapFault("CreateMask needs a Mask", "ter:InvalidArgs")
        config = self._mask_config(mask)
        points = [(float(p.get("x", "nan")), float(p.get("y", "nan")))
                  for p in mask.findall("tr2:Polygon/tt:Point", namespaces=NS)]
        if not 3 <= len(points) <= MAX_MASK_POINTS or not all(-1 <= v <= 1 for pt in points for v in pt):
            raise SoapFault(f"a mask is a polygon of 3 to {MAX_MASK_POINTS} points in [-1, 1]", "ter:InvalidPolygon")
        kind = _text(mask, "tr2:Type")
        if kind != "Color":
            raise SoapFault(f"mask type {kind!r} is not supported (Color)", "ter:InvalidArgVal")
        if len(self.cam.masks) >= MAX_MASKS:
            raise SoapFault("The maximum number of supported masks by the specific VideoSourceConfiguration "
                            "has been reached.", "ter:MaxMasks", "env:Receiver")
        self.cam.mask_tokens += 1
        token = f"Mask_{self.cam.mask_tokens}"
        self.cam.masks[token] = {"config": config, "points": points, "type": kind,
                                 "enabled": _text(mask, "tr2:Enabled").strip().lower() in ("true", "1")}
        await self._paint()  # painted before the answer: a confirmed mask is in the stream
        return f"<tr2:CreateMaskResponse><tr2:Token>{token}</tr2:Token></tr2:CreateMaskResponse>"

    async def DeleteMask(self, req: etree._Element) -> str:  # noqa: N802
        token = _text(req, "tr2:Token")
        if self.cam.masks.pop(token, None) is None:
            raise SoapFault(f"no mask {token!r}", "ter:NoConfig")
        await self._paint()
        return "<tr2:DeleteMaskResponse/>"

    # -- PTZ ------------------------------------------------------------------------------
    def _need_ptz(self, req: etree._Element) -> None:
        if not self.cam.ptz:
            raise SoapFault("Optional Action Not Implemented", "ter:ActionNotSupported", "env:Receiver")
        self._profile_token(req, "tptz")

    @staticmethod
    def _vector(node: etree._Element | None) -> tuple[float | None, float | None, float | None]:
        if node is None:
            return None, None, None
        pt = node.find("tt:PanTilt", namespaces=NS)
        z = node.find("tt:Zoom", namespaces=NS)
        try:
            return (float(pt.get("x")) if pt is not None else None,
                    float(pt.get("y")) if pt is not None else None,
                    float(z.get("x")) if z is not None else None)
        except (TypeError, ValueError):
            raise SoapFault("bad PTZ vector", "ter:InvalidArgVal") from None

    def _position_xml(self, pan: float, tilt: float, zoom: float) -> str:
        return (f'<tt:PanTilt x="{pan:.6f}" y="{tilt:.6f}" space="{PAN_TILT_SPACE}"/>'
                f'<tt:Zoom x="{zoom:.6f}" space="{ZOOM_SPACE}"/>')

    async def ContinuousMove(self, req: etree._Element) -> str:  # noqa: N802
        self._need_ptz(req)
        vp, vt, vz = self._vector(req.find("tptz:Velocity", namespaces=NS))
        timeout = _text(req, "tptz:Timeout")
        timeout_s = parse_duration_s(timeout) if timeout else PTZ_DEFAULT_TIMEOUT_S
        await self.cam.ptz_head.move(_clamp(vp or 0.0, -1, 1), _clamp(vt or 0.0, -1, 1), _clamp(vz or 0.0, -1, 1), timeout_s)
        return "<tptz:ContinuousMoveResponse/>"

    async def RelativeMove(self, req: etree._Element) -> str:  # noqa: N802
        self._need_ptz(req)
        dp, dtl, dz = self._vector(req.find("tptz:Translation", namespaces=NS))
        p, t, z = await self.cam.ptz_head.get()
        await self.cam.ptz_head.set(_clamp(p + (dp or 0), -1, 1), _clamp(t + (dtl or 0), -1, 1), _clamp(z + (dz or 0), 0, 1))
        return "<tptz:RelativeMoveResponse/>"

    async def AbsoluteMove(self, req: etree._Element) -> str:  # noqa: N802
        self._need_ptz(req)
        np_, nt, nz = self._vector(req.find("tptz:Position", namespaces=NS))
        p, t, z = await self.cam.ptz_head.get()
        await self.cam.ptz_head.set(_clamp(p if np_ is None else np_, -1, 1), _clamp(t if nt is None else nt, -1, 1),
                              _clamp(z if nz is None else nz, 0, 1))
        return "<tptz:AbsoluteMoveResponse/>"

    async def Stop(self, req: etree._Element) -> str:  # noqa: N802
        self._need_ptz(req)
        await self.cam.ptz_head.set(*await self.cam.ptz_head.get())
        return "<tptz:StopResponse/>"

    async def GetStatus(self, req: etree._Element) -> str:  # noqa: N802
        self._need_ptz(req)
        head = self.cam.ptz_head
        state = "MOVING" if head.moving() else "IDLE"
        return (
            f"<tptz:GetStatusResponse><tptz:PTZStatus><tt:Position>{self._position_xml(*await head.get())}</tt:Position>"
            f"<tt:MoveStatus><tt:PanTilt>{state}</tt:PanTilt><tt:Zoom>{state}</tt:Zoom></tt:MoveStatus>"
            f"<tt:UtcTime>{xml_time(self.cam.now_s())}</tt:UtcTime></tptz:PTZStatus></tptz:GetStatusResponse>"
        )

    def GetPresets(self, req: etree._Element) -> str:  # noqa: N802
        self._need_ptz(req)
        items = "".join(
            f'<tptz:Preset token="{p.token}"><tt:Name>{escape(p.name)}</tt:Name>'
            f"<tt:PTZPosition>{self._position_xml(p.pan, p.tilt, p.zoom)}</tt:PTZPosition></tptz:Preset>"
            for p in self.cam.presets.values()
        )
        return f"<tptz:GetPresetsResponse>{items}</tptz:GetPresetsResponse>"

    async def SetPreset(self, req: etree._Element) -> str:  # noqa: N802
        self._need_ptz(req)
        name = _text(req, "tptz:PresetName")
        token = _text(req, "tptz:PresetToken")
        if token and token not in self.cam.presets:
            raise SoapFault(f"no preset {token!r}", "ter:NoToken")
        if not token:
            if any(p.name == name for p in self.cam.presets.values()) and name:
                raise SoapFault(f"a preset named {name!r} exists", "ter:PresetExist")
            if len(self.cam.presets) >= 64:
                raise SoapFault("too many presets", "ter:TooManyPresets", "env:Receiver")
            token = f"Preset_{max([0, *(int(t.split('_')[1]) for t in self.cam.presets)]) + 1}"
        pan, tilt, zoom = await self.cam.ptz_head.get()
        self.cam.presets[token] = Preset(token, name or token, pan, tilt, zoom)
        return f"<tptz:SetPresetResponse><tptz:PresetToken>{token}</tptz:PresetToken></tptz:SetPresetResponse>"

    def RemovePreset(self, req: etree._Element) -> str:  # noqa: N802
        self._need_ptz(req)
        if self.cam.presets.pop(_text(req, "tptz:PresetToken"), None) is None:
            raise SoapFault("no such preset", "ter:NoToken")
        return "<tptz:RemovePresetResponse/>"

    async def GotoPreset(self, req: etree._Element) -> str:  # noqa: N802
        self._need_ptz(req)
        preset = self.cam.presets.get(_text(req, "tptz:PresetToken"))
        if preset is None:
            raise SoapFault("no such preset", "ter:NoToken")
        await self.cam.ptz_head.set(preset.pan, preset.tilt, preset.zoom)
        return "<tptz:GotoPresetResponse/>"

    async def GotoHomePosition(self, req: etree._Element) -> str:  # noqa: N802
        self._need_ptz(req)
        await self.cam.ptz_head.set(*self.cam.home)
        return "<tptz:GotoHomePositionResponse/>"

    async def SetHomePosition(self, req: etree._Element) -> str:  # noqa: N802
        self._need_ptz(req)
        self.cam.home = await self.cam.ptz_head.get()
        return "<tptz:SetHomePositionResponse/>"

    # -- events ---------------------------------------------------------------------------
    def CreatePullPointSubscription(self, req: etree._Element) -> str:  # noqa: N802
        now = self.cam.now_s()
        initial = _text(req, "tev:InitialTerminationTime")
        end = parse_time_or_duration(initial, now) if initial else now + SUBSCRIPTION_DEFAULT_S
        sub = Subscription(uuid.uuid4().hex[:16], end)
        self.cam.subscriptions[sub.id] = sub
        self._expire_old(now)
        return (
            "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference><wsa:Address>"
            f"{self.cam.base()}/onvif/subscription/{sub.id}</wsa:Address></tev:SubscriptionReference>"
            f"<wsnt:CurrentTime>{xml_time(now)}</wsnt:CurrentTime>"
            f"<wsnt:TerminationTime>{xml_time(end)}</wsnt:TerminationTime></tev:CreatePullPointSubscriptionResponse>"
        )

    def _expire_old(self, now: float) -> None:
        for key in [k for k, s in self.cam.subscriptions.items() if s.terminate_at_s < now - 10]:
            self.cam.subscriptions.pop(key, None)

    def GetEventProperties(self, req: etree._Element) -> str:  # noqa: N802
        return (
            "<tev:GetEventPropertiesResponse><tev:TopicNamespaceLocation>"
            "http://www.onvif.org/onvif/ver10/topics/topicns.xml</tev:TopicNamespaceLocation>"
            "<wsnt:FixedTopicSet>true</wsnt:FixedTopicSet>"
            "<wstop:TopicSet xmlns:wstop=\"http://docs.oasis-open.org/wsn/t-1\"/>"
            "<wsnt:TopicExpressionDialect>http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"
            "</wsnt:TopicExpressionDialect>"
            "<tev:MessageContentFilterDialect>http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter"
            "</tev:MessageContentFilterDialect></tev:GetEventPropertiesResponse>"
        )

    def GetServiceCapabilities(self, req: etree._Element) -> str:  # noqa: N802
        ns = etree.QName(req).namespace
        prefix = _SERVICE_PREFIX.get(ns, "tds")
        return (f"<{prefix}:GetServiceCapabilitiesResponse>{service_capabilities(ns)}"
                f"</{prefix}:GetServiceCapabilitiesResponse>")


class SubscriptionService:
    """The subscription-manager endpoint of one PullPoint subscription."""

    def __init__(self, cam: SimOnvifCamera, sub_id: str, stopping: asyncio.Event) -> None:
        self.cam, self.sub_id, self.stopping = cam, sub_id, stopping

    def _sub(self) -> Subscription:
        sub = self.cam.subscriptions.get(self.sub_id)
        if sub is None or sub.terminate_at_s < self.cam.now_s():
            self.cam.subscriptions.pop(self.sub_id, None)
            raise SoapFault("The subscription does not exist or has expired", "wsrf-rw:ResourceUnknownFault",
                            "env:Receiver")
        return sub

    async def PullMessages(self, req: etree._Element) -> str:  # noqa: N802
        sub = self._sub()
        timeout = _text(req, "tev:Timeout")
        wait_s = min(parse_duration_s(timeout), PULL_MAX_TIMEOUT_S) if timeout else 10.0
        limit = int(_text(req, "tev:MessageLimit", "100") or 100)
        if not sub.messages and wait_s > 0:
            sub.wake.clear()
            waiter = asyncio.ensure_future(sub.wake.wait())
            stopper = asyncio.ensure_future(self.stopping.wait())
            try:
                await asyncio.wait({waiter, stopper}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()
        taken, sub.messages[:] = sub.messages[:limit], sub.messages[limit:]
        now = self.cam.now_s()
        return (
            f"<tev:PullMessagesResponse><tev:CurrentTime>{xml_time(now)}</tev:CurrentTime>"
            f"<tev:TerminationTime>{xml_time(sub.terminate_at_s)}</tev:TerminationTime>"
            f"{''.join(taken)}</tev:PullMessagesResponse>"
        )

    def Renew(self, req: etree._Element) -> str:  # noqa: N802
        sub = self._sub()
        now = self.cam.now_s()
        asked = _text(req, "wsnt:TerminationTime")
        sub.terminate_at_s = parse_time_or_duration(asked, now) if asked else now + SUBSCRIPTION_DEFAULT_S
        return (f"<wsnt:RenewResponse><wsnt:TerminationTime>{xml_time(sub.terminate_at_s)}</wsnt:TerminationTime>"
                f"<wsnt:CurrentTime>{xml_time(now)}</wsnt:CurrentTime></wsnt:RenewResponse>")

    def Unsubscribe(self, req: etree._Element) -> str:  # noqa: N802
        self._sub()
        self.cam.subscriptions.pop(self.sub_id, None)
        return "<wsnt:UnsubscribeResponse/>"

    def SetSynchronizationPoint(self, req: etree._Element) -> str:  # noqa: N802
        self._sub()
        return "<tev:SetSynchronizationPointResponse/>"


_SERVICE_PREFIX = {NS["tds"]: "tds", NS["trt"]: "trt", NS["tptz"]: "tptz", NS["tev"]: "tev", NS["tr2"]: "tr2"}
# Each service's capabilities, as its schema has them (the required child elements included):
# what this simulated camera can do, said the way firmware says it.
_SERVICE_CAPABILITIES = {
    "tds": ('<tds:Capabilities><tds:Network IPFilter="false" ZeroConfiguration="false" IPVersion6="false" '
            'DynDNS="false"/><tds:Security TLS1.2="false" UsernameToken="true" HttpDigest="false"/>'
            '<tds:System DiscoveryResolve="false" DiscoveryBye="true" RemoteDiscovery="false" SystemBackup="false" '
            'SystemLogging="false" FirmwareUpgrade="false"/></tds:Capabilities>'),
    "trt": ('<trt:Capabilities SnapshotUri="true" Rotation="false"><trt:ProfileCapabilities MaximumNumberOfProfiles="2"/>'
            '<trt:StreamingCapabilities RTPMulticast="false" RTP_TCP="true" RTP_RTSP_TCP="true"/></trt:Capabilities>'),
    "tptz": ('<tptz:Capabilities EFlip="false" Reverse="false" GetCompatibleConfigurations="false" MoveStatus="true" '
             'StatusPosition="true"/>'),
    "tev": ('<tev:Capabilities WSSubscriptionPolicySupport="false" WSPullPointSupport="true" '
            'WSPausableSubscriptionManagerInterfaceSupport="false" MaxPullPoints="10"/>'),
    "tr2": ('<tr2:Capabilities SnapshotUri="false" Rotation="false" VideoSourceMode="false" OSD="false" '
            'TemporaryOSDText="false" Mask="true" SourceMask="false"><tr2:ProfileCapabilities MaximumNumberOfProfiles="2"/>'
            '<tr2:StreamingCapabilities RTSPStreaming="true" RTPMulticast="false" RTP_RTSP_TCP="true"/>'
            '</tr2:Capabilities>'),
}


def service_capabilities(namespace: str) -> str:
    return _SERVICE_CAPABILITIES[_SERVICE_PREFIX.get(namespace, "tds")]


# Which operations each endpoint path serves (a real camera answers ActionNotSupported to the rest).
_DEVICE_OPS = {"GetDeviceInformation", "GetServices", "GetCapabilities", "GetSystemDateAndTime",
               "SetSystemDateAndTime", "GetScopes", "GetServiceCapabilities"}
_MEDIA_OPS = {"GetProfiles", "GetVideoSources", "GetStreamUri", "GetSnapshotUri", "GetServiceCapabilities"}
_PTZ_OPS = {"ContinuousMove", "RelativeMove", "AbsoluteMove", "Stop", "GetStatus", "GetPresets", "SetPreset",
            "RemovePreset", "GotoPreset", "GotoHomePosition", "SetHomePosition", "GetServiceCapabilities"}
_EVENT_OPS = {"CreatePullPointSubscription", "GetEventProperties", "GetServiceCapabilities"}
_MEDIA2_OPS = {"GetMaskOptions", "GetMasks", "CreateMask", "DeleteMask", "GetServiceCapabilities"}
_SUBSCRIPTION_OPS = {"PullMessages", "Renew", "Unsubscribe", "SetSynchronizationPoint"}


def render_snapshot(cam: SimOnvifCamera, size: tuple[int, int], position: tuple[float, float, float]) -> bytes:
    """A real JPEG: the camera's name and time over a pattern that pans with the PTZ head."""
    import cv2
    import numpy as np

    w, h = size
    pan, tilt, zoom = position
    xs = np.arange(w, dtype=np.float32)[None, :] + pan * w
    ys = np.arange(h, dtype=np.float32)[:, None] + tilt * h
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = ((xs // (40 * (1 + zoom))) % 2 * 120 + 60).astype(np.uint8)
    img[..., 1] = ((ys // (40 * (1 + zoom))) % 2 * 120 + 60).astype(np.uint8)
    img[..., 2] = 90
    scale = max(0.5, h / 360)
    cv2.putText(img, cam.name, (int(20 * scale), int(50 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2)
    cv2.putText(img, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(cam.now_s())), (int(20 * scale), int(90 * scale)),
                cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7, (255, 255, 255), 2)
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:  # pragma: no cover - OpenCV always encodes a plain BGR image
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes()


class _CameraServer:
    """The HTTP side of one camera: SOAP endpoints, snapshot, a motion trigger."""

    def __init__(self, cam: SimOnvifCamera, sim: OnvifSimulator) -> None:
        self.cam, self.sim = cam, sim
        self.service = CameraService(cam, sim)
        self.runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/onvif/device_service", self._soap(_DEVICE_OPS))
        app.router.add_post("/onvif/media_service", self._soap(_MEDIA_OPS))
        app.router.add_post("/onvif/events_service", self._soap(_EVENT_OPS))
        if self.cam.ptz:
            app.router.add_post("/onvif/ptz_service", self._soap(_PTZ_OPS))
        if self.cam.masks_support:
            app.router.add_post("/onvif/media2_service", self._soap(_MEDIA2_OPS))
        app.router.add_post("/onvif/subscription/{sub}", self._subscription)
        app.router.add_get("/snapshot/{profile}.jpg", self._snapshot)
        app.router.add_post("/sim/motion", self._motion)
        return app

    async def start(self, host: str) -> None:
        self.runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self.runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, self.cam.port))
        site = web.SockSite(self.runner, sock)
        await site.start()
        self.cam.host, self.cam.port = host, sock.getsockname()[1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _soap(self, allowed: set[str]):
        async def handler(request: web.Request) -> web.Response:
            return await self._dispatch(request, self.service, allowed)

        return handler

    async def _subscription(self, request: web.Request) -> web.Response:
        service = SubscriptionService(self.cam, request.match_info["sub"], self.sim.stopping)
        return await self._dispatch(request, service, _SUBSCRIPTION_OPS)

    async def _dispatch(self, request: web.Request, service: CameraService | SubscriptionService, allowed: set[str]) -> web.Response:
        cam, sim = self.cam, self.sim
        cam.in_flight += 1
        cam.requests += 1
        cam.peak_in_flight = max(cam.peak_in_flight, cam.in_flight)
        sim.in_flight += 1
        sim.peak_in_flight = max(sim.peak_in_flight, sim.in_flight)
        try:
            if self.sim.response_delay_s:
                await asyncio.sleep(self.sim.response_delay_s)
            try:
                root = etree.fromstring(await request.read(), etree.XMLParser(resolve_entities=False, no_network=True))
                body = root.find("env:Body", namespaces=NS)
                if root.tag != f"{{{NS['env']}}}Envelope" or body is None or len(body) == 0:
                    raise SoapFault("not a SOAP 1.2 envelope", "ter:InvalidArgs")
                op = body[0]
                name = etree.QName(op).localname
                if name not in allowed:
                    raise SoapFault("Optional Action Not Implemented", "ter:ActionNotSupported", "env:Receiver")
                if name not in PRE_AUTH:
                    check_security(cam, root)
                result = getattr(service, name)(op)
                if asyncio.iscoroutine(result):
                    result = await result
                return web.Response(text=envelope(result), content_type="application/soap+xml", charset="utf-8")
            except etree.XMLSyntaxError:
                return self._fault(SoapFault("the request is not well-formed XML", "ter:WellFormed"))
            except SoapFault as fault:
                return self._fault(fault)
        finally:
            cam.in_flight -= 1
            sim.in_flight -= 1

    @staticmethod
    def _fault(fault: SoapFault) -> web.Response:
        return web.Response(text=fault_xml(fault), status=fault.status, content_type="application/soap+xml",
                            charset="utf-8")

    async def _snapshot(self, request: web.Request) -> web.Response:
        profile = request.match_info["profile"]
        size = self.cam.main_size if profile == "Profile_main" else self.cam.sub_size
        if profile not in ("Profile_main", "Profile_sub"):
            raise web.HTTPNotFound()
        # Snapshots are small; cap the rendered size so a 4K main profile stays cheap.
        if size[0] > 1280:
            size = (1280, int(1280 * size[1] / size[0]))
        position = await self.cam.ptz_head.get() if self.cam.ptz else (0.0, 0.0, 0.0)
        jpeg = await asyncio.to_thread(render_snapshot, self.cam, size, position)
        return web.Response(body=jpeg, content_type="image/jpeg")

    async def _motion(self, request: web.Request) -> web.Response:
        state = request.query.get("state", "true") != "false"
        if request.query.get("kind") == "tamper":
            self.cam.trigger_tamper(state)
        else:
            self.cam.trigger_motion(state)
        return web.json_response({"ok": True})


def onvif_camera(simulation: SimulationLink, sc: SimCamera) -> SimOnvifCamera:
    """The ONVIF side of one of a simulation's RTSP cameras: same streams, credentials, clock."""
    name = sc.name
    main_size, sub_size = (1280, 720), (640, 360)
    if sc.mode == "clip":
        main_size, sub_size = clips.MAIN_SIZE, clips.SUB_SIZE
    cam = SimOnvifCamera(
        name=name,
        main_url=sc.main_url,
        sub_url=sc.sub_url,
        ptz=sc.ptz,
        username=sc.username,
        password=sc.password,
        main_size=main_size,
        sub_size=sub_size,
        location=sc.site,
        model="SimCam PTZ" if sc.ptz else "SimCam 1080",
    )
    # A device's identity outlives its address, as a real camera's does: derived from the
    # simulation's folder and the camera's name, so a demo restarted on its own data is the
    # same devices on new ports (and is re-adopted by identity, docs/design/onvif.md).
    identity = uuid.uuid5(uuid.NAMESPACE_URL, f"controlroom-simulator:{simulation.work_dir.resolve()}:{name}")
    cam.endpoint, cam.serial = f"urn:uuid:{identity}", f"SIM{identity.hex[:12].upper()}"
    offsets, default_offset = simulation.clock_offsets_s, sc.clock_offset_s
    cam.clock_source = lambda: float(offsets.get(name, default_offset))
    if sc.ptz:
        cam.ptz_head = SimPtzBridge(simulation, name)
    cam.masks_support = sc.masks
    if sc.masks == "media2":
        async def paint(polygons: list[list[list[float]]]) -> None:
            await simulation.set_masks(name, polygons)

        cam.paint_masks = paint
    return cam


class OnvifSimulator:
    """Serves ONVIF for a set of simulated cameras (and, optionally, WS-Discovery for them).

    ``discovery_port``: UDP port of the WS-Discovery responder on ``host`` (0: a free one,
    ``None``: no responder). Inside a Simulation the default is the standard 3702 when it is
    free (so ``controlroom discover --target 127.0.0.1`` finds the demo's cameras), else a free one. ``multicast_interface``: join 239.255.255.250 on that interface
    and announce Hello/Bye there (only inside a network namespace a test created).
    ``hello_targets``: unicast (host, port) pairs that also get Hello and Bye.
    """

    def __init__(
        self,
        simulation: SimulationLink | None = None,
        *,
        cameras: list[SimOnvifCamera] | None = None,
        host: str = "127.0.0.1",
        discovery_port: int | None = -1,
        multicast_interface: str | None = None,
        hello_targets: list[tuple[str, int]] | None = None,
        motion_every_s: float | None = None,
        response_delay_s: float = 0.0,
    ) -> None:
        self.simulation = simulation
        self.host = host
        self.cameras: list[SimOnvifCamera] = list(cameras or [])
        if simulation is not None and not cameras:
            self.cameras = [onvif_camera(simulation, c) for c in simulation.cameras]
        if discovery_port == -1:  # the default: 3702 for a Simulation's cameras, else any free port
            discovery_port = 3702 if simulation is not None else 0
        self.discovery_port = discovery_port
        self.multicast_interface = multicast_interface
        self.hello_targets = list(hello_targets or [])
        self.motion_every_s = motion_every_s
        self.response_delay_s = response_delay_s
        self.stopping = asyncio.Event()
        self.in_flight = 0  # requests being served now, all cameras
        self.peak_in_flight = 0
        self.responder: DiscoveryResponder | None = None
        self._servers: list[_CameraServer] = []
        self._tasks: list[asyncio.Task[None]] = []

    def camera(self, name: str) -> SimOnvifCamera:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(name)

    def trigger_motion(self, name: str, state: bool = True) -> None:
        self.camera(name).trigger_motion(state)

    def trigger_tamper(self, name: str, state: bool = True) -> None:
        self.camera(name).trigger_tamper(state)

    async def start(self) -> OnvifSimulator:
        self.stopping.clear()
        for cam in self.cameras:
            server = _CameraServer(cam, self)
            await server.start(self.host)
            self._servers.append(server)
            if self.simulation is not None:
                for sc in self.simulation.cameras:
                    if sc.name == cam.name:
                        sc.onvif_xaddr = cam.xaddr
        if self.discovery_port is not None:
            self.responder = DiscoveryResponder(
                self.cameras, host=self.host, port=self.discovery_port,
                multicast_interface=self.multicast_interface, hello_targets=self.hello_targets,
            )
            await self.responder.start()
            self.discovery_port = self.responder.port
        if self.motion_every_s:
            self._tasks.append(asyncio.create_task(self._motion_timer(), name="sim-onvif-motion"))
        log.info("simulated ONVIF: %d cameras on %s, discovery port %s", len(self.cameras), self.host,
                 self.discovery_port)
        return self

    async def _motion_timer(self) -> None:
        state = True
        while True:
            await asyncio.sleep(self.motion_every_s or 10)
            for cam in self.cameras:
                cam.trigger_motion(state)
            state = not state

    async def stop(self) -> None:
        self.stopping.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.responder is not None:
            await self.responder.stop()
            self.responder = None
        for server in self._servers:
            await server.stop()
        self._servers.clear()

    def stats(self) -> dict[str, int]:
        """Load seen so far: requests, and the most in flight at once (all cameras, one camera)."""
        return {"cameras": len(self.cameras), "requests": sum(c.requests for c in self.cameras),
                "peak_in_flight": self.peak_in_flight,
                "peak_in_flight_per_camera": max((c.peak_in_flight for c in self.cameras), default=0)}

    async def __aenter__(self) -> OnvifSimulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
