"""Live view on any API node from the recording node's one pull (issue 16, item 4).

A recorder node (``recorder,api``) records a simulated camera; two API-only nodes (``api``) on
the same PostgreSQL serve its live view to a browser each. They read it from the recorder
node's live relay (controlroom.relay), not from the camera: the camera sees one RTSP session
per stream for the whole cluster (its main stream the recorder's, its sub stream the recording
node's live pull, shared by the two API nodes), where each API node opened one of its own
before. Their main-stream viewers are served from the recorder's own pull (its ffmpeg's live
output, docs/design/live-from-recorder.md), relayed the same way: still one /main session. A
relay asked without the cluster's credential, or for a camera its node does not record, refuses. All three apps run in this test's process, each with its own settings, engine
and node id, as three machines would.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import time
from pathlib import Path

import aiohttp
import pytest
from test_lifecycle import wait_sessions

from cameras.live import FeedUpstream
from controlroom.app import create_app
from controlroom.auth import COOKIE
from controlroom.context import KEYS, LIVE, NODE, SESSIONS
from controlroom.relay import relay_token
from controlroom.settings import load_settings
from simulator import Simulation
from storage.db import transaction
from storage.inventory import CameraSpec, add_camera

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def node_settings(tmp_path: Path, node_id: str, pg_url: str, key: Path | None, roles: str):
    data = tmp_path / node_id
    data.mkdir()
    if key is not None:
        shutil.copy(key, data / "secret.key")
    (data / "settings.toml").write_text(
        f'database_url = "{pg_url}"\n'
        f'[recording]\nstorage_root = "{tmp_path / "store"}"\nsegment_s = 2\n'
        f'[security]\naudit_anchor_file = "{tmp_path / "anchor.json"}"\n'
        f'[live]\nlinger_s = 1\n'
        f'[cluster]\nenabled = true\nnode_id = "{node_id}"\nroles = "{roles}"\nrelay_port = 0\n'
        f'heartbeat_s = 1\nlease_ttl_s = 3\n')
    return load_settings(data, environ={})


async def watch(client, camera_id: int, stream: str = "sub") -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect(f"/api/v1/cameras/{camera_id}/live?stream={stream}")
    hello = await ws.receive_json(timeout=30)
    assert hello["type"] == "init" and hello["codec"].startswith("avc1."), hello
    assert (await ws.receive_bytes(timeout=10))[4:8] == b"ftyp"
    assert (await ws.receive_bytes(timeout=10))[4:8] == b"moof"
    return ws


async def test_two_api_nodes_serve_live_view_from_the_recording_nodes_one_pull(
        pg_url, tmp_path, aiohttp_client, login):
    async with Simulation(tmp_path / "sim", cameras=1) as sim:
        (cam,) = sim.cameras
        sr = node_settings(tmp_path, "rec", pg_url, None, "recorder,api")
        rec = await aiohttp_client(create_app(sr, record=True, anpr=False))
        async with transaction(rec.server.app[SESSIONS]) as session:
            camera_id = (await add_camera(session, CameraSpec(**cam.spec()), rec.server.app[KEYS])).id
        deadline = time.monotonic() + 30
        while camera_id not in rec.server.app[NODE].held:
            assert time.monotonic() < deadline, "the recorder node did not take the camera's lease"
            await asyncio.sleep(0.2)
        assert await wait_sessions(sim, cam.name, {"/main": 1}) == {"/main": 1}  # the recorder's pull
        a = await aiohttp_client(create_app(node_settings(tmp_path, "api-a", pg_url, sr.key_file, "api"), record=False))
        b = await aiohttp_client(create_app(node_settings(tmp_path, "api-b", pg_url, sr.key_file, "api"), record=False))
        await login(a, "operator", username="olly")
        cookie = a.session.cookie_jar.filter_cookies(a.make_url("/"))[COOKIE].value
        b.session.cookie_jar.update_cookies({COOKIE: cookie}, b.make_url("/"))

        views = [await watch(a, camera_id), await watch(b, camera_id)]
        try:
            # One pull per camera stream for the cluster: the two API nodes share the recording
            # node's live upstream through its relay (before: one /sub session per API node).
            assert await wait_sessions(sim, cam.name, {"/main": 1, "/sub": 1}, timeout_s=5) == {"/main": 1, "/sub": 1}
            _, peak = await sim.sessions(cam.name)
            assert peak.get("/sub") == 1, peak
            relayed = rec.server.app[LIVE].upstreams[f"{camera_id}/sub"]
            assert len(relayed.viewers) == 2, "each API node is one viewer of the recording node's upstream"
            for api in (a, b):
                (up,) = api.server.app[LIVE].upstreams.values()
                assert up.fragments > 0 and not up.ended

            # The main stream: both API nodes relay the recorder's own pull (its ffmpeg's live
            # output), which costs the camera no session beside the recorder's (before: 2).
            views += [await watch(a, camera_id, "main"), await watch(b, camera_id, "main")]
            _, peak = await sim.sessions(cam.name)
            assert peak == {"/main": 1, "/sub": 1}, peak
            fed = rec.server.app[LIVE].upstreams[f"{camera_id}/main"]
            assert isinstance(fed, FeedUpstream) and len(fed.viewers) == 2, fed

            # The relay refuses a request without the cluster's credential, and a camera its node
            # does not record (the asking node's viewer is told: no picture).
            relay_url = rec.server.app[NODE].relay_url
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{relay_url}/live/{camera_id}/sub") as resp:
                    assert resp.status == 401
                token = relay_token(rec.server.app[KEYS])
                basic = "Basic " + base64.b64encode(f"node:{token}".encode()).decode()
                async with http.get(f"{relay_url}/live/{camera_id + 1000}/sub", headers={"Authorization": basic}) as resp:
                    assert resp.status == 409
        finally:
            for ws in views:
                await ws.close()
