"""Writing an evidence package: a ZIP, stored (not compressed), written as a stream.

Layout (everything under one folder named after the exhibit reference)::

    <EXHIBIT>/master/<cam>/<start_us>_<end_us>.mkv   the catalogued segments, bit for bit
    <EXHIBIT>/working/<cam>.mp4 and <cam>.srt       playable copy with time and camera subtitles
    <EXHIBIT>/custody.jsonl                         the chain of custody up to production
    <EXHIBIT>/README.txt, public_key.pem            how to verify; the service's public key
    <EXHIBIT>/SHA256SUMS                            `sha256sum -c` over every file above
    <EXHIBIT>/manifest.json, manifest.sig           the signed description (Ed25519)

Every byte is hashed while it is copied (one read of each master); a master whose SHA-256 does
not match the catalogue stops the export with its name. ``allowZip64`` makes files and archives
over 4 GiB work. Memory stays flat: files move through one 4 MiB buffer, nothing is held whole.
Blocking: call from a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zlib_ng.zlib_ng import crc32

from cameras import masking as paint
from controlroom import __version__
from controlroom.evidence.plan import CameraWindow
from controlroom.evidence.working import Cancelled, WorkingJob
from controlroom.timefmt import local_iso, us_to_iso
from storage.catalogue import safe_path
from storage.keys import Keys

# zipfile computes each member's CRC-32 with its module's ``crc32`` (zlib's): zlib-ng's gives the
# same values about ten times faster (16 vs 1.6 GB/s measured here, PCLMUL), and at the hour's
# 14.6 GB of package the CRC was ~8 of the export's ~60 CPU seconds (docs/design/evidence.md).
zipfile.crc32 = crc32

CHUNK_BYTES = 4 << 20  # fewer system calls and thread hand-overs than 1 MiB; memory stays flat
FORMAT = "controlroom-evidence/1"


class ExportError(Exception):
    """The export cannot be produced; the message says why, for the supervisor."""


class MasterMismatch(ExportError):
    pass


@dataclass
class Progress:
    """Shared with the runner's heartbeat: bytes done of the estimated total, and the stage.
    Also keeps how long each kind of stage took (``timings_s``), for the log and the audit."""

    def __init__(self) -> None:
        self.total_bytes = 0
        self.done_bytes = 0
        self.lock = threading.Lock()
        self.timings_s: dict[str, float] = {}
        self._stage = "starting"
        self._since = time.monotonic()

    @property
    def stage(self) -> str:
        return self._stage

    @stage.setter
    def stage(self, value: str) -> None:
        with self.lock:
            now = time.monotonic()
            kind = self._stage.split(" of camera")[0]
            self.timings_s[kind] = round(self.timings_s.get(kind, 0.0) + now - self._since, 3)
            self._stage, self._since = value, now

    def add(self, n: int) -> None:
        with self.lock:
            self.done_bytes += n

    def snapshot(self) -> tuple[int, int, str]:
        with self.lock:
            return self.done_bytes, self.total_bytes, self._stage


@dataclass(frozen=True)
class ProducedFile:
    path: str  # inside the exhibit folder
    sha256: str
    bytes: int
    kind: str


@dataclass(frozen=True)
class PackageInfo:
    exhibit: str
    manifest_sha256: str
    package_bytes: int
    files: int


def _zip_time(us: int) -> tuple[int, int, int, int, int, int]:
    dt = datetime.fromtimestamp(max(us / 1e6, 315_532_800), UTC)  # ZIP cannot say before 1980
    return (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)


class PackageWriter:
    """Adds files to the ZIP, hashing as it goes; remembers each file's SHA-256 and size."""

    def __init__(self, path: Path, exhibit: str, progress: Progress, cancel: threading.Event) -> None:
        self.exhibit = exhibit
        self.progress = progress
        self.cancel = cancel
        self.files: list[ProducedFile] = []
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        # SHA-256 runs on a second thread beside the ZIP's CRC-32 and the write (hashlib, zlib and
        # file writes all release the GIL), so a chunk costs the longer of the two, not their sum.
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="package-sha256")
        self._buf = bytearray(CHUNK_BYTES)  # one buffer, reused: memory stays flat

    def _info(self, name: str, size: int, when_us: int) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(f"{self.exhibit}/{name}", date_time=_zip_time(when_us))
        info.compress_type = zipfile.ZIP_STORED
        info.file_size = size
        info.external_attr = 0o644 << 16
        return info

    def add_file(self, name: str, source: Path, kind: str, when_us: int, *, expect_sha256: str | None = None,
                 expect_bytes: int | None = None) -> ProducedFile:
        size = source.stat().st_size
        digest = hashlib.sha256()
        view = memoryview(self._buf)
        with source.open("rb", buffering=0) as src, self._zip.open(self._info(name, size, when_us), "w") as dst:
            while n := src.readinto(view):
                if self.cancel.is_set():
                    raise Cancelled("export cancelled")
                chunk = view[:n]
                hashed = self._hasher.submit(digest.update, chunk)  # the very bytes that are written
                try:
                    dst.write(chunk)
                finally:
                    hashed.result()  # before the buffer is read into again
                self.progress.add(n)
        sha = digest.hexdigest()
        if expect_sha256 is not None and (sha != expect_sha256 or size != expect_bytes):
            raise MasterMismatch(
                f"master {name}: the file on disk does not match the catalogue (SHA-256 {sha}, {size} bytes; "
                f"catalogue {expect_sha256}, {expect_bytes} bytes). It was not exported: the store needs checking."
            )
        produced = ProducedFile(name, sha, size, kind)
        self.files.append(produced)
        return produced

    def add_bytes(self, name: str, data: bytes, kind: str, when_us: int, *, listed: bool = True) -> ProducedFile:
        self._zip.writestr(self._info(name, len(data), when_us), data)
        self.progress.add(len(data))
        produced = ProducedFile(name, hashlib.sha256(data).hexdigest(), len(data), kind)
        if listed:
            self.files.append(produced)
        return produced

    def close(self) -> None:
        self._hasher.shutdown()
        self._zip.close()


