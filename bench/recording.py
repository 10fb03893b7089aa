"""Recording cost: the service recording N simulated 1080p cameras, against bare ffmpeg.

For each N (default 8, 32 and 100) the simulator serves N pre-encoded 1080p ~4 Mb/s cameras
on loopback; then for `--seconds` (default 120) the service records them, then the same number
of bare `ffmpeg -c copy -f segment` processes record the same streams. Printed per camera: CPU
(% of one core, from /proc utime+stime of the process tree) and proportional memory (PSS,
/proc/*/smaps_rollup), the ratio service / bare ffmpeg (goal <= 1.25), and whether any
segment was lost (catalogue continuity: no hole between consecutive segments).

    .venv/bin/python -m bench.recording [--counts 8,32,100] [--seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cameras.simulator import Simulation
from controlroom.settings import load_settings
from storage import inventory
from storage.catalogue import timeline
from storage.db import make_engine, make_sessionmaker, now_us, transaction
from storage.inventory import credentialed_url
from storage.keys import load_or_create_keys
from storage.migrate import upgrade

TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return out


def cpu_s(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / TICK


def pss_mib(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


async def sample(pids_fn, seconds: float) -> tuple[float, float]:
    """(CPU % of one core over the window, mean PSS MiB) of the processes pids_fn() names."""
    await asyncio.sleep(8)  # connect and settle
    start_cpu, start = cpu_s(pids_fn()), time.monotonic()
    pss = []
    while time.monotonic() - start < seconds:
        await asyncio.sleep(5)
        pss.append(pss_mib(pids_fn()))
    used = cpu_s(pids_fn()) - start_cpu
    return 100 * used / (time.monotonic() - start), sum(pss) / len(pss)


async def run_service(sim: Simulation, n: int, seconds: float, work: Path) -> dict:
    data = work / "data"
    data.mkdir()
    settings = load_settings(data, environ={})
    engine = make_engine(settings.db_url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    keys = load_or_create_keys(settings.key_file)
    async with transaction(sessions) as s:
        for spec in sim.inventory()[:n]:
            await inventory.add_camera(s, inventory.CameraSpec(**spec), keys)
    proc = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "--data-dir", str(data), "serve", "--port", "0"],
                            stdout=subprocess.DEVNULL, stderr=open(work / "serve.log", "wb"))
    began = now_us()
    try:
        cpu, pss = await sample(lambda: tree(proc.pid), seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    lost = 0
    segments = 0
    async with sessions() as s:
        for cam_id in range(1, n + 1):
            tl = await timeline(s, cam_id, began, now_us())
            segments += len(tl.segments)
            for a, b in zip(tl.segments, tl.segments[1:], strict=False):
                if b.start_us - a.end_us > 1_500_000:
                    lost += 1
    await engine.dispose()
    return {"cpu": cpu, "pss": pss, "segments": segments, "holes": lost}


async def run_bare(sim: Simulation, n: int, seconds: float, work: Path) -> dict:
    procs = []
    for i, cam in enumerate(sim.cameras[:n]):
        out = work / f"bare{i}"
        out.mkdir()
        procs.append(subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
             "-i", credentialed_url(cam.main_url, cam.username, cam.password), "-map", "0:v", "-c", "copy",
             "-f", "segment", "-segment_time", "30", "-segment_format", "matroska", "-reset_timestamps", "1",
             str(out / "%05d.mkv")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        cpu, pss = await sample(lambda: [p.pid for p in procs], seconds)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait(30)
    return {"cpu": cpu, "pss": pss}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="8,32,100")
    ap.add_argument("--seconds", type=float, default=120)
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/var/tmp")) as tmp:
        tmp_path = Path(tmp)
        async with Simulation(Path("data/bench-sim"), cameras=max(counts)) as sim:
            for n in counts:
                work = tmp_path / f"n{n}"
                (work / "svc").mkdir(parents=True)
                (work / "bare").mkdir()
                svc = await run_service(sim, n, args.seconds, work / "svc")
                shutil.rmtree(work / "svc" / "data" / "recordings", ignore_errors=True)
                bare = await run_bare(sim, n, args.seconds, work / "bare")
                shutil.rmtree(work, ignore_errors=True)
                print(f"{n:3d} cameras x {args.seconds:.0f} s: service {svc['cpu'] / n:.2f}% CPU and {svc['pss'] / n:.1f} MiB PSS per camera; "
                      f"bare ffmpeg {bare['cpu'] / n:.2f}% and {bare['pss'] / n:.1f} MiB; "
                      f"ratio CPU {svc['cpu'] / max(bare['cpu'], 1e-9):.2f}x, PSS {svc['pss'] / bare['pss']:.2f}x (goal <= 1.25x); "
                      f"{svc['segments']} segments, {svc['holes']} holes", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
