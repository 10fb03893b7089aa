"""Live ANPR end to end on simulated ANPR cameras: frame to hotlist alert, and CPU per camera.

The simulator serves ANPR cameras (synthetic UK plates passing at scheduled wall-clock times);
live reading (anpr.live) reads them through OpenCV, votes across frames, stores each read with
its images, checks a hotlist holding every registration the schedule will show, and raises
the alerts. Figures:
- delay from the scheduled pass (plate mid-frame) to the alert, and from the frame that
  decided the read to the alert (goal: under 1 s at the median);
- vehicles read exactly once with the right registration, of those that passed;
- CPU per ANPR camera (this process: decode, reader, storage; the simulator's own CPU apart).
Baseline, in the same run: the same pipeline reading every sampled frame (no motion gate).

    .venv/bin/python -m bench.anpr_live [--cameras 2] [--duration-s 40] [--no-baseline]

Bounded: two phases of ``--duration-s`` each, plus start-up (about two minutes in all).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from anpr.camera_reader import LiveOptions
from anpr.live import LiveReading
from simulator import Simulation, anpr_schedule
from storage.alerts import AlertHub
from storage.anpr.hotlists import EntrySpec, add_entries, add_hotlist
from storage.anpr.reads import ReadQuery, search_reads
from storage.anpr.vrm import normalise_vrm
from storage.db import make_engine, make_sessionmaker, now_us, transaction
from storage.inventory import CameraSpec, add_camera
from storage.keys import load_or_create_keys
from storage.migrate import upgrade

S = 1_000_000
ROI = [0.2, 0.1, 0.6, 0.9]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def phase(name: str, sim: Simulation, work: Path, options: LiveOptions, duration_s: float) -> dict:
    db = work / f"{name}.db"
    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    keys = load_or_create_keys(work / "secret.key")
    async with transaction(sessions) as s:
        for cam in sim.cameras:
            await add_camera(s, CameraSpec(**{**cam.spec(), "recording": False, "extra": {"anpr_roi": ROI, "anpr_stream": "sub"}}), keys)
        # A hotlist holding every registration the simulated cameras will show meanwhile.
        hl = await add_hotlist(s, "All vehicles (benchmark)", source="bench")
        start = now_us()
        plates = {normalise_vrm(p.plate) for site in anpr_schedule.SITES
                  for p in anpr_schedule.passes(site, start, start + int((duration_s + 60) * S))}
        await add_entries(s, hl.id, [EntrySpec(v, "benchmark", "bench", 3, start + 3600 * S)
                                           for v in sorted(plates)])
    hub = AlertHub(queue_size=10_000)
    alerts = hub.subscribe()
    live = LiveReading(sessions, keys, hub, work / f"{name}-images", options)
    await live.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = live.status().values()
            if stats and all(st.frames_read + st.frames_still > 0 for st in stats):
                break
            await asyncio.sleep(0.2)
        ready_us = now_us()
        cpu0, sim0, wall0 = cpu_s(), proc_cpu_s(sim._proc.pid), time.monotonic()  # noqa: SLF001
        await asyncio.sleep(duration_s)
        cpu1, sim1, wall1 = cpu_s(), proc_cpu_s(sim._proc.pid), time.monotonic()  # noqa: SLF001
        end_us = now_us()
        await live.drain()
        stats = dict(live.status())
    finally:
        await live.stop()
    async with sessions() as s:
        reads = await search_reads(s, ReadQuery("*", from_us=ready_us - 2 * S, limit=10_000))
    await engine.dispose()

    expected = []
    for cam in sim.cameras:
        expected += [p for p in anpr_schedule.passes(cam.name, ready_us + S, end_us - 2 * S)]
    once = 0
    for p in expected:
        near = [r for r in reads if r.site_name == p.site and abs(r.read_us - p.time_us) <= 1.5 * S]
        once += [r.vrm for r in near] == [normalise_vrm(p.plate)]
    pass_time = {(normalise_vrm(p.plate), p.site): p.time_us for p in expected}
    from_pass, from_frame = [], []
    while not alerts.empty():
        a = alerts.get_nowait()
        key = (a["data"]["vrm"], a["data"]["site"])
        if key in pass_time:
            from_pass.append((a["at_us"] - pass_time[key]) / 1e3)
            from_frame.append((a["at_us"] - a["data"]["frame_us"]) / 1e3)
    wall = wall1 - wall0
    frames_read = sum(st.frames_read for st in stats.values())
    return {
        "name": name, "vehicles": len(expected), "read_once": once, "reads": len(reads), "alerts": len(from_pass),
        "delay_pass_ms": from_pass, "delay_frame_ms": from_frame,
        "cpu_per_camera_pct": 100 * (cpu1 - cpu0) / wall / len(sim.cameras),
        "simulator_cpu_pct": 100 * (sim1 - sim0) / wall,
        "frames_read": frames_read, "frames_still": sum(st.frames_still for st in stats.values()),
        "frames_dropped": sum(st.frames_dropped for st in stats.values()),
        "read_ms_mean": sum(st.read_ms_total for st in stats.values()) / max(1, frames_read),
    }


def report(r: dict) -> None:
    print(f"[{r['name']}]")
    print(f"  vehicles passed {r['vehicles']}, read exactly once and right {r['read_once']} "
          f"({100 * r['read_once'] / max(1, r['vehicles']):.0f}%), reads stored {r['reads']}, alerts {r['alerts']}")
    print(f"  alert delay from the scheduled pass: median {pct(r['delay_pass_ms'], 0.5):.0f} ms, "
          f"p90 {pct(r['delay_pass_ms'], 0.9):.0f} ms")
    print(f"  alert delay from the deciding frame: median {pct(r['delay_frame_ms'], 0.5):.0f} ms, "
          f"p90 {pct(r['delay_frame_ms'], 0.9):.0f} ms (goal: under 1000 ms at the median)")
    print(f"  CPU per ANPR camera {r['cpu_per_camera_pct']:.0f}% of a core (simulator apart: {r['simulator_cpu_pct']:.0f}%)")
    print(f"  frames read {r['frames_read']}, skipped as still {r['frames_still']}, dropped {r['frames_dropped']}, "
          f"{r['read_ms_mean']:.0f} ms per read (waiting for a reader slot included)")


async def main_async(args: argparse.Namespace) -> None:
    base = LiveOptions()
    print(f"ANPR live benchmark: {args.cameras} simulated ANPR cameras, {args.duration_s:.0f} s per phase, "
          f"{base.sample_fps} fps sampled, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-anpr-") as tmp:
        work = Path(tmp)
        async with Simulation(work / "sim", cameras=0, anpr=args.cameras) as sim:
            project = await phase("project", sim, work, base, args.duration_s)
            report(project)
            if not args.no_baseline:
                baseline = await phase("baseline: every sampled frame read", sim, work,
                                       replace(base, motion_gate=False), args.duration_s)
                report(baseline)
                ratio = baseline["cpu_per_camera_pct"] / max(0.1, project["cpu_per_camera_pct"])
                d0, d1 = pct(project["delay_frame_ms"], 0.5), pct(baseline["delay_frame_ms"], 0.5)
                print(f"ratio baseline/project: CPU per camera {ratio:.2f}x, median alert delay "
                      f"{d1 / d0 if d0 == d0 and d0 > 0 else float('nan'):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", type=int, default=2, help="simulated ANPR cameras (even: both sites)")
    parser.add_argument("--duration-s", type=float, default=40.0)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
