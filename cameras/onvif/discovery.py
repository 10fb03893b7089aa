"""WS-Discovery (the 2005/04 dialect ONVIF uses): Probe out, ProbeMatch in, Hello and Bye.

Multicast goes only out of interfaces named by the caller (``--interface``, or the settings'
``cameras.discovery_interfaces``); none by default, so nothing is multicast unless asked. Directed
Probes go unicast to each ``host[:port]`` target (port 3702 unless given): that is how the
demo finds its simulated cameras on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import socket
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from lxml import etree

from cameras import CameraError

log = logging.getLogger(__name__)

MULTICAST_GROUP = "239.255.255.250"
WSD_PORT = 3702
NS = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
}
# UDP may drop a datagram: the WS-Discovery spec repeats a multicast Probe; we send each Probe
# twice, this far apart.
PROBE_REPEAT_GAP_S = 0.2
# A hundred cameras answer at once with about 1.5 kB each: the default receive buffer (about
# 200 kB, half of it usable) dropped answers on a busy machine. The kernel caps this at
# net.core.rmem_max.
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024


class DiscoveryError(CameraError):
    """Discovery could not run as asked (bad interface name, bad target)."""


@dataclass
class Device:
    """One device seen on the network."""

    endpoint: str
    xaddrs: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    seen_from: str = ""
    last_seen_s: float = 0.0

    def scope(self, kind: str) -> str:
        prefix = f"onvif://www.onvif.org/{kind}/"
        return next((unquote(s[len(prefix):]) for s in self.scopes if s.startswith(prefix)), "")

    @property
    def name(self) -> str:
        return self.scope("name")

    @property
    def hardware(self) -> str:
        return self.scope("hardware")

    @property
    def location(self) -> str:
        return self.scope("location")

    def to_dict(self) -> dict[str, object]:
        return {"endpoint": self.endpoint, "xaddrs": self.xaddrs, "name": self.name, "hardware": self.hardware,
                "location": self.location, "scopes": self.scopes, "types": self.types, "seen_from": self.seen_from}


@dataclass
class Message:
    kind: str  # ProbeMatch, Hello or Bye
    relates_to: str
    devices: list[Device]


def build_probe(message_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" '
        'xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
        f"<s:Header><a:MessageID>{message_id}</a:MessageID>"
        '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>'
        '<a:Action s:mustUnderstand="1">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>'
        "</s:Header><s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>"
        "</s:Envelope>"
    ).encode()


# Elements are found by local name, whatever their namespace: devices answer with SOAP 1.1 or
# 1.2 envelopes and the 2004/08 or 2005/08 WS-Addressing and 2005/04 or 2009/01 (WS-Discovery
# 1.1) namespaces, and we take them all (be liberal in what is accepted from devices).


def _local(node: etree._Element) -> str:
    return etree.QName(node).localname if isinstance(node.tag, str) else ""


def _child(node: etree._Element | None, *path: str) -> etree._Element | None:
    for name in path:
        if node is None:
            return None
        node = next((c for c in node if _local(c) == name), None)
    return node


def _words(node: etree._Element | None, name: str) -> list[str]:
    found = _child(node, name)
    return found.text.split() if found is not None and found.text else []


def _device(node: etree._Element, source: str) -> Device | None:
    address = _child(node, "EndpointReference", "Address")
    if address is None or not (address.text or "").strip():
        return None
    return Device(endpoint=address.text.strip(), xaddrs=_words(node, "XAddrs"), scopes=_words(node, "Scopes"),
                  types=_words(node, "Types"), seen_from=source, last_seen_s=time.time())


def parse_message(data: bytes, source: str = "") -> Message | None:
    """A ProbeMatches, Hello or Bye datagram, or ``None`` for anything else (never raises).

    A ProbeMatch is taken inside its ProbeMatches wrapper, as the standard has it, or bare in
    the Body, as some cameras send it (issue 11, found 13)."""
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False))
    except etree.XMLSyntaxError:
        return None
    if _local(root) != "Envelope":
        return None
    body = _child(root, "Body")
    if body is None:
        return None
    relates = _child(root, "Header", "RelatesTo")
    relates_to = (relates.text or "").strip() if relates is not None else ""
    matches = [m for c in body for m in ([c] if _local(c) == "ProbeMatch" else
                                         [x for x in c if _local(x) == "ProbeMatch"] if _local(c) == "ProbeMatches" else [])]
    if matches or _child(body, "ProbeMatches") is not None:
        return Message("ProbeMatch", relates_to, [d for m in matches if (d := _device(m, source))])
    for kind in ("Hello", "Bye"):
        node = _child(body, kind)
        if node is not None:
            device = _device(node, source)
            return Message(kind, relates_to, [device] if device else [])
    return None


def interface_address(name: str) -> str:
    """IPv4 address of a network interface (SIOCGIFADDR), or DiscoveryError."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
    except OSError as exc:
        raise DiscoveryError(f"interface {name!r} has no IPv4 address or does not exist ({exc.strerror})") from None
    return socket.inet_ntoa(packed[20:24])


def parse_target(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        host, port = target, str(WSD_PORT)
    if not host:
        raise DiscoveryError(f"bad discovery target {target!r}: expected HOST or HOST:PORT")
    try:
        resolved = socket.gethostbyname(host)
    except OSError:
        raise DiscoveryError(f"bad discovery target {target!r}: cannot resolve {host!r}") from None
    return resolved, int(port)


def multicast_socket(interface: str) -> socket.socket:
    """A UDP socket that sends to the WS-Discovery group out of ``interface`` only (TTL 1)."""
    address = interface_address(interface)
    ifindex = socket.if_nametoindex(interface)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, struct.pack("4s4si", b"\0" * 4, b"\0" * 4, ifindex))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    sock.bind((address, 0))
    sock.setblocking(False)
    return sock


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, on_message: Callable[[Message], None]) -> None:
        self.on_message = on_message

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data, f"{addr[0]}:{addr[1]}")
        if message is not None:
            self.on_message(message)


