"""Evidence packages from real segments: writing, the read-back check, verification (ours and
the standard tools'), tampering, cancellation, a killed export, a full disk."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from evidence_media import SEGMENT_US, add_gap, catalogue_footage, make_segments

from controlroom.cli import main as cli_main
from controlroom.evidence.runner import ExportRunner
from controlroom.evidence.verify import verify_package
from storage import Invalid
from storage.db import make_engine, make_sessionmaker, now_us, transaction
from storage.evidence import (
    DAY_US,
    EvidenceRequest,
    ExportJob,
    JobState,
    RequestState,
    WindowSpec,
    create_request,
    decide,
    get_request,
)
from storage.keys import load_or_create_keys
from storage.migrate import upgrade

FIELDS = {
    "officer_name": "PC Jane Smith", "collar_number": "4521", "force": "Anyshire Police",
    "crime_reference": "AS/12345/26", "offence": "Assault occasioning actual bodily harm",
    "necessity": "Identify the offender; the victim says the camera faces the door",
    "lawful_basis": "DPA 2018 Schedule 2 Part 1 paragraph 2 (crime and taxation)",
    "authorised_by": "Insp. R. Khan 1022",
}


@pytest.fixture(scope="session")
def sources(tmp_path_factory) -> list[Path]:
    return make_segments(tmp_path_factory.mktemp("media"), 3)


class Store:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.db_url = f"sqlite+aiosqlite:///{data_dir / 'controlroom.db'}"
        self.root = data_dir / "recordings"
        self.exports = data_dir / "evidence"
        self.keys = load_or_create_keys(data_dir / "secret.key")

    async def open(self) -> None:
        self.engine = make_engine(self.db_url)
        await upgrade(self.engine)
        self.sessions = make_sessionmaker(self.engine, audit_key=self.keys.audit_mac_key)

    def runner(self, **kw) -> ExportRunner:
        return ExportRunner(self.sessions, self.keys, storage_root=self.root, export_root=self.exports,
                            heartbeat_s=kw.pop("heartbeat_s", 0.2), **kw)

    async def request(self, windows: list[tuple[int, int, int]], approve: bool = True) -> int:
        async with transaction(self.sessions) as session:
            req = await create_request(session, requested_by="police1", fields=FIELDS,
                                       windows=[WindowSpec(*w) for w in windows],
                                       hold_review_us=now_us() + DAY_US, max_window_us=DAY_US)
            if approve:
                await decide(session, req, by="super1", approve=True, reason="proportionate and necessary")
            return req.id

    async def get(self, request_id: int) -> tuple[EvidenceRequest, ExportJob | None]:
        async with self.sessions() as session:
            req = await get_request(session, request_id)
            from storage.evidence import latest_job

            return req, await latest_job(session, request_id)


@pytest.fixture
async def store(data_dir: Path):
    s = Store(data_dir)
    await s.open()
    yield s
    await s.engine.dispose()


async def produce(store: Store, sources: list[Path], *, cameras: int = 2, skip=None) -> tuple[Path, object]:
    footage = await catalogue_footage(store.sessions, store.root, sources, cameras=cameras, skip=skip)
    start = footage.base_us + 2_500_000
    end = footage.base_us + 3 * SEGMENT_US - 2_500_000
    rid = await store.request([(c, start, end) for c in footage.camera_ids])
    assert await store.runner().run_once() is not None
    req, job = await store.get(rid)
    assert job.state == JobState.DONE.value, job.error
    assert req.state == RequestState.READY.value
    return store.exports / req.package_path, footage


async def run(*args, **kw) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, *args, **kw)


def flip_byte(zip_path: Path, member: str, offset: int = 10) -> None:
    """Flip one byte of a member's data inside the ZIP (stored, so data is the file's bytes)."""
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo(member)
    with zip_path.open("r+b") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(fh.read(2), "little"), int.from_bytes(fh.read(2), "little")
        pos = info.header_offset + 30 + name_len + extra_len + min(offset, info.file_size - 1)
        fh.seek(pos)
        byte = fh.read(1)
        fh.seek(pos)
        fh.write(bytes([byte[0] ^ 0x01]))


async def test_package_contents_masters_working_copy_and_manifest(store, sources, tmp_path):
    package, footage = await produce(store, sources, skip={1: {1}})
    report = verify_package(package, store.keys.public_key_pem())
    assert report.ok, report.problems
    with zipfile.ZipFile(package) as zf:
        names = zf.namelist()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        exhibit = names[0].split("/")[0]
        manifest = json.loads(zf.read(f"{exhibit}/manifest.json"))
        # Masters: byte for byte the catalogued files.
        for cam_id, segs in footage.segments.items():
            for seg in segs:
                member = next(n for n in names if n.startswith(f"{exhibit}/master/cam{cam_id}-") and n.endswith(Path(seg.path).name))
                assert zf.read(member) == (store.root / seg.path).read_bytes()
        zf.extractall(tmp_path / "x")
    assert manifest["exhibit_reference"] == exhibit
    assert manifest["produced_for"]["collar_number"] == "4521"
    assert manifest["software_version"] if "software_version" in manifest else manifest["produced"]["software_version"]
    cam_a, cam_b = manifest["cameras"]
    assert cam_a["site"] == "Town Centre" and cam_a["clock"]["camera_offset_s"] == 0.2
    assert cam_a["gaps"] == []
    # Camera B lost its middle segment: the hole inside the window is reported, not hidden.
    assert [round(g["duration_s"]) for g in cam_b["gaps"]] == [6]
    assert cam_b["window"]["from_local"].endswith(("+00:00", "+01:00"))
    # Working copy: plays (ffprobe decodes its streams) and lasts as long as the window, to
    # within one keyframe interval, and carries the time subtitle track.
    folder = tmp_path / "x" / exhibit
    for cam in (cam_a,):
        mp4 = folder / cam["working_copy"]["path"]
        probe = json.loads((await run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,codec_type",
             "-of", "json", str(mp4)], capture_output=True, check=True)).stdout)
        kinds = {s["codec_type"]: s["codec_name"] for s in probe["streams"]}
        assert kinds == {"video": "h264", "subtitle": "mov_text"}
        window_s = 3 * SEGMENT_US / 1e6 - 5
        assert abs(float(probe["format"]["duration"]) - window_s) <= 2.0
        decoded = await run(["ffmpeg", "-v", "error", "-i", str(mp4), "-map", "0:v", "-f", "null", "-"],
                                 capture_output=True)
        assert decoded.returncode == 0 and not decoded.stderr, decoded.stderr
        srt = (folder / cam["working_copy"]["subtitles"]).read_text()
        assert "Camera A - Town Centre" in srt and " UTC | " in srt and ("GMT" in srt or "BST" in srt)


async def test_standard_tools_verify_the_package(store, sources, tmp_path):
    """The README's recipe: openssl for the signature, sha256sum for every file."""
    package, _ = await produce(store, sources, cameras=1)
    # Info-ZIP's unzip, as the README says, checks every member's CRC-32 independently of ours.
    unzipped = subprocess.run(["unzip", "-q", str(package), "-d", str(tmp_path)], capture_output=True, text=True)  # noqa: ASYNC221
    assert unzipped.returncode == 0, unzipped.stdout + unzipped.stderr
    with zipfile.ZipFile(package) as zf:
        exhibit = zf.namelist()[0].split("/")[0]
    folder = tmp_path / exhibit
    key = tmp_path / "council.pem"
    key.write_bytes(store.keys.public_key_pem())

    def sh(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=folder, capture_output=True, text=True)  # noqa: ASYNC221

    ok = sh("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(key), "-rawin",
            "-in", "manifest.json", "-sigfile", "manifest.sig")
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout
    assert sh("sha256sum", "-c", "SHA256SUMS").returncode == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sh("sha256sum", "SHA256SUMS").stdout.split()[0] == manifest["sha256sums_sha256"]
    fp = (await run("openssl pkey -pubin -in public_key.pem -outform DER | tail -c 32 | sha256sum",
                        shell=True, cwd=folder, capture_output=True, text=True)).stdout.split()[0]
    assert fp == store.keys.public_key_fingerprint()
    assert fp in (folder / "README.txt").read_text()
    # And they catch tampering: one changed byte in a master, one in the manifest.
    master = next(folder.glob("master/*/*.mkv"))
    data = bytearray(master.read_bytes())
    data[100] ^= 1
    master.write_bytes(bytes(data))
    bad = sh("sha256sum", "-c", "--quiet", "SHA256SUMS")
    assert bad.returncode != 0 and master.name in bad.stdout
    (folder / "manifest.json").write_text((folder / "manifest.json").read_text().replace("4521", "4522"))
    forged = sh("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(key), "-rawin",
                "-in", "manifest.json", "-sigfile", "manifest.sig")
    assert forged.returncode != 0


