"""Picture checks on one snapshot of a camera: blurred, too dark, covered, moved off its view.

Pure image logic (OpenCV and numpy, no service, no database), so that it is tested on real
frames and their degraded copies, and benched alone. The picture is analysed in grey at a fixed
width (``Thresholds.width``), so the thresholds do not depend on the camera's resolution.

- **blurred** (defocused, a smeared or misted dome): the variance of the Laplacian (how much
  fine edge there is). Scenes differ by an order of magnitude in it, so with a reference view
  the test is relative (below ``blur_ratio`` of the reference's); without one it is absolute
  (``blur_min_variance``).
- **dark**: the mean luma (0-255) below ``dark_mean``.
- **covered** (bagged, sprayed, a sign or a branch in front): the picture is cut into a grid of
  8 x 8 cells; a cell is flat when its standard deviation is under ``flat_cell_std``; covered
  when ``covered_fraction`` of the cells that have detail in the reference view are now flat
  (a scene with sky or blank walls has flat cells of its own); without a reference, when
  ``covered_fraction_alone`` of all cells are flat.
- **moved** (knocked, turned, re-aimed): ORB features of the picture are matched with the
  reference's and a rotation + scale + shift is fitted with RANSAC; moved when too few
  features agree (``moved_min_matches``: a different view), or the centre of the view shifted
  more than ``moved_shift_fraction`` of the width, or it turned more than ``moved_rotation_deg``,
  or the zoom changed by more than ``moved_scale`` (relative). A picture that is dark, blurred
  or covered is not compared (few features would match for those reasons, not for a move).

A PTZ camera moves on purpose: its view check needs the reference of the preset it is parked
at, which this module does not know; the service skips the moved check for PTZ cameras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

BLURRED, DARK, COVERED, MOVED = "blurred", "dark", "covered", "moved"
GRID = (8, 8)  # cells across, down


@dataclass(frozen=True)
class Thresholds:
    width: int = 640
    blur_ratio: float = 0.35
    blur_min_variance: float = 40.0
    dark_mean: float = 35.0
    flat_cell_std: float = 4.0
    covered_fraction: float = 0.4  # of the reference's textured cells now flat
    covered_fraction_alone: float = 0.75  # of all cells flat, when there is no reference
    moved_shift_fraction: float = 0.04
    moved_rotation_deg: float = 3.0
    moved_scale: float = 0.1
    moved_min_matches: int = 15


class PictureError(ValueError):
    """The snapshot is not a picture (not a JPEG/PNG OpenCV can decode)."""


@dataclass
class Reference:
    """What a check needs of the reference view: its grey picture and measures."""

    grey: np.ndarray
    sharpness: float
    cells: np.ndarray  # standard deviation per grid cell
    keypoints: list = field(default_factory=list)
    descriptors: np.ndarray | None = None


@dataclass
class Result:
    mean_luma: float
    sharpness: float  # variance of the Laplacian
    flat_fraction: float
    failures: dict[str, str] = field(default_factory=dict)  # kind -> why
    matches: int | None = None  # features agreeing with the reference (None: not compared)
    shift_fraction: float | None = None
    rotation_deg: float | None = None
    scale: float | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {"mean_luma": round(self.mean_luma, 1), "sharpness": round(self.sharpness, 1),
                "flat_fraction": round(self.flat_fraction, 3), "failures": dict(self.failures),
                "matches": self.matches,
                "shift_fraction": None if self.shift_fraction is None else round(self.shift_fraction, 4),
                "rotation_deg": None if self.rotation_deg is None else round(self.rotation_deg, 2),
                "scale": None if self.scale is None else round(self.scale, 3)}


_ORB = None


def _orb():
    global _ORB
    if _ORB is None:
        _ORB = cv2.ORB_create(nfeatures=500)
    return _ORB


def grey(image: bytes | np.ndarray, width: int) -> np.ndarray:
    """The picture in grey at ``width`` pixels across (aspect kept). Encoded bytes or an array
    (BGR or grey)."""
    if isinstance(image, bytes | bytearray | memoryview):
        img = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise PictureError("the snapshot is not a picture OpenCV can decode")
    else:
        img = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = img.shape
    if w != width:
        img = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return img


def sharpness(g: np.ndarray) -> float:
    return float(cv2.Laplacian(g, cv2.CV_64F).var())


def cell_stds(g: np.ndarray) -> np.ndarray:
    """Standard deviation of each cell of the grid (rows x cols)."""
    h, w = g.shape
    cols, rows = GRID
    return np.array([[float(g[r * h // rows:(r + 1) * h // rows, c * w // cols:(c + 1) * w // cols].std())
                      for c in range(cols)] for r in range(rows)])


def reference(image: bytes | np.ndarray, t: Thresholds = Thresholds()) -> Reference:
    """The reference view of a camera, from a snapshot taken when it was right."""
    g = grey(image, t.width)
    keypoints, descriptors = _orb().detectAndCompute(g, None)
    return Reference(g, sharpness(g), cell_stds(g), list(keypoints), descriptors)


def _compare(g: np.ndarray, ref: Reference, t: Thresholds, result: Result) -> None:
    keypoints, descriptors = _orb().detectAndCompute(g, None)
    if descriptors is None or ref.descriptors is None or len(keypoints) < 2 or len(ref.keypoints) < 2:
        result.matches = 0
    else:
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(ref.descriptors, descriptors)
        if len(pairs) < 3:
            result.matches = 0
        else:
            src = np.float32([ref.keypoints[m.queryIdx].pt for m in pairs])
            dst = np.float32([keypoints[m.trainIdx].pt for m in pairs])
            matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
            result.matches = 0 if matrix is None else int(inliers.sum())
            if matrix is not None:
                h, w = g.shape
                centre = np.array([w / 2, h / 2, 1.0])
                moved_to = matrix @ centre
                result.shift_fraction = float(math.hypot(moved_to[0] - w / 2, moved_to[1] - h / 2) / w)
                result.rotation_deg = float(math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])))
                result.scale = float(math.hypot(matrix[0, 0], matrix[1, 0]))
    if result.matches < t.moved_min_matches:
        result.failures[MOVED] = (f"the view does not match its reference ({result.matches} features agree, "
                                  f"{t.moved_min_matches} needed)")
    elif result.shift_fraction > t.moved_shift_fraction:
        result.failures[MOVED] = f"the view has shifted by {result.shift_fraction:.0%} of its width"
    elif abs(result.rotation_deg) > t.moved_rotation_deg:
        result.failures[MOVED] = f"the view has turned by {result.rotation_deg:.1f} degrees"
    elif abs(math.log(result.scale)) > math.log1p(t.moved_scale):
        result.failures[MOVED] = f"the view's zoom has changed ({result.scale:.2f} times the reference)"


def check(image: bytes | np.ndarray, ref: Reference | None = None, t: Thresholds = Thresholds(),
          *, compare_view: bool = True) -> Result:
    """Judge one snapshot; ``ref`` is the camera's reference view, if it has one.

    The checks run in the order dark, covered, blurred, moved, and the first that fails is the
    verdict: a dark picture has less of everything (edges, texture, features) and a covered
    one less edge and fewer features, so the later checks would only echo the earlier one."""
    g = grey(image, t.width)
    cells = cell_stds(g)
    flat = cells < t.flat_cell_std
    result = Result(float(g.mean()), sharpness(g), float(flat.mean()))
    if result.mean_luma < t.dark_mean:
        result.failures[DARK] = f"too dark (mean brightness {result.mean_luma:.0f} of 255, under {t.dark_mean:g})"
        return result
    if ref is not None:
        # Of the cells with texture in the reference, how many are now one flat colour.
        textured = ref.cells >= 2 * t.flat_cell_std
        lost = float((flat & textured).sum() / max(1, textured.sum()))
        if lost >= t.covered_fraction or result.flat_fraction >= 0.999:
            result.failures[COVERED] = (f"blocked or covered ({lost:.0%} of the parts of its reference view "
                                        "with detail are now one flat colour)")
            return result
    elif result.flat_fraction >= t.covered_fraction_alone:
        result.failures[COVERED] = f"blocked or covered ({result.flat_fraction:.0%} of the picture is one flat colour)"
        return result
    if ref is not None and ref.sharpness > 0:
        if result.sharpness < t.blur_ratio * ref.sharpness:
            result.failures[BLURRED] = (f"blurred (sharpness {result.sharpness:.0f}, "
                                        f"{result.sharpness / ref.sharpness:.0%} of its reference's)")
            return result
    elif result.sharpness < t.blur_min_variance:
        result.failures[BLURRED] = f"blurred (sharpness {result.sharpness:.0f}, under {t.blur_min_variance:g})"
        return result
    if ref is not None and compare_view:
        _compare(g, ref, t, result)
    return result
