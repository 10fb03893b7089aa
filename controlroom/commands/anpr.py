"""controlroom anpr read|bench (the plate reader) and search|journeys (anpr_search.py).

``anpr read IMAGE...`` reads plates in image files; ``anpr bench DIR`` measures the reader
against the plain baseline on labelled photographs (anpr/reader_bench.py). Neither needs the
database.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from controlroom.commands.anpr_search import register_search
from controlroom.commands.common import print_json
from controlroom.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("anpr", help="number plates: read, benchmark, search, journeys")
    s = p.add_subparsers(dest="anpr_command", required=True)

    rd = s.add_parser("read", help="read the plates in image files")
    rd.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    rd.add_argument("--mode", choices=["uk", "generic"], default="uk", help="registration rules (default uk)")
    rd.add_argument("--roi", type=_roi, help="region of interest x,y,w,h in pixels")
    rd.add_argument("--json", action="store_true")
    rd.set_defaults(func=cmd_read)

    bn = s.add_parser("bench", help="accuracy and speed of the reader and the baseline on DIR")
    bn.add_argument("dir", type=Path, metavar="DIR", help="NAME.jpg with NAME.txt (file x y w h PLATE, tab-separated)")
    bn.add_argument("--mode", choices=["uk", "generic"], default="generic", help="(default generic: foreign plates)")
    bn.add_argument("--limit", type=int, help="only the first N images")
    bn.add_argument("--frames-1080p", type=int, default=30, help="images also timed as 1920x1080 frames (default 30)")
    bn.add_argument("--no-baseline", action="store_true", help="skip the baseline (faster)")
    bn.add_argument("--misses", action="store_true", help="list the project's misses")
    bn.add_argument("--json", action="store_true")
    bn.set_defaults(func=cmd_bench)

    register_search(s)


def _roi(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("want x,y,w,h in whole pixels, e.g. 0,400,1920,680") from None
    return x, y, w, h


def cmd_read(settings: Settings, args: argparse.Namespace) -> int:
    import cv2

    from anpr.reader import PlateReader, ReaderError

    reader = PlateReader(mode=args.mode, roi=args.roi)
    results: list[dict[str, Any]] = []
    failed = 0
    for path in args.images:
        entry: dict[str, Any] = {"file": str(path)}
        image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        try:
            if not path.is_file():
                raise ReaderError(f"{path}: no such file")
            if image is None:
                raise ReaderError(f"{path}: not an image OpenCV can decode")
            started = time.perf_counter()
            reads = reader.read(image)
            entry["ms"] = round((time.perf_counter() - started) * 1000, 1)
            entry["reads"] = [r.as_json() for r in reads]
        except ReaderError as exc:
            failed += 1
            entry["error"] = str(exc)
            print(f"controlroom: {exc}", file=sys.stderr)
        results.append(entry)
        if not args.json and "reads" in entry:
            if not entry["reads"]:
                print(f"{path}\t-\t(no plate read)")
            for r in entry["reads"]:
                conf = " ".join(f"{c:.2f}" for c in r["char_confidences"])
                print(f"{path}\t{r['text']}\t{r['confidence']:.2f}\t{r['format']}\tbox={tuple(r['box'])}\tchars=[{conf}]")
    if args.json:
        print_json(results)
    return 1 if failed else 0


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from anpr.reader_bench import run_bench

    def progress(msg: str) -> None:
        if not args.json:
            print(f"... {msg}", file=sys.stderr)

    figures = run_bench(
        args.dir, mode=args.mode, limit=args.limit, frames_1080p=args.frames_1080p,
        baseline=not args.no_baseline, progress=progress,
    )
    if args.json:
        print_json(figures)
        return 0
    print(format_bench(figures, misses=args.misses))
    return 0


def format_bench(figures: dict[str, Any], *, misses: bool = False) -> str:
    """The bench figures as a table, project and baseline side by side, then the ratios."""
    systems = figures["systems"]
    rows = [
        ("images", "images", "{}"),
        ("exact match %", "exact_pct", "{}"),
        ("forgiving O/0 I/1 %", "forgiving_pct", "{}"),
        ("exact, tuning half %", "exact_tune_pct", "{}"),
        ("exact, held-out half %", "exact_held_out_pct", "{}"),
        ("median ms / image", "median_ms", "{}"),
        ("p90 ms / image", "p90_ms", "{}"),
        ("median CPU ms / image", "median_cpu_ms", "{}"),
        ("1080p frames timed", "frames_1080p", "{}"),
        ("median ms / 1080p frame", "median_ms_1080p", "{}"),
        ("p90 ms / 1080p frame", "p90_ms_1080p", "{}"),
        ("median CPU ms / 1080p frame", "median_cpu_ms_1080p", "{}"),
        ("exact % on 1080p frames", "exact_pct_1080p", "{}"),
    ]
    width = max(len(r[0]) for r in rows)
    col = max(12, *(len(s["name"]) for s in systems))
    lines = [f"bench {figures['folder']} (mode {figures['mode']}; {figures.get('cores')} cores; "
             f"load average {figures.get('load_avg_1m_before')} before, {figures.get('load_avg_1m_after')} after)", " " * width + "  " + "  ".join(s["name"].ljust(col) for s in systems)]
    for label, key, fmt in rows:
        cells = [(fmt.format(s[key]) if s.get(key) is not None else "-").ljust(col) for s in systems]
        lines.append(label.ljust(width) + "  " + "  ".join(cells))
    if len(systems) == 2:
        p, b = systems
        if b.get("median_ms"):
            lines.append(f"project / baseline median time: {p['median_ms'] / b['median_ms']:.2f}x")
        if b.get("median_ms_1080p") and p.get("median_ms_1080p"):
            lines.append(f"project / baseline median time per 1080p frame: {p['median_ms_1080p'] / b['median_ms_1080p']:.2f}x")
        lines.append(f"exact match: project {p['exact_pct']}% vs baseline {b['exact_pct']}%")
    if misses:
        for m in systems[0]["misses"]:
            lines.append(f"miss {m['name']}: want {m['want']} got {m['got'] or '-'}")
    return "\n".join(lines)
