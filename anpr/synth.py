"""Synthetic number plates: the training data of the plate recogniser (anpr/models/), and
synthetic UK plates for tests.

Nothing here is a photograph: every plate is drawn from a registration made up by the rules
of its layout, in a free font, then seen through a simulated camera. The recogniser is
trained on these only (tools/train_plate_rec.py); the development photographs are measured,
never trained or tuned on (docs/design/anpr-reader.md, "The plate recogniser").

Layouts (``LAYOUTS``): the UK's current (``AB12 CDE``), prefix (``A123 BCD``), suffix
(``ABC 123D``), dateless (``ABC 123``, ``1234 AB``) and Northern Ireland (``AIZ 1234``)
registrations, on one line or two, white at the front or yellow at the rear; and ``generic``:
4 to 8 letters and digits in assorted colours and fonts, as on other countries' plates.

Font: DejaVu Sans (Condensed) Bold, and for generic plates the other DejaVu faces, from the
system's fonts-dejavu package or matplotlib's copy; DejaVu's licence (the Bitstream Vera
licence, and public domain for DejaVu's changes) allows this use. The UK's own plate font
(Charles Wright 2001) is not free; DejaVu Sans Condensed Bold is the nearest free face here.

Camera: perspective, rotation, the character height from 8 to 48 pixels, defocus and motion
blur, low light, the infrared look (grey, plate glaring, characters dark), sensor noise, dirt,
JPEG; bolts, borders, a dealer's name or a state's name near the characters. ``sample``
returns one recogniser input: the registration's line cut out as the reader cuts a detected
line (a little loose or tight, as the text detector's box is) and straightened to 48 pixels high.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

SYMBOLS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LINE_HEIGHT_PX = 48  # the recogniser's input height (anpr.reader.Tuning.rec_height_px)
MAX_WIDTH_PX = 400  # ... and widest input (Tuning.rec_max_width_px)

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGITS = "0123456789"
# DVLA: current memory tags never use I, Q or Z; the random letters never I or Q.
_TAG = "ABCDEFGHJKLMNOPRSTUVWXY"
_RANDOM = "ABCDEFGHJKLMNOPRSTUVWXYZ"
_PREFIX_AGE = "ABCDEFGHJKLMNPQRSTVWXY"  # no I, O, U, Z
_SUFFIX_AGE = "ABCDEFGHJKLMNPRSTVWXY"  # no I, O, Q, U, Z
# Northern Ireland's two-letter county codes (each has an I or a Z).
_NI_CODES = ("AZ", "BZ", "CZ", "DZ", "EZ", "FZ", "GZ", "HZ", "IA", "IB", "IG", "IJ", "IL", "IW", "JI", "JZ",
             "KZ", "LZ", "MZ", "NZ", "OI", "OZ", "PZ", "RZ", "SZ", "TZ", "UI", "UZ", "VZ", "WZ", "XI", "YZ")

# How often each layout is drawn (current-format plates are the great majority on UK roads).
LAYOUTS = {"current": 0.38, "prefix": 0.08, "suffix": 0.04, "dateless": 0.04, "ni": 0.04, "generic": 0.42}

_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path(__file__).resolve().parent.parent / ".venv/lib/python3.11/site-packages/matplotlib/mpl-data/fonts/ttf",
)
UK_FONTS = ("DejaVuSansCondensed-Bold.ttf", "DejaVuSans-Bold.ttf")
GENERIC_FONTS = (
    "DejaVuSansCondensed-Bold.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansCondensed.ttf",
    "DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerifCondensed-Bold.ttf",
)
_SMALL_TEXT = ("MOTORS", "AUTO CENTRE", "CARS LTD", "GARAGE", "DEALER", "SALES", "VEHICLE", "FORD", "HONDA",
               "CALIFORNIA", "TEXAS", "NEW YORK", "FLORIDA", "OHIO", "ARIZONA", "SUNSHINE STATE", "GB", "UK")


@dataclass(frozen=True)
class Plate:
    """A made-up registration and how it is laid out: ``lines`` as printed (with spaces)."""

    layout: str
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The registration, letters and digits only."""
        return "".join(ch for line in self.lines for ch in line if ch in SYMBOLS)