def merge(into: dict[str, Device], device: Device) -> None:
    known = into.get(device.endpoint)
    if known is None:
        into[device.endpoint] = device
        return
    known.xaddrs = list(dict.fromkeys([*known.xaddrs, *device.xaddrs]))
    known.scopes = device.scopes or known.scopes
    known.types = device.types or known.types
    known.last_seen_s = device.last_seen_s


async def discover(*, targets: list[str] | None = None, interfaces: list[str] | None = None,
                   timeout_s: float = 3.0) -> list[Device]:
    """Probe and collect ProbeMatches for ``timeout_s``. Multicast only out of ``interfaces``."""
    if not targets and not interfaces:
        raise DiscoveryError("nothing to probe: name an --interface for multicast or a --target for a directed probe")
    loop = asyncio.get_running_loop()
    message_id = f"urn:uuid:{uuid.uuid4()}"
    found: dict[str, Device] = {}

    def on_message(message: Message) -> None:
        if message.kind == "ProbeMatch" and message.relates_to in ("", message_id):
            for device in message.devices:
                merge(found, device)
        elif message.kind == "Hello":
            for device in message.devices:
                merge(found, device)

    sends: list[tuple[asyncio.DatagramTransport, tuple[str, int]]] = []
    transports: list[asyncio.DatagramTransport] = []
    try:
        if targets:
            resolved = [parse_target(t) for t in targets]
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            sock.bind(("0.0.0.0", 0))
            sock.setblocking(False)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Collector(on_message), sock=sock)
            transports.append(transport)
            sends += [(transport, addr) for addr in resolved]
        for name in interfaces or []:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Collector(on_message),
                                                               sock=multicast_socket(name))
            transports.append(transport)
            sends.append((transport, (MULTICAST_GROUP, WSD_PORT)))
        probe = build_probe(message_id)
        for _ in range(2):
            for transport, addr in sends:
                transport.sendto(probe, addr)
            await asyncio.sleep(PROBE_REPEAT_GAP_S)
        await asyncio.sleep(max(0.0, timeout_s - PROBE_REPEAT_GAP_S * 2))
    finally:
        for transport in transports:
            transport.close()
    return sorted(found.values(), key=lambda d: (d.name, d.endpoint))


class HelloListener:
    """Listens for Hello and Bye: on the WS-Discovery group of each named interface, and/or on a
    unicast ``bind`` address. ``devices`` holds what announced itself and has not said Bye."""

    def __init__(self, *, interfaces: list[str] | None = None, bind: tuple[str, int] | None = None,
                 on_change: Callable[[str, Device], None] | None = None) -> None:
        self.interfaces = list(interfaces or [])
        self.bind = bind
        self.on_change = on_change
        self.devices: dict[str, Device] = {}
        self.gone: dict[str, Device] = {}
        self.port: int | None = None
        self._transports: list[asyncio.DatagramTransport] = []

    def _on_message(self, message: Message) -> None:
        for device in message.devices:
            if message.kind == "Hello":
                merge(self.devices, device)
                self.gone.pop(device.endpoint, None)
                log.info("discovery: Hello from %s at %s", device.endpoint, " ".join(device.xaddrs))
            elif message.kind == "Bye":
                left = self.devices.pop(device.endpoint, device)
                self.gone[device.endpoint] = left
                log.info("discovery: Bye from %s", device.endpoint)
            else:
                continue
            if self.on_change is not None:
                self.on_change(message.kind, device)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name in self.interfaces:
            ifindex = socket.if_nametoindex(name)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((MULTICAST_GROUP, WSD_PORT))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                            struct.pack("4s4si", socket.inet_aton(MULTICAST_GROUP), b"\0" * 4, ifindex))
            sock.setblocking(False)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Collector(self._on_message), sock=sock)
            self._transports.append(transport)
        if self.bind is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(self.bind)
            sock.setblocking(False)
            self.port = sock.getsockname()[1]
            transport, _ = await loop.create_datagram_endpoint(lambda: _Collector(self._on_message), sock=sock)
            self._transports.append(transport)

    async def stop(self) -> None:
        for transport in self._transports:
            with contextlib.suppress(Exception):
                transport.close()
        self._transports.clear()

    async def __aenter__(self) -> HelloListener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _listen_main(interfaces: list[str], duration_s: float) -> None:
    """Print Hello/Bye as JSON lines for ``duration_s`` (used by the network-namespace test)."""
    import json
    import sys

    def show(kind: str, device: Device) -> None:
        sys.stdout.write(json.dumps({"kind": kind, **device.to_dict()}) + "\n")
        sys.stdout.flush()

    async with HelloListener(interfaces=interfaces, on_change=show):
        print(json.dumps({"kind": "listening"}), flush=True)
        await asyncio.sleep(duration_s)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="listen for WS-Discovery Hello and Bye")
    parser.add_argument("--interface", action="append", default=[], required=True)
    parser.add_argument("--duration-s", type=float, default=30.0)
    cli_args = parser.parse_args()
    asyncio.run(_listen_main(cli_args.interface, cli_args.duration_s))