def canonical_json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode()


def sha256sums(files: list[ProducedFile]) -> bytes:
    """GNU coreutils format: ``<hex>  <path>`` (two spaces: binary-safe text mode)."""
    return "".join(f"{f.sha256}  {f.path}\n" for f in files).encode()


def readme(exhibit: str, fingerprint: str) -> bytes:
    return f"""EVIDENCE PACKAGE {exhibit}
Produced by controlroom {__version__}, the council's CCTV control-room service.

CONTENTS
  master/      the recorded segments, bit for bit as recorded (Matroska, H.264)
  working/     one playable MP4 per camera, cut to the requested window; date, time
               (UTC and UK local time) and camera are shown as a subtitle track (turn
               subtitles on if your player does not), and in the .srt file beside it
  manifest.json  exhibit reference, request, cameras, times, clock offsets, gaps,
               and the SHA-256 of every file
  manifest.sig   Ed25519 signature of manifest.json by the service's key
  SHA256SUMS     SHA-256 of every file listed in the manifest
  custody.jsonl  chain of custody up to production (each line signed)
  public_key.pem the service's public key (check its fingerprint, below)

{how_to_verify(exhibit, fingerprint)}""".encode()


def how_to_verify(exhibit: str, fingerprint: str) -> str:
    """The README's verification steps, shared by every signed package (evidence, SAR)."""
    return f"""HOW TO VERIFY WITHOUT THIS SOFTWARE (Linux, macOS, or Git Bash / WSL on Windows)
Unzip the package and go into the {exhibit} folder, then:

1. Check the public key is the council's. Its SHA-256 fingerprint (of the raw 32-byte
   Ed25519 key) must be:
       {fingerprint}
   Compute it with:
       openssl pkey -pubin -in public_key.pem -outform DER | tail -c 32 | sha256sum
   Compare it with the fingerprint the council publishes (shown in its control-room
   web interface), not only with this file.

2. Check the signature of the manifest:
       openssl pkeyutl -verify -pubin -inkey public_key.pem -rawin -in manifest.json -sigfile manifest.sig
   It must print "Signature Verified Successfully".

3. Check SHA256SUMS is the one the manifest names:
       sha256sum SHA256SUMS
   must print the value of "sha256sums_sha256" in manifest.json. In one command:
       grep -q "\\"sha256sums_sha256\\": \\"$(sha256sum SHA256SUMS | cut -c1-64)\\"" manifest.json && echo "SHA256SUMS: OK"

4. Check every file:
       sha256sum -c SHA256SUMS
   Every line must end in ": OK".

With the software: controlroom export verify {exhibit}.zip [--public-key council.pem]
"""