def _pick(rng: np.random.Generator, chars: str, n: int = 1) -> str:
    return "".join(chars[int(i)] for i in rng.integers(0, len(chars), n))


def _number(rng: np.random.Generator, most: int) -> str:
    """1 to ``most`` digits, no leading zero, shorter numbers as likely as longer ones."""
    n = int(rng.integers(1, most + 1))
    return _pick(rng, "123456789") + _pick(rng, _DIGITS, n - 1)


def registration(rng: np.random.Generator, layout: str | None = None) -> tuple[str, str, str]:
    """(layout, left group, right group) of a made-up registration."""
    if layout is None:
        names = list(LAYOUTS)
        layout = names[int(rng.choice(len(names), p=np.array(list(LAYOUTS.values())) / sum(LAYOUTS.values())))]
    if layout == "current":
        age = int(rng.choice([*range(2, 26), *range(51, 76)]))
        return layout, _pick(rng, _TAG, 2) + f"{age:02d}", _pick(rng, _RANDOM, 3)
    if layout == "prefix":
        return layout, _pick(rng, _PREFIX_AGE) + _number(rng, 3), _pick(rng, _RANDOM, 3)
    if layout == "suffix":
        return layout, _pick(rng, _RANDOM, 3), _number(rng, 3) + _pick(rng, _SUFFIX_AGE)
    if layout == "dateless":
        letters, digits = _pick(rng, _RANDOM, int(rng.integers(1, 4))), _number(rng, 4)
        return (layout, letters, digits) if rng.random() < 0.6 else (layout, digits, letters)
    if layout == "ni":
        return layout, _pick(rng, _RANDOM) + _NI_CODES[int(rng.integers(len(_NI_CODES)))], _number(rng, 4)
    # generic: 4-8 characters, mostly mixed letters and digits, sometimes in two groups.
    n = int(rng.integers(4, 9))
    digit_share = rng.uniform(0.2, 0.8)
    text = "".join(_pick(rng, _DIGITS) if rng.random() < digit_share else _pick(rng, _LETTERS) for _ in range(n))
    cut = int(rng.integers(2, n - 1)) if rng.random() < 0.4 else n
    return layout, text[:cut], text[cut:]


def make_plate(rng: np.random.Generator, layout: str | None = None) -> Plate:
    layout, left, right = registration(rng, layout)
    if not right:
        return Plate(layout, (left,))
    two_lines = layout != "generic" and rng.random() < 0.15  # square UK plates (motorcycles, imports)
    if two_lines:
        return Plate(layout, (left, right))
    sep = " " if layout != "generic" or rng.random() < 0.6 else "-"
    return Plate(layout, (left + sep + right,))


@cache
def _font_path(name: str) -> Path:
    for folder in _FONT_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"font {name} not found (install fonts-dejavu): looked in {[str(d) for d in _FONT_DIRS]}")


@lru_cache(maxsize=64)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_path(name)), size)


