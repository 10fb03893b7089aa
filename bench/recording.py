"""Recording cost: the service recording N simulated 1080p cameras, against bare ffmpeg.

For each N (default 8, 32 and 100) the simulator serves N pre-encoded 1080p ~4 Mb/s cameras
on loopback; then for `--seconds` (default 120) the service records them, then the same number
of bare `ffmpeg -c copy -f segment` processes record the same streams. Printed per camera: CPU
(% of one core, from /proc utime+stime of the process tree) and proportional memory (PSS,
/proc/*/smaps_rollup), the ratio service / bare ffmpeg (goal <= 1.25), and whether any
footage was lost:
- media seconds recorded per wall second, each camera from its first footage to the stop: the
  service's from the catalogue, bare ffmpeg's by ffprobe of its files (from the moment its
  first file appeared, which is after ffmpeg's ~1 s of stream probing, so its figure reads
  about 1 s per run high). 1.00 means every second of footage the camera sent was kept. The
  simulator on a loaded 2-core machine may deliver less than real time: bare ffmpeg then gets
  the same less, and the ratio between the two says what the service lost;
- holes over 1.5 s between consecutive segments, split into those a catalogued gap explains
  (the recorder saw an outage and reconnected) and clock steps (contiguous media whose wall
  time estimate moved, see docs/design/recording-store.md: no footage missing).

`--live-output` compares instead the service recording the same cameras with and without the
live output its recorders' ffmpeg writes for live view of the main stream (`live.from_recorder`,
docs/design/live-from-recorder.md), nobody watching: CPU of the whole tree and of the service's
own process (which drains the pipes), per camera, and the ratio on / off.

    .venv/bin/python -m bench.recording [--counts 8,32,100] [--seconds 120] [--live-output]
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

from controlroom.settings import load_settings
from simulator import Simulation
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


async def sample(pids_fn, seconds: float, own: int | None = None) -> tuple[float, float, float]:
    """(CPU % of one core over the window, mean PSS MiB) of the processes pids_fn() names, and
    the CPU % of the process ``own`` alone (its threads, not its children)."""
    await asyncio.sleep(8)  # connect and settle
    start_cpu, start_own, start = cpu_s(pids_fn()), cpu_s([own] if own else []), time.monotonic()
    pss = []
    while time.monotonic() - start < seconds:
        await asyncio.sleep(5)
        pss.append(pss_mib(pids_fn()))
    used, used_own, took = cpu_s(pids_fn()) - start_cpu, cpu_s([own] if own else []) - start_own, time.monotonic() - start
    return 100 * used / took, sum(pss) / len(pss), 100 * used_own / took


async def run_service(sim: Simulation, n: int, seconds: float, work: Path, live_output: bool = True) -> dict:
    data = work / "data"
    data.mkdir()
    (data / "settings.toml").write_text(f"[live]\nfrom_recorder = {str(live_output).lower()}\n")
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
        cpu, pss, own = await sample(lambda: tree(proc.pid), seconds, proc.pid)
    finally:
        ended = now_us()  # footage stops here; finalising the open segments takes a while after
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    gap_holes = clock_holes = segments = 0
    rates = []
    async with sessions() as s:
        for cam_id in range(1, n + 1):
            tl = await timeline(s, cam_id, began, ended)
            segments += len(tl.segments)
            if tl.segments:
                media_us = sum(seg.end_us - seg.start_us for seg in tl.segments)
                rates.append(media_us / (ended - tl.segments[0].start_us))
            for a, b in zip(tl.segments, tl.segments[1:], strict=False):
                if b.start_us - a.end_us > 1_500_000:
                    explained = any(g.start_us <= b.start_us and (g.end_us is None or g.end_us >= a.end_us) for g in tl.gaps)
                    gap_holes += explained
                    clock_holes += not explained
    await engine.dispose()
    return {"cpu": cpu, "pss": pss, "own": own, "segments": segments, "gap_holes": gap_holes, "clock_holes": clock_holes,
            "media_per_s": sum(rates) / n}


async def media_seconds(files: list[Path]) -> float:
    """Sum of the files' durations by ffprobe (a few at a time)."""
    limit = asyncio.Semaphore(4)

    async def one(f: Path) -> float:
        async with limit:
            proc = await asyncio.create_subprocess_exec(
                "ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(f),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await proc.communicate()
            try:
                return float(out.decode().strip() or 0)
            except ValueError:
                return 0.0

    return sum(await asyncio.gather(*(one(f) for f in files)))


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
    first_file: dict[int, float] = {}  # camera -> when its first file appeared (its first footage)

    async def watch() -> None:
        while len(first_file) < n:
            for i in range(n):
                if i not in first_file and (work / f"bare{i}" / "00000.mkv").exists():
                    first_file[i] = time.monotonic()
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    try:
        cpu, pss, _ = await sample(lambda: [p.pid for p in procs], seconds)
    finally:
        watcher.cancel()
        stopped = time.monotonic()
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait(30)
    rates = [await media_seconds(sorted((work / f"bare{i}").glob("*.mkv"))) / (stopped - first_file[i])
             for i in first_file]
    return {"cpu": cpu, "pss": pss, "media_per_s": sum(rates) / n}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="8,32,100")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--live-output", action="store_true", help="the service with and without its live output")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/var/tmp")) as tmp:
        tmp_path = Path(tmp)
        async with Simulation(Path("data/bench-sim"), cameras=max(counts)) as sim:
            for n in counts:
                work = tmp_path / f"n{n}"
                (work / "svc").mkdir(parents=True)
                (work / "bare").mkdir()
                if args.live_output:
                    await compare_live_output(sim, n, args.seconds, work)
                    continue
                svc = await run_service(sim, n, args.seconds, work / "svc")
                shutil.rmtree(work / "svc" / "data" / "recordings", ignore_errors=True)
                bare = await run_bare(sim, n, args.seconds, work / "bare")
                shutil.rmtree(work, ignore_errors=True)
                print(f"{n:3d} cameras x {args.seconds:.0f} s: service {svc['cpu'] / n:.2f}% CPU and {svc['pss'] / n:.1f} MiB PSS per camera; "
                      f"bare ffmpeg {bare['cpu'] / n:.2f}% and {bare['pss'] / n:.1f} MiB; "
                      f"ratio CPU {svc['cpu'] / max(bare['cpu'], 1e-9):.2f}x, PSS {svc['pss'] / bare['pss']:.2f}x (goal <= 1.25x); "
                      f"{svc['segments']} segments; media recorded per second of run: service {svc['media_per_s']:.3f}, "
                      f"bare {bare['media_per_s']:.3f}, ratio {svc['media_per_s'] / max(bare['media_per_s'], 1e-9):.3f} "
                      f"(bare reads ~1 s per run high); holes over 1.5 s: {svc['gap_holes']} with a catalogued gap, "
                      f"{svc['clock_holes']} clock steps", flush=True)


