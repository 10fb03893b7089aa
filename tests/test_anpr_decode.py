"""Grammar-constrained CTC decoding (anpr/decode.py) and the plate grammars (anpr/grammar.py).

The CTC matrices here are synthetic: one row per timestep, the characters' probabilities as a
recogniser would give them, a blank between characters. Model-agnostic by construction: the
decoder is given the alphabet each matrix's columns stand for.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anpr.decode import decode, fold
from anpr.grammar import GENERIC, SYMBOLS, UK
from anpr.plates import uk_format

# A recogniser's alphabet in its own order: blank first, lower case, a space and punctuation.
ALPHABET = ["<blank>", *"0123456789", *"abcdefghijklmnopqrstuvwxyz", " ", "-", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ"]


def matrix(chars: list[dict[str, float] | str], *, blanks: int = 1, run: int = 1) -> np.ndarray:
    """Rows for each character (held ``run`` timesteps), ``blanks`` blank rows after each; a
    str is that character at 0.97. The rest of each row's mass is spread thinly."""
    rows = []
    for item in chars:
        spec = {item: 0.97} if isinstance(item, str) else item
        for _ in range(run):
            row = np.full(len(ALPHABET), 1e-5)
            for ch, p in spec.items():
                row[ALPHABET.index(ch)] = p
            row[0] = max(0.0, 1.0 - row[1:].sum())
            rows.append(row / row.sum())
        for _ in range(blanks):
            row = np.full(len(ALPHABET), 1e-5)
            row[0] = 1.0
            rows.append(row / row.sum())
    return np.array(rows)


def test_the_format_prior_chooses_between_two_valid_formats() -> None:
    # The miss: DZ17YXR read D217YXR. Greedy reading takes the 2 (0.6); both strings
    # are valid plates, so correcting one best string cannot choose; the probabilities can:
    # a current-format plate is far commoner than a prefix one.
    m = matrix(["D", {"2": 0.6, "Z": 0.3}, "1", "7", "Y", "X", "R"])
    best = decode(m, ALPHABET, UK)[0]
    assert (best.text, best.format) == ("DZ17YXR", "current")
    assert best.forced[1] and not any(best.forced[:1] + best.forced[2:])  # Z was not the likeliest
    assert best.char_confidences[1] == pytest.approx(0.3, abs=0.01)
    # A clear 2 stays a 2: the prior weighs, it does not overrule the recogniser.
    m = matrix(["D", {"2": 0.97, "Z": 0.005}, "1", "7", "Y", "X", "R"])
    assert decode(m, ALPHABET, UK)[0].text == "D217YXR"


def test_letters_and_digits_by_position() -> None:
    # O/0 and I/1 decided by the slot: a current plate's age digits, its letters.
    m = matrix(["A", "B", {"S": 0.55, "5": 0.4}, {"I": 0.5, "1": 0.45}, "C", {"0": 0.6, "O": 0.35}, "E"])
    best = decode(m, ALPHABET, UK)[0]
    assert (best.text, best.format) == ("AB51COE", "current")
    assert sum(best.forced) == 3


def test_repeated_characters_need_a_blank_between() -> None:
    # "LL" is two Ls only with a blank between; a held L (several timesteps) is one.
    m = matrix(["L", "L", "1", "1", "A", "A", "A"], run=3)
    assert decode(m, ALPHABET, UK)[0].text == "LL11AAA"
    held = matrix(["A", "B", "1", "2"], blanks=0, run=2)  # no blanks: A A B B 1 1 2 2
    texts = [d.text for d in decode(held, ALPHABET, GENERIC)]
    assert texts[0] == "AB12"


def test_junk_at_the_ends_is_reported_not_hidden() -> None:
    m = matrix([{"4": 0.9}, "A", "B", "1", "2", "C", "D", "E", {"1": 0.9}])
    results = decode(m, ALPHABET, UK)
    best = results[0]
    assert best.text == "AB12CDE" and best.emitted == "4AB12CDE1" and (best.start, best.end) == (1, 8)
    assert len(best.char_confidences) == len(best.emitted)


