"""Start-up cost of the CLI: CPU seconds of `controlroom --help` (every command's parser, none
run), against the interpreter importing only the named stack's two cores (aiohttp and SQLAlchemy)
in the same run. CPU time (user + system of the child), not wall time, so a busy machine
changes the figures little.

    .venv/bin/python -m bench.cli [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpu_s(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    cases = {
        "controlroom --help": [sys.executable, "-m", "controlroom.cli", "--help"],
        "baseline: import aiohttp, sqlalchemy.ext.asyncio": [sys.executable, "-c",
                                                             "import aiohttp, sqlalchemy.ext.asyncio"],
    }
    cpu_s(cases["controlroom --help"])  # warm the page cache and .pyc files
    medians = {}
    for name, argv in cases.items():
        runs = [cpu_s(argv) for _ in range(args.runs)]
        medians[name] = statistics.median(runs)
        print(f"{name:52s} CPU median {medians[name]:.2f} s, max {max(runs):.2f} s over {args.runs} runs")
    ratio = medians["controlroom --help"] / medians["baseline: import aiohttp, sqlalchemy.ext.asyncio"]
    print(f"ratio controlroom --help / baseline: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
