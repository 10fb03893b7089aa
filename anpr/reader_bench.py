"""Benchmark of the plate reader against the plain baseline, on a folder of labelled photographs.

The folder holds ``NAME.jpg`` with ``NAME.txt``: one tab-separated line
``file  x  y  w  h  PLATE`` per plate (the format of openalpr/benchmarks, which
``../shared/anpr-dev/`` uses). Both readers run in the same process, one after the other, on
the same decoded images, so their figures are comparable. Used by ``controlroom anpr bench``
and ``python -m bench.anpr``.

The baseline is rapidocr-onnxruntime used as shipped (detection, angle classification and
recognition over the whole image) with a plate-pattern filter: the most confident text line of
4 to 8 letters and digits containing a digit.

Accuracy is reported for the whole set and for its two halves, split by a hash of the file
name: the reader's thresholds were tuned on the "tune" half only, so the "held-out" half says
how it does on photographs it was not fitted to.
"""

from __future__ import annotations

import hashlib
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from anpr import AnprError
from storage.anpr.vrm import clean_plate_text

FRAME_1080P = (1920, 1080)


@dataclass(frozen=True)
class Sample:
    name: str
    image_path: Path
    plates: tuple[str, ...]  # every plate labelled in the image (normalised)

    @property
    def half(self) -> str:
        """'tune' or 'held-out', fixed by the file name (not by its content or order)."""
        return "tune" if hashlib.sha1(self.name.encode()).digest()[0] % 2 == 0 else "held-out"


def load_samples(folder: Path) -> list[Sample]:
    if not folder.is_dir():
        raise AnprError(f"bench folder {folder} does not exist")
    samples = []
    for txt in sorted(folder.glob("*.txt")):
        plates = []
        for line in txt.read_text(errors="replace").splitlines():
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) >= 6 and clean_plate_text(parts[5]):
                plates.append(clean_plate_text(parts[5]))
        image = txt.with_suffix(".jpg")
        if plates and image.exists():
            samples.append(Sample(txt.stem, image, tuple(plates)))
    if not samples:
        raise AnprError(f"no NAME.jpg with NAME.txt labels in {folder}")
    return samples


def forgiving(text: str) -> str:
    """Text with the O/0 and I/1 confusions made equal."""
    return text.replace("O", "0").replace("I", "1")


def as_1080p_frame(image: np.ndarray) -> np.ndarray:
    """The image scaled to fill a 1920x1080 frame (aspect kept) and padded to it: what a 1080p
    camera framing that scene would send, the plate the same share of the picture. (Padding a
    1280x720 photograph into 1920x1080 without enlarging it, as until 2026-12-01, shrank its
    plate to two thirds of its share of the frame, a scene no ANPR camera is set up to see.)"""
    fw, fh = FRAME_1080P
    h, w = image.shape[:2]
    scale = min(fw / w, fh / h)
    if scale != 1.0:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    h, w = image.shape[:2]
    frame = np.zeros((fh, fw, 3), np.uint8)
    y, x = (fh - h) // 2, (fw - w) // 2
    frame[y : y + h, x : x + w] = image
    return frame


class Baseline:
    """rapidocr-onnxruntime over the whole image, as shipped, with a plate-pattern filter."""

    name = "baseline (rapidocr whole image)"
    _PLATE = re.compile(r"(?=.*[0-9])[A-Z0-9]{4,8}")

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self._ocr = RapidOCR()

    def __call__(self, image: np.ndarray) -> str:
        result, _ = self._ocr(image)
        best = ("", -1.0)
        for _box, text, score in result or []:
            text = clean_plate_text(text)
            if self._PLATE.fullmatch(text) and float(score) > best[1]:
                best = (text, float(score))
        return best[0]


