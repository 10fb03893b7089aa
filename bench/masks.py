"""Privacy masks: the CPU a masked camera's picture costs (decode, overlay, encode) against the
stream copy every camera without masks keeps, in the same run.

    .venv/bin/python -m bench.masks [--seconds 20] [--size 1920x1080]

A clip of ``--seconds`` of H.264 (lavfi testsrc2 at 25 fps, about 4 Mb/s, made once) is fed to
the service's own ffmpeg commands, each run to the end as fast as it goes:

- live view: ``cameras.live.upstream_args`` (stream copy to fragmented MP4) and the same with the
  camera's mask picture (``mask_png``: scale2ref + overlay, libx264 ultrafast zerolatency, at
  most 1280 wide), as a masked upstream runs for every viewer without ``unmask``;
- playback: ``controlroom.api.playback.remux_args`` without and with the mask;
- a camera that paints its masks itself (ONVIF Media2): its stream already carries them (the
  clip made again with the mask burnt in, as the camera encodes it), and the service copies it:
  live because a camera-painted set is not due on live pictures, playback because the footage
  was recorded between the camera's confirmation and its last read-back
  (``storage.masks.camera_painted``, asked here with the same function the handlers use).

CPU is the child's user+system time (``RUSAGE_CHILDREN``). Divided by the clip's length, it is
the share of a core one camera costs while someone watches it live (the camera sends in real
time); for playback it is the cost per second of footage played. Figures are in
docs/design/lawful-use.md ("Privacy masks: cost").
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from cameras.live import upstream_args
from cameras.masking import write_mask_png
from controlroom.api.playback import concat_list, remux_args
from controlroom.masking import Active
from storage import masks

POLYGONS = [[[0.05, 0.05], [0.4, 0.05], [0.4, 0.5], [0.05, 0.5]], [[0.6, 0.3], [0.95, 0.2], [0.9, 0.7], [0.65, 0.6]]]


def make_clip(path: Path, seconds: int, size: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M", "-g", "50",
                    "-pix_fmt", "yuv420p", str(path)], check=True)


def burn_in(clip: Path, mask: Path, out: Path) -> None:
    """The clip as a camera that paints the mask sends it (made once; not measured)."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(clip), "-i", str(mask), "-filter_complex",
                    "[1][0]scale2ref[m][v];[v][m]overlay", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M",
                    "-g", "50", "-pix_fmt", "yuv420p", str(out)], check=True)


def cpu_of(args: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one ffmpeg run to the end, its output thrown away."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--size", default="1920x1080")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-masks-") as tmp:
        work = Path(tmp)
        clip = work / "clip.mp4"
        make_clip(clip, args.seconds, args.size)
        mask = write_mask_png(POLYGONS, work / "mask.png")
        listing = work / "run.ffconcat"
        listing.write_text(concat_list([str(clip)]))
        painted = work / "painted.mp4"
        burn_in(clip, mask, painted)
        painted_listing = work / "painted.ffconcat"
        painted_listing.write_text(concat_list([str(painted)]))
        # The set the camera took at t=0 and read back intact at t=60 s; the footage from 10 s to
        # 10 s + the clip: the service's rule says it is painted at source (no mask picture).
        by_camera = Active(0, POLYGONS, 1, masks.CAMERA, camera_since_us=0, camera_checked_us=60_000_000)
        assert by_camera.painted_at_source(10_000_000, 10_000_000 + args.seconds * 1_000_000)
        runs = {
            "live, stream copy": upstream_args(str(clip), rtsp=False),
            "live, masked": upstream_args(str(clip), rtsp=False, mask_png=mask),
            "live, camera-painted": upstream_args(str(painted), rtsp=False),
            "playback, stream copy": remux_args(listing),
            "playback, masked": remux_args(listing, mask_png=mask),
            "playback, camera-painted": remux_args(painted_listing),
        }
        print(f"{args.seconds} s of {args.size} H.264 at 25 fps, 4 Mb/s; CPU per second of video = share of a core")
        results: dict[str, float] = {}
        for name, command in runs.items():
            cpu, wall = cpu_of(command)
            results[name] = cpu / args.seconds
            print(f"  {name:26s} CPU {cpu:6.2f} s  wall {wall:6.2f} s  = {100 * cpu / args.seconds:6.1f}% of a core")
        for kind in ("live", "playback"):
            copy, masked = results[f"{kind}, stream copy"], results[f"{kind}, masked"]
            camera = results[f"{kind}, camera-painted"]
            print(f"  {kind}: a camera masked by the service costs {masked / copy:.0f}x its stream copy "
                  f"({100 * (masked - copy):.1f} points of a core more); one that paints its own masks "
                  f"{camera / copy:.2f}x")


if __name__ == "__main__":
    main()
