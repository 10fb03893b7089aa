"""controlroom.camera_health: automatic offline faults from the cameras' recorded state (SQLite
and PostgreSQL), and picture checks on snapshots of a real simulated camera taken the way the
live view takes them, raising alerts and faults."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import select, update
from ui_stack import wait_for

from controlroom.api.live import SNAPSHOT_FRESH_S
from controlroom.app import create_app
from controlroom.camera_health import CAMERA_HEALTH, CameraHealth, health_loop_ctx
from controlroom.context import KEYS, SESSIONS
from controlroom.settings import HealthSettings
from simulator import Simulation
from storage.alerts import Alert, AlertHub
from storage.db import now_us, transaction
from storage.health import list_faults
from storage.inventory import CameraSpec, add_camera
from storage.models import Camera

MIN_US = 60_000_000


async def _set_state(sessions, cam_id: int, state: str, since_us: int) -> None:
    async with transaction(sessions) as session:
        await session.execute(update(Camera).where(Camera.id == cam_id)
                              .values(state=state, state_since_us=since_us, state_reason="connection refused"))


async def _alerts(sessions) -> list[tuple[str, int | None]]:
    async with sessions() as session:
        return [(a.kind, a.camera_id) for a in (await session.execute(select(Alert).order_by(Alert.id))).scalars()]


async def test_a_camera_off_the_air_too_long_gets_one_fault_repaired_when_it_records(sessions, tmp_path: Path):
    async with transaction(sessions) as session:
        cams = [Camera(name=n, main_url="rtsp://127.0.0.1:1/main") for n in ("Off Air", "Brief Blip", "Degraded")]
        session.add_all(cams)
        session.add(Camera(name="Disabled", main_url="rtsp://127.0.0.1:1/main", enabled=False, state="offline",
                           state_since_us=0))
    off, blip, degraded = (c.id for c in cams)
    hub = AlertHub()
    queue = hub.subscribe()
    checker = CameraHealth(sessions, hub, HealthSettings(offline_after_s=300), tmp_path, snapshot=None)
    now = now_us()
    await _set_state(sessions, off, "reconnecting", now - 6 * MIN_US)
    await _set_state(sessions, blip, "offline", now - 2 * MIN_US)  # not yet long enough
    await _set_state(sessions, degraded, "degraded", now - 60 * MIN_US)  # the database's trouble, not the camera's
    await checker.offline_tick(now)
    await checker.offline_tick(now + MIN_US)  # still off: the same fault, no second alert
    async with sessions() as session:
        (fault,) = await list_faults(session, unrepaired_only=True)
    assert (fault.camera_id, fault.kind, fault.source) == (off, "offline", "automatic")
    assert fault.opened_at_us == now - 6 * MIN_US  # the fault began when the camera went
    assert "off the air for 6 min" in fault.description
    assert await _alerts(sessions) == [("camera_fault", off)]
    assert queue.get_nowait()["kind"] == "camera_fault"  # published once committed
    await _set_state(sessions, off, "recording", now + 2 * MIN_US)
    await _set_state(sessions, blip, "recording", now + 2 * MIN_US)  # back after 4 min: never a fault
    await checker.offline_tick(now + 3 * MIN_US)
    async with sessions() as session:
        (fixed,) = await list_faults(session, camera_id=off)
        assert await list_faults(session, unrepaired_only=True) == []
    assert fixed.status == "repaired" and fixed.time_to_repair_us == 8 * MIN_US
    assert await _alerts(sessions) == [("camera_fault", off), ("camera_repaired", off)]


async def test_a_failing_tick_is_shown_until_one_succeeds(aiohttp_client, settings, monkeypatch, login):
    """The offline loop's failure is in /healthz and /metrics until a tick succeeds, also on a
    node that records nothing (record=False: no recorder supervisor)."""
    app = create_app(settings.with_overrides(**{"health.check_interval_s": 0.1}), record=False)
    client = await aiohttp_client(app)
    admin = await login(client, "administrator")
    component = app[CAMERA_HEALTH]
    real = component.offline_tick
    broken = True

    async def tick() -> None:
        if broken:
            raise RuntimeError("database on fire")
        await real()

    monkeypatch.setattr(component, "offline_tick", tick)
    loops = health_loop_ctx(app)
    await loops.__anext__()
    try:
        async def healthz(status: int) -> dict | None:
            answer = await client.get("/healthz")
            return await answer.json() if answer.status == status else None

        body = await wait_for(lambda: healthz(503), 10)
        assert {"component": "camera_health",
                "reason": "offline check failed: RuntimeError: database on fire"} in body["problems"]
        metrics = await (await client.get("/metrics", headers=admin)).text()
        assert 'controlroom_component_failing{component="camera_health"} 1.0' in metrics
        broken = False
        assert await wait_for(lambda: healthz(200), 10)
    finally:
        with pytest.raises(StopAsyncIteration):
            await loops.__anext__()


def _shifted(jpeg: bytes) -> bytes:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    moved = cv2.warpAffine(img, np.float32([[1, 0, w * 0.1], [0, 1, 0]]), (w, h), borderMode=cv2.BORDER_REFLECT)
    return cv2.imencode(".jpg", moved)[1].tobytes()


async def test_picture_checks_on_a_simulated_camera_raise_a_fault_and_clear_it(aiohttp_client, settings, tmp_path):
    app = create_app(settings.with_overrides(**{"health.picture_failures_to_fault": 2}), record=False)
    await aiohttp_client(app)
    component = app[CAMERA_HEALTH]
    async with Simulation(tmp_path / "sim", cameras=1) as sim:
        async with transaction(app[SESSIONS]) as session:
            cam = await add_camera(session, CameraSpec(**sim.inventory()[0]), app[KEYS])
        # First check: the picture passes and becomes the camera's reference view.
        first = await component.check_camera(cam)
        assert first.error == "" and first.result["failures"] == {} and first.reference_set
        assert (settings.data_dir / "picture-references" / f"{cam.id}.jpg").is_file()
        second = await component.check_camera(cam)
        assert second.result["failures"] == {} and not second.reference_set
        assert second.result["matches"] >= 15
        # The camera is knocked: simulated by giving it a reference the view no longer matches.
        reference = (settings.data_dir / "picture-references" / f"{cam.id}.jpg").read_bytes()
        await component.set_reference(cam.id, _shifted(reference), "sup1")
        moved = await component.check_camera(cam)
        assert list(moved.result["failures"]) == ["moved"]
        async with app[SESSIONS]() as session:
            assert await list_faults(session, camera_id=cam.id) == []  # one bad picture is not yet a fault
        await component.picture_tick()
        async with app[SESSIONS]() as session:
            (fault,) = await list_faults(session, camera_id=cam.id)
        assert (fault.kind, fault.source, fault.status) == ("moved", "automatic", "open")
        assert await _alerts(app[SESSIONS]) == [("picture_check", cam.id)]
        # Put right (the reference reset, as `controlroom faults reset-reference` does from another
        # process): the running service notices, the next picture becomes the reference, and the
        # fault is repaired.
        other = CameraHealth(app[SESSIONS], None, component.settings, component.reference_dir, snapshot=None)
        assert await other.clear_reference(cam.id, "cli:root")
        assert await component.reference_of(cam.id) is None
        await component.picture_tick()
        async with app[SESSIONS]() as session:
            (fault,) = await list_faults(session, camera_id=cam.id)
        assert fault.status == "repaired"
        assert await _alerts(app[SESSIONS]) == [("picture_check", cam.id), ("camera_repaired", cam.id)]
    # A camera that cannot be reached: the check says so and opens nothing. (Its stream's upstream
    # may linger until its stall timeout; a snapshot is never of a picture older than
    # SNAPSHOT_FRESH_S, so once that has passed there is none.)
    await asyncio.sleep(SNAPSHOT_FRESH_S)
    await component.check_camera(cam)
    assert component.checks[cam.id].error.startswith("no snapshot")


async def test_the_loops_run_both_ticks_on_their_own_intervals(aiohttp_client, settings):
    app = create_app(settings.with_overrides(**{"health.check_interval_s": 0.1, "health.picture_interval_s": 0.5,
                                                "health.offline_after_s": 1}), record=False)
    await aiohttp_client(app)
    async with transaction(app[SESSIONS]) as session:
        cam = Camera(name="Gone", main_url="rtsp://127.0.0.1:1/main", state="offline", state_since_us=now_us() - 5_000_000)
        session.add(cam)
    loops = health_loop_ctx(app)
    await loops.__anext__()
    try:
        async def faulted() -> bool:
            async with app[SESSIONS]() as session:
                return bool(await list_faults(session, camera_id=cam.id))

        assert await wait_for(faulted, 10)  # the offline loop
        assert await wait_for(lambda: _checked(app, cam.id), 30)  # the picture loop, after 0.5 s
        assert app[CAMERA_HEALTH].checks[cam.id].error.startswith("no snapshot")
    finally:
        with pytest.raises(StopAsyncIteration):
            await loops.__anext__()


async def _checked(app, cam_id: int) -> bool:
    return cam_id in app[CAMERA_HEALTH].checks