def build_manifest(
    *,
    exhibit: str,
    request: dict[str, Any],
    plan: list[CameraWindow],
    cuts: dict[int, dict[str, Any]],
    masters: dict[int, list[dict[str, Any]]],
    files: list[ProducedFile],
    sums_sha256: str,
    produced_by: str,
    produced_us: int,
    fingerprint: str,
) -> dict[str, Any]:
    cameras = []
    for cam in plan:
        f = cam.findings()
        cameras.append({
            "camera_id": cam.camera_id, "name": cam.name, "kind": cam.kind,
            "site": cam.site, "site_location": cam.site_location, "position": cam.position,
            "window": {"from_utc": f["from_utc"], "to_utc": f["to_utc"],
                       "from_local": f["from_local"], "to_local": f["to_local"]},
            "recorded_s": f["recorded_s"], "window_s": f["window_s"], "missing": f["missing"],
            "clock": f["clock"],
            "gaps": f["gaps"],
            "master_files": masters.get(cam.camera_id, []),
            "working_copy": cuts.get(cam.camera_id),
        })
    return {
        "format": FORMAT,
        "exhibit_reference": exhibit,
        "produced": {
            "at_utc": us_to_iso(produced_us), "at_local": local_iso(produced_us), "by": produced_by,
            "software": "controlroom", "software_version": __version__,
        },
        "produced_for": {k: request[k] for k in ("officer_name", "collar_number", "force")},
        "request": request,
        "time_note": "Times are UTC with the Europe/London local time and its offset beside them. "
                     "Camera clock offsets are the camera's clock minus the recorder's (NTP) clock; "
                     "footage is timestamped by the recorder's clock.",
        "cameras": cameras,
        "files": [{"path": p.path, "sha256": p.sha256, "bytes": p.bytes, "kind": p.kind} for p in files],
        "sha256sums_sha256": sums_sha256,
        "signature": {"algorithm": "Ed25519", "file": "manifest.sig", "over": "the exact bytes of manifest.json",
                      "public_key_file": "public_key.pem", "public_key_fingerprint_sha256": fingerprint},
    }


