"""Synthetic number plates: the training data of the plate recogniser (anpr/models/), and
synthetic UK plates for tests.

Nothing here is a photograph: every plate is drawn from a registration made up by the rules
of its layout, in a free font, then seen through a simulated camera. The recogniser is
trained on these only (tools/train_plate_rec.py); the development photographs are measured,
never trained or tuned on (docs/design/anpr-reader.md, "The plate recogniser").

Layouts (``LAYOUTS``): the UK's current (``AB12 CDE``), prefix (``A123 BCD``), suffix
(``ABC 123D``), dateless (``ABC 123``, ``1234 AB``) and Northern Ireland (``AIZ 1234``)
registrations, on one line or two, white at the front or yellow at the rear; ``generic``:
4 to 8 letters and digits in assorted colours and fonts, as on other countries' plates; and
``us`` (2026-12-08): US-style plates, 5 to 7 characters (ABC1234, 1ABC234, ABC123, 123ABC,
AB12345, ...) in a condensed, often embossed-looking face on a gradient or scenic background,
the state's name across the top in a script-like, serif or sans face, a slogan or website at
the bottom, stickers, bolt holes, a star, disc or silhouette beside or between the groups;
drawn from general knowledge of US plates, not from any photograph.

Font: DejaVu Sans (Condensed) Bold, and for generic and US plates the other DejaVu faces (the
only fonts installed here; serif italics stand in for US plates' script faces), from the
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
# ``us`` (2026-12-08) took 24 points of ``generic``'s 42; the UK layouts' shares are as before.
LAYOUTS = {"current": 0.38, "prefix": 0.08, "suffix": 0.04, "dateless": 0.04, "ni": 0.04, "generic": 0.18, "us": 0.24}
# The mix the committed model (anpr/models/plate_rec.onnx) was trained on, before ``us``: drawn
# from with the same seeds, it gives the same samples as then, so the model can be rebuilt
# (tools/train_plate_rec.py --mix trained, its default) and is tested on what it learnt.
TRAINED_SHARES = {"current": 0.38, "prefix": 0.08, "suffix": 0.04, "dateless": 0.04, "ni": 0.04, "generic": 0.42}
MIXES = {"trained": TRAINED_SHARES, "all": LAYOUTS}

_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path(__file__).resolve().parent.parent / ".venv/lib/python3.11/site-packages/matplotlib/mpl-data/fonts/ttf",
)
UK_FONTS = ("DejaVuSansCondensed-Bold.ttf", "DejaVuSans-Bold.ttf")
GENERIC_FONTS = (
    "DejaVuSansCondensed-Bold.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansCondensed.ttf",
    "DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerifCondensed-Bold.ttf",
)
# US-style plates (``us``), from general knowledge of US plates, not from any photograph: the
# state's name across the top, a slogan or website at the bottom, 5-7 characters in a
# condensed, often embossed-looking face, sometimes a small graphic beside or between them.
US_FONTS = (
    "DejaVuSansCondensed-Bold.ttf", "DejaVuSansCondensed-Bold.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSans-Bold.ttf",
    "DejaVuSerifCondensed-Bold.ttf", "DejaVuSansCondensed.ttf", "DejaVuSansMono.ttf",
)
US_TITLE_FONTS = (  # the state's name: script-like (serif italics), serif or sans
    "DejaVuSerif-BoldItalic.ttf", "DejaVuSerifCondensed-BoldItalic.ttf", "DejaVuSerif-Italic.ttf",
    "DejaVuSerifCondensed-Italic.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSansCondensed-BoldOblique.ttf", "DejaVuSans.ttf",
)
US_SMALL_FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSansCondensed.ttf", "DejaVuSerif-Italic.ttf",
                  "DejaVuSerifCondensed-Bold.ttf", "DejaVuSans-Oblique.ttf")
US_STATES = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware", "Florida",
    "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Louisiana", "Maine",
    "Maryland", "Massachusetts", "Michigan", "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska", "Nevada",
    "New Hampshire", "New Jersey", "New Mexico", "New York", "North Carolina", "North Dakota", "Ohio", "Oklahoma",
    "Oregon", "Pennsylvania", "Rhode Island", "South Carolina", "South Dakota", "Tennessee", "Texas", "Utah",
    "Vermont", "Virginia", "Washington", "West Virginia", "Wisconsin", "Wyoming", "District of Columbia",
)
US_BOTTOM_TEXT = (
    "Sunshine State", "Land of Lincoln", "Empire State", "Live Free or Die", "Great Lakes", "Famous Potatoes",
    "The Lone Star State", "Grand Canyon State", "Garden State", "Green Mountain State", "Vacationland",
    "First in Flight", "The Natural State", "Heart of Dixie", "America's Dairyland", "Show Me State",
    "Big Sky Country", "Wild Wonderful", "Ocean State", "Peach State", "Keystone State", "Beehive State",
    "Centennial State", "Evergreen State", "Sportsman's Paradise", "Aloha State", "Battle Born", "Pure Michigan",
    "Explore Minnesota", "Drive Safely", "Taxation without Representation", "Land of Enchantment", "Old Line State",
    "visit the state online", "www.state.gov", "dmv.state.us", "drive.state.us", "ORANGE COUNTY", "HARRIS COUNTY",
    "COUNTY", "Commercial", "Trailer", "Veteran", "Collegiate", "In God We Trust", "Since 1776", "Dealer",
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


def registration(rng: np.random.Generator, layout: str | None = None, shares: dict[str, float] | None = None) -> tuple[str, str, str]:
    """(layout, left group, right group) of a made-up registration; the layout drawn by
    ``shares`` (LAYOUTS unless given) when not named."""
    if layout is None:
        shares = shares or LAYOUTS
        names = list(shares)
        layout = names[int(rng.choice(len(names), p=np.array(list(shares.values())) / sum(shares.values())))]
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
    if layout == "us":
        return (layout, *_us_registration(rng))
    # generic: 4-8 characters, mostly mixed letters and digits, sometimes in two groups.
    n = int(rng.integers(4, 9))
    digit_share = rng.uniform(0.2, 0.8)
    text = "".join(_pick(rng, _DIGITS) if rng.random() < digit_share else _pick(rng, _LETTERS) for _ in range(n))
    cut = int(rng.integers(2, n - 1)) if rng.random() < 0.4 else n
    return layout, text[:cut], text[cut:]


# US registration patterns (L a letter, D a digit) and how often each is drawn; the cut is
# where a space, a dash or a graphic may go.
_US_PATTERNS = (("LLLDDDD", 3, 0.30), ("DLLLDDD", 4, 0.18), ("LLLDDD", 3, 0.14), ("DDDLLL", 3, 0.10),
                ("LLDDDDD", 2, 0.10), ("DDDDLL", 4, 0.05), ("LDDDLL", 4, 0.05), ("DLLDDDD", 3, 0.04), ("LLLLDDD", 4, 0.04))
_US_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # many states leave out I, O and Q


def _us_registration(rng: np.random.Generator) -> tuple[str, str]:
    """(left group, right group) of a made-up US-style registration: ABC1234, 1ABC234, ABC123,
    123ABC, AB12345 and a few rarer patterns; sometimes 5-7 letters and digits in any order."""
    if rng.random() < 0.1:
        n = int(rng.integers(5, 8))
        text = "".join(_pick(rng, _DIGITS) if rng.random() < 0.5 else _pick(rng, _LETTERS) for _ in range(n))
        return text, ""
    weights = np.array([w for _, _, w in _US_PATTERNS])
    pattern, cut, _ = _US_PATTERNS[int(rng.choice(len(_US_PATTERNS), p=weights / weights.sum()))]
    letters = _LETTERS if rng.random() < 0.4 else _US_LETTERS
    text = "".join(_pick(rng, letters) if kind == "L" else _pick(rng, _DIGITS) for kind in pattern)
    return text[:cut], text[cut:]


US_GRAPHIC_SEP = "*"  # in a ``us`` plate's line: a small graphic between the groups (not a character)


def make_plate(rng: np.random.Generator, layout: str | None = None, shares: dict[str, float] | None = None) -> Plate:
    layout, left, right = registration(rng, layout, shares)
    if layout == "us":
        kind = rng.random()
        sep = "" if kind < 0.35 or not right else " " if kind < 0.65 else "-" if kind < 0.8 else US_GRAPHIC_SEP
        return Plate(layout, (left + sep + right,))
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
    if plate.layout == "us":
        return _draw_us_plate(rng, plate, char_px)
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


def _text_mask(face: str, size: int, text: str, stretch: float = 1.0) -> np.ndarray:
    """``text`` drawn white on black (float 0..1), cropped to its ink, stretched across."""
    font = _font(face, max(6, size))
    x0, y0, x1, y1 = font.getbbox(text)
    y0 = min(y0, font.getbbox("H")[1])  # the capitals' top: groups drawn at one y share a baseline
    im = Image.new("L", (max(1, x1 - x0) + 4, max(1, y1 - y0) + 4), 0)
    ImageDraw.Draw(im).text((2 - x0, 2 - y0), text, font=font, fill=255)
    w = max(1, int(im.width * stretch))
    return np.asarray(im.resize((w, im.height), Image.BILINEAR), np.float32) / 255.0


def _paint(img: np.ndarray, mask: np.ndarray, x: int, y: int, colour, alpha: float = 1.0) -> None:  # noqa: ANN001
    """Blends ``colour`` into ``img`` (float RGB) through ``mask`` placed at (x, y), clipped."""
    h, w = img.shape[:2]
    mh, mw = mask.shape
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + mw), min(h, y + mh)
    if x1 <= x0 or y1 <= y0:
        return
    a = mask[y0 - y : y1 - y, x0 - x : x1 - x, None] * alpha
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + np.asarray(colour, np.float32) * a


def _shape_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A plate graphic's mask: a star, a circle, a ring or a silhouette-like blob."""
    size = max(6, size)
    im = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(im)
    kind = rng.random()
    c, r = size / 2, size / 2 - 1
    if kind < 0.3:  # a five-pointed star
        pts = [(c + (r if k % 2 == 0 else r * 0.42) * np.sin(np.pi * k / 5), c - (r if k % 2 == 0 else r * 0.42) * np.cos(np.pi * k / 5))
               for k in range(10)]
        draw.polygon(pts, fill=255)
    elif kind < 0.5:  # a disc or a ring (a seal, a sun)
        draw.ellipse((1, 1, size - 2, size - 2), fill=255)
        if rng.random() < 0.5:
            t = max(1, int(size * rng.uniform(0.1, 0.25)))
            draw.ellipse((1 + t, 1 + t, size - 2 - t, size - 2 - t), fill=0)
    else:  # a blob: a state's outline, a bird, a mountain, as a rough silhouette
        n = int(rng.integers(6, 13))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = r * rng.uniform(0.45, 1.0, n)
        draw.polygon([(c + rr * np.cos(a), c + rr * np.sin(a)) for a, rr in zip(angles, radii, strict=True)], fill=255)
    return np.asarray(im, np.float32) / 255.0


