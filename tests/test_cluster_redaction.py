"""A SAR redaction on the job queue survives its node (issue 15; cluster.md, "Jobs").

Two ``controlroom serve --roles jobs`` processes on one PostgreSQL and one shared store. A
request has two windows of the simulator's street. node-a takes the redaction; its render is
held after the first window (so that it is killed mid-job) and it is killed with ``kill -9``
once its checkpoint records that window. node-b takes the job again when node-a's lease runs
out (attempt 2), reuses the window node-a rendered (its file checked by SHA-256), renders the
second, and writes the package: it verifies, holds both windows, and the trail says the job
was resumed. Skipped without the PostgreSQL server on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from evidence_media import add_cameras
from redaction_media import street_segments
from sqlalchemy import select
from test_cluster import pg_available, stop_nodes, until  # noqa: F401 - the fixture
from test_cluster_jobs import JobsNode

from controlroom.evidence.verify import verify_package
from storage import redaction, sar
from storage.audit import AuditEntry
from storage.catalogue import NewSegment, commit_segment
from storage.db import make_engine, make_sessionmaker, now_us, transaction
from storage.jobs import Job
from storage.keys import load_or_create_keys
from storage.migrate import upgrade

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
SEGMENT_US = 2_000_000

# node-a: the real service, its render held after the first window (it is killed there).
SLOW_NODE = """
import sys, time
import controlroom.redaction.runner as runner_mod
real_render = runner_mod.render
def held_render(*a, **kw):
    out = real_render(*a, **kw)
    print("rendered a window", file=sys.stderr, flush=True)
    time.sleep(120)
    return out
runner_mod.render = held_render
from controlroom.cli import main
sys.exit(main(sys.argv[1:]))
"""


class RedactionNode(JobsNode):
    def __init__(self, tmp: Path, node_id: str, pg_url: str, store: Path, key: Path) -> None:
        super().__init__(tmp, node_id, pg_url, store, key)
        with (self.data_dir / "settings.toml").open("a") as f:
            f.write(f'[lawful]\nredaction_root = "{store / "redaction"}"\nredaction_plates = false\n'
                    'redaction_heartbeat_s = 0.5\n')

    def start(self, slow: bool = False) -> None:
        args = ["--data-dir", str(self.data_dir), "serve", "--roles", "jobs"]
        command = [sys.executable, "-c", SLOW_NODE, *args] if slow else [sys.executable, "-m", "controlroom.cli", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(self.data_dir / "serve.log", "ab"))


async def test_kill9_of_a_jobs_node_mid_redaction_another_node_finishes_it(pg_available, pg_url: str,  # noqa: F811
                                                                           tmp_path: Path) -> None:
    store = tmp_path / "shared-store"
    store.mkdir()
    key = tmp_path / "secret.key"
    keys = load_or_create_keys(key)
    engine = make_engine(pg_url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine, audit_key=keys.audit_mac_key)
    (cam,) = await add_cameras(sessions, ["Street 01"])
    base = (now_us() // 1_000_000 - 3600) * 1_000_000
    sources = street_segments(tmp_path / "street", 4)
    incoming = store / str(cam) / "incoming"
    incoming.mkdir(parents=True)
    for i, src in enumerate(sources[:2]):
        shutil.copyfile(src, incoming / f"{i}.mkv")
        await commit_segment(sessions, store, incoming / f"{i}.mkv", NewSegment(
            cam, base + i * SEGMENT_US, base + (i + 1) * SEGMENT_US, codec="h264", width=1920, height=1080,
            clock_offset_s=0.0, clock_flag=False))
    async with transaction(sessions) as session:
        s = await sar.create(session, by="sup1", requester_name="Jane Doe", description="green coat",
                             places_times="Market Place", received_us=now_us(), identity_method="passport")
        windows = [(await sar.add_window(session, s, by="sup1", camera_id=cam, start_us=base + i * SEGMENT_US,
                                         end_us=base + (i + 1) * SEGMENT_US, max_window_us=86_400_000_000,
                                         hold_review_us=now_us() + 86_400_000_000)).id for i in range(2)]
        job_id = (await redaction.queue(session, s, by="sup1")).id
        sar_id, reference = s.id, s.reference

    async def queue_job() -> Job:
        async with sessions() as session:
            return await session.get(Job, job_id, populate_existing=True)

    async def first_window_saved() -> bool:
        job = await queue_job()
        return str(windows[0]) in ((job.saved() or {}).get("rendered") or {})

    async def held_by(node: str) -> Job | None:
        job = await queue_job()
        return job if job.node_id == node and job.state == "running" else None

    async def ended() -> bool:
        job = await queue_job()
        assert job.state in ("queued", "running", "done"), (job.state, job.error)
        return job.state == "done"

    a = RedactionNode(tmp_path, "node-a", pg_url, store, key)
    b = RedactionNode(tmp_path, "node-b", pg_url, store, key)
    try:
        a.start(slow=True)
        await until("node-a takes the redaction", lambda: held_by("node-a"), 60)
        await until("node-a renders the first window", first_window_saved, 300)
        assert "rendered a window" in a.log()
        b.start()  # after node-a took the job, so that node-a is the one killed mid-way
        await asyncio.sleep(3)  # node-b is up and polling: it must not take a held job
        assert (await queue_job()).node_id == "node-a"
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        job = await until("node-b takes the job again", lambda: held_by("node-b"), 60)
        assert job.attempt == 2, (job.attempt, job.node_id)
        await until("the redaction is done", ended, 400)
    finally:
        stop_nodes(a, b)
    assert b.proc.returncode == 0, b.log()[-3000:]

    job = await queue_job()
    result = job.saved()["result"]
    assert (job.state, job.node_id, job.attempt) == ("done", "node-b", 2)
    assert result["windows_reused"] == [windows[0]]  # node-a's window, not rendered again
    package = store / "redaction" / str(sar_id) / result["package"]
    report = verify_package(package, keys.public_key_pem())
    assert report.ok, report.problems
    assert [w["window_id"] for w in report.manifest["windows"]] == windows
    assert all(w["frames"] == 50 for w in report.manifest["windows"])
    with zipfile.ZipFile(package) as zf:
        log = json.loads(zf.read(f"{report.manifest['exhibit_reference']}/redaction-log.json"))
    assert [len(w["entries"]) > 0 for w in log["windows"]] == [True, True]
    assert not list((store / "redaction").rglob("*.part"))
    async with sessions() as session:
        trail = [(e.action, e.details) for e in (await session.scalars(
            select(AuditEntry).where(AuditEntry.target == f"sar:{reference}").order_by(AuditEntry.seq))).all()]
    actions = [a for a, _ in trail]
    assert actions[-3:] == ["sar.redact", "sar.redact_resumed", "sar.redact_done"], actions
    await engine.dispose()