def write_package(
    *,
    path: Path,
    workdir: Path,
    storage_root: Path,
    exhibit: str,
    request: dict[str, Any],
    plan: list[CameraWindow],
    custody_lines: list[dict[str, Any]],
    keys: Keys,
    produced_by: str,
    produced_us: int,
    progress: Progress,
    cancel: threading.Event,
    on_file: Callable[[str], None] | None = None,
    masks: dict[int, tuple[int, list]] | None = None,
    release_masters: bool = False,
) -> PackageInfo:
    """Write the whole package to ``path`` (which must not be offered until verified). Not
    fsynced here: the runner syncs it while it reads it back (:func:`fsync_file`).

    ``masks``: camera id -> (version, polygons) of the cameras with privacy masks: their working
    copies are painted (re-encoded), and their masters, never painted (they are the evidence),
    are left out unless a supervisor released them at approval (``release_masters``)."""
    masks = masks or {}
    workdir.mkdir(parents=True, exist_ok=True)
    mask_pngs = {cid: paint.write_mask_png(polygons, workdir / f"mask-camera{cid}-v{version}.png")
                 for cid, (version, polygons) in masks.items()}
    writer = PackageWriter(path, exhibit, progress, cancel)
    masters: dict[int, list[dict[str, Any]]] = {}
    cuts: dict[int, dict[str, Any]] = {}
    # Pipeline: ffmpeg cuts camera k's working copy while its masters are copied, and camera
    # k+1's as soon as camera k's is made, while the ZIP takes masters and working copies (two
    # cores, one disk). At most two working copies wait on disk at a time.
    jobs: list[WorkingJob] = []

    def start_next(done_cameras: int) -> None:
        if len(jobs) < len(plan) and len(jobs) - done_cameras < 2:
            cam = plan[len(jobs)]
            jobs.append(WorkingJob(cam, storage_root, workdir, mask_pngs.get(cam.camera_id)))

    try:
        start_next(0)
        for k, cam in enumerate(plan):
            progress.stage = f"copying masters of camera {cam.camera_id}"
            rows = masters.setdefault(cam.camera_id, [])
            withheld = cam.camera_id in masks and not release_masters
            for seg in [] if withheld else cam.segments:
                name = f"master/{cam.slug}/{Path(seg.path).name}"
                writer.add_file(name, safe_path(storage_root, seg.path), "master", seg.start_us,
                                expect_sha256=seg.sha256, expect_bytes=seg.bytes)
                rows.append({
                    "path": name, "segment_id": seg.id, "sha256": seg.sha256, "bytes": seg.bytes,
                    "start_utc": us_to_iso(seg.start_us), "end_utc": us_to_iso(seg.end_us),
                    "start_local": local_iso(seg.start_us), "end_local": local_iso(seg.end_us),
                    "state": seg.state, "clock_offset_s": seg.clock_offset_s, "clock_flag": seg.clock_flag,
                })
                if on_file:
                    on_file(name)
                if jobs[-1].finished():
                    start_next(k)
            progress.stage = f"waiting for the working copy of camera {cam.camera_id}"
            made = jobs[k].wait(cancel)
            start_next(k)
            for seg in cam.segments:  # copied and cut: leave the page cache to the package
                drop_from_cache(safe_path(storage_root, seg.path))
            if made is None:
                cuts[cam.camera_id] = None  # type: ignore[assignment]
                continue
            mp4, srt, cut = made
            progress.stage = f"copying the working copy of camera {cam.camera_id}"
            mp4_name, srt_name = f"working/{cam.slug}.mp4", f"working/{cam.slug}.srt"
            writer.add_file(mp4_name, mp4, "working", cam.start_us)
            writer.add_file(srt_name, srt, "working-subtitles", cam.start_us)
            mp4.unlink(missing_ok=True)
            srt.unlink(missing_ok=True)
            first_wall = cut.pieces[0].wall_start_us if cut.pieces else cam.start_us
            cuts[cam.camera_id] = {
                "path": mp4_name, "subtitles": srt_name, "container": "MP4", "video": "H.264, stream copy",
                "starts_utc": us_to_iso(first_wall), "starts_local": local_iso(first_wall),
                "duration_s": round(cut.duration_us / 1e6, 3),
                "note": "Cut without re-encoding: playback starts at the window start, the file may hold "
                        "up to one keyframe interval of earlier frames. Time and camera are in the "
                        "subtitle track (mov_text) and the .srt file.",
            }
            if cut.reencode:  # recorded in H.265 (or another codec an ordinary PC may not play)
                recorded = "/".join("H.265 (HEVC)" if c == "hevc" else c for c in cut.codecs)
                cuts[cam.camera_id].update({
                    "video": f"H.264, re-encoded from the recorded {recorded}",
                    "note": f"Re-encoded to H.264 so that it plays on an ordinary PC; the master files are the "
                            f"recorded {recorded}, byte for byte. Time and camera are in the subtitle track "
                            "(mov_text) and the .srt file.",
                })
            if cam.camera_id in masks:
                version, polygons = masks[cam.camera_id]
                cuts[cam.camera_id].update({
                    "video": "H.264, re-encoded with the camera's privacy masks painted in",
                    "privacy_masks": {
                        "version": version, "polygons": polygons,
                        "masters": "released by the approving supervisor" if release_masters else
                                   "withheld: they show the masked areas; a supervisor may release them",
                    },
                })
        progress.stage = "writing manifest"
        writer.add_bytes("custody.jsonl", "".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n"
                                                   for line in custody_lines).encode(), "custody", produced_us)
        fingerprint = keys.public_key_fingerprint()
        writer.add_bytes("README.txt", readme(exhibit, fingerprint), "readme", produced_us)
        writer.add_bytes("public_key.pem", keys.public_key_pem(), "public-key", produced_us)
        sums = sha256sums(writer.files)
        manifest = canonical_json(build_manifest(
            exhibit=exhibit, request=request, plan=plan, cuts=cuts, masters=masters, files=list(writer.files),
            sums_sha256=hashlib.sha256(sums).hexdigest(), produced_by=produced_by, produced_us=produced_us,
            fingerprint=fingerprint,
        ))
        writer.add_bytes("SHA256SUMS", sums, "sums", produced_us, listed=False)
        writer.add_bytes("manifest.json", manifest, "manifest", produced_us, listed=False)
        writer.add_bytes("manifest.sig", keys.sign(manifest), "signature", produced_us, listed=False)
        count = len(writer.files) + 3
    except BaseException:
        for job in jobs:
            job.kill()
        with contextlib.suppress(Exception):  # the first error is the one worth reporting
            writer.close()
        raise
    writer.close()
    return PackageInfo(exhibit, hashlib.sha256(manifest).hexdigest(), path.stat().st_size, count)


def drop_from_cache(path: Path) -> None:
    """Tell the kernel a file we have finished reading need not stay cached. Read by us and by
    ffmpeg, a master's pages count as in use and would outlive the package's (written once), so
    at an hour of footage (7 GB of masters, a 15 GB package) the read-back came from the disk."""
    if not hasattr(os, "posix_fadvise"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def fsync_file(path: Path) -> None:
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())


def remove_quietly(*paths: Path) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
