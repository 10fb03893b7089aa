"""controlroom simulate: serve simulated cameras over RTSP on this machine until stopped."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from controlroom.commands.common import print_table
from controlroom.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="serve simulated RTSP cameras (fixed, live, PTZ, ANPR) until Ctrl-C",
        description="Each camera is its own RTSP server on its own port (base port + index), with a "
                    "main 1080p/720p and a sub 360p stream, user 'admin'.",
    )
    p.add_argument("--cameras", type=int, default=4, help="pre-encoded fixed cameras (default 4)")
    p.add_argument("--anpr", type=int, default=0, help="ANPR cameras with scheduled plates")
    p.add_argument("--ptz", type=int, default=0, help="PTZ cameras")
    p.add_argument("--live", type=int, default=0, help="live-encoded cameras with the wall clock burnt in")
    p.add_argument("--password-file", type=Path, help="file holding the cameras' password (default sim-password)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--base-port", type=int, default=8554, help="first camera's port (default 8554; 0 picks free ports)")
    p.add_argument("--onvif", action="store_true", help="also serve ONVIF for each camera (when available)")
    p.add_argument("--json", action="store_true", help="print the cameras as JSON (without passwords)")
    p.set_defaults(func=cmd_simulate)


def _password(path: Path | None) -> str:
    if path is None:
        return "sim-password"
    password = path.read_text().strip()
    if not password:
        raise SystemExit(f"controlroom: {path} is empty: it must hold the cameras' password")
    return password


async def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    for name in ("cameras", "anpr", "ptz", "live"):
        if getattr(args, name) < 0:
            raise SystemExit(f"controlroom: --{name} must be 0 or more")
    password = await asyncio.to_thread(_password, args.password_file)
    from simulator import (
        Simulation,  # here: the simulator (ONVIF, GStreamer) loads only for this command
    )

    work = settings.data_dir / "simulator"
    sim = Simulation(work, cameras=args.cameras, anpr=args.anpr, ptz=args.ptz, live=args.live,
                     password=password, host=args.host, base_port=args.base_port, onvif=args.onvif)
    async with sim:
        rows = sim.describe()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            columns = ["name", "kind", "site", "main_url", "sub_url"]
            if any(r["onvif_xaddr"] for r in rows):
                columns.append("onvif_xaddr")
            print_table(rows, columns)
            print(f"\n{len(rows)} simulated cameras, user {sim.username!r}, started in "
                  f"{sim.startup_s:.2f} s. Stop with Ctrl-C.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    return 0
