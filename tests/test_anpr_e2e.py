"""End to end on the simulated ANPR cameras (real RTSP server, real reader, real app, real
Mosquitto): every synthetic UK vehicle passing is read exactly once with the right
registration; a hotlisted one alerts over the WebSocket and MQTT; an expired entry does not;
a journey between the two sites is found with the right travel time.

The ground truth is the simulator's pure schedule (simulator.anpr_schedule).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from pathlib import Path

import aiomqtt
import pytest

from controlroom.app import create_app
from controlroom.context import ANPR_LIVE, SESSIONS
from simulator import Simulation, anpr_schedule
from storage.anpr.hotlists import EntrySpec, add_entries, add_hotlist
from storage.anpr.reads import ReadQuery, search_reads
from storage.anpr.vrm import normalise_vrm
from storage.db import make_engine, make_sessionmaker, now_us, transaction
from storage.inventory import CameraSpec, add_camera
from storage.keys import load_or_create_keys
from storage.migrate import upgrade

S = 1_000_000
HB, WB = anpr_schedule.HORNS_BRIDGE, anpr_schedule.WEST_BARS
# Everything below the on-screen caption, across the lane (fractions of the frame). The sub
# stream (640x360) is read: its plates (150 px wide) read as well as the main stream's, 3.6 times
# faster (measured on the simulator's frames: 256 ms against 920 ms a frame at load 11).
ROI = [0.2, 0.1, 0.6, 0.9]
pytestmark = pytest.mark.slow


async def _inventory(settings, sim: Simulation) -> None:
    keys = load_or_create_keys(settings.key_file)
    engine = make_engine(settings.db_url)
    try:
        await upgrade(engine)
        async with transaction(make_sessionmaker(engine)) as s:
            for cam in sim.cameras:
                spec = {**cam.spec(), "recording": False, "extra": {"anpr_roi": ROI, "anpr_stream": "sub"}}
                await add_camera(s, CameraSpec(**spec), keys)
    finally:
        await engine.dispose()


def _plan(start_us: int) -> dict:
    """Pick, from the schedule, a journey to watch, a vehicle to hotlist, one to hotlist expired."""
    pairs = anpr_schedule.journeys(start_us + 3 * S, start_us + 120 * S, lanes=(1,))
    first, second = pairs[0]
    end_us = second.time_us + 3 * S
    seen = anpr_schedule.passes(HB, start_us, end_us, lanes=(1,)) + anpr_schedule.passes(WB, start_us, end_us, lanes=(1,))
    later = [p for p in seen if p.time_us > start_us + 10 * S and p.plate != first.plate]
    expired = later[0]
    norm = normalise_vrm
    # A wildcard entry that matches the journey's vehicle and nothing else on the road meanwhile.
    pattern = norm(first.plate)[:4] + "*"
    if any(norm(p.plate).startswith(pattern[:-1]) and p.plate != first.plate for p in seen):
        pattern = norm(first.plate)
    return {"journey": (first, second), "pattern": pattern, "expired": expired, "end_us": end_us, "seen": seen}


async def test_simulated_anpr_cameras_end_to_end(aiohttp_client, settings, login, tmp_path: Path):
    prefix = f"controlroom-test-{uuid.uuid4().hex[:8]}"
    # Two reads at once (one per camera): the machine's two cores, shared with the simulator.
    settings = settings.with_overrides(**{"mqtt.topic_prefix": prefix, "anpr.max_parallel_reads": 2})
    async with Simulation(tmp_path / "sim", cameras=0, anpr=2) as sim:
        assert {(c.site, c.lane) for c in sim.cameras} == {(HB, "1"), (WB, "1")}
        await _inventory(settings, sim)
        mqtt_messages: list[dict] = []
        mqtt_ready = asyncio.Event()

        async def mqtt_listen() -> None:
            async with aiomqtt.Client("127.0.0.1", 1883) as mq:
                await mq.subscribe(f"{prefix}/anpr/hits", qos=1)
                mqtt_ready.set()
                async for message in mq.messages:
                    mqtt_messages.append(json.loads(message.payload))

        mqtt_task = asyncio.create_task(mqtt_listen())
        await asyncio.wait_for(mqtt_ready.wait(), 10)

        client = await aiohttp_client(create_app(settings, record=False, anpr=True))
        app = client.server.app
        headers = await login(client, "operator")
        ws = await client.ws_connect("/api/v1/alerts/ws", headers=headers)
        ws_alerts: list[dict] = []

        async def ws_listen() -> None:
            async for msg in ws:
                data = json.loads(msg.data)
                if data.get("type") == "alert":
                    ws_alerts.append(data["alert"])

        ws_task = asyncio.create_task(ws_listen())
        live = app[ANPR_LIVE]
        # Reading starts when both cameras' readers have loaded and read a frame. A still frame
        # (frames_still) comes before the reader loads: counted as ready, the first vehicle
        # after it could pass while the plate model was still loading (seconds on a loaded
        # machine) and go unread. A vehicle passes each camera every 10 s.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = live.status().values()
            if len(stats) == 2 and all(st.frames_read > 0 for st in stats):
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail(f"the live readers did not start: {live.status()}")
        ready_us = now_us()
        plan = _plan(ready_us)
        first, second = plan["journey"]
        async with transaction(app[SESSIONS]) as s:
            hl = await add_hotlist(s, "Stolen vehicles", source="PNC")
            await add_entries(s, hl.id, [
                EntrySpec(plan["pattern"], "stolen", "PNC", 1, now_us() + 86_400 * S),
                # Expires before its vehicle passes: must never alert.
                EntrySpec(plan["expired"].plate, "was of interest", "PNC", 2, plan["expired"].time_us - 4 * S),
            ])
        # Vehicles passing from the start to the end of the plan must each be read once. On a
        # busy machine reads lag behind the stream: wait (a bounded time) for the last ones.
        end_us = plan["end_us"]
        expected = [p for p in plan["seen"] if ready_us + 1 * S <= p.time_us <= end_us]
        assert len(expected) >= 4

        def near(p, reads):
            return [r for r in reads if r.site_name == p.site and abs(r.read_us - p.time_us) <= 1.5 * S]

        while True:
            await live.drain()
            async with app[SESSIONS]() as s:
                reads = await search_reads(s, ReadQuery("*", from_us=ready_us - 2 * S, limit=1000))
            if all(near(p, reads) for p in expected) or now_us() > end_us + 15 * S:
                break
            await asyncio.sleep(0.5)
        stats = {cid: st for cid, st in live.status().items()}
        for r in sorted(reads, key=lambda r: r.read_us):
            if r.read_us > end_us + 1.5 * S:
                print(f"read after the window {r.read_us / S:.1f} {r.site_name[:5]} {r.vrm}")
        reads = [r for r in reads if r.read_us <= end_us + 1.5 * S]

        # What was read against what passed, for the log of a failed run.
        for p in sorted(plan["seen"], key=lambda p: p.time_us):
            print(f"pass {p.time_us / S:.1f} {p.site[:5]} {normalise_vrm(p.plate)}")
        for r in sorted(reads, key=lambda r: r.read_us):
            print(f"read {r.read_us / S:.1f} {r.site_name[:5]} {r.vrm} {r.confidence:.2f} frames={r.frames}")
        for cid, st in stats.items():
            print(f"camera {cid}: {st}")
        unmatched = list(reads)
        # Never read twice, never a wrong registration; and every vehicle read, unless the
        # machine is overloaded (other jobs on the 2 cores starve the reader of CPU and whole
        # passes go unread: seen at load 10-17, one vehicle in 10-19 missed): then 90%.
        missed = []
        for p in expected:
            matches = near(p, reads)
            assert [r.vrm for r in matches] in ([normalise_vrm(p.plate)], []), (p, [r.vrm for r in matches])
            if matches:
                unmatched.remove(matches[0])
            else:
                missed.append(p)
        load = os.getloadavg()[0]
        busy = {cid: round(st.read_ms_total / max(1, st.frames_read)) for cid, st in stats.items()}
        allowed = 0 if load <= 2 * (os.cpu_count() or 2) else len(expected) // 10
        assert len(missed) <= allowed, (
            f"not read: {[(p.plate, p.site, round(p.time_us / S, 1)) for p in missed]} of {len(expected)}; "
            f"load average {load:.1f}, ms per read by camera {busy} (see the printed log)")
        # Anything else read must be a vehicle only partly inside the watched time window.
        for r in unmatched:
            around = anpr_schedule.passes(r.site_name, r.read_us - 3 * S, r.read_us + 3 * S, lanes=(1,))
            edge = [p for p in around if normalise_vrm(p.plate) == r.vrm]
            assert edge and not (ready_us + 1 * S <= edge[0].time_us <= end_us), (r.vrm, r.read_us)

        # The hotlisted vehicle alerted at both sites, on the WebSocket and on MQTT, promptly.
        plate = normalise_vrm(first.plate)
        hits_ws = [a for a in ws_alerts if a["kind"] == "anpr_hit"]
        assert sorted(a["data"]["site"] for a in hits_ws if a["data"]["vrm"] == plate) == [HB, WB], ws_alerts
        for _ in range(20):
            if len(mqtt_messages) >= 2:
                break
            await asyncio.sleep(0.1)
        assert sorted(m["data"]["site"] for m in mqtt_messages if m["data"]["vrm"] == plate) == [HB, WB]
        for a in hits_ws:
            # The goal (1 s) is measured by bench.anpr_live; this bound holds on a busy machine.
            assert a["at_us"] - a["data"]["frame_us"] < 3 * S, a
        # The expired entry's vehicle was read, and did not alert.
        expired = normalise_vrm(plan["expired"].plate)
        assert expired not in {a["data"]["vrm"] for a in hits_ws + mqtt_messages}
        if ready_us + S <= plan["expired"].time_us <= end_us:
            assert expired in {r.vrm for r in reads}

        # The journey between the sites, with its travel time (the schedule says 40 s).
        r = await client.get("/api/v1/anpr/journeys", headers=headers, params={
            "from_site": HB, "to_site": WB, "within_s": "900", "reason": "test", "reference": "T-1"})
        journeys = {j["vrm"]: j for j in (await r.json())["journeys"]}
        assert plate in journeys, journeys
        expected_s = (second.time_us - first.time_us) / S
        assert abs(journeys[plate]["travel_s"] - expected_s) <= 1.5, (journeys[plate], expected_s)

        for task in (ws_task, mqtt_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ws.close()
