"""Jobs nodes as real processes on one PostgreSQL and one shared store (issue 16, "Jobs").

Two ``controlroom serve --roles jobs`` processes. node-a takes an evidence export (its package
writer slowed down, so that it is killed mid-way) and is killed with ``kill -9`` while writing
the package; node-b takes the job again when node-a's lease runs out (attempt 2), starts the
export again from the beginning and finishes it: the package is offered, verifies, and its
custody log says the first attempt was interrupted. Meanwhile the retention runs of both nodes
are one at a time (the unique job). Skipped without the PostgreSQL server on loopback.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from evidence_media import SEGMENT_US, catalogue_footage, make_segments
from sqlalchemy import select
from test_cluster import pg_available, stop_nodes, until  # noqa: F401 - the fixture
from test_evidence_package import FIELDS

from controlroom.evidence.verify import verify_package
from storage.db import make_engine, make_sessionmaker, now_us, transaction
from storage.evidence import (
    DAY_US,
    CustodyEntry,
    EvidenceRequest,
    ExportJob,
    WindowSpec,
    create_request,
    decide,
)
from storage.jobs import Job
from storage.keys import load_or_create_keys
from storage.migrate import upgrade

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
HEARTBEAT_S, LEASE_TTL_S = 1.0, 3.0

# node-a: the real service, its package writer paused after each file (killed there).
SLOW_NODE = """
import sys, time
import controlroom.evidence.package as package_mod
real_add = package_mod.PackageWriter.add_file
def slow_add(self, *a, **kw):
    out = real_add(self, *a, **kw)
    self._zip.fp.flush()
    print("wrote", a[0], file=sys.stderr, flush=True)
    time.sleep(30)
    return out
package_mod.PackageWriter.add_file = slow_add
from controlroom.cli import main
sys.exit(main(sys.argv[1:]))
"""


class JobsNode:
    def __init__(self, tmp: Path, node_id: str, pg_url: str, store: Path, key: Path) -> None:
        self.id = node_id
        self.data_dir = tmp / node_id
        self.data_dir.mkdir()
        shutil.copy(key, self.data_dir / "secret.key")
        (self.data_dir / "settings.toml").write_text(
            f'database_url = "{pg_url}"\n'
            f'[recording]\nstorage_root = "{store}"\n'
            f'[evidence]\nexport_root = "{store / "evidence"}"\nheartbeat_s = 0.5\n'
            f'[cluster]\nenabled = true\nnode_id = "{node_id}"\nheartbeat_s = {HEARTBEAT_S}\n'
            f'lease_ttl_s = {LEASE_TTL_S}\n')
        self.proc: subprocess.Popen | None = None

    def start(self, slow: bool = False) -> None:
        args = ["--data-dir", str(self.data_dir), "serve", "--roles", "jobs"]
        command = [sys.executable, "-c", SLOW_NODE, *args] if slow else [sys.executable, "-m", "controlroom.cli", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                     stderr=open(self.data_dir / "serve.log", "ab"))

    def log(self) -> str:
        return (self.data_dir / "serve.log").read_text(errors="replace")


async def test_kill9_of_a_jobs_node_mid_export_another_node_finishes_it(pg_available, pg_url: str,  # noqa: F811
                                                                        tmp_path: Path) -> None:
    store = tmp_path / "shared-store"
    store.mkdir()
    key = tmp_path / "secret.key"
    keys = load_or_create_keys(key)
    engine = make_engine(pg_url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine, audit_key=keys.audit_mac_key)
    sources = make_segments(tmp_path / "media", 3)
    footage = await catalogue_footage(sessions, store, sources, cameras=1)
    async with transaction(sessions) as session:
        req = await create_request(session, requested_by="police1", fields=FIELDS,
                                   windows=[WindowSpec(footage.camera_ids[0], footage.base_us,
                                                       footage.base_us + 3 * SEGMENT_US)],
                                   hold_review_us=now_us() + DAY_US, max_window_us=DAY_US)
        export = await decide(session, req, by="super1", approve=True, reason="proportionate and necessary")
        rid, export_id = req.id, export.id

    async def queue_job() -> Job:
        async with sessions() as s:
            return (await s.scalars(select(Job).where(Job.kind == "evidence.export"))).one()

    async def export_state() -> tuple[ExportJob, EvidenceRequest]:
        async with sessions() as s:
            return await s.get(ExportJob, export_id), await s.get(EvidenceRequest, rid)

    a = JobsNode(tmp_path, "node-a", pg_url, store, key)
    b = JobsNode(tmp_path, "node-b", pg_url, store, key)
    try:
        a.start(slow=True)
        await until("node-a takes the export", lambda: _held_by(queue_job, "node-a"), 60)
        await until("node-a writes the package", lambda: _async("wrote master/" in a.log()), 60)
        assert list((store / "evidence").rglob("*.zip.part"))
        b.start()  # started after node-a took the job, so that node-a is the one killed mid-way
        await asyncio.sleep(2 * HEARTBEAT_S)  # node-b is up and polling: it must not take a held job
        assert (await queue_job()).node_id == "node-a"
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        try:
            # Running, or already done: the rest of the export takes node-b a fraction of a second,
            # less than one look of this loop (seen in CI: done on node-b, attempt 2, never seen running).
            job = await until("node-b takes the job again",
                              lambda: _held_by(queue_job, "node-b", ("running", "done")), 30)
        except AssertionError as exc:  # say what node-b was doing (it failed once in CI, cause unseen)
            held = await queue_job()
            raise AssertionError(f"{exc}; the job: {held.state} on {held.node_id}, attempt {held.attempt}, "
                                 f"node-b running: {b.proc.poll() is None}; node-b's log:\n{b.log()[-3000:]}") from None
        assert job.attempt == 2, (job.attempt, job.node_id)
        await until("the export is ready", lambda: _done(export_state), 120)
    finally:
        stop_nodes(a, b)
    assert b.proc.returncode == 0, b.log()[-3000:]

    job = await queue_job()
    export, req = await export_state()
    assert (job.state, job.node_id, job.attempt) == ("done", "node-b", 2)
    assert (export.state, export.attempts, req.state) == ("done", 2, "ready")
    assert verify_package(store / "evidence" / req.package_path, keys.public_key_pem()).ok
    assert not list((store / "evidence").rglob("*.zip.part"))
    async with sessions() as s:
        custody = [e.action for e in (await s.scalars(select(CustodyEntry).where(CustodyEntry.request_id == rid)
                                                      .order_by(CustodyEntry.id))).all()]
        retention = (await s.execute(select(Job.node_id, Job.state, Job.started_us, Job.finished_us)
                                     .where(Job.kind == "retention"))).all()
    assert custody.count("export.started") == 2 and "export.interrupted" in custody, custody
    assert custody[-2:] == ["package.produced", "package.verified"], custody
    # Retention ran (queued by both nodes' schedules), one run at a time across the two nodes.
    assert retention and all(state == "done" for _, state, _, _ in retention), retention
    spans = sorted((start, end) for _, _, start, end in retention)
    assert all(nxt[0] >= prev[1] for prev, nxt in zip(spans, spans[1:], strict=False)), spans
    await engine.dispose()


async def _held_by(queue_job, node: str, states=("running",)):
    job = await queue_job()
    return job if job.node_id == node and job.state in states else None


async def _async(value):
    return value


async def _done(export_state) -> bool:
    export, req = await export_state()
    assert export.state in ("queued", "running", "done"), (export.state, export.error)
    return export.state == "done" and req.state == "ready"