def _us_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """(background top or left colour, the other end of its gradient, characters' colour)."""
    if rng.random() < 0.15:  # light on dark
        c1 = rng.integers(0, 90, 3)
        c2 = np.clip(c1 + rng.integers(-30, 50, 3), 0, 255)
        fg = (int(rng.integers(225, 256)),) * 3 if rng.random() < 0.6 else tuple(int(v) for v in (rng.integers(220, 256), rng.integers(190, 240), rng.integers(0, 120)))
        return c1.astype(np.float32), c2.astype(np.float32), fg  # type: ignore[return-value]
    white = np.full(3, float(rng.integers(215, 256)))
    tint = rng.integers(150, 256, 3).astype(np.float32)
    c1, c2 = (white, tint) if rng.random() < 0.5 else (tint, white)
    if rng.random() < 0.3:
        c1 = c2 = white
    inks = ((15, 30, 110), (20, 20, 20), (110, 20, 30), (10, 70, 35), (170, 25, 25), (30, 30, 80))
    fg = inks[int(rng.integers(len(inks)))] if rng.random() < 0.8 else tuple(int(v) for v in rng.integers(0, 90, 3))
    return c1, c2, fg  # type: ignore[return-value]


def _draw_us_plate(rng: np.random.Generator, plate: Plate, char_px: int) -> Drawn:
    """A US-style plate, about 2:1, the characters about half its height: a gradient or
    scenic background, the state's name at the top, a slogan or website at the bottom,
    registration stickers and bolt holes, a small graphic beside or between the character
    groups; the characters condensed and often embossed-looking (shadow and highlight)."""
    height = int(char_px / rng.uniform(0.42, 0.56))
    width = int(height * rng.uniform(1.85, 2.1))
    c1, c2, fg = _us_colours(rng)
    # Background: a gradient top to bottom, left to right or from the middle out.
    kind = rng.random()
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind < 0.6:
        t = yy / height
    elif kind < 0.85:
        t = xx / width
    else:
        t = np.clip(np.hypot((xx - width / 2) / width, (yy - height / 2) / height) * 1.6, 0, 1)
    t = t ** rng.uniform(0.5, 2.0)
    img = c1[None, None] * (1 - t[:, :, None]) + c2[None, None] * t[:, :, None]
    dark_plate = float(c1.mean()) < 128
    if rng.random() < 0.4:  # a scenic band: hills, waves or a skyline, faint behind the characters
        pts = [(0, height)]
        y_base = height * rng.uniform(0.45, 0.85)
        for x in np.linspace(0, width, int(rng.integers(3, 9))):
            pts.append((float(x), float(y_base + rng.normal(0, height * 0.12))))
        pts.append((width, height))
        scene = Image.new("L", (width, height), 0)
        ImageDraw.Draw(scene).polygon(pts, fill=255)
        colour = rng.integers(0, 256, 3)
        _paint(img, np.asarray(scene, np.float32) / 255.0, 0, 0, colour, rng.uniform(0.15, 0.45))
    if rng.random() < 0.2:  # a large faint graphic behind the characters
        size = int(height * rng.uniform(0.5, 0.9))
        _paint(img, _shape_mask(rng, size), int(rng.uniform(0, width - size)), int(rng.uniform(0, height - size)),
               rng.integers(0, 256, 3), rng.uniform(0.1, 0.3))
    # The characters: one mask per group, a graphic or a gap between.
    face = US_FONTS[int(rng.integers(len(US_FONTS)))]
    stretch = rng.uniform(0.55, 0.95)
    line = plate.lines[0]
    groups = line.split(US_GRAPHIC_SEP)
    masks = [_text_mask(face, int(char_px * 1.37), g, stretch) for g in groups]
    mid = int(char_px * rng.uniform(0.55, 0.8)) if len(groups) > 1 else 0
    side = len(groups) == 1 and rng.random() < 0.25  # a graphic beside the characters
    side_px = int(char_px * rng.uniform(0.6, 0.9)) if side else 0
    chars_w = sum(m.shape[1] for m in masks) + mid + (side_px + int(char_px * 0.15) if side else 0)
    fit = min(1.0, width * 0.9 / max(chars_w, 1))
    if fit < 1.0:  # too wide for the plate: condensed further
        masks = [np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize((max(1, int(m.shape[1] * fit)), m.shape[0]), Image.BILINEAR), np.float32) / 255
                 for m in masks]
        mid, side_px = int(mid * fit), int(side_px * fit)
        chars_w = sum(m.shape[1] for m in masks) + mid + (side_px + int(char_px * 0.15 * fit) if side else 0)
    mh = max(m.shape[0] for m in masks)
    x = int((width - chars_w) / 2 + rng.uniform(-0.04, 0.04) * width)
    y = int(height * rng.uniform(0.48, 0.58) - mh / 2)
    graphic_colour = tuple(int(v) for v in rng.integers(0, 256, 3)) if rng.random() < 0.6 else fg
    if side:
        left_side = rng.random() < 0.7
        gx = x if left_side else x + chars_w - side_px
        _paint(img, _shape_mask(rng, side_px), gx, y + (mh - side_px) // 2, graphic_colour)
        if left_side:
            x += side_px + int(char_px * 0.15 * fit)
    emboss = rng.random() < 0.5
    d = max(1, int(round(char_px * rng.uniform(0.03, 0.08))))
    shadow = np.clip(img.mean(axis=(0, 1)) * 0.45, 0, 255)
    highlight = np.clip(img.mean(axis=(0, 1)) * 0.5 + 127, 0, 255)
    x0s, x1s = [], []
    cx = x
    for k, m in enumerate(masks):
        top = y
        if emboss:
            soft = cv2.GaussianBlur(m, (0, 0), max(0.5, d * 0.5))
            _paint(img, soft, cx + d, top + d, shadow, rng.uniform(0.4, 0.8))
            _paint(img, soft, cx - d // 2, top - d // 2, highlight, rng.uniform(0.3, 0.7))
        _paint(img, m, cx, top, fg)
        cols = np.nonzero(m.max(axis=0) > 0.25)[0]
        x0s.append(cx + (cols.min() if len(cols) else 0))
        x1s.append(cx + (cols.max() + 1 if len(cols) else m.shape[1]))
        cx += m.shape[1]
        if k < len(masks) - 1:
            g = int(mid * rng.uniform(0.6, 0.9))
            _paint(img, _shape_mask(rng, g), cx + (mid - g) // 2, y + (mh - g) // 2, graphic_colour)
            cx += mid
    rows = np.nonzero(np.concatenate([np.pad(m, ((0, mh - m.shape[0]), (0, 0))) for m in masks], axis=1).max(axis=1) > 0.25)[0]
    box = (float(min(x0s)), float(y + rows.min()), float(max(x1s)), float(y + rows.max() + 1))
    # The state's name across the top, a slogan or website at the bottom.

    def accent() -> tuple[int, ...]:
        return fg if rng.random() < 0.5 else tuple(int(v) for v in (rng.integers(120, 256, 3) if dark_plate else rng.integers(0, 150, 3)))

    if rng.random() < 0.9:
        name = US_STATES[int(rng.integers(len(US_STATES)))]
        name = name.upper() if rng.random() < 0.5 else name
        m = _text_mask(US_TITLE_FONTS[int(rng.integers(len(US_TITLE_FONTS)))], int(char_px * rng.uniform(0.3, 0.65)), name,
                       rng.uniform(0.8, 1.2))
        room = box[1] * 0.85
        if m.shape[0] > room:
            m = np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize((max(1, int(m.shape[1] * room / m.shape[0])), max(1, int(room))), Image.BILINEAR), np.float32) / 255
        if m.shape[1] > width * 0.9:
            m = np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize((int(width * 0.9), m.shape[0]), Image.BILINEAR), np.float32) / 255
        _paint(img, m, int((width - m.shape[1]) / 2 + rng.uniform(-0.05, 0.05) * width), int((box[1] - m.shape[0]) / 2), accent())
    if rng.random() < 0.75:
        words = US_BOTTOM_TEXT[int(rng.integers(len(US_BOTTOM_TEXT)))]
        words = words.upper() if rng.random() < 0.3 else words
        m = _text_mask(US_SMALL_FONTS[int(rng.integers(len(US_SMALL_FONTS)))], int(char_px * rng.uniform(0.2, 0.4)), words)
        room = (height - box[3]) * 0.85
        if m.shape[0] > room:
            m = np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize((max(1, int(m.shape[1] * room / m.shape[0])), max(1, int(room))), Image.BILINEAR), np.float32) / 255
        if m.shape[1] > width * 0.9:
            m = np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize((int(width * 0.9), m.shape[0]), Image.BILINEAR), np.float32) / 255
        _paint(img, m, int((width - m.shape[1]) / 2), int(box[3] + (height - box[3] - m.shape[0]) / 2), accent())
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    if rng.random() < 0.5:  # registration stickers in the corners
        for corner in range(int(rng.integers(1, 3))):
            sw, sh = int(char_px * rng.uniform(0.5, 0.9)), int(char_px * rng.uniform(0.3, 0.5))
            sx = int(width * 0.03) if corner == 0 and rng.random() < 0.5 else int(width * 0.97) - sw
            sy = int(height * 0.04) if rng.random() < 0.6 else int(height * 0.96) - sh
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            draw.rectangle((sx, sy, sx + sw, sy + sh), fill=colour)
            draw.text((sx + sw // 2, sy + sh // 2), str(int(rng.integers(10, 30))), anchor="mm",
                      font=_font("DejaVuSans-Bold.ttf", max(6, int(sh * 0.8))), fill=(0, 0, 0) if sum(colour) > 380 else (255, 255, 255))
    if rng.random() < 0.6:  # bolt holes, at the top (and the bottom)
        r = max(2, int(char_px * rng.uniform(0.06, 0.1)))
        rows_y = [int(height * 0.1)] + ([int(height * 0.9)] if rng.random() < 0.4 else [])
        for cy in rows_y:
            for cx2 in (int(width * 0.2), int(width * 0.8)):
                grey = int(rng.integers(40, 200))
                draw.ellipse((cx2 - r, cy - r, cx2 + r, cy + r), fill=(grey, grey, grey))
    if rng.random() < 0.3:  # a thin border, the plate's pressed rim
        t = max(1, int(char_px * rng.uniform(0.02, 0.06)))
        draw.rounded_rectangle((1, 1, width - 2, height - 2), radius=int(char_px * 0.2), outline=fg, width=t)
    return Drawn(np.asarray(pil).copy(), [(box, line)])


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


def sample(rng: np.random.Generator, layout: str | None = None, shares: dict[str, float] | None = None) -> tuple[np.ndarray, str]:
    """One recogniser input: (48 x W x 3 BGR uint8 line crop, its text A-Z0-9); ``shares``:
    the layouts' shares to draw from (LAYOUTS unless given)."""
    plate = make_plate(rng, layout, shares)
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

