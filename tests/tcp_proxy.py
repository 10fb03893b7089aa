"""TCP on loopback for tests: a free port, and a proxy that a test can cut and restore (a peer
of ours going away)."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

# Ports for the tests' servers come from below the kernel's ephemeral range, never from it: a
# port of that range (the kernel's pick for a bind to port 0) can be taken by any process's
# outgoing connection between the test picking it and its server binding it. Seen in CI: a
# cluster node died at start with "address already in use", and its cameras never recorded.
_LOWEST = 20000
_given: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback TCP port that nobody listens on (at the moment of asking), below the
    ephemeral range, and not given before in this process."""
    high = max(_ephemeral_low(), _LOWEST + 1000)
    while True:
        port = random.randrange(_LOWEST, high)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port


class CuttableProxy:
    """TCP on loopback to a server of the tests' own (PostgreSQL, a broker); :meth:`cut` resets
    every connection and refuses new ones (accepted and reset at once) until :meth:`restore`."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.cut_off = False
        self.open: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> int:
        """Listen on ``port`` (0: a free one); returns the port."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.open |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.open -= {writer, up_writer}

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self.open):
            writer.transport.abort()
        self.open.clear()

    def restore(self) -> None:
        self.cut_off = False

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
