"""The plate reader (anpr/reader.py), the anpr CLI and bench.

UK plates are synthetic: rendered here with a bold font on a plain vehicle-like background
(nothing copied from the development photographs). The development photographs are read in
place from ../shared/anpr-dev and the tests that need them skip when it is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED
from PIL import Image, ImageDraw, ImageFont

from anpr import AnprError
from anpr.plates import display_uk
from anpr.reader import MAX_PIXELS, PlateReader, ReaderError
from controlroom.cli import main

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
DEV_SET = SHARED / "anpr-dev" / "us"
needs_dev_set = pytest.mark.skipif(
    not DEV_SET.is_dir(), reason=f"development photographs not found at {DEV_SET} (see ../shared/anpr-dev/README.md)"
)


def synthetic_uk_frame(registration: str, *, size: tuple[int, int] = (1280, 720), at: tuple[int, int] = (520, 430),
                       plate_h: int = 60, rear: bool = True, seed: int = 0) -> np.ndarray:
    """A synthetic BGR frame: a grey 'vehicle' with a UK plate (yellow rear or white front)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = Image.new("RGB", (w, h), (90, 95, 100))
    draw = ImageDraw.Draw(img)
    x, y = at
    plate_w = int(plate_h * 4.7)  # 520 x 111 mm
    draw.rectangle([x - 120, y - 160, x + plate_w + 120, y + plate_h + 80], fill=(40, 60, 120))  # body
    draw.rectangle([x, y, x + plate_w, y + plate_h], fill=(250, 205, 20) if rear else (245, 245, 245), outline=(0, 0, 0), width=2)
    font = ImageFont.truetype(str(FONT), int(plate_h * 0.78))
    text = display_uk(registration)
    box = draw.textbbox((0, 0), text, font=font)
    tx = x + (plate_w - (box[2] - box[0])) // 2 - box[0]
    ty = y + (plate_h - (box[3] - box[1])) // 2 - box[1]
    draw.text((tx, ty), text, font=font, fill=(10, 10, 10))
    frame = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)
    noise = rng.normal(0, 6, frame.shape)
    return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(mode="uk")


@pytest.fixture(scope="module")
def generic() -> PlateReader:
    return PlateReader(mode="generic", threads=1)


@pytest.mark.parametrize(
    ("registration", "kwargs"),
    [
        ("AB12CDE", {}),
        ("YX68OKP", {"rear": False, "plate_h": 48, "at": (300, 500)}),
        ("M472KLR", {"plate_h": 70}),  # prefix
        ("GHJ204T", {}),  # suffix
    ],
)
def test_synthetic_uk_plates_are_read(reader: PlateReader, registration: str, kwargs: dict) -> None:
    frame = synthetic_uk_frame(registration, **kwargs)
    reads = reader.read(frame)
    assert reads, "no plate read"
    best = reads[0]
    assert best.text == registration
    assert best.format in ("current", "prefix", "suffix")
    assert len(best.char_confidences) == len(best.text)
    assert 0.5 <= best.confidence <= 1.0 and all(0 <= c <= 1 for c in best.char_confidences)
    x, y, w, h = best.box
    px, py = kwargs.get("at", (520, 430))
    assert px - 20 <= x <= px + 80 and py - 20 <= y <= py + 40 and w > 2 * h  # on the plate


def test_region_of_interest(reader: PlateReader) -> None:
    frame = synthetic_uk_frame("AB12CDE", at=(700, 500))
    inside = PlateReader(mode="uk", roi=(600, 400, 600, 250), threads=1)
    reads = inside.read(frame)
    assert reads and reads[0].text == "AB12CDE"
    x, y, _, _ = reads[0].box
    assert x >= 690 and y >= 490  # whole-frame pixels, not ROI pixels
    outside = PlateReader(mode="uk", roi=(0, 0, 400, 300), threads=1)
    assert outside.read(frame) == []


