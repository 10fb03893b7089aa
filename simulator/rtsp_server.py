"""The simulated cameras' RTSP server: run as its own process under ``/usr/bin/python3``.

``import gi`` does not work inside the project's virtualenv, so this file uses only GStreamer's
introspection bindings, the standard library and Debian's numpy and PIL. It never imports the
rest of the project (it loads ``anpr_schedule.py`` by path).

Protocol (JSON lines): the first line on stdin is the configuration (see ``Simulation`` in
``__init__.py``); the server answers ``{"event": "ready", "ports": {...}}`` once every camera is
listening. Then each stdin line is a request ``{"id": N, "op": ..., ...}`` answered on stdout by
``{"id": N, "ok": true, ...}`` or ``{"id": N, "ok": false, "error": "..."}``. End of stdin
(the parent went away) stops the server.

Each camera is its own ``GstRTSPServer`` on its own port, like a real device; taking it off the
air closes its listening socket and its clients.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer, GstVideo  # noqa: E402

HERE = Path(__file__).resolve().parent
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
FRAME_NS = Gst.SECOND // 25
CLIP_GOP_FRAMES = 50


def log(message: str) -> None:
    print(f"rtsp_server: {message}", file=sys.stderr, flush=True)


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


anpr_schedule = load_module("sim_anpr_schedule", HERE / "anpr_schedule.py")


def wall_text(offset_s: float = 0.0, wall_s: float | None = None) -> str:
    """The clock a camera burns in: ``wall_s`` (default now) plus the camera's offset."""
    now = datetime.fromtimestamp((time.time() if wall_s is None else wall_s) + offset_s, UTC)
    return now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d} UTC"


# --------------------------------------------------------------------------------------------
# Pre-encoded clips, looped with continuous timestamps


class Clip:
    """An Annex-B H.264 clip split into GOPs, each a ready ``Gst.BufferList``, kept in memory.

    Buffers carry PTS = frame index x 40 ms from the clip's start. They are never copied or
    changed: every camera and client using the clip pushes the same buffers.
    """

    _cache: dict[str, Clip] = {}
    _lock = threading.Lock()

    def __init__(self, path: str) -> None:
        data = Path(path).read_bytes()
        aud = b"\x00\x00\x00\x01\x09"
        starts = []
        pos = data.find(aud)
        while pos != -1:
            starts.append(pos)
            pos = data.find(aud, pos + 5)
        if not starts:
            raise ValueError(f"{path}: no access unit delimiters (encode with aud=1)")
        starts.append(len(data))
        self.gops: list[Gst.BufferList] = []
        self.gop_frames: list[int] = []
        for i in range(len(starts) - 1):
            au = data[starts[i]:starts[i + 1]]
            if b"\x00\x00\x01\x65" in au:  # an IDR slice starts a GOP
                self.gops.append(Gst.BufferList.new())
                self.gop_frames.append(0)
            elif not self.gops:
                raise ValueError(f"{path}: the clip must start with an IDR frame")
            buf = Gst.Buffer.new_wrapped(au)
            buf.pts = buf.dts = i * FRAME_NS
            buf.duration = FRAME_NS
            self.gops[-1].insert(-1, buf)
            self.gop_frames[-1] += 1
        self.frames = len(starts) - 1
        self.duration_ns = self.frames * FRAME_NS

    @classmethod
    def get(cls, path: str) -> Clip:
        with cls._lock:
            if path not in cls._cache:
                cls._cache[path] = Clip(path)
            return cls._cache[path]


