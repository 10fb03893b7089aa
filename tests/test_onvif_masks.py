"""Privacy masks the camera paints (ONVIF Media2; issue 15; lawful-use.md, "Masks the camera
paints"), against the simulator's Media2 service through onvif-zeep-async and our WSDL:

- the client: push, read back, compare; a camera that faults CreateMask and one without Media2;
- the flows (controlroom.onvif_actions) on a real store: pushed -> painted by the camera from
  its confirmation; the read-back extends what footage is painted at source; drift (a mask
  removed on the camera) is logged, audited, shown, painted by the service and pushed again;
  a refusal leaves the set to the service with a log line and a visible state;
- the rule for recorded footage (storage.masks.camera_painted);
- end to end with the real RTSP simulator: an administrator sets a mask through the API, the
  camera takes it, the camera's own RTSP stream is black there (painted at source), and an
  operator's live view is the camera's stream copied (not a masked transcode), black there too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import select
from test_masks_walk import video_frames

from cameras.onvif import masks as camera_masks
from cameras.onvif.session import connect
from controlroom import onvif_actions
from controlroom.api.onvif import check_masks_pass
from controlroom.app import create_app
from controlroom.context import KEYS, SESSIONS, SETTINGS
from simulator import Simulation
from simulator.onvif import OnvifSimulator, SimOnvifCamera
from storage import masks
from storage.audit import AuditEntry
from storage.catalogue import NewSegment, commit_segment
from storage.db import now_us, transaction
from storage.inventory import CameraSpec, add_camera, credentialed_url
from storage.keys import load_or_create_keys
from storage.models import Camera

TRIANGLE = [[0.1, 0.1], [0.5, 0.1], [0.3, 0.6]]
SQUARE = [[0.55, 0.2], [0.9, 0.2], [0.9, 0.7], [0.55, 0.7]]  # clear of the burnt-in name and clock


def test_recorded_footage_is_painted_at_source_only_between_confirmation_and_read_back():
    since, checked, margin = 100_000_000, 200_000_000, masks.CAMERA_MARGIN_US
    painted = masks.camera_painted
    assert painted(masks.CAMERA, since, checked, since + margin, checked)
    assert not painted(masks.CAMERA, since, checked, since + margin - 1, checked)  # frames in flight
    assert not painted(masks.CAMERA, since, checked, since + margin, checked + 1)  # after the last read-back
    assert not painted(masks.CAMERA, since, checked, since + margin, None)  # still growing
    assert not painted(masks.SERVICE, since, checked, since + margin, checked)
    assert not painted(masks.CAMERA, None, None, since + margin, checked)


async def test_the_client_pushes_reads_and_compares_media2_masks():
    cams = [SimOnvifCamera(name="paints", masks_support="media2"), SimOnvifCamera(name="refuses", masks_support="refuse"),
            SimOnvifCamera(name="old")]
    async with OnvifSimulator(cameras=cams, discovery_port=None):
        async with connect(cams[0].xaddr, "admin", "admin") as onvif:
            tokens = await camera_masks.push(onvif, [TRIANGLE, SQUARE])
            held = await camera_masks.read(onvif)
            assert len(tokens) == 2 and {m.token for m in held} == set(tokens)
            assert camera_masks.compare([SQUARE, TRIANGLE], held) == ""
            assert "1 of ours missing" in camera_masks.compare([SQUARE, [[0.1, 0.1], [0.5, 0.1], [0.3, 0.7]]], held)
            # On the wire: ONVIF's space, y up (the camera's own record of the square's top left).
            square = next(m for m in cams[0].masks.values() if len(m["points"]) == 4)
            assert square["points"][0] == pytest.approx((0.1, 0.6))
            assert await camera_masks.push(onvif, []) == [] and await camera_masks.read(onvif) == []
        async with connect(cams[1].xaddr, "admin", "admin") as onvif:
            with pytest.raises(camera_masks.MasksUnsupported, match="refused CreateMask"):
                await camera_masks.push(onvif, [TRIANGLE])
        async with connect(cams[2].xaddr, "admin", "admin") as onvif:
            with pytest.raises(camera_masks.MasksUnsupported, match="no ONVIF Media2"):
                await camera_masks.push(onvif, [TRIANGLE])


async def test_push_check_drift_and_refusal_on_a_store(sessions, data_dir: Path, caplog):
    keys = load_or_create_keys(data_dir / "secret.key")
    cams = [SimOnvifCamera(name="paints", masks_support="media2"), SimOnvifCamera(name="refuses", masks_support="refuse")]
    async with OnvifSimulator(cameras=cams, discovery_port=None):
        ids = []
        async with transaction(sessions) as session:
            for sim_cam in cams:
                cam = await add_camera(session, CameraSpec(name=sim_cam.name, main_url="rtsp://127.0.0.1:1/main",
                                                           username="admin", password="admin",
                                                           onvif_xaddr=sim_cam.xaddr, recording=False), keys)
                await masks.set_masks(session, cam, [TRIANGLE], reason="flats", by="admin1")
                ids.append(cam.id)
        paints, refuses = ids

        async def row(cid: int) -> masks.MaskSet:
            async with sessions() as session:
                return await session.get(masks.MaskSet, cid, populate_existing=True)

        push = dict(keys=keys, pool=None, timeout_s=10)
        assert await onvif_actions.push_masks(sessions, camera_id=paints, **push) == masks.CAMERA
        first = await row(paints)
        assert first.applied_by == masks.CAMERA and first.camera_since_us == first.camera_checked_us
        assert len(cams[0].masks) == 1
        assert await onvif_actions.check_masks(sessions, camera_id=paints, **push) == masks.CAMERA
        assert (await row(paints)).camera_checked_us > first.camera_checked_us  # read back intact

        cams[0].masks.clear()  # someone removed the mask in the camera's own web page
        caplog.set_level(logging.WARNING, logger="controlroom.onvif_actions")
        assert await onvif_actions.check_masks(sessions, camera_id=paints, **push) == masks.CAMERA
        again = await row(paints)
        assert "privacy masks drift" in caplog.text and len(cams[0].masks) == 1  # pushed again
        assert again.camera_state.startswith("pushed again after drift") and again.camera_since_us > first.camera_since_us

        with caplog.at_level(logging.WARNING):
            assert await onvif_actions.push_masks(sessions, camera_id=refuses, **push) == masks.SERVICE
        refused = await row(refuses)
        assert refused.applied_by == masks.SERVICE and refused.camera_state.startswith("unsupported: ")
        assert "refused CreateMask" in refused.camera_state and "painted by the service" in caplog.text
        # Not pushed again every pass: only when the set changes.
        requests = cams[1].requests
        assert await onvif_actions.check_masks(sessions, camera_id=refuses, **push) == masks.SERVICE
        assert cams[1].requests == requests
        async with sessions() as session:
            actions = [a for (a,) in await session.execute(select(AuditEntry.action).where(
                AuditEntry.action.like("masks.%")).order_by(AuditEntry.seq))]
        assert actions.count("masks.drift") == 1 and actions.count("masks.applied") == 3, actions


def masked_at(frame: np.ndarray, polygon: list) -> np.ndarray:
    h, w = frame.shape[:2]
    area = np.zeros((h, w), np.uint8)
    cv2.fillPoly(area, [np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in polygon], np.int32)], 255)
    area = cv2.erode(area, np.ones((11, 11), np.uint8))
    return frame[area > 0]


async def grab(url: str, out: Path) -> np.ndarray:
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-y", "-rtsp_transport", "tcp", "-i", url, "-vf", "select=gte(n\\,10)",
        "-frames:v", "1", "-update", "1", str(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)


@pytest.mark.slow
async def test_a_camera_that_paints_its_masks_is_streamed_as_it_is(aiohttp_client, settings, tmp_path, login):
    live = "Live Town Centre 01"
    async with Simulation(tmp_path / "sim", cameras=0, live=1, onvif=True, masks={live: "media2"}) as sim:
        sim_cam = sim.camera(live)
        app = create_app(settings.with_overrides(**{"mqtt.enabled": False}), record=False)
        client = await aiohttp_client(app)
        async with transaction(app[SESSIONS]) as session:
            cam = await add_camera(session, CameraSpec(
                name=live, main_url=sim_cam.main_url, sub_url=sim_cam.sub_url, username=sim_cam.username,
                password=sim_cam.password, onvif_xaddr=sim_cam.onvif_xaddr, recording=False), app[KEYS])
        url = credentialed_url(sim_cam.main_url, sim_cam.username, sim_cam.password)
        before = await grab(url, tmp_path / "before.png")
        assert masked_at(before, SQUARE).std() > 12  # the test card, moving
        admin = await login(client, "administrator")
        resp = await client.put(f"/api/v1/cameras/{cam.id}/masks", headers=admin,
                                json={"polygons": [SQUARE], "reason": "overlooks the flats"})
        assert resp.status == 200 and (await resp.json())["applied_by"] == "service"  # until the camera says
        for _ in range(100):
            shown = await (await client.get(f"/api/v1/cameras/{cam.id}/masks", headers=admin)).json()
            if shown["applied_by"] == "camera":
                break
            await asyncio.sleep(0.1)
        assert shown["applied_by"] == "camera" and shown["camera_since"], shown
        # Painted at source: the camera's own stream is black there.
        at_source = masked_at(await grab(url, tmp_path / "after.png"), SQUARE)
        assert at_source.std() < 4 and at_source.mean() < 24, (at_source.std(), at_source.mean())
        # An operator's live view is the camera's stream copied, black there (not a masked transcode).
        operator = await login(client, "operator")
        async with client.ws_connect(f"/api/v1/cameras/{cam.id}/live?stream=main", headers=operator) as ws:
            first = await ws.receive_json(timeout=30)
            assert first["type"] == "init", first
        async with app[SESSIONS]() as session:
            entry = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "live.start")
                                           .order_by(AuditEntry.seq.desc()))).first()
        assert '"masked":false' in entry.details, entry.details
        # Footage recorded while the camera painted the set (from its confirmation plus the margin
        # to its last read-back) is played back as recorded: a stream copy, black there.
        async with app[SESSIONS]() as session:
            since = (await masks.get(session, cam.id)).camera_since_us
        while now_us() < since + masks.CAMERA_MARGIN_US:
            await asyncio.sleep(0.1)
        start = now_us()
        incoming = app[SETTINGS].storage_root / str(cam.id) / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            "ffmpeg", "-v", "error", "-y", "-rtsp_transport", "tcp", "-i", url, "-t", "3", "-map", "0:v", "-c", "copy",
            str(incoming / "seg.mkv"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        end = start + 3_000_000
        while now_us() < end:
            await asyncio.sleep(0.1)
        await commit_segment(app[SESSIONS], app[SETTINGS].storage_root, incoming / "seg.mkv", NewSegment(
            cam.id, start, end, codec="h264", width=1280, height=720, clock_offset_s=0.0, clock_flag=False))
        await check_masks_pass(app)  # the read-back after it: the footage is covered
        resp = await client.get(f"/api/v1/cameras/{cam.id}/playback/stream.mp4?start_us={start}", headers=operator)
        assert resp.status == 200 and resp.headers["X-Masked"] == "0", (resp.status, dict(resp.headers))
        played = video_frames(await resp.read())
        assert played and all(masked_at(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), SQUARE).std() < 4 for f in played)
        admin = await login(client, "administrator", "admin-again")
        health = await (await client.get("/api/v1/health/masks", headers=admin)).json()
        assert [(c["camera"], c["applied_by"]) for c in health["cameras"]] == [(cam.id, "camera")]
        # The reconciliation at start finds it intact; cleared, the camera stops painting.
        await check_masks_pass(app)
        resp = await client.post(f"/api/v1/cameras/{cam.id}/masks/clear", headers=admin, json={"reason": "moved"})
        assert resp.status == 200
        for _ in range(100):
            if not sim.onvif.camera(live).masks:
                break
            await asyncio.sleep(0.1)
        assert not sim.onvif.camera(live).masks
        assert masked_at(await grab(url, tmp_path / "cleared.png"), SQUARE).std() > 12
    async with app[SESSIONS]() as session:
        assert (await session.get(Camera, cam.id)) is not None


async def test_the_command_line_gives_an_onvif_camera_its_masks(data_dir: Path, tmp_path: Path, capsys):
    from controlroom.cli import main

    def run(*args: str) -> int:
        return main(["--data-dir", str(data_dir), *args])

    paints = SimOnvifCamera(name="paints", masks_support="media2")
    password = tmp_path / "pw"
    password.write_text("admin\n")
    async with OnvifSimulator(cameras=[paints], discovery_port=None):
        assert await asyncio.to_thread(run, "cameras", "add", "Flats", "--onvif-xaddr", paints.xaddr,
                                       "--username", "admin", "--password-file", str(password)) == 0
        capsys.readouterr()
        assert await asyncio.to_thread(run, "masks", "set", "Flats", "--polygons", json.dumps([TRIANGLE]),
                                       "--reason", "windows") == 0
        assert "painted by the camera" in capsys.readouterr().out and len(paints.masks) == 1
        assert await asyncio.to_thread(run, "masks", "clear", "Flats", "--reason", "moved") == 0
        assert paints.masks == {}  # the camera stopped painting it
