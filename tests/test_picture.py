"""cameras.picture on real frames: keyframes of the simulator's clips (what a snapshot decodes)
and degraded copies of them. Each check must catch its own degradation and pass the clean
frame, with and without a reference view."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from cameras.picture import (
    BLURRED,
    COVERED,
    DARK,
    MOVED,
    PictureError,
    Thresholds,
    check,
    reference,
)
from cameras.simulator.clips import ensure_clips, main_recipe, sub_recipe

CACHE = Path.home() / ".cache" / "controlroom" / "simulator"
KEYFRAMES = (0, 100, 200)  # an IDR every 50 frames: a snapshot decodes one of these


def _frame(clip: Path, n: int) -> bytes:
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "h264", "-i", str(clip),
         "-vf", f"select=eq(n\\,{n})", "-frames:v", "1", "-q:v", "3", "-f", "image2", "-c:v", "mjpeg", "pipe:1"],
        capture_output=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def frames() -> dict[str, list[bytes]]:
    """Keyframes of two main scenes (1920x1080; testsrc2 and testsrc) and a sub stream
    (640x360 with a camera's name), as JPEG, like a snapshot."""
    recipes = {"scene A main": main_recipe(0), "scene C main": main_recipe(2),
               "Town Centre 01 sub": sub_recipe("Town Centre 01", 0)}
    clips = asyncio.run(ensure_clips(CACHE, list(recipes.values())))
    return {name: [_frame(clip, n) for n in KEYFRAMES] for name, clip in zip(recipes, clips, strict=True)}


def _jpeg(img: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def _decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def degraded(jpeg: bytes) -> dict[str, bytes]:
    """The same frame made blurred (defocus), dark, covered, and moved (shifted, turned)."""
    img = _decode(jpeg)
    h, w = img.shape[:2]
    sigma = w / 640 * 3  # a defocus of 3 pixels at 640 across, whatever the resolution
    covered = img.copy()
    covered[:, : int(w * 0.75)] = 0  # a black board over three quarters of the view
    shift = np.float32([[1, 0, w * 0.08], [0, 1, h * 0.05]])
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 6, 1.0)
    return {
        BLURRED: _jpeg(cv2.GaussianBlur(img, (0, 0), sigma)),
        DARK: _jpeg((img * 0.15).astype(np.uint8)),
        COVERED: _jpeg(covered),
        "shifted": _jpeg(cv2.warpAffine(img, shift, (w, h), borderMode=cv2.BORDER_REFLECT)),
        "turned": _jpeg(cv2.warpAffine(img, turn, (w, h), borderMode=cv2.BORDER_REFLECT)),
    }


def test_each_check_catches_its_degradation_and_passes_the_clean_frame(frames):
    for name, (first, *later) in frames.items():
        ref = reference(first)
        for jpeg in later:
            clean = check(jpeg, ref)
            assert clean.ok, (name, clean.failures)
            assert clean.matches >= Thresholds().moved_min_matches and clean.shift_fraction < 0.01
            for kind, picture in degraded(jpeg).items():
                result = check(picture, ref)
                expected = MOVED if kind in ("shifted", "turned") else kind
                assert list(result.failures) == [expected], (name, kind, result.to_dict())
            turned = check(degraded(jpeg)["turned"], ref)
            assert turned.rotation_deg == pytest.approx(-6, abs=1)  # OpenCV's angle is anticlockwise
            shifted = check(degraded(jpeg)["shifted"], ref)
            assert shifted.shift_fraction == pytest.approx((0.08**2 + (0.05 * 9 / 16) ** 2) ** 0.5, abs=0.01)


def test_without_a_reference_the_absolute_checks_still_work(frames):
    for name, shots in frames.items():
        jpeg = shots[1]
        assert check(jpeg).ok, name
        assert list(check(degraded(jpeg)[DARK]).failures) == [DARK], name
        img = _decode(jpeg)
        h, w = img.shape[:2]
        bagged = img.copy()
        bagged[: int(h * 0.9), :] = 40  # a bag over the dome: all but a strip is one colour
        assert list(check(_jpeg(bagged)).failures) == [COVERED], name
        heavy = cv2.GaussianBlur(img, (0, 0), w / 640 * 6)
        assert list(check(_jpeg(heavy)).failures) == [BLURRED], name
        # Without a reference there is no view to compare: a moved picture passes.
        assert check(degraded(jpeg)["shifted"]).ok, name


def test_the_view_check_can_be_skipped_and_a_non_picture_is_refused(frames):
    first, second, _ = frames["scene A main"]
    ref = reference(first)
    assert check(degraded(second)["shifted"], ref, compare_view=False).ok  # e.g. a PTZ camera
    with pytest.raises(PictureError):
        check(b"not a jpeg", ref)
    assert check(_decode(second), ref).ok  # an array (BGR) works as well as JPEG bytes