def test_uk_mode_corrects_by_position_generic_mode_does_not(reader: PlateReader, generic: PlateReader) -> None:
    # A plate printed with Z where the age digit 2 belongs: what a misread gives the rules.
    frame = synthetic_uk_frame("AB1ZCDE")
    best = reader.read(frame)[0]
    assert best.text == "AB12CDE" and best.raw_text == "AB1ZCDE"
    assert generic.read(frame)[0].text == "AB1ZCDE"


@pytest.mark.parametrize("overlay", ["07:02:17", "2014-05-14 07:02:17", "14/05/2014"])
def test_a_cameras_date_or_time_overlay_is_not_a_plate(generic: PlateReader, overlay: str) -> None:
    # A synthetic frame with the camera's clock burnt in at the top left, as CCTV cameras do,
    # and a plate. Generic mode takes any 2-8 letters and digits: "070217" would be a plate.
    frame = synthetic_uk_frame("AB12CDE")
    img = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    ImageDraw.Draw(img).text((30, 30), overlay, font=ImageFont.truetype(str(FONT), 40), fill=(255, 255, 255))
    frame = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)
    reads = generic.read(frame)
    assert [r.text for r in reads] == ["AB12CDE"], [(r.text, r.raw_text, r.box) for r in reads]


def test_bad_input_is_refused_clearly_and_the_reader_keeps_going(reader: PlateReader) -> None:
    bad = {
        "None": None,
        "empty": np.zeros((0, 0, 3), np.uint8),
        "float": np.zeros((100, 100, 3), np.float32),
        "shape": np.zeros((10, 10, 3, 2), np.uint8),
        "channels": np.zeros((10, 10, 5), np.uint8),
        "bytes": b"not an image",
        "huge": np.zeros((8000, MAX_PIXELS // 8000 + 1), np.uint8),
    }
    for name, image in bad.items():
        with pytest.raises(ReaderError) as info:
            reader.read(image)  # type: ignore[arg-type]
        assert isinstance(info.value, AnprError)
        assert str(info.value), name
    assert "megapixels" in _message(reader, bad["huge"])
    assert "empty" in _message(reader, bad["empty"])
    # ... and it still reads.
    assert reader.read(synthetic_uk_frame("AB12CDE"))[0].text == "AB12CDE"


def _message(reader: PlateReader, image: object) -> str:
    with pytest.raises(ReaderError) as info:
        reader.read(image)  # type: ignore[arg-type]
    return str(info.value)


def test_grey_and_plain_frames(reader: PlateReader) -> None:
    grey = cv2.cvtColor(synthetic_uk_frame("AB12CDE"), cv2.COLOR_BGR2GRAY)
    assert reader.read(grey)[0].text == "AB12CDE"
    assert reader.read(np.full((720, 1280, 3), 128, np.uint8)) == []
    assert reader.read(np.zeros((8, 8, 3), np.uint8)) == []


@needs_dev_set
@pytest.mark.parametrize(
    ("name", "plate"),
    [
        # The first character touches the plate's border: fine detection cut it off, and
        # the line is read again stretched to where its coarse region reaches.
        ("wts-lg-000059", "WXW835"),
        ("wts-lg-000189", "FK4W3L"),
        # A truck's fleet number, digits only, was read first and with full confidence:
        # digits only, like a word, now sends the frame to the fallback pass.
        ("car3", "1AMW240"),
    ],
)
def test_hard_development_photographs(generic: PlateReader, name: str, plate: str) -> None:
    reads = generic.read(cv2.imread(str(DEV_SET / f"{name}.jpg")))
    assert reads and reads[0].text == plate, [(r.text, r.confidence) for r in reads]


def test_bad_construction() -> None:
    with pytest.raises(ReaderError):
        PlateReader(mode="french")  # type: ignore[arg-type]
    with pytest.raises(ReaderError):
        PlateReader(roi=(0, 0, 0, 10))


# ---------------------------------------------------------------------- CLI and bench
def test_cli_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "synthetic_plate.png"
    cv2.imwrite(str(image), synthetic_uk_frame("AB12CDE"))
    assert main(["--data-dir", str(tmp_path / "d"), "anpr", "read", str(image), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result[0]["reads"][0]["text"] == "AB12CDE"
    assert result[0]["reads"][0]["format"] == "current"
    assert len(result[0]["reads"][0]["char_confidences"]) == 7

    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is not a picture")
    assert main(["--data-dir", str(tmp_path / "d"), "anpr", "read", str(not_image), str(image)]) == 1
    out, err = capsys.readouterr()
    assert "not an image" in err and "notes.jpg" in err
    assert "AB12CDE" in out  # the good file after the bad one is still read


@needs_dev_set
def test_cli_bench_on_a_few_development_photographs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--data-dir", str(tmp_path / "d"), "anpr", "bench", str(DEV_SET), "--limit", "3", "--frames-1080p", "1", "--json"]
    assert main(args) == 0
    figures = json.loads(capsys.readouterr().out)
    project, baseline = figures["systems"]
    for system in (project, baseline):
        assert system["images"] == 3
        for key in ("exact_pct", "forgiving_pct", "median_ms", "p90_ms", "median_ms_1080p"):
            assert system[key] is not None and system[key] >= 0
        assert system["forgiving_pct"] >= system["exact_pct"]
    assert figures["mode"] == "generic"


def test_cli_bench_refuses_a_folder_without_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path / "d"), "anpr", "bench", str(tmp_path)]) == 1
    assert "no NAME.jpg" in capsys.readouterr().err


def _line_crop(text: str, ink: tuple[int, int, int], paper: tuple[int, int, int], spacing: int = 0) -> np.ndarray:
    """A synthetic 48 px high line of characters, as the reader cuts it for the recogniser."""
    font = ImageFont.truetype(str(FONT), 40)
    width = int(font.getlength(text)) + spacing * len(text) + 8
    img = Image.new("RGB", (width, 48), paper)
    draw = ImageDraw.Draw(img)
    x = 4
    for ch in text:
        draw.text((x, 2), ch, font=font, fill=ink)
        x += int(font.getlength(ch)) + spacing
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)