class ClipFeeder:
    """Feeds one media's appsrc a GOP at a time, forever, with running time never reset.

    The buffers keep their in-clip timestamps; the appsrc pad's offset moves each loop one clip
    length later, so downstream (and the RTP timestamps) see one continuous 25 fps stream.
    One Python call per GOP (2 s), no per-frame work: the cost is GStreamer's payloading.
    """

    frames_pushed = 0  # over all feeders: lets a benchmark check delivery kept up with real time
    last_push_s: dict[int, float] = {}  # id(feeder) -> when it last pushed (streams flowing)

    def __init__(self, appsrc: Gst.Element, clip: Clip) -> None:
        self.appsrc, self.clip = appsrc, clip
        self.pad = appsrc.get_static_pad("src")
        # Start at the GOP the wall clock points at, so clients see a consistent "now".
        self.gop = int(time.time() / 2) % len(clip.gops)
        start_ns = sum(clip.gop_frames[: self.gop]) * FRAME_NS
        self.offset_ns = -start_ns  # running time 0 at the first frame sent
        self.pad.set_offset(self.offset_ns)
        self.first = True
        appsrc.connect("need-data", self.on_need_data)

    def on_need_data(self, appsrc: Gst.Element, _length: int) -> None:
        # need-data comes when appsrc's queue is empty (min-percent 0), so moving the offset
        # cannot touch buffers of the previous loop still waiting in the queue.
        if self.gop == 0 and not self.first:
            self.offset_ns += self.clip.duration_ns
            self.pad.set_offset(self.offset_ns)
        self.first = False
        if appsrc.emit("push-buffer-list", self.clip.gops[self.gop]) != Gst.FlowReturn.OK:
            return
        ClipFeeder.frames_pushed += self.clip.gop_frames[self.gop]
        ClipFeeder.last_push_s[id(self)] = time.monotonic()
        self.gop = (self.gop + 1) % len(self.clip.gops)

    @classmethod
    def flowing(cls) -> int:
        """How many clip streams pushed in the last 3 s."""
        now = time.monotonic()
        for key in [k for k, t in cls.last_push_s.items() if now - t > 10]:
            del cls.last_push_s[key]
        return sum(1 for t in cls.last_push_s.values() if now - t < 3)


class ClipFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, clip_path: str, width: int, height: int) -> None:
        super().__init__()
        self.clip_path = clip_path
        caps = (
            f"video/x-h264,stream-format=byte-stream,alignment=au,width={width},"
            f"height={height},framerate=25/1"
        )
        self.set_launch(
            f"( appsrc name=src is-live=true format=time do-timestamp=false stream-type=stream "
            f"max-bytes=8000000 caps=\"{caps}\" "
            f"! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        # One pipeline per client: each client starts on a keyframe, at no encoding cost.
        self.set_shared(False)
        self.connect("media-configure", self.on_media_configure)

    def on_media_configure(self, _factory, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name_recurse_up("src")
        media.feeder = ClipFeeder(appsrc, Clip.get(self.clip_path))  # keep a reference


# --------------------------------------------------------------------------------------------
# Live-encoded cameras: wall clock (UTC, ms) burnt in at capture


def x264(bitrate_kbps: int, gop: int, codec: str = "h264") -> str:
    """The encoder and payloader of a live-encoded stream: H.264 (x264) or H.265 (x265)."""
    if codec == "h265":
        # One worker thread and one frame thread, like x264's threads=1 (a whole slice per
        # frame); zerolatency means no B-frames and no look-ahead. Parameter sets are repeated
        # at every keyframe, so a client joining mid-stream can decode.
        return (
            f"x265enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} key-int-max={gop} "
            f"option-string=\"pools=1:frame-threads=1:repeat-headers=1\" "
            f"! video/x-h265,profile=main ! h265parse "
            f"! rtph265pay name=pay0 pt=96 config-interval=-1"
        )
    return (
        f"x264enc tune=zerolatency speed-preset=ultrafast threads=1 bitrate={bitrate_kbps} "
        f"key-int-max={gop} ! video/x-h264,profile=high ! h264parse "
        f"! rtph264pay name=pay0 pt=96 config-interval=-1"
    )


def attach_clock(media: GstRtspServer.RTSPMedia, offset_s: float) -> None:
    """Set the ``clock`` textoverlay's text to the camera's wall clock for each frame."""
    overlay = media.get_element().get_by_name_recurse_up("clock")
    if overlay is None:
        return

    def probe(_pad, _info):
        overlay.set_property("text", wall_text(offset_s))
        return Gst.PadProbeReturn.OK

    overlay.get_static_pad("video_sink").add_probe(Gst.PadProbeType.BUFFER, probe)


class Privacy:
    """A camera's own privacy masks (ONVIF Media2 CreateMask): polygons painted black into every
    frame just before the encoder (over the burnt-in name and clock too: nothing under a mask
    shows), by a ``gdkpixbufoverlay`` named ``privacy`` in each of the camera's live-encoded
    pipelines. Polygons are normalised (0..1
    from the top left); each stream size gets its own PNG (transparent but for the masks)."""

    def __init__(self, folder: Path, camera: str) -> None:
        self.folder, self.camera = folder, camera
        self.polygons: list[list[list[float]]] = []
        self.version = 0
        self.overlays: list[tuple[Gst.Element, int, int]] = []

    @staticmethod
    def element() -> str:
        return "! gdkpixbufoverlay name=privacy "

    def png(self, width: int, height: int) -> str:
        from PIL import Image, ImageDraw

        path = self.folder / f"{abs(hash(self.camera))}-{width}x{height}-v{self.version}.png"
        if not path.exists():
            image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
            draw = ImageDraw.Draw(image)
            for poly in self.polygons:
                draw.polygon([(x * (width - 1), y * (height - 1)) for x, y in poly], fill=(0, 0, 0, 255))
            tmp = path.with_suffix(".tmp.png")
            image.save(tmp)
            os.replace(tmp, path)
        return str(path)

    def attach(self, media: GstRtspServer.RTSPMedia, width: int, height: int) -> None:
        overlay = media.get_element().get_by_name_recurse_up("privacy")
        if overlay is None:
            return
        entry = (overlay, width, height)
        overlay.set_property("location", self.png(width, height))
        self.overlays.append(entry)

        def forget(_media):
            if entry in self.overlays:
                self.overlays.remove(entry)

        media.connect("unprepared", forget)

    def set(self, polygons: list[list[list[float]]]) -> None:
        """Paint these polygons from the next frame on, on every stream of the camera."""
        self.polygons = [[[float(x), float(y)] for x, y in poly] for poly in polygons]
        self.version += 1
        for overlay, width, height in list(self.overlays):
            overlay.set_property("location", self.png(width, height))


class LiveFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, name: str, width: int, height: int, bitrate_kbps: int, offset_s: float,
                 codec: str = "h264", privacy: Privacy | None = None) -> None:
        super().__init__()
        self.offset_s, self.privacy, self.size = offset_s, privacy, (width, height)
        font = max(12, height // 28)
        self.set_launch(
            f"( videotestsrc is-live=true pattern=smpte horizontal-speed=4 "
            f"! video/x-raw,width={width},height={height},framerate=25/1 "
            f"! textoverlay name=clock valignment=top halignment=right shaded-background=true "
            f"font-desc=\"DejaVu Sans Mono Bold {font}\" "
            f"! textoverlay text=\"{name}\" valignment=bottom halignment=left "
            f"shaded-background=true font-desc=\"DejaVu Sans Bold {font}\" "
            f"{privacy.element() if privacy else ''}! {x264(bitrate_kbps, 50, codec)} )"
        )
        self.set_shared(True)
        self.connect("media-configure", self.on_media_configure)

    def on_media_configure(self, _factory, media: GstRtspServer.RTSPMedia) -> None:
        attach_clock(media, self.offset_s)
        if self.privacy is not None:
            self.privacy.attach(media, *self.size)


# --------------------------------------------------------------------------------------------
# PTZ cameras: a view window onto a large scene, moved at run time


SCENE_W, SCENE_H = 5760, 2160
MAX_ZOOM = 10.0


def make_scene(path: Path, title: str) -> None:
    """A wide 'market square' of labelled, coloured tiles, so every view looks different."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (SCENE_W, SCENE_H), (40, 40, 40))
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT_BOLD, 64)
    small = ImageFont.truetype(FONT_BOLD, 28)
    tile = 240
    for row in range(SCENE_H // tile):
        for col in range(SCENE_W // tile):
            x, y = col * tile, row * tile
            colour = ((col * 53 + row * 17) % 200 + 40, (row * 71 + col * 7) % 200 + 40, (col * row * 13) % 200 + 40)
            draw.rectangle([x + 4, y + 4, x + tile - 4, y + tile - 4], fill=colour, outline=(255, 255, 255), width=3)
            label = f"{chr(65 + row)}{col + 1}"
            draw.text((x + 24, y + 24), label, font=font, fill=(255, 255, 255), stroke_width=3, stroke_fill=(0, 0, 0))
            draw.ellipse([x + 120, y + 130, x + 200, y + 210], fill=(255 - colour[0], 255 - colour[1], 255 - colour[2]))
            draw.text((x + 24, y + 180), f"{col * tile},{row * tile}", font=small, fill=(255, 255, 255))
    draw.text((60, SCENE_H - 120), title, font=font, fill=(255, 255, 0), stroke_width=3, stroke_fill=(0, 0, 0))
    tmp = path.with_suffix(f".{os.getpid()}.tmp.png")
    image.save(tmp, compress_level=1)
    os.replace(tmp, path)


class PtzState:
    """Position in ONVIF's normalised space: pan, tilt -1..1, zoom 0..1; and a velocity."""

    def __init__(self) -> None:
        self.pan = self.tilt = self.zoom = 0.0
        self.velocity = (0.0, 0.0, 0.0)
        self.crops: list[tuple[Gst.Element, Gst.Element]] = []  # (videocrop, position overlay)

    def window(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) crop of the scene for the current position."""
        view_w = SCENE_W / 3 / (1 + (MAX_ZOOM - 1) * self.zoom)
        view_h = view_w * 9 / 16
        cx = SCENE_W / 2 + self.pan * (SCENE_W - view_w) / 2
        cy = SCENE_H / 2 - self.tilt * (SCENE_H - view_h) / 2
        left = int(round(cx - view_w / 2)) & ~1
        top = int(round(cy - view_h / 2)) & ~1
        width, height = int(view_w) & ~1, int(view_h) & ~1
        return left, top, SCENE_W - left - width, SCENE_H - top - height

    def apply(self) -> None:
        left, top, right, bottom = self.window()
        text = f"pan {self.pan:+.2f} tilt {self.tilt:+.2f} zoom {self.zoom:.2f}"
        for crop, overlay in list(self.crops):
            crop.set_property("left", left)
            crop.set_property("top", top)
            crop.set_property("right", right)
            crop.set_property("bottom", bottom)
            overlay.set_property("text", text)

    def set(self, pan: float, tilt: float, zoom: float) -> None:
        self.pan = min(1.0, max(-1.0, pan))
        self.tilt = min(1.0, max(-1.0, tilt))
        self.zoom = min(1.0, max(0.0, zoom))
        self.apply()

    def step(self, dt_s: float) -> None:
        vp, vt, vz = self.velocity
        # Full speed 1.0 crosses the whole pan range (2.0) in 4 s, like a quick dome camera.
        self.set(self.pan + vp * dt_s / 2, self.tilt + vt * dt_s / 2, self.zoom + vz * dt_s / 4)


class PtzFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, name: str, scene: str, state: PtzState, width: int, height: int,
                 bitrate_kbps: int, offset_s: float, codec: str = "h264", privacy: Privacy | None = None) -> None:
        super().__init__()
        self.state, self.offset_s, self.privacy, self.size = state, offset_s, privacy, (width, height)
        font = max(12, height // 28)
        self.set_launch(
            f"( filesrc location=\"{scene}\" ! pngdec ! videoconvert ! video/x-raw,format=I420 "
            f"! imagefreeze is-live=true ! video/x-raw,framerate=25/1 ! videocrop name=crop "
            f"! videoscale ! video/x-raw,width={width},height={height},pixel-aspect-ratio=1/1 "
            f"! textoverlay name=clock valignment=top halignment=right shaded-background=true "
            f"font-desc=\"DejaVu Sans Mono Bold {font}\" "
            f"! textoverlay name=position valignment=bottom halignment=right shaded-background=true "
            f"font-desc=\"DejaVu Sans Bold {font}\" "
            f"! textoverlay text=\"{name}\" valignment=bottom halignment=left "
            f"shaded-background=true font-desc=\"DejaVu Sans Bold {font}\" "
            f"{privacy.element() if privacy else ''}! {x264(bitrate_kbps, 50, codec)} )"
        )
        self.set_shared(True)
        self.connect("media-configure", self.on_media_configure)

    def on_media_configure(self, _factory, media: GstRtspServer.RTSPMedia) -> None:
        bin_ = media.get_element()
        pair = (bin_.get_by_name_recurse_up("crop"), bin_.get_by_name_recurse_up("position"))
        self.state.crops.append(pair)
        self.state.apply()
        attach_clock(media, self.offset_s)
        if self.privacy is not None:
            self.privacy.attach(media, *self.size)

        def forget(_media):
            if pair in self.state.crops:
                self.state.crops.remove(pair)

        media.connect("unprepared", forget)


# --------------------------------------------------------------------------------------------
# ANPR cameras: vehicles with plates drawn at the scheduled wall-clock times


class AnprRenderer:
    """Draws frames of one ANPR camera at one resolution (PIL), as the schedule says."""

    def __init__(self, camera: str, width: int, height: int, offset_s: float) -> None:
        from PIL import Image, ImageDraw, ImageFont

        self.Image, self.ImageDraw = Image, ImageDraw
        self.camera, self.width, self.height, self.offset_s = camera, width, height, offset_s
        self.scale = width / 1280
        s = self.scale
        self.font_plate = ImageFont.truetype(FONT_BOLD, int(50 * s))
        self.font_osd = ImageFont.truetype(FONT_BOLD, max(10, int(26 * s)))
        bg = Image.new("RGB", (width, height), (70, 72, 75))
        draw = ImageDraw.Draw(bg)
        draw.rectangle([0, 0, int(180 * s), height], fill=(60, 110, 60))
        draw.rectangle([width - int(180 * s), 0, width, height], fill=(60, 110, 60))
        for y in range(0, height, int(90 * s)):
            draw.rectangle([int(180 * s) + 8, y, int(180 * s) + 14, y + int(45 * s)], fill=(230, 230, 230))
            draw.rectangle([width - int(180 * s) - 14, y, width - int(180 * s) - 8, y + int(45 * s)], fill=(230, 230, 230))
        self.background = bg
        self.plates: dict[str, object] = {}

    def plate_image(self, plate: str, colour: str):
        key = f"{plate}|{colour}"
        if key not in self.plates:
            s = self.scale
            w, h = int(300 * s), int(66 * s)
            fill = (245, 200, 20) if colour == "yellow" else (250, 250, 250)
            img = self.Image.new("RGB", (w, h), fill)
            draw = self.ImageDraw.Draw(img)
            draw.rectangle([0, 0, w - 1, h - 1], outline=(20, 20, 20), width=max(1, int(3 * s)))
            box = draw.textbbox((0, 0), plate, font=self.font_plate)
            tw, th = box[2] - box[0], box[3] - box[1]
            draw.text(((w - tw) / 2 - box[0], (h - th) / 2 - box[1]), plate, font=self.font_plate, fill=(0, 0, 0))
            self.plates[key] = img
        return self.plates[key]

    def draw_vehicle(self, frame, draw, plate: str, colour: str, body: tuple[int, int, int], progress: float) -> None:
        """One vehicle: it enters at the top at progress -1, is centred at 0, leaves at +1."""
        s = self.scale
        car_w, car_h = int(560 * s), int(420 * s)
        cx = self.width // 2
        cy = int(self.height / 2 + progress * (self.height + car_h) / 2)
        x0, y0 = cx - car_w // 2, cy - car_h // 2
        draw.rounded_rectangle([x0, y0 + int(90 * s), x0 + car_w, y0 + car_h], radius=int(40 * s), fill=body)
        draw.rounded_rectangle([x0 + int(60 * s), y0, x0 + car_w - int(60 * s), y0 + int(150 * s)], radius=int(30 * s), fill=body)
        draw.rectangle([x0 + int(90 * s), y0 + int(25 * s), x0 + car_w - int(90 * s), y0 + int(120 * s)], fill=(150, 190, 220))
        draw.ellipse([x0 + int(30 * s), y0 + int(180 * s), x0 + int(110 * s), y0 + int(230 * s)], fill=(250, 240, 200))
        draw.ellipse([x0 + car_w - int(110 * s), y0 + int(180 * s), x0 + car_w - int(30 * s), y0 + int(230 * s)], fill=(250, 240, 200))
        image = self.plate_image(plate, colour)
        frame.paste(image, (cx - image.width // 2, y0 + int(300 * s)))

    def render(self, wall_s: float) -> bytes:
        now_us = int(wall_s * 1_000_000)
        vehicles = [(p.plate, p.colour, tuple(p.vehicle_colour), progress)
                    for p, progress in anpr_schedule.visible_at(self.camera, now_us)]
        return self.picture(vehicles).tobytes()

    def picture(self, vehicles: list[tuple[str, str, tuple[int, int, int], float]], clock_s: float | None = None):
        """The picture (PIL RGB) with these (plate, colour, body, progress) vehicles and the
        camera's name and clock (``clock_s``, default now) burnt in. bench.anpr_sim draws
        stills with it."""
        s = self.scale
        frame = self.background.copy()
        draw = self.ImageDraw.Draw(frame)
        for plate, colour, body, progress in vehicles:
            self.draw_vehicle(frame, draw, plate, colour, body, progress)
        draw.text((int(10 * s), int(8 * s)), self.camera, font=self.font_osd, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
        stamp = wall_text(self.offset_s, clock_s)
        box = draw.textbbox((0, 0), stamp, font=self.font_osd)
        draw.text((self.width - box[2] - int(10 * s), int(8 * s)), stamp, font=self.font_osd, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
        return frame


class AnprProducer(threading.Thread):
    """Pushes a rendered frame every 80 ms (12.5 fps), each drawn for its own wall-clock time."""

    def __init__(self, appsrc: Gst.Element, renderer: AnprRenderer, fps: float) -> None:
        super().__init__(daemon=True, name=f"anpr {renderer.camera}")
        self.appsrc, self.renderer, self.period_s = appsrc, renderer, 1 / fps
        self.stopped = threading.Event()

    def run(self) -> None:
        next_s = time.time()
        while not self.stopped.is_set():
            delay = next_s - time.time()
            if delay > 0:
                self.stopped.wait(delay)
            elif delay < -1:
                next_s = time.time()  # fell far behind (machine busy): skip ahead
            data = self.renderer.render(next_s)
            buf = Gst.Buffer.new_wrapped(data)
            buf.duration = int(self.period_s * Gst.SECOND)
            if self.appsrc.emit("push-buffer", buf) not in (Gst.FlowReturn.OK, Gst.FlowReturn.FLUSHING):
                break
            next_s += self.period_s


class AnprFactory(GstRtspServer.RTSPMediaFactory):
    FPS_NUM, FPS_DEN = 25, 2

    def __init__(self, camera: str, width: int, height: int, bitrate_kbps: int, offset_s: float,
                 codec: str = "h264", privacy: Privacy | None = None) -> None:
        super().__init__()
        self.camera, self.width, self.height, self.offset_s = camera, width, height, offset_s
        self.privacy = privacy
        caps = f"video/x-raw,format=RGB,width={width},height={height},framerate={self.FPS_NUM}/{self.FPS_DEN}"
        self.set_launch(
            f"( appsrc name=src is-live=true format=time do-timestamp=true stream-type=stream "
            f"max-bytes={width * height * 3 * 4} caps=\"{caps}\" ! queue leaky=downstream max-size-buffers=4 "
            f"! videoconvert ! video/x-raw,format=I420 {privacy.element() if privacy else ''}"
            f"! {x264(bitrate_kbps, 25, codec)} )"
        )
        self.set_shared(True)
        self.connect("media-configure", self.on_media_configure)

    def on_media_configure(self, _factory, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name_recurse_up("src")
        renderer = AnprRenderer(self.camera, self.width, self.height, self.offset_s)
        producer = AnprProducer(appsrc, renderer, self.FPS_NUM / self.FPS_DEN)
        media.producer = producer
        producer.start()
        media.connect("unprepared", lambda _m: producer.stopped.set())
        if self.privacy is not None:
            self.privacy.attach(media, self.width, self.height)


# --------------------------------------------------------------------------------------------
# Cameras, each its own RTSP server on its own port


class Camera:
    def __init__(self, spec: dict, config: dict, context: GLib.MainContext) -> None:
        self.name: str = spec["name"]
        self.spec = spec
        self.host: str = config["host"]
        self.port: int = spec.get("port", 0)
        self.context = context
        self.clients: set[GstRtspServer.RTSPClient] = set()
        # RTSP sessions per mount ("/main", "/sub"): a client counts from its SETUP until its
        # TEARDOWN or disconnection. Real cameras allow two to four; tests assert the service
        # never holds more than it needs (recording + one live upstream per stream).
        self.sessions: dict[GstRtspServer.RTSPClient, str] = {}
        self.peak_sessions: dict[str, int] = {}
        self.ptz = PtzState() if spec["mode"] == "ptz" else None
        # Cameras that paint their own privacy masks (ONVIF Media2): live-encoded ones only.
        self.privacy = Privacy(Path(config["masks_dir"]), self.name) if spec.get("privacy_masks") else None
        self.source = None

        self.server = GstRtspServer.RTSPServer()
        self.server.set_address(self.host)
        self.server.set_backlog(16)
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", config["username"])
        auth.add_digest(config["username"], config["password"], token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        auth.set_realm(f"Simulated camera {self.name}")
        self.server.set_auth(auth)
        self.server.connect("client-connected", self.on_client_connected)
        role, _ = Gst.Structure.from_string(
            f"{config['username']}, media.factory.access=(boolean)true, "
            "media.factory.construct=(boolean)true"
        )
        mounts = self.server.get_mount_points()
        for path, factory in self.factories(spec, config):
            factory.add_role_from_structure(role)
            mounts.add_factory(path, factory)

    def factories(self, spec: dict, config: dict):
        offset = float(spec.get("clock_offset_s", 0.0))
        mode = spec["mode"]
        main, sub = spec.get("main_codec", "h264"), spec.get("sub_codec", "h264")

        def size(codec: str, width: int, height: int) -> tuple[int, int]:
            # x265 ultrafast costs about three times x264 here (720p25 took 75% of a core, and
            # fell behind real time on the busy machine): an H.265 stream is half as wide and high.
            return (width, height) if codec == "h264" else (width // 2, height // 2)

        if mode == "clip":
            yield "/main", ClipFactory(spec["main_clip"], *spec["main_size"])
            yield "/sub", ClipFactory(spec["sub_clip"], *spec["sub_size"])
        elif mode == "live":
            yield "/main", LiveFactory(self.name, *size(main, 1280, 720), 3000, offset, main, self.privacy)
            yield "/sub", LiveFactory(self.name, *size(sub, 640, 360), 600, offset, sub, self.privacy)
        elif mode == "ptz":
            scene = Path(config["cache_dir"]) / "ptz-scene-v1.png"
            if not scene.exists():
                make_scene(scene, "Market Square")
            yield "/main", PtzFactory(self.name, str(scene), self.ptz, *size(main, 1280, 720), 2500, offset, main,
                                      self.privacy)
            yield "/sub", PtzFactory(self.name, str(scene), self.ptz, *size(sub, 640, 360), 500, offset, sub,
                                     self.privacy)
        elif mode == "anpr":
            yield "/main", AnprFactory(self.name, *size(main, 1280, 720), 2500, offset, main, self.privacy)
            yield "/sub", AnprFactory(self.name, *size(sub, 640, 360), 500, offset, sub, self.privacy)
        else:
            raise ValueError(f"unknown camera mode {mode!r}")

    def on_client_connected(self, _server, client: GstRtspServer.RTSPClient) -> None:
        self.clients.add(client)
        client.connect("closed", self.on_client_closed)
        client.connect("setup-request", self.on_setup_request)
        client.connect("teardown-request", lambda c, _ctx: self.sessions.pop(c, None))
        if self.spec["mode"] != "clip":  # clip media are per client and start on a keyframe
            client.connect("play-request", self.on_play_request)

    def on_client_closed(self, client: GstRtspServer.RTSPClient) -> None:
        self.clients.discard(client)
        self.sessions.pop(client, None)

    def on_setup_request(self, client: GstRtspServer.RTSPClient, context) -> None:
        path = context.uri.abspath if context.uri is not None else ""
        mount = "/" + path.strip("/").split("/", 1)[0]
        self.sessions[client] = mount
        count = self.session_counts().get(mount, 0)
        self.peak_sessions[mount] = max(self.peak_sessions.get(mount, 0), count)

    def session_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for mount in self.sessions.values():
            counts[mount] = counts.get(mount, 0) + 1
        return counts

    @staticmethod
    def on_play_request(_client, context) -> None:
        """A client joining a shared live stream gets a fresh keyframe, as many cameras do."""
        media = context.media
        if media is None:
            return
        pay = media.get_element().get_by_name_recurse_up("pay0")
        if pay is None:
            return

        def force_key_unit() -> bool:
            event = GstVideo.video_event_new_upstream_force_key_unit(Gst.CLOCK_TIME_NONE, True, 0)
            pay.send_event(event)
            return False

        GLib.timeout_add(150, force_key_unit)

    def on_air(self) -> None:
        if self.source is not None:
            return
        self.server.set_service(str(self.port))
        # The source owns the listening socket: destroying it closes the socket.
        self.source = self.server.create_source(None)
        self.port = self.server.get_bound_port()
        self.source.attach(self.context)

    def off_air(self) -> None:
        if self.source is None:
            return
        self.source.destroy()
        self.source = None
        for client in list(self.clients):
            client.close()
        self.clients.clear()
        self.sessions.clear()

    def status(self) -> dict:
        status = {"name": self.name, "port": self.port, "on_air": self.source is not None,
                  "clients": len(self.clients), "sessions": self.session_counts(),
                  "peak_sessions": dict(self.peak_sessions)}
        if self.ptz is not None:
            status["ptz"] = [self.ptz.pan, self.ptz.tilt, self.ptz.zoom]
            status["velocity"] = list(self.ptz.velocity)
        return status


class Service:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.loop = GLib.MainLoop()
        self.context = GLib.MainContext.default()
        self.cameras = {spec["name"]: Camera(spec, config, self.context) for spec in config["cameras"]}
        self.buffer = b""
        self.ptz_timer = None
        self.last_step = time.monotonic()

    def start(self) -> None:
        for camera in self.cameras.values():
            if camera.spec.get("on_air", True):
                camera.on_air()
        GLib.io_add_watch(sys.stdin.fileno(), GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, self.on_stdin)
        self.send({"event": "ready", "ports": {n: c.port for n, c in self.cameras.items()}})

    def send(self, message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def on_stdin(self, fd, condition) -> bool:
        data = os.read(fd, 65536) if condition & GLib.IO_IN else b""
        if not data:
            log("stdin closed: stopping")
            self.loop.quit()
            return False
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line.strip():
                self.handle(json.loads(line))
        return True

    def handle(self, request: dict) -> None:
        rid = request.get("id")
        try:
            result = self.dispatch(request)
            self.send({"id": rid, "ok": True, **result})
        except Exception as exc:  # the parent gets every failure as an answer
            self.send({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"})

    def camera(self, request: dict) -> Camera:
        try:
            return self.cameras[request["camera"]]
        except KeyError:
            raise KeyError(f"no camera named {request.get('camera')!r}") from None

    def dispatch(self, request: dict) -> dict:
        op = request["op"]
        if op == "status":
            return {"cameras": [c.status() for c in self.cameras.values()],
                    "clip_streams": ClipFeeder.flowing(), "clip_frames": ClipFeeder.frames_pushed}
        if op == "stop":
            GLib.idle_add(self.loop.quit)
            return {}
        camera = self.camera(request)
        if op == "reset_peak_sessions":
            camera.peak_sessions = camera.session_counts()
            return camera.status()
        if op == "off_air":
            if request["value"]:
                camera.off_air()
            else:
                camera.on_air()
            return camera.status()
        if op == "set_masks":
            if camera.privacy is None:
                raise ValueError(f"{camera.name} does not paint privacy masks")
            camera.privacy.set(request["polygons"])
            return {**camera.status(), "masks_version": camera.privacy.version}
        if camera.ptz is None:
            raise ValueError(f"{camera.name} is not a PTZ camera")
        if op == "set_ptz":
            camera.ptz.set(*request["position"])
        elif op == "move_ptz":
            camera.ptz.velocity = tuple(float(v) for v in request["velocity"])
            if any(camera.ptz.velocity) and self.ptz_timer is None:
                self.last_step = time.monotonic()
                self.ptz_timer = GLib.timeout_add(40, self.on_ptz_tick)
        elif op != "get_ptz":
            raise ValueError(f"unknown op {op!r}")
        return camera.status()

    def on_ptz_tick(self) -> bool:
        now = time.monotonic()
        dt, self.last_step = now - self.last_step, now
        moving = False
        for camera in self.cameras.values():
            if camera.ptz is not None and any(camera.ptz.velocity):
                camera.ptz.step(dt)
                moving = True
        if not moving:
            self.ptz_timer = None
        return moving

    def run(self) -> None:
        self.start()
        try:
            self.loop.run()
        finally:
            for camera in self.cameras.values():
                camera.off_air()


# Every element the pipelines above name, with the Debian package that ships it: a missing one
# otherwise shows only as "503 Service Unavailable" to the first client of that camera.
ELEMENTS = {
    "appsrc": "gstreamer1.0-plugins-base", "videoconvert": "gstreamer1.0-plugins-base",
    "videoscale": "gstreamer1.0-plugins-base", "videotestsrc": "gstreamer1.0-plugins-base",
    "textoverlay": "gstreamer1.0-x", "imagefreeze": "gstreamer1.0-plugins-good",
    "videocrop": "gstreamer1.0-plugins-good", "pngdec": "gstreamer1.0-plugins-good",
    "rtph264pay": "gstreamer1.0-plugins-good", "filesrc": "gstreamer1.0-plugins-base",
    "queue": "gstreamer1.0-plugins-base", "h264parse": "gstreamer1.0-plugins-bad",
    "x264enc": "gstreamer1.0-plugins-ugly", "gdkpixbufoverlay": "gstreamer1.0-plugins-good",
}
# Only needed by H.265 cameras (``codecs=`` in Simulation): checked when one is asked for.
H265_ELEMENTS = {"x265enc": "gstreamer1.0-plugins-bad", "h265parse": "gstreamer1.0-plugins-bad",
                 "rtph265pay": "gstreamer1.0-plugins-good"}


def missing_elements(h265: bool = False) -> list[str]:
    needed = {**ELEMENTS, **(H265_ELEMENTS if h265 else {})}
    return [f"{name} ({package})" for name, package in needed.items() if Gst.ElementFactory.find(name) is None]


def main() -> None:
    Gst.init(None)
    line = b""
    while not line.endswith(b"\n"):  # byte by byte: later lines are read by the GLib watch
        chunk = os.read(sys.stdin.fileno(), 1)
        if not chunk:
            return
        line += chunk
    config = json.loads(line)
    config["masks_dir"] = tempfile.mkdtemp(prefix="sim-masks-")
    h265 = any("h265" in (c.get("main_codec"), c.get("sub_codec")) for c in config["cameras"])
    if missing := missing_elements(h265):
        message = f"GStreamer elements missing: {', '.join(missing)}; install those Debian packages"
        print(json.dumps({"event": "error", "error": message}), flush=True)
        log(message)
        sys.exit(1)
    Service(config).run()


if __name__ == "__main__":
    main()
