"""Simulated ONVIF cameras with WS-Discovery and no RTSP server, as a process of their own.

The namespace test runs it inside ``ip netns exec`` (multicast on the namespace's interface)
and ``bench.onvif`` runs a hundred cameras with it::

    python -m simulator.onvif_standalone --cameras 3 --host 10.0.0.1 --interface veth0

It prints ``ready <cameras> <discovery port>`` once serving, stops on SIGTERM, SIGINT or after
``--duration-s``, and with ``--stats`` prints ``OnvifSimulator.stats()`` as JSON when stopping.
Nothing imports this module (``python -m`` runs it), so it sits above ``simulator.onvif``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal

from simulator.onvif import OnvifSimulator, SimOnvifCamera


async def serve(args: argparse.Namespace) -> None:
    cams = [SimOnvifCamera(name=f"{args.prefix}{i + 1}", main_url=f"rtsp://{args.host}:8554/cam{i + 1}/main",
                           sub_url=f"rtsp://{args.host}:8554/cam{i + 1}/sub", ptz=i % 10 == 0)
            for i in range(args.cameras)]
    sim = OnvifSimulator(cameras=cams, host=args.host, discovery_port=args.port,
                         multicast_interface=args.interface, response_delay_s=args.delay_ms / 1000)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with sim:
        print(f"ready {len(cams)} {sim.discovery_port}", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=args.duration_s)
        if args.stats:
            print(json.dumps(sim.stats()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="simulated ONVIF cameras with WS-Discovery")
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="discovery UDP port (3702 with --interface)")
    parser.add_argument("--interface", help="multicast on this interface (network namespaces only)")
    parser.add_argument("--prefix", default="NS-Cam-")
    parser.add_argument("--duration-s", type=float, default=120.0, help="stop by itself after this long")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="each SOAP reply takes this long (camera CPU)")
    parser.add_argument("--stats", action="store_true", help="print request statistics as JSON when stopping")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
