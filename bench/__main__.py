"""Run every benchmark in turn (`make bench`); each prints its figures and baseline ratios.

    .venv/bin/python -m bench [--only NAME ...] [--quick]

--quick runs each at a reduced size (minutes instead of tens of minutes) for a first look.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ANPR_DEV = REPO.parent / "shared" / "anpr-dev" / "us"

# name -> (full arguments, quick arguments)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "catalogue": ([], ["--days", "5", "--cameras", "20"]),
    "recording": ([], ["--counts", "8,32", "--seconds", "60"]),
    "simulator": ([], []),
    "auth": ([], []),
    "onvif": ([], []),
    "evidence": ([], []),
    "redaction": ([], ["--seconds", "4"]),
    "live": ([], []),
    "anpr_live": ([], []),
    "anpr_sim": ([], ["--vehicles", "30"]),
    "incidents": ([], ["--samples", "5"]),
    "picture": ([], ["--cameras", "2", "--rounds", "2"]),
    "reports": ([], ["--cameras", "20", "--incidents", "4000", "--runs", "2"]),
    "syncplay": ([], ["--samples", "3"]),
    "cluster": ([], ["--runs", "1", "--seconds", "20"]),
    "cli": ([], ["--runs", "3"]),
    "masks": ([], ["--seconds", "8"]),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=[*BENCHES, "anpr"])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    chosen = args.only or [*BENCHES, "anpr"]
    failed = []
    for name in chosen:
        if name == "anpr":
            if not ANPR_DEV.is_dir():
                print(f"== anpr: skipped, {ANPR_DEV} is absent")
                continue
            cmd = [str(REPO / ".venv/bin/controlroom"), "anpr", "bench", str(ANPR_DEV)]
        else:
            if not (REPO / "bench" / f"{name}.py").exists():
                print(f"== {name}: not present")
                continue
            full, quick = BENCHES[name]
            cmd = [sys.executable, "-m", f"bench.{name}", *(quick if args.quick else full)]
        print(f"== {name}: {' '.join(cmd[1:] if name != 'anpr' else cmd)}", flush=True)
        start = time.monotonic()
        if subprocess.run(cmd, cwd=REPO).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.monotonic() - start:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
