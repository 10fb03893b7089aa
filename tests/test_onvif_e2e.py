"""End to end: simulated cameras (real RTSP server with their ONVIF side), the real service.

Discover the cameras with a directed probe on loopback (CLI), adopt them over the API, see them
in the inventory with the right URLs and recording; steer the PTZ camera (preset, away, back)
and see the RTSP picture change; motion on a camera arrives as a stored event.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from ui_stack import wait_for

from controlroom.app import create_app
from controlroom.cli import main as cli_main
from controlroom.context import SESSIONS
from controlroom.settings import Settings
from simulator import Simulation, plan_cameras
from storage.alerts import Alert
from storage.audit import AuditEntry
from storage.inventory import credentialed_url
from storage.models import Segment

pytestmark = pytest.mark.slow


async def grab_frame(url: str, path: Path) -> np.ndarray:
    """One decoded frame of an RTSP stream, as grey pixels (real ffmpeg)."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", url, "-frames:v", "1", "-vf", "format=gray",
        "-f", "rawvideo", "-y", str(path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return np.frombuffer(await asyncio.to_thread(path.read_bytes), np.uint8).astype(np.int16)


def run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli_main(argv)
    return code, out.getvalue()


async def test_discover_adopt_record_ptz_events(settings: Settings, tmp_path: Path, login) -> None:
    settings = settings.with_overrides(**{"recording.segment_s": 2, "http.port": 0, "mqtt.enabled": False})
    # The fixed camera's clock is 90 s fast: it is flagged at adoption and its footage carries it.
    fast = next(p["name"] for p in plan_cameras(cameras=1, ptz=1) if p["kind"] == "fixed")
    async with Simulation(tmp_path / "sim", cameras=1, ptz=1, onvif=True, clock_offsets_s={fast: 90.0}) as sim:
        assert sim.onvif is not None, "the simulator's ONVIF hook did not start"
        target = f"127.0.0.1:{sim.onvif.discovery_port}"

        # Discovery from the CLI: a directed probe on loopback finds both, none adopted yet.
        code, out = await asyncio.to_thread(
            run_cli, ["--data-dir", str(settings.data_dir), "discover", "--target", target, "--timeout", "1", "--json"])
        assert code == 0
        found = {d["name"]: d for d in json.loads(out)}
        assert set(found) == {c.name for c in sim.cameras}
        assert all(not d["adopted"] for d in found.values())

        app = create_app(settings, record=True, anpr=False)
        async with TestClient(TestServer(app)) as client:
            headers = await login(client, "administrator")
            resp = await client.post("/api/v1/discover", json={"targets": [target], "timeout_s": 1}, headers=headers)
            assert resp.status == 200, await resp.text()
            devices = (await resp.json())["devices"]
            assert len(devices) == 2

            # Wrong password first over the API: its own clear error.
            sc = sim.cameras[0]
            resp = await client.post("/api/v1/cameras/adopt", headers=headers, json={
                "xaddr": sc.onvif_xaddr, "username": sc.username, "password": "wrong", "name": "dup"})
            assert resp.status == 502 and "refused these credentials" in (await resp.json())["error"]

            adopted = {}
            for device in devices:
                sc = sim.camera(device["name"])
                resp = await client.post("/api/v1/cameras/adopt", headers=headers, json={
                    "xaddr": device["xaddrs"][0], "username": sc.username, "password": sc.password,
                    "site": "Town Centre"})
                assert resp.status == 201, await resp.text()
                body = await resp.json()
                cam = body["camera"]
                assert cam["main_url"] == sc.main_url and cam["sub_url"] == sc.sub_url
                assert cam["kind"] == ("ptz" if sc.ptz else "fixed")
                assert "password" not in json.dumps(body) or sc.password not in json.dumps(body)
                adopted[sc.name] = cam["id"]

            # Discovery now says they are adopted.
            resp = await client.post("/api/v1/discover", json={"targets": [target], "timeout_s": 1}, headers=headers)
            assert all(d["adopted"] for d in (await resp.json())["devices"])

            # Recording starts from the adopted cameras.
            async def segments_for_all() -> bool:
                async with app[SESSIONS]() as session:
                    ids = set((await session.execute(select(Segment.camera_id))).scalars())
                return set(adopted.values()) <= ids

            assert await wait_for(segments_for_all, 40), "adopted cameras did not record"
            async with app[SESSIONS]() as session:
                segs = (await session.execute(select(Segment.camera_id, Segment.clock_flag, Segment.clock_offset_s))).all()
                alerts = (await session.execute(select(Alert.kind, Alert.camera_id))).all()
            fast_segs = [s for s in segs if s.camera_id == adopted[fast]]
            assert fast_segs and all(s.clock_flag and abs(s.clock_offset_s - 90) < 0.5 for s in fast_segs)
            assert not any(s.clock_flag for s in segs if s.camera_id != adopted[fast])
            assert ("clock_off", adopted[fast]) in alerts

            # PTZ through the API, as an operator: preset, away, back; the RTSP picture follows.
            headers = await login(client, "operator", "op-ptz")
            ptz_sc = next(c for c in sim.cameras if c.ptz)
            cid = adopted[ptz_sc.name]
            sub_url = credentialed_url(ptz_sc.sub_url, ptz_sc.username, ptz_sc.password)
            resp = await client.post(f"/api/v1/cameras/{cid}/ptz/presets", json={"name": "Market cross"}, headers=headers)
            assert resp.status == 200, await resp.text()
            at_preset = await (await client.get(f"/api/v1/cameras/{cid}/ptz", headers=headers)).json()
            frame_preset = await grab_frame(sub_url, tmp_path / "a.raw")
            resp = await client.post(f"/api/v1/cameras/{cid}/ptz/move", headers=headers,
                                     json={"pan": 1.0, "tilt": 0.5, "zoom": 0.5, "timeout_s": 1.0})
            assert resp.status == 200, await resp.text()
            await asyncio.sleep(1.5)
            away = await (await client.get(f"/api/v1/cameras/{cid}/ptz", headers=headers)).json()
            assert away["pan"] > at_preset["pan"] + 0.3 and not away["moving"]
            frame_away = await grab_frame(sub_url, tmp_path / "b.raw")
            resp = await client.post(f"/api/v1/cameras/{cid}/ptz/goto", json={"preset": "Market cross"}, headers=headers)
            assert resp.status == 200, await resp.text()
            back = await (await client.get(f"/api/v1/cameras/{cid}/ptz", headers=headers)).json()
            assert [round(back[k], 3) for k in ("pan", "tilt", "zoom")] == \
                [round(at_preset[k], 3) for k in ("pan", "tilt", "zoom")]
            await asyncio.sleep(0.5)
            frame_back = await grab_frame(sub_url, tmp_path / "c.raw")
            moved = np.abs(frame_away - frame_preset).mean()
            returned = np.abs(frame_back - frame_preset).mean()
            assert moved > 8, f"the picture did not change when the camera moved ({moved:.1f})"
            assert returned < moved / 2, f"back at the preset the picture differs ({returned:.1f} vs {moved:.1f})"

            # Every PTZ action is in the audit trail with who did it.
            async with app[SESSIONS]() as session:
                ptz_audit = [(e.actor, e.action) for e in (await session.execute(
                    select(AuditEntry).where(AuditEntry.action.like("ptz.%")).order_by(AuditEntry.seq))).scalars()]
            assert ptz_audit == [("op-ptz", "ptz.set_preset"), ("op-ptz", "ptz.move"), ("op-ptz", "ptz.goto")]

            # Motion on the fixed camera arrives as a stored event (subscriptions run in the app).
            fixed = next(c for c in sim.cameras if not c.ptz)
            fid = adopted[fixed.name]
            await asyncio.sleep(1.0)  # the events loop subscribes after adoption
            sim.onvif.trigger_motion(fixed.name)

            async def motion_stored() -> list:
                r = await client.get(f"/api/v1/cameras/{fid}/events", headers=headers)
                return [e for e in (await r.json())["events"] if e["kind"] == "motion"]

            events = await wait_for(motion_stored, 15)
            assert events and events[0]["state"] is True


def test_cli_adopt_and_ptz(tmp_path: Path, settings: Settings) -> None:
    """The CLI end of it: `cameras adopt`, `ptz ... status|set-preset|goto`, `clock check|set`."""
    from simulator.onvif import OnvifSimulator, SimOnvifCamera

    async def scenario() -> None:
        cam = SimOnvifCamera(name="CLI PTZ", main_url="rtsp://127.0.0.1:1/m", sub_url="rtsp://127.0.0.1:1/s",
                             ptz=True, password="pw-file-pw", clock_offset_s=-7.0)
        pw = tmp_path / "pw"
        pw.write_text("pw-file-pw\n")
        data = str(settings.data_dir)
        async with OnvifSimulator(cameras=[cam]):
            code, out = await asyncio.to_thread(run_cli, ["--data-dir", data, "cameras", "adopt", cam.xaddr,
                                                          "--username", "admin", "--password-file", str(pw), "--json"])
            assert code == 0
            adopted = json.loads(out)
            assert adopted["camera"]["clock_flag"] is True and adopted["camera"]["kind"] == "ptz"
            assert abs(adopted["onvif"]["clock_offset_s"] + 7) < 0.3
            assert "pw-file-pw" not in out
            code, out = await asyncio.to_thread(run_cli, ["--data-dir", data, "ptz", "CLI PTZ", "set-preset", "Gate"])
            assert code == 0 and json.loads(out)["preset"] == "Preset_1"
            code, out = await asyncio.to_thread(run_cli, ["--data-dir", data, "ptz", "CLI PTZ", "goto", "Gate"])
            assert code == 0
            code, out = await asyncio.to_thread(run_cli, ["--data-dir", data, "clock", "set", "CLI PTZ"])
            assert code == 0 and json.loads(out)["flagged"] is False
            code, out = await asyncio.to_thread(run_cli, ["--data-dir", data, "ptz", "1", "status"])
            assert code == 0 and json.loads(out)["moving"] is False

    asyncio.run(scenario())
    # A missing camera is a clear error, exit status 1.
    proc = subprocess.run([sys.executable, "-m", "controlroom.cli", "--data-dir", str(settings.data_dir), "ptz",
                           "nope", "status"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "no camera" in proc.stderr
