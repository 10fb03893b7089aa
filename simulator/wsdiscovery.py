"""WS-Discovery (2005/04, as ONVIF uses it) for the simulated cameras: ProbeMatch, Hello, Bye.

One responder answers for all the cameras of a simulation: each camera's ProbeMatches goes out
as its own datagram, as separate devices would send it. By default it listens on 127.0.0.1 only
and answers unicast (directed) Probes. With ``multicast_interface`` it joins 239.255.255.250 on
that interface and sends Hello and Bye there: use that only inside a network namespace that a
test created, never in the host's own namespace.

``simulator.onvif`` starts it for its cameras; it knows nothing of them beyond
:class:`Discoverable`. ``python -m simulator.onvif_standalone`` runs cameras with it alone.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import uuid
from collections.abc import Sequence
from typing import Protocol
from xml.sax.saxutils import escape

from lxml import etree

log = logging.getLogger(__name__)

MULTICAST_GROUP = "239.255.255.250"
WSD_PORT = 3702
NS = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
    "dn": "http://www.onvif.org/ver10/network/wsdl",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
}
_ENV_OPEN = (
    '<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope '
    'xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" '
    'xmlns:dn="http://www.onvif.org/ver10/network/wsdl" '
    'xmlns:tds="http://www.onvif.org/ver10/device/wsdl">'
)
_TYPES = "dn:NetworkVideoTransmitter tds:Device"


class Discoverable(Protocol):
    """What a camera's discovery messages carry (``simulator.onvif.SimOnvifCamera`` is one)."""

    endpoint: str  # its WS-Addressing endpoint reference, a stable urn:uuid

    @property
    def xaddr(self) -> str:
        """The URL of its ONVIF device service."""
        ...

    def scopes(self) -> list[str]: ...


def interface_address(name: str) -> str:
    """IPv4 address of a network interface (SIOCGIFADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
    return socket.inet_ntoa(packed[20:24])


def _device_body(cam: Discoverable) -> str:
    return (
        f"<wsa:EndpointReference><wsa:Address>{escape(cam.endpoint)}</wsa:Address></wsa:EndpointReference>"
        f"<d:Types>{_TYPES}</d:Types><d:Scopes>{escape(' '.join(cam.scopes()))}</d:Scopes>"
        f"<d:XAddrs>{escape(cam.xaddr)}</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion>"
    )


def probe_matches(cam: Discoverable, relates_to: str, seq: int) -> bytes:
    return (
        f"{_ENV_OPEN}<SOAP-ENV:Header><wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
        f"<wsa:RelatesTo>{escape(relates_to)}</wsa:RelatesTo>"
        "<wsa:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>"
        "<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>"
        f'<d:AppSequence InstanceId="1" MessageNumber="{seq}"/></SOAP-ENV:Header>'
        f"<SOAP-ENV:Body><d:ProbeMatches><d:ProbeMatch>{_device_body(cam)}</d:ProbeMatch></d:ProbeMatches>"
        "</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ).encode()


def announcement(cam: Discoverable, kind: str, seq: int) -> bytes:
    """A Hello or Bye message for one camera."""
    body = _device_body(cam) if kind == "Hello" else (
        f"<wsa:EndpointReference><wsa:Address>{escape(cam.endpoint)}</wsa:Address></wsa:EndpointReference>")
    return (
        f"{_ENV_OPEN}<SOAP-ENV:Header><wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
        "<wsa:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>"
        f"<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/{kind}</wsa:Action>"
        f'<d:AppSequence InstanceId="1" MessageNumber="{seq}"/></SOAP-ENV:Header>'
        f"<SOAP-ENV:Body><d:{kind}>{body}</d:{kind}></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ).encode()


def probe_wants_us(data: bytes) -> str | None:
    """The Probe's MessageID if ``data`` is a Probe whose Types an ONVIF camera matches."""
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return None
    probe = root.find("soap:Body/d:Probe", namespaces=NS)
    if probe is None:
        return None
    types = probe.find("d:Types", namespaces=NS)
    if types is not None and types.text:
        wanted = set()
        for qname in types.text.split():
            prefix, _, local = qname.rpartition(":")
            wanted.add((types.nsmap.get(prefix or None, ""), local))
        ours = {(NS["dn"], "NetworkVideoTransmitter"), (NS["tds"], "Device")}
        if not wanted & ours:
            return None
    msg_id = root.find("soap:Header/wsa:MessageID", namespaces=NS)
    return (msg_id.text or "").strip() if msg_id is not None else ""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, responder: DiscoveryResponder) -> None:
        self.responder = responder

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.responder.on_datagram(data, addr)


class DiscoveryResponder:
    """Answers Probes for a list of cameras; announces them with Hello on start, Bye on stop."""

    def __init__(self, cameras: Sequence[Discoverable], *, host: str = "127.0.0.1", port: int = 0,
                 multicast_interface: str | None = None, hello_targets: list[tuple[str, int]] | None = None) -> None:
        self.cameras = cameras
        self.host = host
        self.port = port
        self.multicast_interface = multicast_interface
        self.hello_targets = list(hello_targets or [])
        self.transport: asyncio.DatagramTransport | None = None
        self.probes_answered = 0
        self._seq = 0
        self._seen: dict[str, None] = {}

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if self.multicast_interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ifindex = socket.if_nametoindex(self.multicast_interface)
            sock.bind(("0.0.0.0", self.port or WSD_PORT))
            mreqn = struct.pack("4s4si", socket.inet_aton(MULTICAST_GROUP), socket.inet_aton("0.0.0.0"), ifindex)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            struct.pack("4s4si", b"\0" * 4, b"\0" * 4, ifindex))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        else:
            try:
                sock.bind((self.host, self.port))
            except OSError:
                if self.port != WSD_PORT:
                    raise
                sock.bind((self.host, 0))  # 3702 is taken (another simulation): any free port
        sock.setblocking(False)
        return sock

    async def start(self) -> None:
        sock = self._socket()
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        self._announce("Hello")

    async def stop(self) -> None:
        if self.transport is not None:
            self._announce("Bye")
            await asyncio.sleep(0)  # let the datagrams leave before the socket closes
            self.transport.close()
            self.transport = None

    def _targets(self) -> list[tuple[str, int]]:
        targets = list(self.hello_targets)
        if self.multicast_interface:
            targets.append((MULTICAST_GROUP, WSD_PORT))
        return targets

    def _announce(self, kind: str) -> None:
        assert self.transport is not None
        for cam in self.cameras:
            self._seq += 1
            for target in self._targets():
                self.transport.sendto(announcement(cam, kind, self._seq), target)

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        relates_to = probe_wants_us(data)
        if relates_to is None or self.transport is None:
            return
        # A Probe is repeated for UDP's sake; answer each MessageID once (WS-Discovery 1.1, 3.1.1).
        if relates_to and relates_to in self._seen:
            return
        self._seen[relates_to] = None
        if len(self._seen) > 256:
            self._seen.pop(next(iter(self._seen)))
        self.probes_answered += 1
        for cam in self.cameras:
            self._seq += 1
            self.transport.sendto(probe_matches(cam, relates_to, self._seq), addr)
