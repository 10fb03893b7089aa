"""An independent ONVIF client sees the simulated PTZ camera as PTZ (issue 11, found 13).

The npm ``onvif`` package connects with GetServices (IncludeCapability=true), GetProfiles and
GetVideoSources, and takes PTZ from the active source: the video source that the profiles'
VideoSourceConfiguration names. The simulator did not implement GetVideoSources (a Profile S
requirement) and left the services' capabilities out, so that client found no PTZ. Its own
requests, captured (tests/fixtures/onvif/npm-onvif_*.xml), are replayed here with a fresh
UsernameToken, and its reading of the replies is done the way it does it. The replies are also
read through onvif-zeep-async's real parser, against the ONVIF schema."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from pathlib import Path

import aiohttp
from lxml import etree

from cameras.onvif.session import connect
from simulator.onvif import OnvifSimulator, SimOnvifCamera

FIXTURES = Path(__file__).parent / "fixtures" / "onvif"
PASSWORD = "s3cret-pw"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
NS = {"tds": "http://www.onvif.org/ver10/device/wsdl", "trt": "http://www.onvif.org/ver10/media/wsdl",
      "tt": "http://www.onvif.org/ver10/schema", "tptz": "http://www.onvif.org/ver20/ptz/wsdl",
      "env": "http://www.w3.org/2003/05/soap-envelope"}


def resigned(fixture: str, password: str) -> bytes:
    """The captured request with a new nonce, Created and digest (PasswordDigest, WS-Security)."""
    root = etree.fromstring((FIXTURES / fixture).read_bytes())
    nonce = os.urandom(16)
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()
    root.find(f".//{{{WSSE}}}Nonce").text = base64.b64encode(nonce).decode()
    root.find(f".//{{{WSU}}}Created").text = created
    root.find(f".//{{{WSSE}}}Password").text = digest
    return etree.tostring(root)


async def post(http: aiohttp.ClientSession, url: str, fixture: str) -> etree._Element:
    async with http.post(url, data=resigned(fixture, PASSWORD),
                         headers={"Content-Type": "application/soap+xml; charset=utf-8"}) as r:
        body = await r.read()
    reply = etree.fromstring(body)
    fault = reply.find(".//env:Fault", NS)
    assert r.status == 200 and fault is None, f"{fixture}: {r.status} {body[:400]!r}"
    return reply


async def test_the_npm_onvif_client_finds_the_ptz_camera_ptz():
    cam = SimOnvifCamera(name="PTZ 1", ptz=True, password=PASSWORD,
                         main_url="rtsp://127.0.0.1:8554/p/main", sub_url="rtsp://127.0.0.1:8554/p/sub")
    async with OnvifSimulator(cameras=[cam]), aiohttp.ClientSession() as http:
        services = await post(http, cam.xaddr, "npm-onvif_GetServices.xml")
        by_ns = {s.findtext("tds:Namespace", namespaces=NS): s for s in services.iterfind(".//tds:Service", NS)}
        assert NS["tptz"] in by_ns
        # IncludeCapability=true: every service carries its capabilities.
        for ns, service in by_ns.items():
            caps = service.find("tds:Capabilities", NS)
            assert caps is not None and len(caps) == 1 and etree.QName(caps[0]).namespace == ns, ns
        assert by_ns[NS["tptz"]].find("tds:Capabilities/tptz:Capabilities", NS).get("MoveStatus") == "true"
        media_url = by_ns[NS["trt"]].findtext("tds:XAddr", namespaces=NS)

        profiles = (await post(http, media_url, "npm-onvif_GetProfiles.xml")).findall(".//trt:Profiles", NS)
        sources = (await post(http, media_url, "npm-onvif_GetVideoSources.xml")).findall(".//trt:VideoSources", NS)
        # The client's getActiveSources: for each video source, the first profile using it; its
        # PTZConfiguration is the source's PTZ.
        active = {}
        for source in sources:
            token = source.get("token")
            profile = next(p for p in profiles if p.findtext("tt:VideoSourceConfiguration/tt:SourceToken", namespaces=NS) == token)
            active[token] = profile.find("tt:PTZConfiguration", NS)
        assert active and all(ptz is not None and ptz.get("token") for ptz in active.values())

    # The same replies through onvif-zeep-async: they parse against the ONVIF schema.
    async with OnvifSimulator(cameras=[cam]), connect(cam.xaddr, "admin", PASSWORD) as onvif:
        listed = await onvif.call("devicemgmt", "GetServices", {"IncludeCapability": True})
        assert {s.Namespace for s in listed} >= {NS["tds"], NS["trt"], NS["tptz"]}
        assert all(s.Capabilities is not None for s in listed)
        (source,) = await onvif.call("media", "GetVideoSources")
        assert source.token == "VideoSource_1" and source.Resolution.Width == cam.main_size[0]
        ptz_caps = await onvif.call("ptz", "GetServiceCapabilities")
        assert ptz_caps.EFlip is False and ptz_caps.GetCompatibleConfigurations is False  # typed, as the schema says
