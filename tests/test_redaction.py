"""Redaction engine on the simulator's street: real frames, real CenterFace, real ffmpeg.

The street's pedestrians have simple faces (simulator.pedestrians): first that the detector
finds them (otherwise nothing below could fail), then that a redacted copy leaves no
third party's face detectable while the requester's face, marked on one frame, stays visible,
and that a box added by hand is obscured and followed.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from redaction_media import street_segments

from controlroom.evidence.plan import CameraWindow, SegmentRef
from controlroom.redaction import engine
from controlroom.redaction.faces import FaceDetector
from simulator import pedestrians

pytestmark = pytest.mark.slow

SECONDS = 4
REQUESTER = pedestrians.PEOPLE[0].name


def visible(box) -> bool:
    x, y, w, h = box
    return x >= 0 and x + w <= pedestrians.SIZE[0]


def near(found, box) -> bool:
    x, y, w, h = box
    return any(abs(f[0] + f[2] / 2 - (x + w / 2)) < w * 0.6 and abs(f[1] + f[3] / 2 - (y + h / 2)) < h * 0.6
               for f in found)


def test_the_face_detector_finds_every_pedestrian_of_the_simulator():
    street, detector = pedestrians.Street(), FaceDetector()
    seen = missed = 0
    for n in range(0, pedestrians.LOOP_S * pedestrians.FPS, 25):
        t = n / pedestrians.FPS
        found = [f.box for f in detector.detect(street.frame(t))]
        everyone = [b for _, b in pedestrians.faces(t)]
        for box in filter(visible, everyone):
            seen, missed = seen + near(found, box), missed + (not near(found, box))
        assert all(any(near([f], b) for b in everyone) for f in found), \
            f"a detection that is no pedestrian's face at {t} s: {found}"
    assert missed == 0 and seen >= 30, (seen, missed)


@pytest.fixture(scope="module")
def window(tmp_path_factory):
    root = tmp_path_factory.mktemp("redaction-store")
    segs = street_segments(root / "cam", SECONDS)
    refs = [SegmentRef(i, str(p.relative_to(root)), i * 2_000_000 + 10**15, (i + 1) * 2_000_000 + 10**15,
                       p.stat().st_size, "", "ok", 0.0, False, "h264") for i, p in enumerate(segs)]
    cam = CameraWindow(camera_id=1, name="Street 01", site="Market Place", site_location="", position="", kind="fixed",
                       start_us=10**15, end_us=10**15 + SECONDS * 1_000_000, camera_clock_offset_s=0.0,
                       camera_clock_checked_us=None, camera_clock_flag=False, segments=refs)
    return root, cam


def who(frame: int, box) -> str:
    """The pedestrian whose face is nearest ``box`` on ``frame``."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return min(pedestrians.faces(frame / pedestrians.FPS),
               key=lambda nb: (nb[1][0] + nb[1][2] / 2 - cx) ** 2 + (nb[1][1] + nb[1][3] / 2 - cy) ** 2)[0]


def requester_box(frame: int):
    return dict(pedestrians.faces(frame / pedestrians.FPS))[REQUESTER]


def test_redaction_leaves_no_third_party_face_and_keeps_the_requester(window, tmp_path):
    root, cam = window
    options = engine.Options()
    source = engine.Source(cam, root, tmp_path)
    cancel = threading.Event()
    analysis = engine.analyse(source, options, cancel, lambda n, s: None)
    assert analysis.frames == SECONDS * pedestrians.FPS
    faces = [t for t in analysis.tracks if t.kind == "face"]
    for t in faces:  # a track follows one pedestrian (people walk out of the picture and others in)
        names = {who(f, box) for f, box in t.boxes.items()}
        assert len(names) == 1 and len(t.boxes) == t.last - t.first + 1, (t.id, names, t.first, t.last)
    # Round trip of the saved analysis.
    analysis.save(tmp_path / "a.json")
    assert engine.Analysis.load(tmp_path / "a.json") == analysis

    added = (200, 100, 120, 80)  # the first shop's sign, obscured by hand
    marks = [engine.Mark(1, "requester", 10, requester_box(10), "sup1"),
             engine.Mark(2, "add", 5, added, "sup1", until_frame=60, note="shop sign")]
    out = tmp_path / "redacted.mp4"
    log = engine.render(source, analysis, marks, out, title="t", actor="sup1", options=options, cancel=cancel,
                        progress=lambda n, s: None)

    detector, street = FaceDetector(), pedestrians.Street()
    third_party = requester_seen = requester_visible = 0
    check = engine.Source.__new__(engine.Source)  # the output, decoded by the same code
    check.width, check.height, check.fps = engine.probe(out)
    frames = list(_decode(out, check.width, check.height))
    assert len(frames) == analysis.frames
    for n, frame in enumerate(frames):
        if n % 2:
            continue  # every other frame is enough to look (the detector is dear)
        found = [f.box for f in detector.detect(frame)]
        third_party += sum(who(n, f) != REQUESTER for f in found)  # any other detection counts against
        mine = requester_box(n)
        if visible(mine):
            requester_visible += 1
            requester_seen += any(who(n, f) == REQUESTER and near([f], mine) for f in found)
        if 6 <= n <= 60:  # the hand-drawn box: a mosaic, its detail (the shop's sign) gone
            assert detail(frame, added) < 0.3 * detail(street.frame(n / pedestrians.FPS), added), n
    assert third_party == 0
    assert requester_seen >= 0.95 * requester_visible > 0
    kinds = {(e["what"], e["action"]) for e in log}
    assert ("face", "left visible") in kinds and ("face", "obscured") in kinds
    assert ("box added by hand", "obscured") in kinds
    kept = next(e for e in log if e["action"] == "left visible")
    assert kept["why"] == "the requester" and kept["by"] == "sup1" and kept["from_utc"].startswith("20")
    assert sum(e["action"] == "obscured" and e["what"] == "face" for e in log) == len(faces) - 1


def detail(frame: np.ndarray, box) -> float:
    """Mean absolute Laplacian inside ``box``: edges and text score high, a mosaic low."""
    x, y, w, h = box
    grey = cv2.cvtColor(np.ascontiguousarray(frame[y:y + h, x:x + w]), cv2.COLOR_BGR2GRAY)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def _decode(path: Path, w: int, h: int):
    import subprocess
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"],
                         capture_output=True, check=True, timeout=120).stdout
    size = w * h * 3
    for i in range(len(raw) // size):
        yield np.frombuffer(raw[i * size:(i + 1) * size], np.uint8).reshape(h, w, 3)
