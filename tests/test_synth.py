"""The synthetic plate generator (anpr/synth.py) that the plate recogniser is trained on:
its made-up registrations fit the UK rules of anpr/plates.py layout by layout, and its
samples are what the reader feeds the recogniser, reproducibly from a seed."""

from __future__ import annotations

import numpy as np
import pytest

from anpr import synth
from anpr.plates import uk_format

UK_LAYOUTS = {"current": "current", "prefix": "prefix", "suffix": "suffix", "dateless": "dateless", "ni": "dateless"}


@pytest.mark.parametrize("layout", sorted(UK_LAYOUTS))
def test_synthetic_uk_registrations_fit_their_format(layout: str) -> None:
    rng = np.random.default_rng(5)
    for _ in range(400):
        plate = synth.make_plate(rng, layout)
        assert plate.layout == layout
        assert uk_format(plate.text) == UK_LAYOUTS[layout], plate


def test_synthetic_generic_registrations_are_4_to_8_letters_and_digits() -> None:
    rng = np.random.default_rng(6)
    for _ in range(400):
        plate = synth.make_plate(rng, "generic")
        assert 4 <= len(plate.text) <= 8 and set(plate.text) <= set(synth.SYMBOLS), plate


def test_synthetic_us_registrations_are_5_to_7_letters_and_digits_on_one_line() -> None:
    rng = np.random.default_rng(14)
    for _ in range(400):
        plate = synth.make_plate(rng, "us")
        assert len(plate.lines) == 1 and 5 <= len(plate.text) <= 7, plate
        assert set(plate.lines[0]) <= set(synth.SYMBOLS + " -" + synth.US_GRAPHIC_SEP), plate


def test_synthetic_us_plates_box_the_registration_inside_the_plate() -> None:
    rng = np.random.default_rng(15)
    for _ in range(40):
        plate = synth.make_plate(rng, "us")
        drawn = synth.draw_plate(rng, plate, 32)
        h, w = drawn.image.shape[:2]
        [((x0, y0, x1, y1), line)] = drawn.lines
        assert line == plate.lines[0]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and 1.8 < w / h < 2.2
        assert 0.3 < (y1 - y0) / h < 0.7  # the characters about half the plate's height, room above and below


def test_synthetic_layouts_are_drawn_in_their_shares() -> None:
    rng = np.random.default_rng(7)
    n = 4000
    counts = {name: 0 for name in synth.LAYOUTS}
    for _ in range(n):
        counts[synth.registration(rng)[0]] += 1
    for name, share in synth.LAYOUTS.items():
        assert abs(counts[name] / n - share) < 0.03, (name, counts)


def test_synthetic_two_line_plates_keep_the_registration_across_lines() -> None:
    rng = np.random.default_rng(8)
    seen = 0
    for _ in range(300):
        plate = synth.make_plate(rng, "current")
        if len(plate.lines) == 2:
            seen += 1
            assert plate.lines[0] + plate.lines[1] == plate.text and len(plate.lines[0]) == 4
    assert seen > 10  # square plates are drawn too


def test_synthetic_samples_are_recogniser_inputs() -> None:
    rng = np.random.default_rng(9)
    for _ in range(60):
        img, text = synth.sample(rng)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert img.shape[0] == synth.LINE_HEIGHT_PX and 16 <= img.shape[1] <= synth.MAX_WIDTH_PX
        assert text and set(text) <= set(synth.SYMBOLS)
        assert img.std() > 3  # something is drawn, not a flat crop


def test_synthetic_samples_are_reproducible_from_the_seed() -> None:
    a = [synth.sample(np.random.default_rng(11)) for _ in range(2)]
    b = synth.sample(np.random.default_rng(11))
    c = synth.sample(np.random.default_rng(12))
    assert a[0][1] == a[1][1] == b[1] and np.array_equal(a[0][0], b[0])
    assert c[1] != b[1] or not np.array_equal(c[0], b[0])


def test_synthetic_plate_picture_draws_a_whole_plate() -> None:
    rng = np.random.default_rng(13)
    picture = synth.plate_picture(rng, synth.Plate("current", ("AB12 CDE",)))
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    assert picture.shape[1] > picture.shape[0]  # a one-line plate is wide


def test_the_trained_mix_draws_what_the_committed_model_was_trained_on() -> None:
    """tools/train_plate_rec.py --mix trained with seed 17 must give the samples the committed
    model was trained on (so the documented rebuild rebuilds it): the first 40 registrations,
    as anpr/synth.py drew them before the US-style layout was added (60a8421)."""
    rng = np.random.default_rng(17)
    texts = [synth.sample(rng, shares=synth.TRAINED_SHARES)[1] for _ in range(40)]
    assert " ".join(texts) == (
        "143C 225023 LAL740K OM67PLC BA0P3N2 EJ66BKG VTL CV14VDS DNZ3 DO18YNY RGOA5 1026K GJ60ZAS SP17BHD "
        "VVZ5738 OE70YXA M21EMF R8YEQEVW 1A5A6 QM9N FVO20 OYZ6 082W X102A4 INX0IOW MPZ587 SKOLJ OC20EGG "
        "KP24PFM 62O6S9Z3 GF62 RW55GXM 85430E09 TF25BFW M708313 552Q42JD U7OY3 639R VP67JXG HK11ZMG")