async def compare_live_output(sim: Simulation, n: int, seconds: float, work: Path) -> None:
    """The service with its recorders' live output and without, nobody watching (same cameras)."""
    (work / "off").mkdir()
    off = await run_service(sim, n, seconds, work / "off", live_output=False)
    on = await run_service(sim, n, seconds, work / "svc", live_output=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"{n:3d} cameras x {seconds:.0f} s, nobody watching: with the live output {on['cpu'] / n:.2f}% CPU per camera "
          f"(service process {on['own'] / n:.2f}%, ffmpeg {(on['cpu'] - on['own']) / n:.2f}%), {on['pss'] / n:.1f} MiB PSS; "
          f"without {off['cpu'] / n:.2f}% (service {off['own'] / n:.2f}%, ffmpeg {(off['cpu'] - off['own']) / n:.2f}%), "
          f"{off['pss'] / n:.1f} MiB; ratio CPU {on['cpu'] / max(off['cpu'], 1e-9):.2f}x, PSS {on['pss'] / off['pss']:.2f}x; "
          f"segments {on['segments']} / {off['segments']}, media recorded per second of run {on['media_per_s']:.3f} / "
          f"{off['media_per_s']:.3f}, holes {on['gap_holes'] + on['clock_holes']} / "
          f"{off['gap_holes'] + off['clock_holes']}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