def test_a_plate_outranks_signage_read_as_confidently(reader: PlateReader) -> None:
    """Plate, not signage: two lines read as equally confident registrations; the one shaped
    like a plate's characters (dark on a light ground, plate spacing) ranks first, a sign's
    light-on-dark text or a sticker's widely spaced letters second."""
    from anpr.reader import _Candidate, _merge_reads, _polarity

    plate = _line_crop("AB12 CDE", (10, 10, 10), (250, 205, 20))
    sign = _line_crop("GT70 BUY", (245, 245, 245), (30, 40, 140))
    sticker = _line_crop("GT70BUY", (10, 10, 10), (245, 245, 245), spacing=40)
    assert _polarity(plate) > 0.3 and _polarity(sign) < -0.3 and _polarity(sticker) > 0.3
    probs = np.full((16, 37), 1e-4)
    probs[:, 0] = 1.0
    candidates = []
    for k, (crop, text) in enumerate([(sign, "GT70BUY"), (plate, "AB12CDE"), (sticker, "GT70BUY")]):
        m = probs.copy()
        for i, ch in enumerate(text):
            m[2 * i + 1, 0], m[2 * i + 1, 1 + "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".index(ch)] = 1e-4, 0.99
        h, w = crop.shape[:2]
        quad = np.array([[0, 100 * k], [w, 100 * k], [w, 100 * k + h], [0, 100 * k + h]], np.float32)
        c = _Candidate(quad, 0.9, float(w), float(h), raw=text, char_conf=[0.99] * 7, probs=m / m.sum(axis=1, keepdims=True))
        c.polarity = _polarity(crop)
        candidates.append(c)
    judged = [reader._judge(c) for c in candidates]
    assert all(j is not None and j[1].confidence > 0.98 for j in judged)
    ranked = [r.text for _, r in _merge_reads([j for j in judged if j is not None])]
    assert ranked[0] == "AB12CDE", ranked