class Project:
    """The project's PlateReader: its best read's text."""

    def __init__(self, mode: str = "generic") -> None:
        from anpr.reader import PlateReader

        self.reader = PlateReader(mode=mode)  # type: ignore[arg-type]
        # Which recogniser is installed changes the figures (anpr.reader.RECOGNISERS).
        self.name = f"project (anpr.reader, {mode} mode, {self.reader.recogniser.name})"

    def __call__(self, image: np.ndarray) -> str:
        reads = self.reader.read(image)
        return reads[0].text if reads else ""


def _score(samples: list[Sample], texts: list[str], times_s: list[float], cpu_s: list[float] | None = None) -> dict[str, Any]:
    def acc(pick: list[int], fold: Callable[[str], str]) -> float | None:
        if not pick:
            return None
        hits = sum(fold(texts[i]) in {fold(p) for p in samples[i].plates} for i in pick)
        return round(100.0 * hits / len(pick), 1)

    everything = list(range(len(samples)))
    ms = sorted(t * 1000 for t in times_s)
    return {
        "images": len(samples),
        "exact_pct": acc(everything, lambda s: s),
        "forgiving_pct": acc(everything, forgiving),
        "exact_tune_pct": acc([i for i in everything if samples[i].half == "tune"], lambda s: s),
        "exact_held_out_pct": acc([i for i in everything if samples[i].half == "held-out"], lambda s: s),
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(float(np.percentile(ms, 90)), 1),
        # CPU time (all threads) per image: unlike wall time, barely moved by other load.
        "median_cpu_ms": round(statistics.median(cpu_s) * 1000, 1) if cpu_s else None,
    }


def run_reader(read: Callable[[np.ndarray], str], images: list[np.ndarray]) -> tuple[list[str], list[float], list[float]]:
    """Each image's text, wall seconds and CPU seconds (this process, all threads)."""
    texts, times, cpu = [], [], []
    for image in images:
        started, cpu_started = time.perf_counter(), time.process_time()
        texts.append(read(image))
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return texts, times, cpu


def run_bench(
    folder: Path,
    *,
    mode: str = "generic",
    limit: int | None = None,
    frames_1080p: int = 30,
    baseline: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Figures for the project's reader and the baseline on ``folder``; see the module doc.

    ``limit``: only the first N images (sorted by name). ``frames_1080p``: how many images are
    also timed scaled into 1920x1080 frames (the per-1080p-frame figure).
    """
    samples = load_samples(folder)[:limit]
    images = []
    for s in samples:
        image = cv2.imread(str(s.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise AnprError(f"cannot decode {s.image_path}")
        images.append(image)
    frames = [as_1080p_frame(im) for im in images[:frames_1080p]]
    systems: list[Callable[[np.ndarray], str]] = [Project(mode)]
    if baseline:
        systems.append(Baseline())
    out: dict[str, Any] = {"folder": str(folder), "mode": mode, "cores": os.cpu_count(), "load_avg_1m_before": round(os.getloadavg()[0], 2), "systems": []}
    for system in systems:
        system(images[0])  # warm-up: first inference allocates
        if progress:
            progress(f"{system.name}: {len(images)} images")  # type: ignore[attr-defined]
        texts, times, cpu = run_reader(system, images)
        figures = {"name": system.name, **_score(samples, texts, times, cpu)}  # type: ignore[attr-defined]
        if frames:
            f_texts, f_times, f_cpu = run_reader(system, frames)
            f_score = _score(samples[: len(frames)], f_texts, f_times, f_cpu)
            figures["frames_1080p"] = len(frames)
            figures["median_ms_1080p"] = f_score["median_ms"]
            figures["p90_ms_1080p"] = f_score["p90_ms"]
            figures["median_cpu_ms_1080p"] = f_score["median_cpu_ms"]
            figures["exact_pct_1080p"] = f_score["exact_pct"]
        figures["misses"] = [
            {"name": s.name, "want": s.plates[0], "got": t} for s, t in zip(samples, texts, strict=True) if t not in s.plates
        ]
        out["systems"].append(figures)
    out["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    return out
