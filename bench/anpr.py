"""The plate reader against the plain baseline (same as ``controlroom anpr bench DIR``).

    .venv/bin/python -m bench.anpr [DIR] [--limit N] [--frames-1080p N] [--json]

DIR defaults to ../shared/anpr-dev/us. Prints exact-match accuracy, accuracy forgiving O/0 and
I/1, median and p90 ms per image and per 1080p frame, for the project's reader and the baseline
(rapidocr over the whole image) measured in the same run, and their ratio. Bounded: one pass
over the folder per system (about two minutes for the 222 development photographs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anpr.reader_bench import run_bench
from controlroom.commands.anpr import format_bench
from controlroom.commands.common import print_json

DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "anpr-dev" / "us"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, nargs="?", default=DEFAULT_DIR)
    ap.add_argument("--mode", choices=["uk", "generic"], default="generic")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--frames-1080p", type=int, default=30)
    ap.add_argument("--misses", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.dir.is_dir():
        print(f"bench.anpr: {args.dir} is absent (see ../shared/anpr-dev/README.md); skipped")
        return 0
    figures = run_bench(args.dir, mode=args.mode, limit=args.limit, frames_1080p=args.frames_1080p)
    if args.json:
        print_json(figures)
    else:
        print(format_bench(figures, misses=args.misses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
