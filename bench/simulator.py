"""Benchmark of the simulated cameras: what serving N cameras costs, and how fast they start.

    .venv/bin/python -m bench.simulator [--sizes 8,32,100] [--seconds 30]

For each size N: start N pre-encoded cameras, attach one client per camera to the main stream
(ffmpeg reading the stream and discarding it, as a recorder would), wait for them to settle, then
measure the RTSP server process alone over the window: CPU (% of one core, /proc utime+stime)
and memory (RSS and PSS, /proc/PID/smaps_rollup). The baseline, measured in the same run, is ONE
live-encoded camera (1280x720 x264 ultrafast) with one client: the ratio says how many live
cameras N pre-encoded ones cost. Start-up: cold (empty clip cache, 8 cameras: clips encoded)
and warm (cached clips) for every size. Bounded: about (settle + seconds) per size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from simulator import Simulation

CLK_TCK = os.sysconf("SC_CLK_TCK")
SETTLE_S = 5.0
CONNECT_TIMEOUT_S = 90.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def memory_mib(pid: int) -> tuple[float, float]:
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key == "Rss":
            rss = int(rest.split()[0])
        elif key == "Pss":
            pss = int(rest.split()[0])
    return rss / 1024, pss / 1024


async def attach_clients(sim: Simulation) -> list[asyncio.subprocess.Process]:
    clients = []
    for cam in sim.cameras:
        url = cam.main_url.replace("rtsp://", f"rtsp://{cam.username}:{cam.password}@", 1)
        clients.append(await asyncio.create_subprocess_exec(
            "ffmpeg", "-v", "error", "-nostdin", "-rtsp_transport", "tcp", "-i", url,
            "-map", "0:v", "-c", "copy", "-f", "null", "-",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        ))
    return clients


async def stop_clients(clients: list[asyncio.subprocess.Process]) -> int:
    """Stop the clients; returns how many had died early (a failed stream)."""
    died = sum(1 for c in clients if c.returncode is not None)
    for c in clients:
        if c.returncode is None:
            c.kill()
    await asyncio.gather(*(c.wait() for c in clients))
    return died


async def measure(work: Path, seconds: float, **counts: int) -> dict[str, float]:
    async with Simulation(work, **counts) as sim:
        pid = sim.server_pid
        assert pid is not None
        clients = await attach_clients(sim)
        try:
            deadline = time.monotonic() + CONNECT_TIMEOUT_S
            while True:  # every client connected and streaming, then settle
                connected = sum(s["clients"] for s in await sim.status())
                if connected >= len(sim.cameras) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            await asyncio.sleep(SETTLE_S)
            frames0 = (await sim.server_status())["clip_frames"]
            before, t0, machine0 = cpu_s(pid), time.monotonic(), machine_busy()
            samples = []
            end = t0 + seconds
            while time.monotonic() < end:
                await asyncio.sleep(min(2.0, max(0.0, end - time.monotonic())))
                samples.append(memory_mib(pid))
            window_s = time.monotonic() - t0
            cpu = (cpu_s(pid) - before) / window_s * 100
            machine1 = machine_busy()
            busy = (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1]) * 100
            frames = (await sim.server_status())["clip_frames"] - frames0
        finally:
            died = await stop_clients(clients)
        rss = max(s[0] for s in samples)
        pss = max(s[1] for s in samples)
        expected = counts.get("cameras", 0) * 25 * window_s
        return {"cpu": cpu, "rss": rss, "pss": pss, "connected": connected, "died": died,
                "startup": sim.startup_s, "busy": busy, "realtime": frames / expected if expected else float("nan")}


async def startup(work: Path, cache_dir: Path | None, cameras: int) -> float:
    sim = Simulation(work, cameras=cameras, cache_dir=cache_dir)
    t0 = time.monotonic()
    await sim.start()
    elapsed = time.monotonic() - t0
    await sim.stop()
    return elapsed


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="8,32,100", help="camera counts (default 8,32,100)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window per size (default 30)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold start (it encodes clips)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        work = Path(tmp)
        if not args.no_cold:
            cold = await startup(work / "cold", work / "empty-cache", 8)
            print(f"start-up, cold (8 cameras, clips encoded into an empty cache): {cold:.2f} s", flush=True)
        for n in sizes:  # encode whatever the shared cache lacks, outside the timings
            await Simulation(work / "prep", cameras=n).prepare()
        for n in sizes:
            warm = await startup(work / f"warm{n}", None, n)
            print(f"start-up, warm ({n} cameras): {warm:.2f} s", flush=True)

        base = await measure(work / "base", args.seconds, cameras=0, live=1)
        print(f"baseline: 1 live-encoded 720p camera, 1 client: {base['cpu']:.1f}% CPU, "
              f"RSS {base['rss']:.0f} MiB, PSS {base['pss']:.0f} MiB", flush=True)
        for n in sizes:
            r = await measure(work / f"n{n}", args.seconds, cameras=n)
            print(
                f"{n:3d} pre-encoded 1080p cameras, 1 client each ({r['connected']} connected, "
                f"{r['died']} dropped, frames sent at {r['realtime']:.0%} of real time): server {r['cpu']:.1f}% CPU ({r['cpu'] / n:.2f}% per camera), "
                f"RSS {r['rss']:.0f} MiB, PSS {r['pss']:.0f} MiB ({r['pss'] / n:.2f} MiB per camera); "
                f"CPU = {r['cpu'] / base['cpu']:.2f}x one live camera; whole machine {r['busy']:.0f}% busy "
                f"(clients and everything else included)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
