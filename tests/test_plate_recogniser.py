"""The plate recogniser trained here (anpr/recogniser.py, anpr/models/plate_rec.onnx): what it
gives a decoder (a T x C probability matrix per line crop, and the class labels), that it
refuses what is not a line crop, and that it reads synthetic plates drawn with a seed the
training never used (anpr/synth.py; the real photographs are measured by the bench only)."""

from __future__ import annotations

import numpy as np
import pytest

from anpr import AnprError, synth
from anpr.reader import RECOGNISERS, PlateReader
from anpr.recogniser import HEIGHT_PX, MODEL, STEP_PX, PlateRecogniser

TRAIN_SEEDS = (17, 1017)  # tools/train_plate_rec.py: training data, synthetic validation set
TEST_SEED = 4242
MIN_SYNTHETIC_EXACT = 0.75  # 85% when trained (docs/design/anpr-reader.md); a broken export reads ~0


@pytest.fixture(scope="module")
def rec() -> PlateRecogniser:
    return PlateRecogniser()


def test_classes_are_blank_characters_space(rec: PlateRecogniser) -> None:
    assert rec.classes == ("<blank>", *synth.SYMBOLS, " ")


def test_probabilities_are_one_matrix_per_crop_cut_to_its_width(rec: PlateRecogniser) -> None:
    rng = np.random.default_rng(TEST_SEED)
    crops = [synth.sample(rng)[0] for _ in range(5)]
    probs = rec.probabilities(crops)
    assert len(probs) == len(crops)
    for p, crop in zip(probs, crops, strict=True):
        assert p.shape == (-(-crop.shape[1] // STEP_PX), len(rec.classes))
        assert np.allclose(p.sum(axis=1), 1.0, atol=1e-4) and (p >= 0).all()
    assert rec.probabilities([]) == []


@pytest.mark.parametrize("bad", [
    np.zeros((32, 100, 3), np.uint8),  # wrong height
    np.zeros((HEIGHT_PX, 100), np.uint8),  # grey
    np.zeros((HEIGHT_PX, 100, 3), np.float32),  # not 8-bit
])
def test_probabilities_refuse_what_is_not_a_line_crop(rec: PlateRecogniser, bad: np.ndarray) -> None:
    with pytest.raises(AnprError, match="line crop"):
        rec.probabilities([bad])


def test_a_missing_model_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(AnprError, match="rebuild it"):
        PlateRecogniser(model=tmp_path / "absent.onnx")


def test_reads_synthetic_plates_from_an_unseen_seed(rec: PlateRecogniser) -> None:
    assert TEST_SEED not in TRAIN_SEEDS
    rng = np.random.default_rng(TEST_SEED)
    samples = [synth.sample(rng, shares=synth.TRAINED_SHARES) for _ in range(200)]
    right = sum(rec.read(img)[0] == text for img, text in samples)
    assert right / len(samples) >= MIN_SYNTHETIC_EXACT, f"{right} of {len(samples)}"


def test_the_reader_lists_the_model_last_with_its_file() -> None:
    # Last: the bench kept PP-OCRv6 small and PP-OCRv4's second opinion (docs/design/anpr-reader.md).
    ours = [r for r in RECOGNISERS if r.package == "anpr"]
    assert len(ours) == 1 and RECOGNISERS[-1] is ours[0]
    assert MODEL.parent.parent / ours[0].model == MODEL


def test_the_reader_reads_with_the_model_when_it_is_listed_first(monkeypatch) -> None:
    """Its role is chosen by the order of RECOGNISERS alone: listed first, the reader loads it
    with the reader's own alphabet folding and reads a synthetic UK plate with it."""
    import anpr.reader

    ours = RECOGNISERS[-1]
    monkeypatch.setattr(anpr.reader, "RECOGNISERS", (ours, *RECOGNISERS[:-1]))
    reader = PlateReader(mode="uk", threads=1)
    assert reader.recogniser is ours
    rng = np.random.default_rng(TEST_SEED)
    picture = synth.plate_picture(rng, synth.Plate("current", ("BD51 SMR",)), char_px=40)
    frame = np.full((360, 640, 3), 90, np.uint8)
    frame[100 : 100 + picture.shape[0], 120 : 120 + picture.shape[1]] = picture
    assert [r.text for r in reader.read(frame)][:1] == ["BD51SMR"]