ROOT = Path(__file__).resolve().parent.parent


def documented_commands() -> dict[str, str]:
    """The verification commands as people read them: the README's shell block and the
    evidence screen's (controlroom/web/index.html), verbatim."""
    readme = (ROOT / "README.md").read_text().split("## Verifying an evidence package", 1)[1]
    page = (ROOT / "controlroom" / "web" / "index.html").read_text()
    screen = re.search(r'<pre class="small" id="ev-verify-commands">(.*?)</pre>', page, re.S)[1]
    return {"README.md": readme.split("```sh\n", 1)[1].split("```", 1)[0], "screen": html.unescape(screen)}


async def test_the_documented_commands_verify_a_real_package(store, sources, tmp_path, data_dir, capsys):
    """Issue 11, found 10: the README's and the screen's commands failed as written (the ZIP
    holds a top-level folder), and ``export public-key > council.pem`` put a fingerprint line
    into the PEM. Run them, as written, with bash, openssl and sha256sum, on a real package."""
    package, _ = await produce(store, sources, cameras=1)
    work = tmp_path / "desk"
    work.mkdir()
    (work / "package.zip").write_bytes(package.read_bytes())
    capsys.readouterr()
    assert cli_main(["--data-dir", str(data_dir), "export", "public-key"]) == 0
    out = capsys.readouterr()
    (work / "council.pem").write_text(out.out)  # what "> council.pem" writes
    assert out.out == store.keys.public_key_pem().decode()  # the PEM and nothing else
    assert store.keys.public_key_fingerprint() in out.err
    assert cli_main(["--data-dir", str(data_dir), "export", "public-key", "--fingerprint"]) == 0
    assert capsys.readouterr().out.strip() == store.keys.public_key_fingerprint()

    for where, commands in documented_commands().items():
        shutil.rmtree(work / "package", ignore_errors=True)
        done = await run(["bash", "-e", "-o", "pipefail", "-c", commands], cwd=work, capture_output=True, text=True)
        assert done.returncode == 0, f"{where}:\n{commands}\n{done.stdout}{done.stderr}"
        assert "Signature Verified Successfully" in done.stdout and "SHA256SUMS: OK" in done.stdout, where
        assert ": FAILED" not in done.stdout and done.stdout.count(": OK") >= 4, where
    assert store.keys.public_key_fingerprint() in done.stdout  # the screen's fingerprint line
    # The one-line SHA256SUMS check fails when the list is not the signed one.
    folder = next((work / "package").iterdir())
    (folder / "SHA256SUMS").write_text((folder / "SHA256SUMS").read_text() + "\n")
    check = next(line for line in documented_commands()["README.md"].splitlines() if line.startswith("grep"))
    assert (await run(["bash", "-c", check], cwd=folder, capture_output=True, text=True)).returncode != 0


