"""The plate reader in UK mode on the simulator's own vehicles, against the plain baseline.

    .venv/bin/python -m bench.anpr_sim [--vehicles N] [--keep DIR]

The simulated ANPR cameras' vehicles (the schedule of the first N passes at Horns Bridge and
West Bars from a fixed time, so every run sees the same plates) are drawn as stills by the
simulator's own renderer (``AnprRenderer.picture``, under /usr/bin/python3 like the RTSP
server), centred in the frame with the camera's name and clock burnt in, at the three sizes the
cameras serve or the live loop reads: 1920x1080, 1280x720 and 640x360. Each size is a folder of
``NAME.jpg`` + ``NAME.txt`` in the development set's format, benched by
``anpr.reader_bench.run_bench`` in UK mode: exact %, median ms per image, project and baseline
(rapidocr over the whole image) in the same run, and their ratio. Bounded: 3 x N stills each way.

This measures the reader on the plates the control room's own tests use (clean synthetic UK
plates, yellow rear and white front); ../shared/anpr-dev measures it on real photographs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from anpr.reader_bench import run_bench
from simulator import SERVER_SCRIPT, SYSTEM_PYTHON

SIZES = ((1920, 1080), (1280, 720), (640, 360))
FROM_US = 1_796_000_000_000_000  # a fixed moment: the same vehicles every run

# Runs under /usr/bin/python3 (GStreamer's and PIL's Python), as the RTSP server does.
_DRAW = """
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("sim_rtsp_server", sys.argv[1])
server = importlib.util.module_from_spec(spec)
sys.modules["sim_rtsp_server"] = server
spec.loader.exec_module(server)
out, vehicles, sizes, from_us = Path(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5])
schedule = server.anpr_schedule
span = (vehicles + 1) * schedule.SLOT_US  # each lane sees a vehicle per slot
passes = schedule.passes(schedule.HORNS_BRIDGE, from_us, from_us + span)[: vehicles // 2]
passes += schedule.passes(schedule.WEST_BARS, from_us, from_us + span)[: vehicles - len(passes)]
for w, h in sizes:
    folder = out / f"{w}x{h}"
    folder.mkdir(parents=True)
    renderers = {}  # one per camera and size: each draws its background and loads fonts once
    for i, p in enumerate(passes):
        if p.camera not in renderers:
            renderers[p.camera] = server.AnprRenderer(p.camera, w, h, 0.0)
        picture = renderers[p.camera].picture([(p.plate, p.colour, tuple(p.vehicle_colour), 0.0)], p.time_us / 1e6)
        name = f"sim{i:04d}"
        picture.save(folder / f"{name}.jpg", quality=95)
        (folder / f"{name}.txt").write_text(f"{name}.jpg\\t0\\t0\\t{w}\\t{h}\\t{p.plate.replace(' ', '')}\\n")
"""


def draw_stills(out: Path, vehicles: int) -> list[Path]:
    subprocess.run([SYSTEM_PYTHON, "-c", _DRAW, str(SERVER_SCRIPT), str(out), str(vehicles),
                    json.dumps(SIZES), str(FROM_US)], check=True)
    return [out / f"{w}x{h}" for w, h in SIZES]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vehicles", type=int, default=120, help="stills per size (default 120)")
    ap.add_argument("--keep", type=Path, help="draw the stills into DIR (must not exist) and keep them")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="controlroom-anpr-sim-") as tmp:
        out = args.keep or Path(tmp) / "stills"
        folders = draw_stills(out, args.vehicles)
        print(f"bench.anpr_sim: {args.vehicles} simulator vehicles per size, UK mode, stills in {out}", flush=True)
        print(f"{'size':<10} {'project exact %':>16} {'baseline exact %':>17} {'project ms':>11} {'baseline ms':>12} {'time ratio':>11}")
        for folder in folders:
            project, baseline = run_bench(folder, mode="uk", frames_1080p=0)["systems"]
            ratio = project["median_ms"] / baseline["median_ms"]
            print(f"{folder.name:<10} {project['exact_pct']:>16} {baseline['exact_pct']:>17} "
                  f"{project['median_ms']:>11} {baseline['median_ms']:>12} {ratio:>10.2f}x", flush=True)
            for miss in project["misses"]:
                print(f"  project miss: want {miss['want']}, got {miss['got'] or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
