"""Variants of the plate reader's Tuning compared in one process, interleaved image by image.

    PYTHONPATH=. nice .venv/bin/python tools/anpr_variants.py \
        '{"before": {}, "stage0": {"plate_regions": 5}}' [--frames 30] [--half tune] [--photos 0]

Each variant is a PlateReader (generic mode) with ``Tuning`` fields changed (and ``threads``,
if given); every image is read by each variant in turn, so a shared machine's load falls on
all alike. Prints, per variant: exact reads of the half's photographs, median CPU ms per
photograph, and for its first N images as 1920x1080 frames (anpr.reader_bench.as_1080p_frame)
exact reads, median and mean CPU ms and median wall ms per frame, and how many first and
fallback passes ran; then the photographs whose read differs from the first variant's.
Judge changes on the tuning half only (docs/design/anpr-reader.md, "Tuning and held-out
evaluation"); look at the held-out half once, after choosing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import cv2

from anpr.reader import PlateReader, Tuning
from anpr.reader_bench import as_1080p_frame, load_samples

DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "anpr-dev" / "us"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", help='JSON: {"name": {Tuning field: value, ...}, ...}; the first is the reference')
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--half", choices=["tune", "held-out"], default="tune")
    ap.add_argument("--frames", type=int, default=30, help="images also read as 1080p frames")
    ap.add_argument("--photos", type=int, default=1, help="0: the 1080p frames only")
    args = ap.parse_args()
    samples = [s for s in load_samples(args.dir) if s.half == args.half]
    readers = {}
    for name, fields in json.loads(args.variants).items():
        threads = fields.pop("threads", None)
        readers[name] = PlateReader(mode="generic", threads=threads, tuning=replace(Tuning(), **fields))
    passes = {name: [0, 0] for name in readers}
    for name, reader in readers.items():
        def counted(frame, *, fallback, _pass=reader._pass, _name=name):  # noqa: ANN001, ANN202
            passes[_name][fallback] += 1
            return _pass(frame, fallback=fallback)
        reader._pass = counted  # type: ignore[method-assign]
    figures = {name: {"hit": 0, "fhit": 0, "cpu": [], "fcpu": [], "fwall": [], "texts": []} for name in readers}
    images = [cv2.imread(str(s.image_path)) for s in samples]
    for reader in readers.values():
        reader.read(images[0])  # warm-up: the first inference allocates
    for i, (sample, image) in enumerate(zip(samples, images, strict=True)):
        todo = [("", image)] if args.photos else []
        if i < args.frames:
            todo.append(("f", as_1080p_frame(image)))
        for kind, frame in todo:
            for name, reader in readers.items():
                cpu, wall = time.process_time(), time.perf_counter()
                reads = reader.read(frame)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                text = reads[0].text if reads else ""
                f = figures[name]
                f[kind + "cpu"].append(cpu * 1000)
                f[kind + "hit"] += text in sample.plates
                if kind:
                    f["fwall"].append(wall * 1000)
                else:
                    f["texts"].append(text)
    n_frames = min(args.frames, len(samples))
    for name, f in figures.items():
        photos = f"exact {100 * f['hit'] / len(samples):5.1f}% ({f['hit']}/{len(samples)}), CPU ms {statistics.median(f['cpu']):.0f}" if f["cpu"] else ""
        frames = (f"1080p: exact {f['fhit']}/{n_frames}, CPU ms median {statistics.median(f['fcpu']):.0f} mean {statistics.mean(f['fcpu']):.0f}, "
                  f"wall ms median {statistics.median(f['fwall']):.0f}") if f["fcpu"] else ""
        print(f"{name:16s} {photos}  {frames}  passes (first, fallback) {passes[name]}")
    reference = next(iter(figures))
    for name in list(figures)[1:]:
        for sample, a, b in zip(samples, figures[reference]["texts"], figures[name]["texts"], strict=False):
            if a != b:
                print(f"  {name}: {sample.name} want {sample.plates[0]}: {reference} {a or '-'}, {name} {b or '-'}")


if __name__ == "__main__":
    main()