def test_separators_and_lower_case_fold() -> None:
    m = matrix(["a", "b", "1", "2", "-", "c", "d", "e"])
    assert fold(m, ALPHABET).shape == (m.shape[0], len(SYMBOLS) + 1)
    assert decode(m, ALPHABET, UK)[0].text == "AB12CDE"


def test_nothing_that_fits_gives_nothing() -> None:
    assert decode(matrix(["H", "E", "L", "L", "O"]), ALPHABET, UK) == []  # no UK format is letters only
    assert decode(matrix([]), ALPHABET, UK) == []


def test_generic_mode_reads_any_two_to_eight_letters_and_digits() -> None:
    m = matrix(["A", "B", "C", "1", {"O": 0.5, "0": 0.45}, "3", "4"])
    assert [d.text for d in decode(m, ALPHABET, GENERIC)][:1] == ["ABC1O34"]
    assert decode(matrix(["6", "H", "P", "9", "9", "5"]), ALPHABET, GENERIC)[0].text == "6HP995"
    assert decode(matrix(["A"]), ALPHABET, GENERIC) == []


def test_alternatives_are_the_symbols_probabilities_at_the_character() -> None:
    m = matrix(["A", "B", {"1": 0.7, "I": 0.25}, "2", "C", "D", "E"])
    best = decode(m, ALPHABET, UK)[0]
    alt = best.alternatives[2]
    assert max(alt, key=alt.get) == "1" and alt["I"] == pytest.approx(0.25 / 0.95, abs=0.01)


def test_best_by_position_fuses_with_the_grammar() -> None:
    dists = [{"D": 0.9}, {"2": 0.5, "Z": 0.4}, {"1": 0.9}, {"7": 0.9}, {"Y": 0.9}, {"X": 0.9}, {"R": 0.9}]
    text, fmt, probs = UK.best_by_position(dists)
    assert (text, fmt) == ("DZ17YXR", "current") and probs[1] == 0.4
    # The age identifier 01 is never issued: the next likeliest digit is taken.
    text, _, _ = UK.best_by_position([{"A": 1}, {"B": 1}, {"0": 1}, {"1": 0.6, "7": 0.3}, {"C": 1}, {"D": 1}, {"E": 1}])
    assert text == "AB07CDE"
    assert UK.best_by_position([{"A": 1}] * 9) is None


@st.composite
def uk_like(draw: st.DrawFn) -> str:
    return draw(st.text("ABCDGIOQUZ0125789", min_size=2, max_size=7))


@given(uk_like())
@settings(max_examples=400, deadline=None)
def test_uk_grammar_agrees_with_the_rules(text: str) -> None:
    """Every registration anpr.plates accepts fits the grammar with the same format, and the
    grammar accepts nothing else, but for the current format's tag ending in Z (decision)."""
    fmt = uk_format(text)
    fit = UK.fit(text)
    if fmt is not None:
        assert fit is not None and fit.format == fmt
    elif fit is not None:
        assert fit.format == "current" and text[1] == "Z"


def test_two_models_put_together_each_with_its_own_alignment() -> None:
    from anpr.decode import decode_many

    # Model A peaks each character one timestep before model B: averaging their outputs
    # timestep by timestep would halve every peak; their product over alignments does not.
    a = fold(matrix(["A", "B", {"1": 0.5, "I": 0.45}, "2", "C", "D", "E"], blanks=2), ALPHABET)
    b = np.roll(fold(matrix(["A", "B", {"1": 0.7, "I": 0.25}, "2", "C", "D", "E"], blanks=2), ALPHABET), 1, axis=0)
    best = decode_many([a, b], UK)[0]
    assert best.text == "AB12CDE" and min(best.char_confidences) > 0.5
    assert best.char_confidences[2] == pytest.approx(0.6, abs=0.02)  # the models' mean
    assert decode_many([a], UK)[0].text == "AB12CDE"
