"""The recorders' health judge without ffmpeg: a host clock step (through an injected wall clock,
never the real host clock) and "still running is not healthy"."""

from __future__ import annotations

import time
from pathlib import Path

from cameras.recorder import HEALTH_SLACK_S, CameraRecorder, RecorderCamera, Supervisor
from storage.alerts import AlertHub
from storage.keys import load_or_create_keys
from storage.models import CameraState

SEGMENT_S = 4


def recorder(sessions, tmp_path: Path) -> CameraRecorder:
    return CameraRecorder(RecorderCamera(1, "Gate", "rtsp://127.0.0.1:9/x"), sessions, tmp_path, segment_s=SEGMENT_S,
                          stall_timeout_s=20, backoff_initial_s=1, backoff_max_s=5)


async def test_a_host_clock_step_is_reported_and_restarts_the_offset_estimate(sessions, tmp_path, caplog) -> None:
    wall = [1_800_000_000.0]
    hub = AlertHub()
    alerts = hub.subscribe()
    sup = Supervisor(sessions, load_or_create_keys(tmp_path / "key"), tmp_path / "rec", segment_s=SEGMENT_S,
                     stall_timeout_s=20, backoff_initial_s=1, backoff_max_s=5, alerts=hub,
                     wall_clock=lambda: wall[0] + time.monotonic())
    rec = recorder(sessions, tmp_path)
    rec._offsets_us.extend([5_000, 6_000])
    sup.recorders[1] = rec
    await sup.check_health()
    await sup.check_health()
    assert sup.clock_steps == 0 and alerts.empty()  # a clock that runs is not a step
    wall[0] += 3600  # NTP corrects a clock an hour slow
    await sup.check_health()
    assert sup.clock_steps == 1
    alert = alerts.get_nowait()
    assert alert["kind"] == "clock_step" and abs(alert["data"]["step_s"] - 3600) < 1
    assert not rec._offsets_us  # the next segments follow the new clock at once
    assert "the wall clock stepped by +3600" in caplog.text
    if sup._alert_writer is not None:
        await sup._alert_writer  # stored as well


def test_running_is_not_healthy_progress_is(sessions, tmp_path) -> None:
    rec = recorder(sessions, tmp_path)
    now = time.monotonic()
    rec.state, rec._recording_since, rec.last_catalogued = CameraState.RECORDING, now - 60, now - 60
    assert rec.problem(now).startswith("no segment catalogued for 60 s")
    assert rec.visible_state[0] == CameraState.DEGRADED
    rec.catalogue_error = "OperationalError: database is locked"
    rec._queue.append(object())  # not a segment: does not count as waiting
    assert "(0 waiting: OperationalError: database is locked)" in rec.problem(now)
    rec.last_catalogued = now - SEGMENT_S - HEALTH_SLACK_S + 1
    assert rec.problem(now) == ""  # short segments: within one length and the slack
    rec.last_catalogued = now - SEGMENT_S - HEALTH_SLACK_S - 1
    assert rec.problem(now).startswith("no segment catalogued for 15 s")
    rec.segment_s, rec._recording_since = 30, now - 600
    rec.last_catalogued = now - 2 * 30 + 1
    assert rec.problem(now) == ""  # long segments: within two lengths
    rec.last_catalogued = now - 2 * 30 - 1
    assert rec.problem(now).startswith("no segment catalogued for 61 s")
    rec.segment_s = SEGMENT_S
    rec.state = CameraState.RECONNECTING
    rec.last_catalogued = now - 600
    assert rec.problem(now) == ""  # the camera's own state says what is wrong
    rec.disk_full = True
    assert rec.problem(now) == "recording disk is full"