async def test_flipping_one_byte_in_any_file_fails_and_names_it(store, sources, tmp_path, capsys):
    package, _ = await produce(store, sources, cameras=1)
    with zipfile.ZipFile(package) as zf:
        members = [n for n in zf.namelist() if not n.endswith("/")]
    assert any("/master/" in m for m in members) and any("/working/" in m for m in members)
    for member in members:
        copy = tmp_path / "copy.zip"
        copy.write_bytes(package.read_bytes())
        flip_byte(copy, member)
        report = verify_package(copy, store.keys.public_key_pem())
        rel = member.split("/", 1)[1]
        assert not report.ok, member
        named = {p.path for p in report.problems}
        assert rel in named, (member, report.problems)
    # The command line: exit 0 on the good package, 1 naming the file on a bad one.
    key = tmp_path / "council.pem"
    key.write_bytes(store.keys.public_key_pem())
    assert cli_main(["--data-dir", str(tmp_path / "cli"), "export", "verify", str(package), "--public-key", str(key)]) == 0
    copy = tmp_path / "copy.zip"
    copy.write_bytes(package.read_bytes())
    master = next(m for m in members if "/master/" in m)
    flip_byte(copy, master, offset=5000)
    capsys.readouterr()
    assert cli_main(["--data-dir", str(tmp_path / "cli"), "export", "verify", str(copy), "--public-key", str(key)]) == 1
    out = capsys.readouterr().out
    assert master.split("/", 1)[1] in out and "FAILED" in out


