"""controlroom export verify | public-key | requests list | run.

``export verify PACKAGE.zip [--public-key FILE]`` checks the signature, every hash, SHA256SUMS
and the custody chain, prints each problem with its file name, and exits 0 only when everything
verifies (1 otherwise). Without ``--public-key`` the key inside the package is used, which only
proves the package is self-consistent: give the council's published key to prove its origin.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from pathlib import Path

from controlroom.commands.common import open_store, print_json, print_table
from controlroom.evidence.runner import ExportRunner
from controlroom.evidence.shapes import request_json
from controlroom.evidence.verify import verify_package
from controlroom.settings import Settings
from storage.evidence import latest_job, list_requests
from storage.keys import load_or_create_keys


def register(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser("export", help="evidence packages: verify, public key, requests")
    es = exp.add_subparsers(dest="export_command", required=True)
    ver = es.add_parser("verify", help="verify an evidence package (exit 0 only if everything verifies)")
    ver.add_argument("package", type=Path)
    ver.add_argument("--public-key", type=Path, help="the council's Ed25519 public key (PEM)")
    ver.add_argument("--json", action="store_true")
    ver.set_defaults(func=cmd_verify)
    pk = es.add_parser("public-key", help="print the service's signing public key (PEM) on stdout, its fingerprint on stderr")
    pk.add_argument("--fingerprint", action="store_true", help="print only the SHA-256 fingerprint, on stdout")
    pk.set_defaults(func=cmd_public_key)
    req = es.add_parser("requests", help="evidence requests")
    rs = req.add_subparsers(dest="requests_command", required=True)
    ls = rs.add_parser("list", help="list requests with their state and export progress")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    run = es.add_parser("run", help="run queued exports now, printing progress, then exit")
    run.set_defaults(func=cmd_run)


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    key = None
    if args.public_key:
        try:
            key = args.public_key.read_bytes()
        except OSError as exc:
            print(f"controlroom: cannot read {args.public_key}: {exc.strerror}", file=sys.stderr)
            return 1
    if not args.package.is_file():
        print(f"controlroom: {args.package}: no such file", file=sys.stderr)
        return 1
    total = args.package.stat().st_size
    done = [0]
    lock = threading.Lock()
    tty = sys.stderr.isatty()

    def progress(n: int) -> None:
        with lock:
            before = done[0] * 20 // max(total, 1)
            done[0] += n
            if tty and done[0] * 20 // max(total, 1) != before:
                print(f"\rverifying {min(100, done[0] * 100 // max(total, 1))}%", end="", file=sys.stderr)

    report = verify_package(args.package, key, progress=progress)
    if tty:
        print("\r", end="", file=sys.stderr)
    if args.json:
        print_json({"ok": report.ok, "exhibit": report.exhibit, "files_checked": report.files_checked,
                    "key_fingerprint": report.key_fingerprint, "key_source": report.key_source,
                    "problems": [{"path": p.path, "problem": p.problem} for p in report.problems]})
        return 0 if report.ok else 1
    print(f"exhibit {report.exhibit or '?'}: {report.files_checked} files, {report.bytes_checked:,} bytes checked")
    print(f"signing key fingerprint {report.key_fingerprint or '?'} "
          f"({'given with --public-key' if report.key_source == 'given' else 'taken from the package: compare it with the council published one'})")
    for p in report.problems:
        print(f"FAILED {p.path}: {p.problem}")
    print("OK: every file and the signature verify" if report.ok else f"FAILED: {len(report.problems)} problem(s)")
    return 0 if report.ok else 1


def cmd_public_key(settings: Settings, args: argparse.Namespace) -> int:
    """``export public-key > council.pem`` must give a PEM file and nothing else: the PEM goes
    to stdout, the fingerprint (for the person at the terminal) to stderr; ``--fingerprint``
    prints the fingerprint alone on stdout, for scripts."""
    keys = load_or_create_keys(settings.key_file)
    if args.fingerprint:
        print(keys.public_key_fingerprint())
        return 0
    sys.stdout.write(keys.public_key_pem().decode())
    print(f"fingerprint (SHA-256 of the raw Ed25519 key): {keys.public_key_fingerprint()}", file=sys.stderr)
    return 0


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, store.sessions() as session:
        rows = [request_json(r, await latest_job(session, r.id)) for r in await list_requests(session)]
    if args.json:
        print_json(rows)
        return 0
    table = [{
        "id": r["id"], "exhibit": r["exhibit_reference"], "state": r["state"], "crime_reference": r["crime_reference"],
        "officer": f"{r['officer_name']} ({r['collar_number']})",
        "export": f"{r['export']['state']} {r['export']['percent']}%" if r["export"] else "",
        "gaps": "yes" if r["findings"].get("any_gaps") else "",
    } for r in rows]
    print_table(table, ["id", "exhibit", "state", "crime_reference", "officer", "export", "gaps"])
    return 0


async def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the queue once in this process (the service normally does it), with progress."""
    async with open_store(settings) as store:
        runner = ExportRunner(store.sessions, store.keys, storage_root=settings.storage_root,
                              export_root=settings.evidence_root, heartbeat_s=settings.evidence.heartbeat_s,
                              stale_after_s=settings.evidence.stale_after_s,
                              free_space_margin_bytes=settings.evidence.free_space_margin_bytes)
        settings.evidence_root.mkdir(parents=True, exist_ok=True)
        await runner.recover()
        while True:
            task = asyncio.create_task(runner.run_once())
            while not task.done():
                await asyncio.sleep(1)
                async with store.sessions() as session:
                    for r in await list_requests(session):
                        job = await latest_job(session, r.id)
                        if job is not None and job.state == "running":
                            pct = 100 * job.done_bytes // max(job.total_bytes, 1)
                            print(f"\rrequest {r.id}: {job.stage} {pct}%", end="", file=sys.stderr)
            job_id = task.result()
            if job_id is None:
                break
            print(f"\rexport job {job_id} finished", file=sys.stderr)
    return 0
