"""UK registration rules (anpr/plates.py): examples, then properties checked by hypothesis; and
the one normaliser of plate text (storage/anpr/vrm.py), which those rules and storage share."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anpr.plates import (
    DIGIT_TO_LETTER,
    LETTER_TO_DIGIT,
    display_uk,
    normalise_generic,
    normalise_uk,
    resolve_uk,
    uk_format,
)
from storage import Invalid
from storage.anpr.vrm import normalise_pattern, normalise_vrm

TAG = "ABCDEFGHJKLMNOPRSTUVWXY"  # memory tag letters: no I, Q, Z
RANDOM = "ABCDEFGHJKLMNOPRSTUVWXYZ"  # random letters: no I, Q
AGES = [f"{n:02d}" for n in range(100) if n not in (1, 50)]


@st.composite
def current_plates(draw: st.DrawFn) -> str:
    tag = draw(st.text(TAG, min_size=2, max_size=2))
    age = draw(st.sampled_from(AGES))
    letters = draw(st.text(RANDOM, min_size=3, max_size=3))
    return tag + age + letters


@st.composite
def prefix_plates(draw: st.DrawFn) -> str:
    age = draw(st.sampled_from("ABCDEFGHJKLMNPQRSTVWXY"))
    number = draw(st.integers(1, 999))
    return f"{age}{number}{draw(st.text(RANDOM, min_size=3, max_size=3))}"


@st.composite
def suffix_plates(draw: st.DrawFn) -> str:
    number = draw(st.integers(1, 999))
    age = draw(st.sampled_from("ABCDEFGHJKLMNPRSTVWXY"))
    return f"{draw(st.text(RANDOM, min_size=3, max_size=3))}{number}{age}"


@pytest.mark.parametrize(
    ("raw", "text", "fmt", "shown"),
    [
        ("AB12 CDE", "AB12CDE", "current", "AB12 CDE"),
        ("ab12cde", "AB12CDE", "current", "AB12 CDE"),
        ("AB1Z CDE", "AB12CDE", "current", "AB12 CDE"),  # Z in a digit slot is a 2
        ("A812 CDE", "A812CDE", "prefix", "A812 CDE"),  # valid as read: a prefix plate
        ("YO5I 0BC", "YO51OBC", "current", "YO51 OBC"),
        ("A123 BCD", "A123BCD", "prefix", "A123 BCD"),
        ("ABC 123D", "ABC123D", "suffix", "ABC 123D"),
        ("A8C 123D", "ABC123D", "suffix", "ABC 123D"),  # the only layout that fits
        # Two Os read as 0s: the current DN54 OOX (two changes), not the rare suffix plate
        # DNS 400X (one change, the 5 taken for an S). Seen on the simulator's plates.
        ("DN5400X", "DN54OOX", "current", "DN54 OOX"),
        ("DNS 400X", "DNS400X", "suffix", "DNS 400X"),  # but a suffix plate read as it is stays one
        ("ABC 123", "ABC123", "dateless", "ABC 123"),
        ("1 ABC", "1ABC", "dateless", "1 ABC"),
        ("-AB 12-CDE.", "AB12CDE", "current", "AB12 CDE"),
    ],
)
def test_examples(raw: str, text: str, fmt: str, shown: str) -> None:
    plate = resolve_uk(raw)
    assert plate is not None and (plate.text, plate.format) == (text, fmt)
    assert display_uk(plate.text) == shown


@pytest.mark.parametrize(
    "raw",
    ["AB01CDZ0", "IB12CDE8", "QQ12QQQ", "TEXAS", "HELLO", "", "A", "12345678", "ABCDEFGH", "AB12CDEF", "0123"],
)
def test_not_plates(raw: str) -> None:
    assert normalise_uk(raw) is None


def test_rules_we_implement() -> None:
    assert uk_format("AB12CDE") == "current"
    assert uk_format("ZB12CDE") is None  # Z is never a memory tag letter
    assert uk_format("IB12CDE") is None and uk_format("QB12CDE") is None
    assert uk_format("AB12CDI") is None  # I never among the random letters
    assert uk_format("AB01CDE") is None and uk_format("AB50CDE") is None  # never issued
    assert uk_format("AB00CDE") == "current"  # September 2050
    assert uk_format("AB51CDE") == "current"
    assert uk_format("Q123ABC") == "prefix"  # Q plate
    assert uk_format("U123ABC") is None  # U never an age letter
    assert uk_format("ABC123Q") is None
    assert uk_format("ABC0123") is None  # no leading zero in the number
    assert uk_format("ABCDE12") is None  # dateless: at most 4 letters


@settings(max_examples=300, deadline=None)
@given(current_plates())
def test_any_current_plate_survives_display_and_normalise(plate: str) -> None:
    assert uk_format(plate) == "current"
    assert display_uk(plate) == f"{plate[:4]} {plate[4:]}"
    assert normalise_uk(display_uk(plate)) == plate
    assert normalise_uk(display_uk(plate).lower()) == plate


@settings(max_examples=200, deadline=None)
@given(st.one_of(prefix_plates(), suffix_plates()))
def test_prefix_and_suffix_plates_survive(plate: str) -> None:
    assert uk_format(plate) in ("prefix", "suffix")
    assert normalise_uk(display_uk(plate)) == plate


@settings(max_examples=400, deadline=None)
@given(current_plates(), st.data())
def test_any_single_confusion_in_a_current_plate_is_corrected(plate: str, data: st.DataObject) -> None:
    confusable = [
        i for i, ch in enumerate(plate)
        if (i in (2, 3) and ch in DIGIT_TO_LETTER and DIGIT_TO_LETTER[ch] != "I")
        or (i not in (2, 3) and ch in LETTER_TO_DIGIT and ch in "OISBZG")
    ]
    if not confusable:
        return
    i = data.draw(st.sampled_from(confusable))
    swap = DIGIT_TO_LETTER if plate[i].isdigit() else {v: k for k, v in DIGIT_TO_LETTER.items()}
    misread = plate[:i] + swap[plate[i]] + plate[i + 1 :]
    assert misread != plate
    if uk_format(misread) is not None:
        # The misread is itself a valid registration (AB11AAA misread A811AAA, a prefix
        # plate): text alone cannot tell them apart, and a valid read is taken as read.
        assert normalise_uk(misread) == misread
        return
    assert normalise_uk(misread) == plate, misread


@settings(max_examples=300, deadline=None)
@given(st.text(string.ascii_letters + " -", max_size=12))
def test_words_never_yield_a_plate(raw: str) -> None:
    assert normalise_uk(raw) is None  # every UK registration has letters and digits


@settings(max_examples=300, deadline=None)
@given(st.text(string.digits + " -:", max_size=12))
def test_numbers_never_yield_a_plate(raw: str) -> None:
    assert normalise_uk(raw) is None


@settings(max_examples=300, deadline=None)
@given(st.text(string.ascii_uppercase + string.digits, min_size=8, max_size=20))
def test_too_long_never_yields_a_uk_plate(raw: str) -> None:
    assert normalise_uk(raw) is None


@settings(max_examples=300, deadline=None)
@given(st.text(string.punctuation + " \t\n", max_size=10))
def test_punctuation_never_yields_a_plate(raw: str) -> None:
    assert normalise_uk(raw) is None and normalise_generic(raw) is None


@settings(max_examples=200, deadline=None)
@given(st.text(string.ascii_uppercase + string.digits, min_size=2, max_size=8))
def test_generic_accepts_two_to_eight_alphanumerics(raw: str) -> None:
    assert normalise_generic(raw) == raw
    assert normalise_generic(" " + raw.lower() + "-") == raw


def test_generic_refuses_other_lengths() -> None:
    assert normalise_generic("A") is None
    assert normalise_generic("ABCDE1234") is None


# ---------------------------------------------------------------------------------------------
# One normaliser of plate text. Before issue 12 there were three: anpr.plates.clean (upper case,
# anything but A-Z 0-9 dropped), anpr.reader.clean_text (the same) and storage's normalise_vrm
# (spaces and dashes dropped, anything else refused). Now storage.anpr.vrm.clean_plate_text
# makes the normal form for all; normalise_vrm refuses a person's text where it would drop more
# than spaces and dashes. Where the old ones differed (punctuation, letters outside A-Z), both
# behaviours are kept, each where it was, and pinned here.


def test_plate_text_has_one_normaliser() -> None:
    import anpr.plates
    import anpr.reader
    from storage.anpr import vrm

    assert anpr.plates.clean_plate_text is vrm.clean_plate_text
    assert not hasattr(anpr.plates, "clean") and not hasattr(anpr.reader, "clean_text")


@pytest.mark.parametrize("raw", ["AB12.CDE", "AB12_CDE", "AB%12CDE", "AB12/CDE", "(AB12 CDE)", "AB12\u00b7CDE",
                                 "\u00c4B12CDE", "AB\uff112CDE", "AB12\u00b2CDE"])
def test_a_machine_read_is_cleaned_but_a_persons_text_is_refused(raw: str) -> None:
    from storage.anpr.vrm import clean_plate_text

    # The recogniser's noise is dropped and the plate rules judge what is left ...
    assert clean_plate_text(raw) in ("AB12CDE", "B12CDE", "AB2CDE")
    # ... but a person's "AB12.CDE", "AB%12CDE" or "\u00c4B12CDE" may mean something else than
    # the registration left by dropping a character: refused, with the reason.
    with pytest.raises(Invalid, match="not a registration"):
        normalise_vrm(raw)
    with pytest.raises(Invalid, match="not a registration"):
        normalise_pattern(raw)


@pytest.mark.parametrize("raw", ["ab12 cde", " AB12-CDE ", "AB12\tCDE", "AB12\u00a0CDE", "a b 1 2 c d e"])
def test_spaces_and_dashes_are_separators_everywhere(raw: str) -> None:
    from storage.anpr.vrm import clean_plate_text

    assert normalise_vrm(raw) == normalise_pattern(raw) == clean_plate_text(raw) == normalise_uk(raw) == "AB12CDE"


@settings(max_examples=300, deadline=None)
@given(st.text(string.ascii_letters + string.digits + " -\t", max_size=14))
def test_storage_and_the_plate_rules_clean_alike(raw: str) -> None:
    from storage.anpr.vrm import clean_plate_text

    cleaned = clean_plate_text(raw)
    assert cleaned == "".join(c for c in raw.upper() if c.isalnum())
    if 1 <= len(cleaned) <= 10:
        assert normalise_vrm(raw) == cleaned
        assert normalise_uk(normalise_vrm(raw)) == normalise_uk(raw)
        assert normalise_generic(normalise_vrm(raw)) == normalise_generic(raw)
    else:
        with pytest.raises(Invalid):
            normalise_vrm(raw)