async def test_forged_manifest_fails_the_signature(store, sources, tmp_path):
    package, _ = await produce(store, sources, cameras=1)
    with zipfile.ZipFile(package) as zf:
        exhibit = zf.namelist()[0].split("/")[0]
        entries = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(entries[f"{exhibit}/manifest.json"])
    manifest["produced_for"]["officer_name"] = "Someone Else"
    forged_bytes = (json.dumps(manifest, indent=2) + "\n").encode()
    other = Ed25519PrivateKey.generate()

    def rebuild(path: Path, manifest_bytes: bytes, sig: bytes, key_pem: bytes | None = None) -> None:
        with zipfile.ZipFile(path, "w") as out:
            for name, data in entries.items():
                if name.endswith("/manifest.json"):
                    data = manifest_bytes
                elif name.endswith("/manifest.sig"):
                    data = sig
                elif name.endswith("/public_key.pem") and key_pem is not None:
                    data = key_pem
                out.writestr(name, data)

    # Altered manifest, old signature.
    rebuild(tmp_path / "a.zip", forged_bytes, entries[f"{exhibit}/manifest.sig"])
    report = verify_package(tmp_path / "a.zip", store.keys.public_key_pem())
    assert "manifest.sig" in {p.path for p in report.problems}
    # Re-signed by a forger, who also swapped the key inside the package: the council's key
    # (given out of band) does not verify it.
    forger_pem = other.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    rebuild(tmp_path / "b.zip", forged_bytes, other.sign(forged_bytes), forger_pem)
    report = verify_package(tmp_path / "b.zip", store.keys.public_key_pem())
    assert not report.ok and "manifest.sig" in {p.path for p in report.problems}


async def test_master_that_differs_from_the_catalogue_is_reported_not_exported(store, sources):
    footage = await catalogue_footage(store.sessions, store.root, sources, cameras=1)
    seg = footage.segments[footage.camera_ids[0]][1]
    path = store.root / seg.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    rid = await store.request([(footage.camera_ids[0], footage.base_us, footage.base_us + 3 * SEGMENT_US)])
    await store.runner().run_once()
    req, job = await store.get(rid)
    assert job.state == JobState.FAILED.value
    assert Path(seg.path).name in job.error and "does not match the catalogue" in job.error
    assert req.state == RequestState.APPROVED.value and not req.package_path
    assert not list(store.exports.rglob("*.zip*"))


