"""Benchmark: redacting a subject access request's footage, against plain decode + encode.

    .venv/bin/python -m bench.redaction               # 10 s of the simulator's 1080p street
    .venv/bin/python -m bench.redaction --seconds 30

Made once per run: ``seconds`` of the simulator's street (simulator.pedestrians: four people
with faces walking across 1920x1080 at 25 fps), encoded as the recorder's segments. Then, in
the same run, on the same files, CPU seconds (this process and its ffmpeg children):

- baseline: decode every frame and encode it again (ffmpeg -> BGR frames in Python -> libx264
  veryfast CRF 23): what any redaction must at least do;
- redaction: the real engine (controlroom.redaction.engine): CenterFace on every frame, the plate
  detector on every 5th, linking, and the render (obscure + encode), with the first pedestrian
  marked as the requester on one frame.

Then the figure that says whether it worked: the face detector run again on every frame of the
redacted copy, counting faces it still finds that are not the requester's (third parties
detectable after redaction: should be 0), and how often the requester's face is still found.
Prints CPU seconds per minute of 1080p footage for both and their ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from controlroom.evidence.plan import CameraWindow, SegmentRef
from controlroom.redaction import engine
from controlroom.redaction.faces import FaceDetector
from simulator import pedestrians

SEGMENT_S = 2


def cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def make_footage(folder: Path, seconds: int) -> CameraWindow:
    clip = folder / "street.h264"
    pedestrians.write_clip(pedestrians.encode_args(str(clip)), seconds)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-r", str(pedestrians.FPS), "-i", str(clip), "-c", "copy",
                    "-f", "segment", "-segment_time", str(SEGMENT_S), "-reset_timestamps", "1",
                    str(folder / "seg%03d.mkv")], check=True, timeout=600)
    clip.unlink()
    base = 10**15
    refs = [SegmentRef(i, p.name, base + i * SEGMENT_S * 10**6, base + (i + 1) * SEGMENT_S * 10**6, p.stat().st_size,
                       "", "ok", 0.0, False, "h264") for i, p in enumerate(sorted(folder.glob("seg*.mkv")))]
    return CameraWindow(camera_id=1, name="Street 01", site="", site_location="", position="", kind="fixed",
                        start_us=base, end_us=base + seconds * 10**6, camera_clock_offset_s=0.0,
                        camera_clock_checked_us=None, camera_clock_flag=False, segments=refs)


def who(frame: int, box) -> str:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return min(pedestrians.faces(frame / pedestrians.FPS),
               key=lambda nb: (nb[1][0] + nb[1][2] / 2 - cx) ** 2 + (nb[1][1] + nb[1][3] / 2 - cy) ** 2)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-redaction-"))
    cancel = threading.Event()
    try:
        print(f"making {args.seconds} s of the 1080p street ...", flush=True)
        cam = make_footage(folder, args.seconds)
        source = engine.Source(cam, folder, folder / "work")
        minutes = args.seconds / 60

        c0, t0 = cpu_s(), time.monotonic()
        enc = engine.Encoder(folder / "baseline.mp4", source.width, source.height, source.fps, "baseline")
        frames = 0
        for frame in source.frames(cancel):
            enc.write(frame)
            frames += 1
        enc.close()
        base_cpu, base_wall = cpu_s() - c0, time.monotonic() - t0

        from anpr.reader import PlateReader

        plates = PlateReader("uk")
        requester = pedestrians.PEOPLE[0].name
        c0, t0 = cpu_s(), time.monotonic()
        options = engine.Options()
        analysis = engine.analyse(source, options, cancel, lambda n, s: None, plates=plates)
        an_cpu = cpu_s() - c0
        box = dict(pedestrians.faces(10 / pedestrians.FPS))[requester]
        marks = [engine.Mark(1, "requester", 10, box, "bench")]
        out = folder / "redacted.mp4"
        engine.render(source, analysis, marks, out, title="bench", actor="bench", options=options, cancel=cancel,
                      progress=lambda n, s: None)
        red_cpu, red_wall = cpu_s() - c0, time.monotonic() - t0

        detector = FaceDetector()
        check = engine.Source.__new__(engine.Source)
        check.width, check.height, check.fps = engine.probe(out)
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"],
                             capture_output=True, check=True, timeout=600).stdout
        import numpy as np

        size = check.width * check.height * 3
        third = seen = visible = before = 0
        street = pedestrians.Street()
        for n in range(len(raw) // size):
            frame = np.frombuffer(raw[n * size:(n + 1) * size], np.uint8).reshape(check.height, check.width, 3)
            found = [f.box for f in detector.detect(frame)]
            third += sum(who(n, f) != requester for f in found)
            mine = dict(pedestrians.faces(n / pedestrians.FPS))[requester]
            if mine[0] >= 0 and mine[0] + mine[2] <= pedestrians.SIZE[0]:
                visible += 1
                seen += any(who(n, f) == requester for f in found)
            if n % 25 == 0:  # before redaction, for scale: third parties the detector finds in the original
                before += sum(who(n, f.box) != requester for f in detector.detect(street.frame(n / pedestrians.FPS)))

        print(f"\nfootage: {frames} frames of 1920x1080 at 25 fps ({args.seconds} s); load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"baseline decode + encode : {base_cpu:7.1f} CPU s ({base_cpu / minutes:7.0f} CPU s per minute of "
              f"footage), wall {base_wall:.1f} s")
        print(f"redaction (all)          : {red_cpu:7.1f} CPU s ({red_cpu / minutes:7.0f} CPU s per minute of "
              f"footage), wall {red_wall:.1f} s; of which analysis {an_cpu:.1f} CPU s")
        print(f"ratio redaction / baseline: {red_cpu / base_cpu:.1f}x")
        print(f"third-party faces detectable after redaction: {third} (in {frames} frames); before, on one frame "
              f"a second: {before}")
        print(f"requester's face still found: {seen} of {visible} frames where it is in the picture")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
