"""controlroom demo: simulated cameras plus the whole service, so a newcomer sees it working.

The demo finds its simulated cameras the way an administrator would find real ones: a directed
WS-Discovery probe on loopback, then ONVIF adoption of each device it has not adopted yet.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
from typing import TYPE_CHECKING

from controlroom.app import create_app
from controlroom.commands.common import open_store
from controlroom.commands.serve import run_service
from controlroom.onvif_actions import adopt_camera, discover_devices
from controlroom.settings import Settings
from storage import accounts, audit, inventory
from storage.db import transaction

if TYPE_CHECKING:
    from simulator import Simulation

log = logging.getLogger(__name__)
DEMO_ACTOR = "demo"
# One account per role, so a newcomer can see what each may do (administrators have no live
# view: rights are separated, see docs/design/security-model.md).
SIMULATED_ANPR_READING = {"anpr_roi": [0.2, 0.1, 0.6, 0.9], "anpr_stream": "sub"}
DEMO_USERS = {"operator": "operator", "supervisor": "supervisor", "police": "police"}


def demo_accounts(settings: Settings) -> dict[str, str]:
    """Every account the demo makes (username -> role): the banner names exactly these."""
    return {settings.security.admin_username: "administrator", **DEMO_USERS}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run simulated cameras and the service on this machine (SQLite, local disk)")
    p.add_argument("--cameras", type=int, default=6, help="fixed town-centre and park cameras (default 6)")
    p.add_argument("--ptz", type=int, default=1, help="PTZ cameras (default 1)")
    p.add_argument("--anpr", type=int, default=2, help="ANPR cameras at the two roundabouts (default 2)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=cmd_demo)


def demo_admin_password(settings: Settings) -> tuple[Settings, str]:
    """The demo's administrator password: generated once into the data directory (mode 0600)."""
    if settings.security.admin_password_file:
        path = settings.security.admin_password_file
        return settings, open(path).read().splitlines()[0]
    path = settings.data_dir / "demo-admin-password"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(12) + "\n")
    return settings.with_overrides(**{"security.admin_password_file": str(path)}), path.read_text().splitlines()[0]


def banner_accounts(settings: Settings) -> str:
    """The accounts line of the banner, made from :func:`demo_accounts`."""
    what = {"operator": "live view, PTZ, playback", "supervisor": "also approvals and holds",
            "police": "evidence requests", "administrator": "cameras and users, no footage"}
    return ", ".join(f"{name} ({what[role]})" for name, role in demo_accounts(settings).items())


async def adopt_simulated(settings: Settings, sim: Simulation) -> tuple[int, int]:
    """Discover the simulated cameras on loopback and adopt the new ones, re-adopting by their
    identity those that came back on new ports; returns (adopted, re-adopted)."""
    by_xaddr = {c.onvif_xaddr: c for c in sim.cameras}
    adopted = readopted = 0
    async with open_store(settings) as store:
        async with store.sessions() as session:
            rows = await inventory.list_cameras(session)
        known = {c.id for c in rows}
        streams = {c.onvif_xaddr: c.main_url for c in rows}
        found = await discover_devices(store.sessions, targets=[f"{sim.host}:{sim.onvif.discovery_port}"],
                                       interfaces=[], timeout_s=2.0)
        for device in found:
            xaddr = next((x for x in device["xaddrs"] if x in by_xaddr), None)
            if xaddr is None:
                continue
            cam = by_xaddr[xaddr]
            # Adopted at this address with these streams: nothing to do. A camera whose ONVIF
            # port came back the same while its RTSP port moved is adopted again (its streams).
            if device["adopted"] and streams.get(xaddr) == cam.main_url:
                continue
            row, _ = await adopt_camera(store.sessions, store.keys, None, settings, DEMO_ACTOR, xaddr=xaddr,
                                        username=cam.username, password=cam.password, name=cam.name, site=cam.site)
            # What ONVIF cannot say: that it is an ANPR camera, its lane and direction.
            update = inventory.CameraUpdate(kind=cam.kind, lane=cam.lane, direction=cam.direction, position=cam.position)
            async with transaction(store.sessions) as session:
                saved = await inventory.update_camera(session, row.id, update, store.keys)
                if cam.kind == "anpr":
                    # The road, not the burnt-in name and clock; the sub stream reads these
                    # synthetic plates as well as the main one at a quarter of the cost.
                    saved.extra = {**(saved.extra or {}), **SIMULATED_ANPR_READING}
            if row.id in known:
                readopted += 1
            else:
                adopted += 1
    return adopted, readopted


async def create_demo_users(settings: Settings, password: str) -> None:
    """The demo's named accounts (one password for all), created once. The administrator is
    made here too: the service's first-run bootstrap makes it only when there are no users,
    and by then these exist."""
    async with open_store(settings) as store, transaction(store.sessions) as session:
        for username, role in demo_accounts(settings).items():
            if await accounts.find_user(session, username) is None:
                await accounts.create_user(session, username, role, accounts.hash_password(password))
                await audit.append(session, DEMO_ACTOR, "user.add", f"user:{username}", role=role)


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    settings = settings.with_overrides(**{"http.host": args.host, "http.port": args.port})
    settings, password = demo_admin_password(settings)
    from simulator import (
        Simulation,  # here: the simulator (ONVIF, GStreamer) loads only for this command
    )

    async with Simulation(settings.data_dir / "simulator", cameras=args.cameras, ptz=args.ptz, anpr=args.anpr,
                          onvif=True) as sim:
        added, readded = await adopt_simulated(settings, sim)
        await create_demo_users(settings, password)
        app = create_app(settings)
        ready = asyncio.Event()
        service = asyncio.create_task(run_service(settings, app, ready))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait([service, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if ready.is_set():
            print(
                f"\ncontrolroom demo: {len(sim.cameras)} simulated cameras ({added} adopted, {readded} re-adopted at new "
                f"addresses just now over ONVIF), "
                f"data in {settings.data_dir.resolve()}\n"
                f"  operators' screen: http://{args.host}:{args.port}/\n"
                f"  log in as {banner_accounts(settings)}; password {password}\n"
                f"  health:            http://{args.host}:{args.port}/healthz\n"
                f"  the CLI:           .venv/bin/controlroom --data-dir {settings.data_dir} cameras list\n"
                f"Stop with Ctrl-C (segments being recorded are finalised).\n",
                flush=True,
            )
        status = await service
    return status