async def test_findings_report_recorder_gaps_and_clock_flags(store, sources):
    footage = await catalogue_footage(store.sessions, store.root, sources, cameras=1, clock_flag={0: {2}})
    cam = footage.camera_ids[0]
    await add_gap(store.sessions, cam, footage.base_us + 3 * SEGMENT_US, footage.base_us + 4 * SEGMENT_US,
                  "camera unreachable")
    rid = await store.request([(cam, footage.base_us, footage.base_us + 4 * SEGMENT_US)])
    await store.runner().run_once()
    req, job = await store.get(rid)
    assert job.state == JobState.DONE.value, job.error
    window = req.findings["windows"][0]
    reasons = [g["reason"] for g in window["gaps"]]
    assert "recorder gap: camera unreachable" in reasons and "no recorded segment" in reasons
    assert window["clock"]["segments_flagged"] == 1 and window["clock"]["max_abs_segment_offset_s"] == 2.5
    assert req.findings["any_clock_flags"] and req.findings["any_gaps"]


async def test_refused_request_produces_nothing(store, sources):
    footage = await catalogue_footage(store.sessions, store.root, sources, cameras=1)
    rid = await store.request([(footage.camera_ids[0], footage.base_us, footage.base_us + SEGMENT_US)], approve=False)
    async with transaction(store.sessions) as session:
        req = await get_request(session, rid)
        await decide(session, req, by="super1", approve=False, reason="not proportionate")
        with pytest.raises(Invalid):
            await decide(session, req, by="super1", approve=True, reason="changed my mind")
    assert await store.runner().run_once() is None
    req, job = await store.get(rid)
    assert req.state == RequestState.REFUSED.value and job is None and not req.package_path
    assert not store.exports.exists() or not any(store.exports.rglob("*"))


async def test_cancel_while_running_leaves_nothing(store, sources, monkeypatch):
    footage = await catalogue_footage(store.sessions, store.root, sources, cameras=2)
    rid = await store.request([(c, footage.base_us, footage.base_us + 3 * SEGMENT_US) for c in footage.camera_ids])
    runner = store.runner()
    import controlroom.evidence.package as package_mod

    real_add = package_mod.PackageWriter.add_file
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_add(self, *a, **kw):  # the export is a few ms long: widen the window to cancel in
        loop.call_soon_threadsafe(started.set)
        self.cancel.wait(5)
        return real_add(self, *a, **kw)

    monkeypatch.setattr(package_mod.PackageWriter, "add_file", slow_add)
    task = asyncio.create_task(runner.run_once())
    await asyncio.wait_for(started.wait(), 10)
    async with transaction(store.sessions) as session:
        from storage.evidence import active_job

        job = await active_job(session, rid)
        job.cancel_requested = True
    await asyncio.wait_for(task, 20)
    req, job = await store.get(rid)
    assert job.state == JobState.CANCELLED.value and req.state == RequestState.APPROVED.value
    assert not list(store.exports.rglob("*.zip*"))


async def test_not_enough_space_is_refused_before_starting(store, sources):
    footage = await catalogue_footage(store.sessions, store.root, sources, cameras=1)
    rid = await store.request([(footage.camera_ids[0], footage.base_us, footage.base_us + 3 * SEGMENT_US)])
    await store.runner(free_space_margin_bytes=1 << 60).run_once()
    req, job = await store.get(rid)
    assert job.state == JobState.FAILED.value and "not enough free space" in job.error
    assert req.state == RequestState.APPROVED.value


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


