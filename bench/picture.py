"""Picture checks: CPU per camera per hour at one check every five minutes.

    .venv/bin/python -m bench.picture [--cameras 4] [--rounds 5] [--interval-s 300]

Each check is what controlroom.camera_health does for one camera: open the camera's sub stream
the way the live view does (a LiveHub upstream: ffmpeg over RTSP, cold, since no one else is
watching it), wait for a keyframe, decode it to JPEG (controlroom.api.live.snapshot_jpeg), let
the upstream go, and judge the picture (cameras.picture.check, against a reference view). CPU
is this process's (the checks, the event loop) plus its ffmpeg children's, from getrusage
(children are counted once reaped: the bench waits until every upstream has ended). The
simulator's RTSP server (the camera) is a separate process and not counted.

Baselines measured in the same run, on the same cameras:
- **decode only**: decoding one keyframe to JPEG, the least any snapshot costs (the same
  ffmpeg command, fed the fragment the check received);
- **analysis only**: cameras.picture.check on the JPEG, in process.

The figure: CPU seconds per camera per hour = CPU per check x (3600 / interval), and the share
of one core that is for that many cameras. Also shown at the main stream (1080p) for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cameras import children, picture
from cameras.live import LiveHub, Source
from controlroom.api.live import snapshot_jpeg
from simulator import Simulation
from storage.inventory import credentialed_url


def cpu_s() -> float:
    """CPU seconds of this process and its reaped children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


async def settle(hub: LiveHub, timeout_s: float = 15) -> None:
    """Wait until every upstream has ended (and its ffmpeg been reaped)."""
    deadline = time.monotonic() + timeout_s
    while hub.upstreams and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)


async def decode_only(init: bytes, fragment: bytes) -> bytes:
    proc = await children.spawn(
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "mp4", "-i", "pipe:0",
        "-frames:v", "1", "-q:v", "3", "-f", "image2", "-c:v", "mjpeg", "pipe:1",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(init + fragment), 10)
    finally:
        await children.end(proc)
    return out


async def run(cameras: int, rounds: int, interval_s: float, stream: str) -> dict[str, float]:
    hub = LiveHub(grace_s=0.0)
    refs: dict[str, picture.Reference] = {}
    frames: dict[str, tuple[bytes, bytes, bytes]] = {}
    check_cpu: list[float] = []
    wall: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with Simulation(Path(tmp) / "sim", cameras=cameras) as sim:
                for rnd in range(rounds + 1):  # round 0: references, and a warm-up
                    for cam in sim.cameras:
                        url = cam.sub_url if stream == "sub" else cam.main_url

                        async def source(url=url, cam=cam) -> Source:
                            return Source(credentialed_url(url, cam.username, cam.password), (cam.password,))

                        await settle(hub)
                        t0, c0 = time.monotonic(), cpu_s()
                        up, viewer = await hub.join(f"{cam.name}/{stream}", source)
                        try:
                            jpeg = await snapshot_jpeg(up)
                            frag = up.keyframe_fragment()
                            init = up.init
                        finally:
                            hub.leave(up, viewer)
                        if rnd == 0:
                            refs[cam.name] = await asyncio.to_thread(picture.reference, jpeg)
                        result = await asyncio.to_thread(picture.check, jpeg, refs[cam.name])
                        await settle(hub)
                        if rnd == 0:
                            frames[cam.name] = (init, frag.data, jpeg)
                            continue
                        assert result.ok, (cam.name, result.failures)
                        check_cpu.append(cpu_s() - c0)
                        wall.append(time.monotonic() - t0)
                # Baselines on the same fragments and pictures.
                decode_cpu, analysis_cpu = [], []
                for _ in range(rounds):
                    for name, (init, frag, jpeg) in frames.items():
                        c0 = cpu_s()
                        assert await decode_only(init, frag)
                        decode_cpu.append(cpu_s() - c0)
                        c0 = cpu_s()
                        picture.check(jpeg, refs[name])
                        analysis_cpu.append(cpu_s() - c0)
    finally:
        await hub.close()
    checks_per_hour = 3600 / interval_s
    per_check = statistics.median(check_cpu)
    return {
        "per_check_s": per_check, "per_check_wall_s": statistics.median(wall),
        "decode_s": statistics.median(decode_cpu), "analysis_s": statistics.median(analysis_cpu),
        "per_camera_hour_s": per_check * checks_per_hour,
        "decode_per_camera_hour_s": statistics.median(decode_cpu) * checks_per_hour,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interval-s", type=float, default=300)
    ap.add_argument("--main", action="store_true", help="also measure on the main (1080p) stream")
    args = ap.parse_args()
    streams = ["sub", "main"] if args.main else ["sub"]
    print(f"picture checks: {args.cameras} simulated cameras x {args.rounds} rounds, "
          f"one check per camera every {args.interval_s:g} s")
    for stream in streams:
        r = asyncio.run(run(args.cameras, args.rounds, args.interval_s, stream))
        per_hour = r["per_camera_hour_s"]
        print(f"[{stream} stream] CPU per check {r['per_check_s'] * 1000:.0f} ms (wall {r['per_check_wall_s']:.2f} s): "
              f"decode only {r['decode_s'] * 1000:.0f} ms, analysis only {r['analysis_s'] * 1000:.0f} ms")
        print(f"[{stream} stream] CPU per camera per hour: {per_hour:.2f} s "
              f"({per_hour / 36:.4f}% of one core; 100 cameras: {100 * per_hour / 36:.2f}% of one core)")
        print(f"[{stream} stream] ratio to the baseline (decoding the snapshot only): "
              f"{r['per_check_s'] / r['decode_s']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
