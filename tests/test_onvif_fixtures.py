"""SOAP replies captured from real cameras (tests/fixtures/onvif/README.md says whose) go through
zeep's real parser with the ONVIF WSDLs shipped in onvif-zeep-async, and then through our own
reading of them (clock, profiles, events, faults, discovery)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from onvif import ONVIFCamera
from onvif.settings import DEFAULT_SETTINGS
from onvif.transport import ASYNC_TRANSPORT
from zeep.exceptions import Fault
from zeep.loader import parse_xml

from cameras.onvif import OnvifFault, discovery
from cameras.onvif.clock import camera_utc_s
from cameras.onvif.errors import ClockUnreported, from_exception
from cameras.onvif.events import parse_notification

FIXTURES = Path(__file__).parent / "fixtures" / "onvif"
XADDRS = {
    "http://www.onvif.org/ver10/media/wsdl": "http://192.0.2.10/onvif/media",
    "http://www.onvif.org/ver10/events/wsdl": "http://192.0.2.10/onvif/events",
    "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription": "http://192.0.2.10/onvif/sub",
}


@pytest.fixture
async def device():
    # No network: services are built from the WSDLs; replies are fed in below.
    cam = ONVIFCamera("192.0.2.10", 80, "admin", "x", no_cache=True)
    cam.xaddrs = dict(XADDRS)
    yield cam
    await cam.close()


async def reply(device: ONVIFCamera, service: str, operation: str, fixture: str):
    svc = await {"devicemgmt": device.create_devicemgmt_service, "media": device.create_media_service,
                 "pullpoint": device.create_pullpoint_service}[service]()
    binding = svc.document.bindings[svc.binding_name]
    envelope = parse_xml((FIXTURES / fixture).read_bytes(), ASYNC_TRANSPORT, settings=DEFAULT_SETTINGS)
    return binding.get(operation).process_reply(envelope)


async def test_milesight_device_information(device):
    info = await reply(device, "devicemgmt", "GetDeviceInformation", "milesight_GetDeviceInformation.xml")
    assert (info.Manufacturer, info.Model, info.FirmwareVersion) == (
        "Milesight Technology Co.,Ltd.", "MS-C8165-PE", "61.8.0.3-r8")
    assert info.SerialNumber == "EM82V102329001403"


async def test_milesight_scopes(device):
    scopes = await reply(device, "devicemgmt", "GetScopes", "milesight_GetScopes.xml")
    items = [s.ScopeItem for s in scopes]
    found = discovery.Device(endpoint="x", scopes=items)
    assert (found.name, found.hardware, found.location) == ("Camera", "Camera", "")


async def test_gsoap_camera_clock(device):
    when = await reply(device, "devicemgmt", "GetSystemDateAndTime", "gsoap_GetSystemDateAndTime.xml")
    assert when.TimeZone.TZ == "MoroccoStandardTime0"
    assert camera_utc_s(when) == dt.datetime(2014, 12, 24, 19, 14, 37, tzinfo=dt.UTC).timestamp()


async def test_gsoap_camera_profiles_with_echoed_security_header(device):
    profiles = await reply(device, "media", "GetProfiles", "gsoap_GetProfiles.xml")
    assert len(profiles) == 1
    p = profiles[0]
    assert p.token == "main" and p.PTZConfiguration.token == "default"
    assert (p.VideoEncoderConfiguration.Resolution.Width, p.VideoEncoderConfiguration.Resolution.Height) == (1920, 1080)


async def test_hikvision_events_are_sorted_into_motion_and_tamper(device):
    pulled = await reply(device, "pullpoint", "PullMessages", "hikvision_PullMessages.xml")
    assert len(pulled.NotificationMessage) == 8
    parsed = [parse_notification(m) for m in pulled.NotificationMessage]
    kept = [(p["kind"], p["topic"], p["state"]) for p in parsed if p]
    assert kept == [
        ("motion", "tns1:VideoSource/MotionAlarm", False),
        ("motion", "tns1:RuleEngine/CellMotionDetector/Motion", False),
        ("tamper", "tns1:RuleEngine/TamperDetector/Tamper", False),
    ]
    cell = next(p for p in parsed if p and "CellMotion" in p["topic"])
    assert "Rule=MyMotionDetectorRule" in cell["source"]
    assert cell["camera_time_us"] == int(dt.datetime(2025, 4, 18, 20, 34, 5, tzinfo=dt.UTC).timestamp() * 1e6)


async def test_camera_that_says_minute_61(device):
    pulled = await reply(device, "pullpoint", "PullMessages", "buggy_PullMessages_minute61.xml")
    assert pulled.TerminationTime - pulled.CurrentTime == dt.timedelta(minutes=5)
    assert not pulled.NotificationMessage


async def test_fault_keeps_the_cameras_text(device):
    svc = await device.create_media_service()
    binding = svc.document.bindings[svc.binding_name]
    envelope = parse_xml((FIXTURES / "soap_fault_NoProfile.xml").read_bytes(), ASYNC_TRANSPORT,
                         settings=DEFAULT_SETTINGS)
    with pytest.raises(Fault) as caught:
        binding.process_error(envelope, binding.get("GetStreamUri"))
    ours = from_exception(caught.value, "http://192.0.2.10/onvif/device_service")
    assert isinstance(ours, OnvifFault)
    assert "Argument Value Invalid" in str(ours) and "InvalidArgVal" in ours.subcodes


def test_real_probe_matches():
    message = discovery.parse_message((FIXTURES / "predator_ProbeMatches.xml").read_bytes(), "192.0.2.10:3702")
    assert message is not None and message.kind == "ProbeMatch"
    assert message.relates_to == "urn:uuid:01234567-dead-beef-baad-abcdeffedcba"
    (device,) = message.devices
    assert device.endpoint == "uuid:c9790c3a-701b-464d-a189-0060351c8ada"
    assert (device.name, device.hardware, device.location) == ("PREDATOR", "HD_PREDATOR", "")
    assert device.xaddrs == ["SERVICE_URI"]


def test_bare_probe_match_without_the_probe_matches_wrapper():
    """Issue 11, found 13: a camera that puts its ProbeMatch straight in the Body was not
    discovered at all. Taken as if wrapped; the standard form and other messages unchanged."""
    message = discovery.parse_message((FIXTURES / "bare_ProbeMatch.xml").read_bytes(), "192.0.2.10:3702")
    assert message is not None and message.kind == "ProbeMatch"
    (device,) = message.devices
    assert device.endpoint == "uuid:c9790c3a-701b-464d-a189-0060351c8ada"
    assert device.xaddrs == ["http://192.0.2.10/onvif/device_service"] and device.name == "PREDATOR"
    # The same reply in SOAP 1.1 and WS-Discovery 1.1 namespaces, as other firmware sends it.
    other = ((FIXTURES / "bare_ProbeMatch.xml").read_text()
             .replace("http://www.w3.org/2003/05/soap-envelope", "http://schemas.xmlsoap.org/soap/envelope/")
             .replace("http://schemas.xmlsoap.org/ws/2005/04/discovery", "http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01"))
    assert [d.endpoint for d in discovery.parse_message(other.encode()).devices] == [device.endpoint]
    assert discovery.parse_message(b"<a><Body><ProbeMatch/></Body></a>") is None  # not an envelope


async def test_a_device_answering_with_a_bare_probe_match_is_discovered():
    """Through the real socket path: a directed Probe on loopback, answered as that camera does."""
    import asyncio
    import re

    reply = (FIXTURES / "bare_ProbeMatch.xml").read_bytes()

    class Camera(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            message_id = re.search(rb"MessageID>([^<]+)<", data)[1]
            self.transport.sendto(re.sub(rb"(RelatesTo>)[^<]+(<)", rb"\g<1>" + message_id + rb"\g<2>", reply), addr)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Camera, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        found = await discovery.discover(targets=[f"127.0.0.1:{port}"], timeout_s=1.0)
    finally:
        transport.close()
    assert [d.endpoint for d in found] == ["uuid:c9790c3a-701b-464d-a189-0060351c8ada"]


@pytest.mark.parametrize("fixture", ["unfilled_UTCDateTime_GetSystemDateAndTime.xml", "no_UTCDateTime_GetSystemDateAndTime.xml"])
async def test_a_camera_that_does_not_report_utc_is_a_clear_error(device, fixture):
    """Issue 11, found 13: an unfilled UTC time gave the CLI user a library traceback. The reply
    parses; reading its UTC time is one clear error that says what to do."""
    when = await reply(device, "devicemgmt", "GetSystemDateAndTime", fixture)
    assert when.LocalDateTime.Date.Year == 2014
    with pytest.raises(ClockUnreported, match="does not report its UTC time.*set its clock or turn on NTP"):
        camera_utc_s(when, "http://192.0.2.10/onvif/device_service")