async def test_disk_full_during_export_is_a_clear_error_and_offers_nothing(store, sources, tmp_path, monkeypatch):
    """A real full filesystem: a 2 MiB tmpfs holds the export area. The space check is told the
    disk is empty, as if another writer filled it after the check."""
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "2m"):
        pytest.skip("disk-full test needs root to mount a small tmpfs")
    try:
        store.exports = small / "evidence"
        footage = await catalogue_footage(store.sessions, store.root, sources, cameras=2)
        rid = await store.request([(c, footage.base_us, footage.base_us + 3 * SEGMENT_US) for c in footage.camera_ids])
        import controlroom.evidence.runner as runner_mod

        monkeypatch.setattr(runner_mod, "free_bytes", lambda path: 1 << 40)
        await store.runner().run_once()
        req, job = await store.get(rid)
        assert job.state == JobState.FAILED.value
        assert "disk filled up" in job.error and "no space left" in job.error
        assert req.state == RequestState.APPROVED.value and not req.package_path
        assert not list(small.rglob("*.zip*")), list(small.rglob("*"))
        # With room again, the same request exports (a new job).
        store.exports = tmp_path / "roomy"
        async with transaction(store.sessions) as session:
            from storage.evidence import queue_export

            await queue_export(session, await get_request(session, rid), by="super1")
        await store.runner().run_once()
        req, job = await store.get(rid)
        assert job.state == JobState.DONE.value, job.error
    finally:
        await run(["umount", "-l", str(small)], check=False)


KILLABLE = r"""
import asyncio, sys
from pathlib import Path
import controlroom.evidence.package as package_mod
from controlroom.evidence.runner import ExportRunner
from storage.db import make_engine, make_sessionmaker
from storage.keys import load_or_create_keys

data = Path(sys.argv[1])
real_add = package_mod.PackageWriter.add_file
def slow_add(self, *a, **kw):
    out = real_add(self, *a, **kw)
    self._zip.fp.flush()
    print("wrote", a[0], flush=True)
    import time; time.sleep(30)  # killed here, mid-export
    return out
package_mod.PackageWriter.add_file = slow_add

async def main():
    engine = make_engine(f"sqlite+aiosqlite:///{data / 'controlroom.db'}")
    keys = load_or_create_keys(data / "secret.key")
    runner = ExportRunner(make_sessionmaker(engine, audit_key=keys.audit_mac_key), keys,
                          storage_root=data / "recordings", export_root=data / "evidence", heartbeat_s=0.2)
    await runner.run_once()
asyncio.run(main())
"""


async def test_export_killed_mid_way_is_restarted_and_completes(store, sources):
    footage = await catalogue_footage(store.sessions, store.root, sources, cameras=1)
    rid = await store.request([(footage.camera_ids[0], footage.base_us, footage.base_us + 3 * SEGMENT_US)])
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", KILLABLE, str(store.data_dir),
                                                stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.startswith(b"wrote master/")
        req, job = await store.get(rid)
        assert job.state == JobState.RUNNING.value and req.state == RequestState.EXPORTING.value
        assert list(store.exports.rglob("*.zip.part"))
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    runner = store.runner(stale_after_s=30)
    assert await runner.recover() == []  # its heartbeat is fresh: not yet presumed dead
    await asyncio.sleep(0.3)
    assert await runner.recover(stale_after_s=0.2) == [job.id]
    req, job = await store.get(rid)
    assert job.state == JobState.QUEUED.value and "stopped during attempt 1" in job.error
    assert req.state == RequestState.APPROVED.value
    assert not list(store.exports.rglob("*.zip.part"))
    assert await runner.run_once() == job.id
    req, job = await store.get(rid)
    assert job.state == JobState.DONE.value and job.attempts == 2 and req.state == RequestState.READY.value
    assert verify_package(store.exports / req.package_path, store.keys.public_key_pem()).ok


def test_labels_tell_the_october_hour_apart():
    """01:30 happens twice on 25 October 2026 in London: the labels differ by zone and offset."""
    from datetime import UTC, datetime

    from controlroom.evidence.plan import CameraWindow
    from controlroom.evidence.working import _label

    cam = CameraWindow(1, "High St", "Town Centre", "", "", "fixed", 0, 1, None, None, False)
    first = int(datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp() * 1_000_000)
    second = first + 3_600_000_000
    assert "01:30:00 BST (+01:00)" in _label(cam, first) and "00:30:00 UTC" in _label(cam, first)
    assert "01:30:00 GMT (+00:00)" in _label(cam, second) and "01:30:00 UTC" in _label(cam, second)


