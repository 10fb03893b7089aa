"""The evidence package of a camera that records H.265: the masters are the recorded HEVC files,
byte for byte; the working copy is re-encoded to H.264, so that it plays on an ordinary PC
(issue 14, item 0). Real segments made by ffmpeg's libx265, the real export runner, ffprobe."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from evidence_media import SEGMENT_US, catalogue_footage, make_segments
from test_evidence_package import Store

from controlroom.evidence.verify import verify_package
from controlroom.evidence.working import probe_codec
from storage.evidence import JobState


@pytest.fixture(scope="module")
def hevc_sources(tmp_path_factory) -> list[Path]:
    return make_segments(tmp_path_factory.mktemp("hevc-media"), 3, encoder="libx265")


@pytest.fixture
async def store(data_dir: Path):
    s = Store(data_dir)
    await s.open()
    yield s
    await s.engine.dispose()


def ffprobe(path: Path) -> dict:
    return json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,codec_type", "-of", "json",
         str(path)], capture_output=True, check=True, timeout=60).stdout)


async def test_hevc_working_copy_is_h264_and_masters_are_bit_exact(store, hevc_sources, tmp_path):
    assert {probe_codec(p) for p in hevc_sources} == {"hevc"}
    footage = await catalogue_footage(store.sessions, store.root, hevc_sources, cameras=1, codec="hevc")
    start, end = footage.base_us + 2_500_000, footage.base_us + 3 * SEGMENT_US - 2_500_000
    rid = await store.request([(footage.camera_ids[0], start, end)])
    assert await store.runner().run_once() is not None
    req, job = await store.get(rid)
    assert job.state == JobState.DONE.value, job.error
    package = store.exports / req.package_path
    assert verify_package(package, store.keys.public_key_pem()).ok
    with zipfile.ZipFile(package) as zf:
        names = zf.namelist()
        exhibit = names[0].split("/")[0]
        manifest = json.loads(zf.read(f"{exhibit}/manifest.json"))
        for seg in footage.segments[footage.camera_ids[0]]:  # masters: the recorded HEVC, byte for byte
            member = next(n for n in names if n.startswith(f"{exhibit}/master/") and n.endswith(Path(seg.path).name))
            assert zf.read(member) == (store.root / seg.path).read_bytes()
        zf.extractall(tmp_path / "x")
    folder = tmp_path / "x" / exhibit
    cam = manifest["cameras"][0]
    for master in cam["master_files"]:
        path = folder / master["path"]
        assert [s["codec_name"] for s in ffprobe(path)["streams"]] == ["hevc"]
    working = cam["working_copy"]
    assert working["video"] == "H.264, re-encoded from the recorded H.265 (HEVC)", working
    probe = ffprobe(folder / working["path"])
    assert {s["codec_type"]: s["codec_name"] for s in probe["streams"]} == {"video": "h264", "subtitle": "mov_text"}
    window_s = (end - start) / 1e6
    assert abs(float(probe["format"]["duration"]) - window_s) <= 1.0  # re-encoded: cut at the frame, not a keyframe
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(folder / working["path"]), "-map", "0:v", "-f", "null",
                              "-"], capture_output=True, timeout=60)
    assert decoded.returncode == 0 and not decoded.stderr, decoded.stderr
