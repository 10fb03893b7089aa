"""The plate recogniser trained here (anpr/models/plate_rec.onnx): line crops in, per-timestep
character probabilities out.

Trained on synthetic plates only (anpr/synth.py, tools/train_plate_rec.py; figures in
docs/design/anpr-reader.md). Its classes follow PP-OCR's layout: 0 is the CTC blank, then the
characters of ``ALPHABET`` (A-Z0-9, kept in the model's metadata), then a space it never
emits; so the reader loads it like the PP-OCR recognisers (``anpr.reader.RECOGNISERS``), and a
decoder that takes a (T x C) probability matrix and the class list takes its output as it is.

Blocking (onnxruntime); safe to call from several threads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anpr import AnprError

MODEL = Path(__file__).parent / "models" / "plate_rec.onnx"
HEIGHT_PX = 48  # input height; width is free (one time step per STEP_PX)
STEP_PX = 8


class PlateRecogniser:
    """``probabilities(crops)``: one (T x C) softmax matrix per crop; ``classes``: the C labels
    (``"<blank>"``, the characters, ``" "``)."""

    def __init__(self, threads: int = 1, model: Path = MODEL) -> None:
        import onnxruntime as ort

        if not model.is_file():
            raise AnprError(f"plate recognition model {model} is missing (rebuild it: tools/train_plate_rec.py)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        characters = self.session.get_modelmeta().custom_metadata_map["character"].splitlines()
        self.classes: tuple[str, ...] = ("<blank>", *characters, " ")

    def probabilities(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Per crop (HEIGHT_PX x W x 3 BGR uint8, a plate's line straightened), its (T x C)
        per-time-step class probabilities, T = ceil(W / STEP_PX): the steps over the grey
        padding that batching adds to narrower crops are cut off."""
        if not crops:
            return []
        for crop in crops:
            if crop.ndim != 3 or crop.shape[0] != HEIGHT_PX or crop.shape[2] != 3 or crop.dtype != np.uint8:
                raise AnprError(f"a line crop must be {HEIGHT_PX} x W x 3 uint8 (BGR), not {crop.shape} {crop.dtype}")
        width = -(-max(c.shape[1] for c in crops) // STEP_PX) * STEP_PX
        batch = np.zeros((len(crops), 3, HEIGHT_PX, width), np.float32)
        for i, crop in enumerate(crops):
            batch[i, :, :, : crop.shape[1]] = (crop.astype(np.float32) * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)
        probs = self.session.run(None, {"x": batch})[0]
        return [p[: -(-c.shape[1] // STEP_PX)] for p, c in zip(probs, crops, strict=True)]

    def read(self, crop: np.ndarray) -> tuple[str, list[float]]:
        """Greedy CTC decode of one crop: its text and each character's probability (the
        grammar-constrained decoding is the reader's; this is for checks and tools)."""
        probs = self.probabilities([crop])[0]
        text: list[str] = []
        conf: list[float] = []
        prev = 0
        for t, k in enumerate(probs.argmax(axis=1)):
            k = int(k)
            if k != prev and 0 < k < len(self.classes) - 1:
                text.append(self.classes[k])
                conf.append(float(probs[t, k]))
            elif k == prev and text and 0 < k < len(self.classes) - 1:
                conf[-1] = max(conf[-1], float(probs[t, k]))
            prev = k
        return "".join(text), conf