async def test_window_without_any_footage_is_reported_missing(store, sources):
    from evidence_media import add_cameras

    footage = await catalogue_footage(store.sessions, store.root, sources, cameras=1)
    (empty,) = await add_cameras(store.sessions, ["Dark camera"])
    span = (footage.base_us, footage.base_us + 2 * SEGMENT_US)
    rid = await store.request([(footage.camera_ids[0], *span), (empty, *span)])
    await store.runner().run_once()
    req, job = await store.get(rid)
    assert job.state == JobState.DONE.value, job.error
    with zipfile.ZipFile(store.exports / req.package_path) as zf:
        exhibit = zf.namelist()[0].split("/")[0]
        manifest = json.loads(zf.read(f"{exhibit}/manifest.json"))
    dark = next(c for c in manifest["cameras"] if c["camera_id"] == empty)
    assert dark["missing"] is True and dark["master_files"] == [] and dark["working_copy"] is None
    assert dark["gaps"][0]["duration_s"] == 2 * SEGMENT_US / 1e6
    assert req.findings["any_missing"]


async def export_under_way(store, sources, monkeypatch) -> tuple[int, ExportRunner, object]:
    """A running runner whose export of one camera is writing its package (held there until
    it is told to stop); the request id, the runner and the real ``PackageWriter.add_file``."""
    import controlroom.evidence.package as package_mod

    footage = await catalogue_footage(store.sessions, store.root, sources, cameras=1)
    rid = await store.request([(footage.camera_ids[0], footage.base_us, footage.base_us + 3 * SEGMENT_US)])
    real_add = package_mod.PackageWriter.add_file
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_add(self, *a, **kw):
        loop.call_soon_threadsafe(started.set)
        self.cancel.wait(10)
        return real_add(self, *a, **kw)

    monkeypatch.setattr(package_mod.PackageWriter, "add_file", slow_add)
    runner = store.runner()
    await runner.start()
    await asyncio.wait_for(started.wait(), 20)
    return rid, runner, real_add


async def test_clean_stop_queues_the_running_export_again(store, sources, monkeypatch):
    import controlroom.evidence.package as package_mod

    rid, runner, real_add = await export_under_way(store, sources, monkeypatch)
    await asyncio.wait_for(runner.stop(), 30)
    req, job = await store.get(rid)
    assert job.state == JobState.QUEUED.value and req.state == RequestState.APPROVED.value
    monkeypatch.setattr(package_mod.PackageWriter, "add_file", real_add)
    assert await store.runner().run_once() == job.id
    req, job = await store.get(rid)
    assert job.state == JobState.DONE.value and req.state == RequestState.READY.value


async def test_a_requeue_that_cannot_be_written_is_logged_with_the_job(store, sources, monkeypatch, caplog):
    """Issue 12: the requeue at a clean stop swallowed every failure. Here the job's row is gone
    when the service stops (deleted behind the runner's back): that is now logged, with the job
    and the request and what happens next, never passed over in silence."""
    import logging

    from sqlalchemy import delete

    rid, runner, _ = await export_under_way(store, sources, monkeypatch)
    _, job = await store.get(rid)
    async with transaction(store.sessions) as session:
        await session.execute(delete(ExportJob).where(ExportJob.id == job.id))
    with caplog.at_level(logging.ERROR, logger="controlroom.evidence.runner"):
        await asyncio.wait_for(runner.stop(), 30)
    logged = [r for r in caplog.records if "could not be queued again" in r.getMessage()]
    assert logged, caplog.text
    assert f"evidence request {rid}: export job {job.id}" in logged[0].getMessage() and logged[0].exc_info