def _colours(rng: np.random.Generator, layout: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(background, characters) as RGB."""
    if layout != "generic":
        rear = rng.random() < 0.6
        bg = (int(rng.integers(225, 256)), int(rng.integers(190, 235)), int(rng.integers(0, 60))) if rear else (
            int(rng.integers(225, 256)),) * 3
        return bg, (int(rng.integers(0, 40)),) * 3
    kind = rng.random()
    if kind < 0.55:  # dark on white-ish
        base = int(rng.integers(200, 256))
        bg = tuple(int(np.clip(base + rng.integers(-25, 10), 0, 255)) for _ in range(3))
        fg = tuple(int(v) for v in rng.integers(0, 120, 3)) if rng.random() < 0.5 else (int(rng.integers(0, 50)),) * 3
    elif kind < 0.8:  # dark on a colour
        bg = tuple(int(v) for v in rng.integers(120, 256, 3))
        fg = tuple(int(v) for v in rng.integers(0, 70, 3))
    else:  # light on dark
        bg = tuple(int(v) for v in rng.integers(0, 90, 3))
        fg = tuple(int(v) for v in rng.integers(200, 256, 3))
    return bg, fg  # type: ignore[return-value]


@dataclass
class Drawn:
    """A plate drawn flat: its image (RGB) and each printed line's box (x0, y0, x1, y1) and text."""

    image: np.ndarray
    lines: list[tuple[tuple[float, float, float, float], str]]


def draw_plate(rng: np.random.Generator, plate: Plate, char_px: int = 64) -> Drawn:
    """The plate drawn flat, characters ``char_px`` high, with border, bolts and small text."""
    fonts = UK_FONTS if plate.layout != "generic" else GENERIC_FONTS
    face = fonts[int(rng.integers(len(fonts)))] if plate.layout == "generic" or rng.random() < 0.25 else fonts[0]
    font = _font(face, int(char_px * 1.37))  # DejaVu's capitals are 0.73 em high
    bg, fg = _colours(rng, plate.layout)
    stretch = rng.uniform(0.8, 1.15) if plate.layout != "generic" else rng.uniform(0.7, 1.3)
    rendered = []
    for text in plate.lines:
        x0, y0, x1, y1 = font.getbbox(text)
        im = Image.new("L", (x1 - x0 + 4, y1 - y0 + 4), 0)
        ImageDraw.Draw(im).text((2 - x0, 2 - y0), text, font=font, fill=255)
        w = max(1, int(im.width * stretch))
        rendered.append((np.asarray(im.resize((w, im.height), Image.BILINEAR)), text))
    pad_x = int(char_px * rng.uniform(0.25, 0.8))
    pad_top = int(char_px * rng.uniform(0.15, 0.5))
    pad_bottom = int(char_px * rng.uniform(0.15, 0.6))
    gap = int(char_px * rng.uniform(0.15, 0.35))
    small_above = plate.layout == "generic" and rng.random() < 0.35
    small_below = rng.random() < 0.3
    if small_above:
        pad_top += int(char_px * 0.45)
    if small_below:
        pad_bottom = max(pad_bottom, int(char_px * 0.5))
    width = max(r[0].shape[1] for r in rendered) + 2 * pad_x
    height = sum(r[0].shape[0] for r in rendered) + gap * (len(rendered) - 1) + pad_top + pad_bottom
    img = np.empty((height, width, 3), np.uint8)
    img[:] = bg
    # A little shading across the plate (retro-reflective sheeting is never perfectly even).
    shade = np.linspace(rng.uniform(0.85, 1.0), rng.uniform(0.85, 1.0), width, dtype=np.float32)[None, :, None]
    img = np.clip(img * shade, 0, 255).astype(np.uint8)
    out_lines = []
    y = pad_top
    for mask, text in rendered:
        x = (width - mask.shape[1]) // 2
        region = img[y : y + mask.shape[0], x : x + mask.shape[1]]
        alpha = (mask.astype(np.float32) / 255.0)[:, :, None]
        region[:] = (region * (1 - alpha) + np.array(fg, np.float32) * alpha).astype(np.uint8)
        rows, cols = np.nonzero(mask > 60)
        out_lines.append(((x + cols.min(), y + rows.min(), x + cols.max() + 1, y + rows.max() + 1), text))
        y += mask.shape[0] + gap
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    small = _font("DejaVuSans-Bold.ttf", max(8, int(char_px * 0.3)))
    if small_above:
        word = _SMALL_TEXT[int(rng.integers(len(_SMALL_TEXT)))]
        draw.text((width // 2, int(pad_top * 0.45)), word, font=small, fill=fg, anchor="mm")
    if small_below:
        word = _SMALL_TEXT[int(rng.integers(len(_SMALL_TEXT)))]
        draw.text((width // 2, height - int(char_px * 0.22)), word, font=small, fill=fg, anchor="mm")
    if rng.random() < 0.5:  # border
        t = max(1, int(char_px * rng.uniform(0.03, 0.08)))
        inset = int(char_px * rng.uniform(0.0, 0.12))
        draw.rectangle((inset, inset, width - 1 - inset, height - 1 - inset), outline=fg, width=t)
    if rng.random() < 0.3:  # bolts, between or beside the characters' groups
        r = max(2, int(char_px * rng.uniform(0.06, 0.11)))
        cy = pad_top + int(rng.uniform(0.2, 0.8) * (height - pad_top - pad_bottom))
        for cx in (int(width * rng.uniform(0.15, 0.3)), int(width * rng.uniform(0.7, 0.85))):
            grey = int(rng.integers(90, 220))
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(grey, grey, grey), outline=(40, 40, 40))
    if plate.layout != "generic" and rng.random() < 0.25:  # the GB/UK identifier band at the left
        band = int(char_px * 0.55)
        draw.rectangle((0, 0, band, height - 1), fill=(0, 51, 153))
        draw.text((band // 2, height - int(char_px * 0.3)), "UK" if rng.random() < 0.5 else "GB",
                  font=_font("DejaVuSans-Bold.ttf", max(8, int(char_px * 0.25))), fill=(255, 255, 255), anchor="mm")
    return Drawn(np.asarray(pil).copy(), out_lines)


def _camera(rng: np.random.Generator, drawn: Drawn) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    """The flat plate put on a vehicle and seen by a camera: the picture (BGR) and each line's
    quad (4x2, clockwise from top-left) in it."""
    img = drawn.image
    h, w = img.shape[:2]
    margin = int(0.35 * h)
    canvas_h, canvas_w = h + 2 * margin, w + 2 * margin
    body = rng.integers(0, 256, 3).astype(np.float32)
    canvas = np.empty((canvas_h, canvas_w, 3), np.float32)
    canvas[:] = body
    canvas += rng.normal(0, rng.uniform(2, 20), (canvas_h, canvas_w, 1)).astype(np.float32)
    canvas[margin : margin + h, margin : margin + w] = img[:, :, ::-1]
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    # Perspective: the plate's corners moved by a random view.
    src = np.array([[margin, margin], [margin + w, margin], [margin + w, margin + h], [margin, margin + h]], np.float32)
    angle = np.deg2rad(rng.normal(0, 3.0))
    yaw = rng.uniform(-0.25, 0.25)  # one side nearer the camera
    pitch = rng.uniform(-0.12, 0.12)
    c = src.mean(axis=0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    dst = (src - c) @ rot.T
    dst[:, 1] *= np.array([1 - yaw, 1 + yaw, 1 + yaw, 1 - yaw], np.float32)
    dst[:, 0] *= np.array([1 - pitch, 1 - pitch, 1 + pitch, 1 + pitch], np.float32)
    dst[:, 0] += rng.normal(0, 0.01 * w, 4).astype(np.float32)
    dst += c
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    seen = cv2.warpPerspective(canvas, m, (canvas_w, canvas_h), borderMode=cv2.BORDER_REFLECT)
    quads = []
    for (x0, y0, x1, y1), text in drawn.lines:
        q = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32) + margin
        quads.append((cv2.perspectiveTransform(q[None], m)[0], "".join(ch for ch in text if ch in SYMBOLS)))
    return seen, quads


def _degrade(rng: np.random.Generator, img: np.ndarray, char_px: float, target_px: float) -> tuple[np.ndarray, float]:
    """The picture as a small, imperfect camera gives it, and the scale it was shrunk by."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    if rng.random() < 0.25:  # dirt: soft dark blotches
        for _ in range(int(rng.integers(1, 6))):
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            r = rng.uniform(0.1, 0.6) * char_px
            mask = np.zeros((h, w), np.float32)
            cv2.circle(mask, (int(cx), int(cy)), int(r), 1.0, -1)
            mask = cv2.GaussianBlur(mask, (0, 0), r * 0.5 + 1) * rng.uniform(0.2, 0.6)
            out = out * (1 - mask[:, :, None]) + np.array([60, 70, 80], np.float32) * mask[:, :, None]
    ir = rng.random() < 0.15
    if ir:  # infrared: grey; the reflective plate glares, dark characters stay dark
        grey = out.mean(axis=2, keepdims=True)
        grey = 255 * (grey / 255) ** rng.uniform(0.4, 0.8)
        out = np.repeat(grey, 3, axis=2)
    elif rng.random() < 0.3:  # colour cast
        out *= rng.uniform(0.75, 1.15, 3).astype(np.float32)
    # Light: low light (dark, low contrast) or overexposure.
    gain, offset = rng.uniform(0.25, 1.2), rng.uniform(-20, 40)
    if rng.random() < 0.5:
        gain, offset = rng.uniform(0.8, 1.1), rng.uniform(-10, 10)
    out = np.clip(out * gain + offset, 0, 255)
    # Down to the camera's resolution (characters target_px high), blur there, noise, JPEG.
    scale = target_px / char_px
    small = cv2.resize(out, (max(8, int(w * scale)), max(8, int(h * scale))), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        small = cv2.GaussianBlur(small, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.2:  # motion blur, mostly horizontal
        k = int(rng.integers(2, 6))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        small = cv2.filter2D(small, -1, kernel)
    small = small + rng.normal(0, rng.uniform(0, 12), small.shape).astype(np.float32)
    small = np.clip(small, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 90))])
        if ok:
            small = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return small, scale


def sample(rng: np.random.Generator, layout: str | None = None) -> tuple[np.ndarray, str]:
    """One recogniser input: (48 x W x 3 BGR uint8 line crop, its text A-Z0-9)."""
    plate = make_plate(rng, layout)
    char_px = 32
    drawn = draw_plate(rng, plate, char_px)
    seen, quads = _camera(rng, drawn)
    target = float(np.exp(rng.uniform(np.log(8), np.log(40))))
    small, scale = _degrade(rng, seen, char_px, target)
    quad, text = quads[int(rng.integers(len(quads)))]
    return crop_line(rng, small, quad * scale), text


def crop_line(rng: np.random.Generator, img: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The line inside ``quad`` cut out with a margin like the text detector's box (its
    unclipped box is a little loose, its fine box sometimes tight) and straightened to
    LINE_HEIGHT_PX high, as anpr.reader._recognise does."""
    top = quad[1] - quad[0]
    side = quad[3] - quad[0]
    ux = top / (np.linalg.norm(top) or 1.0)
    uy = side / (np.linalg.norm(side) or 1.0)
    height = float(np.linalg.norm(side))
    left, right = rng.uniform(-0.05, 0.45, 2) * height
    above, below = rng.uniform(-0.02, 0.3, 2) * height
    grown = np.array([
        quad[0] - left * ux - above * uy,
        quad[1] + right * ux - above * uy,
        quad[2] + right * ux + below * uy,
        quad[3] - left * ux + below * uy,
    ], np.float32)
    grown += rng.normal(0, 0.03 * height, grown.shape).astype(np.float32)
    width = float(np.linalg.norm(grown[1] - grown[0]))
    tall = float(np.linalg.norm(grown[3] - grown[0]))
    out_w = int(np.clip(round(LINE_HEIGHT_PX * width / max(tall, 1.0)), 16, MAX_WIDTH_PX))
    dst = np.array([[0, 0], [out_w - 1, 0], [out_w - 1, LINE_HEIGHT_PX - 1], [0, LINE_HEIGHT_PX - 1]], np.float32)
    m = cv2.getPerspectiveTransform(grown, dst)
    return cv2.warpPerspective(img, m, (out_w, LINE_HEIGHT_PX), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def plate_picture(rng: np.random.Generator, plate: Plate, char_px: int = 40) -> np.ndarray:
    """A whole synthetic plate on a vehicle-coloured background (BGR), for tests and demos."""
    seen, _ = _camera(rng, draw_plate(rng, plate, char_px))
    return seen

