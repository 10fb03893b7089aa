"""A redacted SAR export from the browser: real service, real Chromium, real CenterFace.

Two seconds of the simulator's street (four pedestrians with faces) are catalogued on a camera;
a SAR holds that window. A supervisor starts the redaction from the SAR's detail and sees it
finish; on a frame, clicks the box over the requester's face (the woman in the green coat) and
marks her as the requester, drags a box on the paving to obscure it by hand, runs it again,
and downloads the package. The package verifies (signature, every hash); then the face
detector runs on every frame of the redacted MP4 in it: no third party's face is found, and the
requester's face is. The redaction log names the requester's track as left visible, by whom.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from redaction_media import street_segments
from ui_stack import running_stack, signed_in

from controlroom.context import KEYS, SESSIONS
from controlroom.evidence.verify import verify_package
from controlroom.redaction.faces import FaceDetector
from simulator import pedestrians
from storage import sar
from storage.catalogue import NewSegment, commit_segment
from storage.db import now_us, transaction

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]
SUPERVISOR = "sup1"
SEGMENT_US = 2_000_000
REQUESTER = pedestrians.PEOPLE[0].name
FRAME = 10


def who(frame: int, box) -> str:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return min(pedestrians.faces(frame / pedestrians.FPS),
               key=lambda nb: (nb[1][0] + nb[1][2] / 2 - cx) ** 2 + (nb[1][1] + nb[1][3] / 2 - cy) ** 2)[0]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("ui-redaction")
    async with running_stack(work, cameras=1, live=0, ptz=0, record=False, users={SUPERVISOR: "supervisor"},
                             **{"lawful.redaction_heartbeat_s": 0.3}) as st:
        yield st


async def test_a_redacted_sar_export_leaves_no_third_party_face(stack, browser, artifacts: Path, tmp_path):
    cam = next(iter(stack.cameras.values()))
    root = stack.settings.storage_root
    base = (now_us() // 1_000_000 - 3600) * 1_000_000
    src = street_segments(tmp_path / "street", 2)[0]
    incoming = root / str(cam) / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, incoming / "0.mkv")
    await commit_segment(stack.app[SESSIONS], root, incoming / "0.mkv", NewSegment(
        cam, base, base + SEGMENT_US, codec="h264", width=1920, height=1080, clock_offset_s=0.0, clock_flag=False))
    async with transaction(stack.app[SESSIONS]) as session:
        s = await sar.create(session, by=SUPERVISOR, requester_name="Jane Doe", description="woman, green coat",
                             places_times="Market Place this morning", received_us=now_us(), identity_method="passport")
        window = await sar.add_window(session, s, by=SUPERVISOR, camera_id=cam, start_us=base, end_us=base + SEGMENT_US,
                             max_window_us=86_400_000_000, hold_review_us=now_us() + 86_400_000_000)
        reference, sar_id, window_id = s.reference, s.id, window.id

    page = await signed_in(browser, stack.base_url, SUPERVISOR, "#lawful/sar")
    row = page.locator(f'#lw-sar-body tr[data-ref="{reference}"]')
    await row.wait_for(timeout=10_000)
    await row.click()
    await page.wait_for_selector("#lw-red")
    await page.locator("#lw-red-frame-info", has_text="not analysed yet").wait_for(timeout=20_000)
    await page.click("#lw-red-start")
    done = page.locator('#lw-red-status[data-state="done"]')
    await done.wait_for(timeout=300_000)
    assert await page.evaluate("() => document.getElementById('lw-red-progress').value") == 1

    # Frame 10: the boxes the analysis found, every one obscured so far.
    await page.fill("#lw-red-frame", str(FRAME))
    await page.dispatch_event("#lw-red-frame", "change")
    await page.locator(f'#lw-red-stage[data-frame="{FRAME}"]').wait_for(timeout=20_000)
    boxes = await page.evaluate("""async (url) => (await (await fetch(url)).json()).boxes""",
                                f"/api/v1/sar/requests/{sar_id}/windows/{window_id}/boxes?frame={FRAME}")
    faces = [b for b in boxes if b["kind"] == "face"]
    assert len(faces) >= 3 and all(b["obscured"] for b in faces)
    mine = next(b for b in faces if who(FRAME, b["box"]) == REQUESTER)
    await page.click(f'.lw-red-box[data-track="{mine["track"]}"]')
    await page.click("#lw-red-requester")
    await page.locator('#lw-red-marks li').first.wait_for(timeout=10_000)
    assert "the requester" in await page.text_content("#lw-red-marks")
    await page.locator(f'.lw-red-box.lw-red-visible[data-track="{mine["track"]}"]').wait_for(timeout=10_000)

    # A box by hand on the paving (dragged on the picture, where no box is), obscured and followed.
    img = await page.locator("#lw-red-img").bounding_box()
    scale = img["width"] / pedestrians.SIZE[0]
    await page.mouse.move(img["x"] + 1700 * scale, img["y"] + 995 * scale)
    await page.mouse.down()
    await page.mouse.move(img["x"] + 1850 * scale, img["y"] + 1060 * scale, steps=4)
    await page.mouse.up()
    await page.locator("#lw-red-drawn").wait_for(timeout=5_000)
    await page.click("#lw-red-add")
    await page.locator("#lw-red-marks li >> nth=1").wait_for(timeout=10_000)
    await page.screenshot(path=str(artifacts / "ui-sar-redaction-review.png"))

    await page.click("#lw-red-start")
    second = page.locator('#lw-red-jobs li[data-state="done"] >> nth=1')
    await second.wait_for(timeout=300_000)
    async with page.expect_download() as info:
        await page.locator("#lw-red-jobs li >> nth=0").locator("a.lw-red-download").click()
    download = await info.value
    package = tmp_path / download.suggested_filename
    await download.save_as(package)
    assert page.errors == []
    await page.context.close()

    report = verify_package(package, stack.app[KEYS].public_key_pem())
    assert report.ok, report.problems
    ref = report.manifest["exhibit_reference"]
    with zipfile.ZipFile(package) as zf:
        (mp4,) = [n for n in zf.namelist() if n.endswith(".mp4")]
        (tmp_path / "r.mp4").write_bytes(zf.read(mp4))
        log = json.loads(zf.read(f"{ref}/redaction-log.json"))
    entries = log["windows"][0]["entries"]
    kept = [e for e in entries if e["action"] == "left visible"]
    assert len(kept) == 1 and kept[0]["why"] == "the requester" and kept[0]["by"] == SUPERVISOR
    assert any(e["what"] == "box added by hand" and e["by"] == SUPERVISOR for e in entries)

    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "r.mp4"), "-f", "rawvideo", "-pix_fmt", "bgr24",
                          "pipe:1"], capture_output=True, check=True, timeout=120).stdout
    w, h = pedestrians.SIZE
    frames = len(raw) // (w * h * 3)
    assert frames == 50
    detector = FaceDetector()
    third_party = requester = 0
    for n in range(frames):
        frame = np.frombuffer(raw[n * w * h * 3:(n + 1) * w * h * 3], np.uint8).reshape(h, w, 3)
        found = [f.box for f in detector.detect(frame)]
        third_party += sum(who(n, f) != REQUESTER for f in found)
        requester += any(who(n, f) == REQUESTER for f in found)
    assert third_party == 0
    assert requester >= 0.9 * frames
