"""``make demo`` restarts on its own data (issue 11, found 10): its simulated cameras come back
on new ports and are re-adopted by their ONVIF identity (serial), not added again under a name
that exists; the banner names exactly the accounts the demo makes, and they can log in."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from controlroom.commands.common import open_store
from controlroom.commands.demo import (
    adopt_simulated,
    banner_accounts,
    create_demo_users,
    demo_accounts,
)
from simulator import Simulation
from storage import accounts
from storage.audit import AuditEntry
from storage.models import Camera

pytestmark = pytest.mark.slow
PASSWORD = "demo pale moon river"


async def test_demo_restarts_on_its_own_data_and_its_banner_names_its_accounts(settings):
    seen, stream_runs, counts = [], [], []
    for _ in range(2):  # two starts of the demo on one data folder; the simulation's ports differ
        async with Simulation(settings.data_dir / "simulator", cameras=1, ptz=1, anpr=0, onvif=True) as sim:
            counts.append(await adopt_simulated(settings, sim))
            await create_demo_users(settings, PASSWORD)
            seen.append({c.name: c.onvif_xaddr for c in sim.cameras})
            stream_runs.append({c.name: c.main_url for c in sim.cameras})
    async with open_store(settings) as store, store.sessions() as session:
        cams = {c.name: c for c in (await session.execute(select(Camera))).scalars()}
        entries = list((await session.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars())
        users = {u.username: u for u in await accounts.list_users(session)}
    # Free ports are picked anew (nearly always all); a camera whose ONVIF port came back the
    # same while its RTSP port moved is re-adopted too (found on a loaded machine: its streams
    # kept the first run's port).
    moved_names = {n for n in seen[0] if seen[0][n] != seen[1][n] or stream_runs[0][n] != stream_runs[1][n]}
    moved = len(moved_names)
    assert counts == [(2, 0), (0, moved)]
    # One camera per simulated device, at the address of the second run.
    assert {n: c.onvif_xaddr for n, c in cams.items()} == seen[1]
    assert {n: c.main_url for n, c in cams.items()} == stream_runs[1]
    adopted = [json.loads(e.details)["name"] for e in entries if e.action == "camera.adopt"]
    readopted = [e for e in entries if e.action == "camera.readopt"]
    assert sorted(adopted) == sorted(seen[0])
    assert sorted(json.loads(e.details)["name"] for e in readopted) == sorted(moved_names)
    # The banner's accounts are the demo's accounts, and each exists and takes the password.
    line = banner_accounts(settings)
    assert set(users) == set(demo_accounts(settings)) and "admin" in users
    for name, role in demo_accounts(settings).items():
        assert f"{name} (" in line and users[name].role == role
        assert accounts.verify_password(users[name].password_hash, PASSWORD)