def _ctc(chars: list[tuple[str, float]]) -> np.ndarray:
    """A folded (T x 37) CTC matrix: each character at its probability (the rest blank), a
    blank timestep after each."""
    rows = []
    for ch, p in chars:
        for prob in ({ch: p}, {}):
            row = np.full(37, 1e-4)
            for c, v in prob.items():
                row[1 + "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".index(c)] = v
            row[0] = max(1e-4, 1.0 - row[1:].sum())
            rows.append(row / row.sum())
    return np.array(rows)


@pytest.mark.parametrize(("lead", "want"), [(0.55, "ASC7399"), (0.95, "4ASC7399")])
def test_the_decoders_strings_are_ranked_by_the_judge_and_the_search(generic: PlateReader, lead: float, want: str) -> None:
    """A plate graphic read as a weak leading 4 (0.55 against the blank's 0.45): the search
    alone puts 4ASC7399 first, its weak character pulls the judge's confidence down, and the
    two scores together choose ASC7399. A confident leading character is kept."""
    from anpr.decode import decode_many
    from anpr.grammar import GENERIC
    from anpr.reader import _Candidate

    probs = _ctc([("4", lead), *((ch, 0.97) for ch in "ASC7399")])
    assert decode_many([probs], GENERIC)[0].text == "4ASC7399"  # the search's order
    quad = np.array([[0, 0], [200, 0], [200, 48], [0, 48]], np.float32)
    c = _Candidate(quad, 0.9, 200.0, 48.0, raw="4ASC7399", char_conf=[lead] + [0.97] * 7, probs=probs)
    judged = generic._judge(c)
    assert judged is not None and judged[1].text == want


class _DetectorSpy:
    """Wraps the reader's text detector session and records the size of each input."""

    def __init__(self, session: object) -> None:
        self.session = session
        self.inputs: list[tuple[int, int]] = []

    def run(self, outputs: object, feeds: dict[str, np.ndarray]) -> object:
        self.inputs.append(tuple(feeds["x"].shape[2:]))  # type: ignore[arg-type]
        return self.session.run(outputs, feeds)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("registration", "kwargs"), [("AB12CDE", {}), ("YX68OKP", {"rear": False, "plate_h": 48, "at": (300, 500)})])
def test_a_clear_plate_is_read_without_detecting_text_on_the_whole_frame(registration: str, kwargs: dict) -> None:
    """Stage 0 (Tuning.plate_regions, off by default: docs/design/anpr-reader.md): a plate
    found by the plate-like bands of edges is read from there; the text detector never sees
    the whole frame (its 800 px run is most of a frame's CPU)."""
    from anpr.reader import Tuning

    reader = PlateReader(mode="uk", threads=1, tuning=Tuning(plate_regions=5))
    spy = _DetectorSpy(reader._det)
    reader._det = spy  # type: ignore[assignment]
    reads = reader.read(synthetic_uk_frame(registration, **kwargs))
    assert reads and reads[0].text == registration
    assert spy.inputs and all(max(shape) <= 640 for shape in spy.inputs), spy.inputs  # fine detections only
    assert max(max(s) for s in spy.inputs) < 800


def test_the_plate_is_among_the_plate_like_bands() -> None:
    """_plate_regions on synthetic frames: the plate's line is among the first few bands,
    whatever the plate's size and colour, and a plain frame gives none."""
    from anpr.reader import _overlap, _plate_regions, _quad_box

    for registration, kwargs in [("AB12CDE", {}), ("M472KLR", {"plate_h": 70}), ("YX68OKP", {"rear": False, "plate_h": 40, "at": (300, 500)}),
                                 ("GHJ204T", {"size": (1920, 1080), "at": (900, 700), "plate_h": 50})]:
        frame = synthetic_uk_frame(registration, **kwargs)
        x, y = kwargs.get("at", (520, 430))
        h = kwargs.get("plate_h", 60)
        plate = (x, y, int(h * 4.7), h)
        bands = [_quad_box(c.quad) for c in _plate_regions(frame, 960, 8, pad=0.5)]
        assert any(_overlap(b, plate) > 0.5 and b[2] * b[3] < 3 * plate[2] * plate[3] for b in bands[:3]), (registration, bands)
    assert _plate_regions(np.full((720, 1280, 3), 128, np.uint8), 960, 8) == []

