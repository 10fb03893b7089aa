"""Discover and adopt 100 simulated ONVIF cameras.

The cameras' ONVIF side (one SOAP server per camera, its own port, WS-Discovery responder) runs
in its own process, as real cameras are separate devices; their RTSP side is not started (this
measures discovery and adoption, not streaming). Adoption is the whole of it: clock offset
(sampled to better than a second), device information, scopes, profiles, stream and snapshot
URIs, PTZ presets, then the inventory row (SQLite) with its audit entry.

Figures: discovery time; adoption wall time of all cameras with bounded concurrency; the peak
number of requests in flight at the cameras (all together, and at any one camera: goal 1); the
baseline is adopting cameras one at a time (a sample of 5, scaled to all). Goal: all adopted
in under 30 s.

    .venv/bin/python -m bench.onvif [--cameras 100] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from cameras.onvif import adopt, discovery
from storage import audit
from storage.db import make_engine, make_sessionmaker, transaction
from storage.keys import load_or_create_keys
from storage.migrate import upgrade

REPO = Path(__file__).resolve().parent.parent
TIME_LIMIT_S = 300
# Each simulated camera takes this long to answer a SOAP request, as a camera's small CPU does
# (real ones take 20 to 200 ms); it also makes overlapping requests visible at the cameras.
CAMERA_DELAY_MS = 20


async def start_cameras(n: int) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator.onvif_standalone", "--cameras", str(n), "--host", "127.0.0.1",
        "--port", "0", "--duration-s", str(TIME_LIMIT_S), "--stats", "--prefix", "Bench Cam ",
        "--delay-ms", str(CAMERA_DELAY_MS),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().split()
    assert line[:2] == ["ready", str(n)], line
    return proc, int(line[2])


async def stop_cameras(proc: asyncio.subprocess.Process) -> dict:
    proc.terminate()
    assert proc.stdout is not None
    out = await asyncio.wait_for(proc.stdout.read(), 30)
    await proc.wait()
    return json.loads(out.decode().strip().splitlines()[-1])


async def adopt_all(devices: list[discovery.Device], sessions, keys, concurrency: int) -> tuple[float, int, int]:
    """Adopt every device; returns wall time, peak concurrent adoptions, failures."""
    limit = asyncio.Semaphore(concurrency)
    active = peak = failures = 0

    async def one(device: discovery.Device) -> None:
        nonlocal active, peak, failures
        async with limit:
            active += 1
            peak = max(peak, active)
            try:
                facts = await adopt.inspect(device.xaddrs[0], "admin", "admin", timeout_s=20)
                async with transaction(sessions) as session:
                    cam = await adopt.save(session, keys, facts, "admin", "admin", name=device.name or None)
                    await audit.append(session, "bench", "camera.adopt", f"camera:{cam.id}", xaddr=device.xaddrs[0])
            except Exception as exc:  # noqa: BLE001 - counted and reported
                failures += 1
                print(f"  failed {device.xaddrs[0]}: {exc}", file=sys.stderr)
            finally:
                active -= 1

    started = time.perf_counter()
    await asyncio.gather(*(one(d) for d in devices))
    return time.perf_counter() - started, peak, failures


async def main(cameras: int, concurrency: int, sample: int) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-onvif-"))
    keys = load_or_create_keys(work / "secret.key")
    proc, port = await start_cameras(cameras)
    try:
        t0 = time.perf_counter()
        devices = await discovery.discover(targets=[f"127.0.0.1:{port}"], timeout_s=1.0)
        discover_s = time.perf_counter() - t0
        # The probe waits its whole timeout by design; when did the last answer arrive?
        print(f"discovery: {len(devices)}/{cameras} cameras answered a directed probe (probe window 1.0 s)")
        assert len(devices) == cameras, "not every camera answered the probe"

        base_engine = make_engine(f"sqlite+aiosqlite:///{work / 'baseline.db'}")
        await upgrade(base_engine)
        base_s, _, base_fail = await adopt_all(devices[:sample], make_sessionmaker(base_engine), keys, 1)
        await base_engine.dispose()
        per_camera_s = base_s / sample
        print(f"baseline: {sample} cameras one at a time in {base_s:.2f} s ({per_camera_s:.3f} s each; "
              f"{per_camera_s * cameras:.1f} s for {cameras} by extrapolation), {base_fail} failed")

        engine = make_engine(f"sqlite+aiosqlite:///{work / 'bench.db'}")
        await upgrade(engine)
        wall_s, peak, failures = await adopt_all(devices, make_sessionmaker(engine), keys, concurrency)
        await engine.dispose()
    finally:
        stats = await stop_cameras(proc)
    print(f"adoption: {cameras - failures}/{cameras} cameras adopted in {wall_s:.2f} s "
          f"(concurrency limit {concurrency}, peak {peak} adoptions at once)")
    print(f"at the cameras: {stats['requests']} SOAP requests, peak {stats['peak_in_flight']} in flight "
          f"across all cameras, peak {stats['peak_in_flight_per_camera']} in flight at any one camera")
    print(f"speed-up over one at a time: {per_camera_s * cameras / wall_s:.1f}x; "
          f"goal under 30 s: {'met' if wall_s < 30 and not failures else 'NOT met'}; "
          f"discovery {discover_s:.2f} s including its 1 s listening window")
    ok = wall_s < 30 and not failures and stats["peak_in_flight_per_camera"] <= 1
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sample", type=int, default=5, help="cameras adopted one at a time for the baseline")
    args = parser.parse_args()
    sys.exit(asyncio.run(asyncio.wait_for(main(args.cameras, args.concurrency, args.sample), TIME_LIMIT_S)))
