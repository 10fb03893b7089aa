"""A redaction job end to end on a real store: the simulator's street recorded as catalogued
segments, a SAR with a window and a reviewer's marks, the job run by the runner (real CenterFace,
real plate reader, real ffmpeg), the signed package read back with the evidence verifier, the
audit trail. Also: the tables match the migrations, marks are checked, one job at a time, and
migration 0019 carries the old redaction jobs table's rows over to the job queue."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from evidence_media import add_cameras
from redaction_media import street_segments
from sqlalchemy import inspect, select, text

from controlroom.context import REDACTION, SESSIONS
from controlroom.evidence.verify import verify_package
from controlroom.jobs import JobRunner, run_redaction
from controlroom.lawful import job_json
from controlroom.redaction.runner import Folders, Redactor
from simulator import pedestrians
from storage import Invalid, NotFound, masks, redaction, sar
from storage import jobs as queue_jobs
from storage.audit import AuditEntry
from storage.catalogue import NewSegment, commit_segment
from storage.db import make_engine, make_sessionmaker, now_us, transaction
from storage.keys import load_or_create_keys
from storage.migrate import alembic_config, upgrade
from storage.models import Camera
from storage.redaction import REDACTION_KIND
from storage.schema import metadata

pytestmark = pytest.mark.slow
SEGMENT_US = 2_000_000


async def test_tables_match_the_migration(sessions):
    async with sessions() as session:
        conn = await session.connection()
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
    assert [d for d in diff if any(t in repr(d) for t in ("sar_marks", "sar_redaction_jobs", "'jobs'"))] == []


def redaction_runner(sessions, keys, folders: Folders, **kw) -> JobRunner:
    """A node of its own that takes only redaction jobs from the queue (as ``sar redact`` does)."""
    redactor = Redactor(sessions, keys, folders, **kw)
    return JobRunner({SESSIONS: sessions, REDACTION: redactor}, "test-node", ttl_s=15, beat_s=5, renew_self=False,
                     kinds={REDACTION_KIND: run_redaction})


async def finished(sessions, sar_id: int, job_id: int) -> dict:
    async with sessions() as session:
        return job_json(await redaction.get_job(session, sar_id, job_id))


@pytest.fixture
async def store(data_dir: Path, tmp_path_factory):
    keys = load_or_create_keys(data_dir / "secret.key")
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'controlroom.db'}")
    await upgrade(engine)
    sessions = make_sessionmaker(engine, audit_key=keys.audit_mac_key)
    root = data_dir / "recordings"
    (cam,) = await add_cameras(sessions, ["Street 01"])
    base = (now_us() // 1_000_000 - 3600) * 1_000_000
    src = street_segments(tmp_path_factory.getbasetemp() / "street-2s", 2)[0]
    incoming = root / str(cam) / "incoming"
    incoming.mkdir(parents=True)
    shutil.copyfile(src, incoming / "0.mkv")
    await commit_segment(sessions, root, incoming / "0.mkv", NewSegment(
        cam, base, base + SEGMENT_US, codec="h264", width=1920, height=1080, clock_offset_s=0.0, clock_flag=False))
    yield sessions, keys, root, data_dir / "redaction", cam, base
    await engine.dispose()


async def test_a_job_redacts_the_window_and_signs_a_verifiable_package(store):
    sessions, keys, root, out, cam, base = store
    async with transaction(sessions) as session:
        s = await sar.create(session, by="sup1", requester_name="Jane Doe", description="woman, green coat",
                             places_times="Market Place", received_us=now_us(), identity_method="passport")
        w = await sar.add_window(session, s, by="sup1", camera_id=cam, start_us=base, end_us=base + SEGMENT_US,
                                 max_window_us=86_400_000_000, hold_review_us=now_us() + 86_400_000_000)
        sar_id, window_id = s.id, w.id
    box = dict(pedestrians.faces(10 / pedestrians.FPS))["green coat"]
    async with transaction(sessions) as session:
        s = await sar.get(session, sar_id)
        with pytest.raises(Invalid, match="kind"):
            await redaction.add_mark(session, s, by="sup1", window_id=window_id, kind="blur", frame=1, box=box)
        with pytest.raises(Invalid, match="window"):
            await redaction.add_mark(session, s, by="sup1", window_id=window_id + 99, kind="add", frame=1, box=box)
        with pytest.raises(Invalid, match="box"):
            await redaction.add_mark(session, s, by="sup1", window_id=window_id, kind="add", frame=1, box=(0, 0, 2, 2))
        mark = await redaction.add_mark(session, s, by="sup1", window_id=window_id, kind="requester", frame=10, box=box)
        wrong = await redaction.add_mark(session, s, by="sup1", window_id=window_id, kind="keep", frame=3,
                                         box=(1700, 20, 100, 100))
        await redaction.remove_mark(session, s, wrong.id, by="sup1")
        with pytest.raises(NotFound):
            await redaction.remove_mark(session, s, wrong.id, by="sup1")
        # The camera overlooks homes: its privacy mask (top left tenth) is painted in the copy too.
        await masks.set_masks(session, await session.get(Camera, cam), [[[0, 0], [0.1, 0], [0.1, 0.1], [0, 0.1]]],
                              reason="flats above the shops", by="sup1")
        job = await redaction.queue(session, s, by="sup1")
        with pytest.raises(Invalid, match="already queued"):
            await redaction.queue(session, s, by="sup1")
    runner = redaction_runner(sessions, keys, Folders(root, out), heartbeat_s=0.2)
    assert await runner.run_once() == job.id
    done = await finished(sessions, sar_id, job.id)
    assert done["state"] == "done", done["error"]
    assert done["left_visible"] == 1 and done["obscured"] >= 3 and done["total_frames"] > 0
    assert done["done_frames"] == done["total_frames"] and done["attempt"] == 1
    package = out / str(sar_id) / done["package"]
    report = verify_package(package, keys.public_key_pem())
    assert report.ok, report.problems
    manifest = report.manifest
    assert manifest["format"] == "controlroom-sar-redaction/1"
    assert manifest["subject_access_request"]["reference"].startswith("SAR-")
    (win,) = manifest["windows"]
    assert win["window_id"] == window_id and win["frames"] == 50 and win["left_visible"] == 1
    with zipfile.ZipFile(package) as zf:
        ref = manifest["exhibit_reference"]
        log = json.loads(zf.read(f"{ref}/redaction-log.json"))
        assert "sha256sum -c SHA256SUMS" in zf.read(f"{ref}/README.txt").decode()
    entries = log["windows"][0]["entries"]
    kept = [e for e in entries if e["action"] == "left visible"]
    assert len(kept) == 1 and kept[0]["why"] == "the requester" and kept[0]["mark"] == mark.id
    assert all(e["by"] == "sup1" for e in entries)
    assert "every 5th frame" in log["method"]["plates"]  # the plate reader ran
    (masked,) = [e for e in entries if e["what"] == "privacy mask"]
    assert masked["polygons"] == 1 and masked["frames"] == [0, 49]
    with zipfile.ZipFile(package) as zf:
        (mp4,) = [n for n in zf.namelist() if n.endswith(".mp4")]
        (out / "copy.mp4").write_bytes(zf.read(mp4))
    first = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out / "copy.mp4"), "-frames:v", "1", "-f", "rawvideo",
                            "-pix_fmt", "gray", "pipe:1"], capture_output=True, check=True, timeout=60).stdout
    grey = np.frombuffer(first, np.uint8).reshape(1080, 1920)
    assert grey[4:100, 4:184].std() < 2  # uniform where the mask is (the shop sign's text is gone)
    # Tampering is caught by the same verifier as evidence packages.
    tampered = package.with_name("t.zip")
    data = bytearray(package.read_bytes())
    i = data.find(b'"left visible"')
    data[i + 1:i + 5] = b"LEFT"
    tampered.write_bytes(bytes(data))
    assert not verify_package(tampered, keys.public_key_pem()).ok
    async with sessions() as session:
        actions = [a for (a,) in await session.execute(select(AuditEntry.action).where(
            AuditEntry.action.like("sar.%")).order_by(AuditEntry.seq))]
    assert actions[-5:] == ["sar.mark_add", "sar.mark_add", "sar.mark_remove", "sar.redact", "sar.redact_done"]

    # Again, with the requester's mark removed: the analysis is reused, everyone is obscured.
    cached = list((out / str(sar_id)).glob("analysis-*.json"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    async with transaction(sessions) as session:
        s = await sar.get(session, sar_id)
        await redaction.remove_mark(session, s, mark.id, by="sup1")
        again = await redaction.queue(session, s, by="sup1")
    assert await runner.run_once() == again.id
    second = await finished(sessions, sar_id, again.id)
    assert second["state"] == "done" and second["left_visible"] == 0 and second["package"] != done["package"]
    assert cached[0].stat().st_mtime_ns == stamp


async def test_a_job_with_no_footage_fails_visibly(store):
    sessions, keys, root, out, cam, base = store
    async with transaction(sessions) as session:
        s = await sar.create(session, by="sup1", requester_name="J", description="d", places_times="p",
                             received_us=now_us(), identity_method="passport")
        await sar.add_window(session, s, by="sup1", camera_id=cam, start_us=base - 60_000_000, end_us=base - 1_000_000,
                             max_window_us=86_400_000_000, hold_review_us=now_us() + 86_400_000_000)
        job = await redaction.queue(session, s, by="sup1")
        sar_id = s.id
    assert await redaction_runner(sessions, keys, Folders(root, out), plates=False).run_once() == job.id
    failed = await finished(sessions, sar_id, job.id)
    assert failed["state"] == "failed" and "no recorded footage" in failed["error"]


async def test_migration_0019_carries_the_redaction_jobs_over_to_the_job_queue(db_url, data_dir):
    """The old table's rows become jobs: pending work stays pending (queued; running queued
    again; one asked to stop cancelled), a finished job keeps its package, and a runner takes
    the carried-over job from the queue."""
    engine = make_engine(db_url)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))

    def to_0018(conn) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0018_privacy_masks")

    try:
        async with engine.begin() as conn:
            await conn.run_sync(to_0018)
        sessions = make_sessionmaker(engine, audit_key=load_or_create_keys(data_dir / "secret.key").audit_mac_key)
        async with transaction(sessions) as session:
            ids = [(await sar.create(session, by="sup1", requester_name=f"R{i}", description="d", places_times="p",
                                     received_us=now_us(), identity_method="passport")).id for i in range(4)]
        old = [  # sar, state, cancel_requested, package
            (ids[0], "done", False, "SAR-2026-000001-R1.zip"), (ids[1], "queued", False, ""),
            (ids[2], "running", False, ""), (ids[3], "running", True, "")]
        async with engine.begin() as conn:
            for sar_id, state, cancel, package in old:
                await conn.execute(text(
                    "INSERT INTO sar_redaction_jobs (sar_id, state, created_us, created_by, started_us, finished_us, "
                    "heartbeat_us, stage, done_frames, total_frames, cancel_requested, error, package, package_bytes, "
                    "manifest_sha256, obscured, kept) VALUES (:sar, :state, 1, 'sup1', 2, :fin, 2, 'done', 10, 10, "
                    ":cancel, '', :package, 1234, :sha, 5, 1)"),
                    {"sar": sar_id, "state": state, "cancel": cancel, "package": package,
                     "fin": 3 if state == "done" else None, "sha": "ab" * 32 if package else ""})
        await upgrade(engine)
        async with sessions() as session:
            made = {sar_id: [job_json(j) for j in await redaction.jobs_of(session, sar_id)] for sar_id in ids}
            tables = await (await session.connection()).run_sync(lambda c: inspect(c).get_table_names())
        assert "sar_redaction_jobs" not in tables
        assert [[j["state"] for j in made[i]] for i in ids] == [["done"], ["queued"], ["queued"], ["cancelled"]]
        done = made[ids[0]][0]
        assert (done["package"], done["package_bytes"], done["obscured"], done["left_visible"]) == (
            "SAR-2026-000001-R1.zip", 1234, 5, 1)
        assert "queued again" in made[ids[2]][0]["error"]
        async with transaction(sessions) as session:  # one at a time per request, as before
            assert await queue_jobs.enqueue(session, REDACTION_KIND, redaction.job_payload(ids[1]),
                                            unique_key=f"{REDACTION_KIND}:{ids[1]}") is None
        runner = redaction_runner(sessions, load_or_create_keys(data_dir / "secret.key"),
                                  Folders(data_dir / "recordings", data_dir / "redaction"), plates=False)
        assert await runner.run_once() == made[ids[1]][0]["id"]  # taken from the queue (and fails: no windows)
        assert (await finished(sessions, ids[1], made[ids[1]][0]["id"]))["state"] == "failed"
    finally:
        await engine.dispose()
