"""Live view fan-out: ONE upstream ffmpeg per camera stream, shared by every viewer.

An upstream runs ``ffmpeg -rtsp_transport tcp -i URL -map 0:v -c copy -f mp4 -movflags
frag_keyframe+empty_moov+default_base_moof -frag_duration ... pipe:1`` (stream copy: never a
transcode) when the browser can play the camera's codec. An H.265 stream, which browsers
mostly cannot decode through MSE, is instead transcoded to H.264 by a *transcoding* upstream
(``transcode=True``: libx264 ultrafast, zerolatency, at most 1280 wide), one per camera, shared
by all its viewers and stopped like any other upstream when the last one leaves; the hub
bounds how many run at once (``max_transcodes``). Its stdout is a fragmented MP4 box stream, cut here into the *init segment*
(``ftyp`` + ``moov``) and *fragments* (``moof`` + ``mdat``), each marked keyframe or not.

A viewer gets the init segment, then the fragments since the last keyframe (so its first frame
shows at once), then every new fragment. Each viewer has a small byte budget: a viewer whose
unsent fragments exceed it is skipped ahead, its backlog dropped, and it resumes at the next
keyframe fragment. Nothing ever queues without bound, and a slow viewer never slows the others.

The upstream starts with the first viewer and stops ``grace_s`` after the last one leaves (so
flicking between cameras does not reconnect). It stops as well when ffmpeg exits or sends
nothing for ``stall_timeout_s``; its viewers are then told the stream ended, and reconnect.

A camera stream already pulled by this process's recorder (the main stream of a camera it
records) is not pulled again: the recorder's ffmpeg writes a second, fragmented MP4 output to a
pipe (:class:`Feed`, fed by cameras.recorder), and a :class:`FeedUpstream` fans that out like any
upstream (docs/design/live-from-recorder.md).

Credentials: the hub is given a callable that builds the credentialed URL in memory when the
upstream starts; it is never logged, and ffmpeg's stderr is scrubbed before it is kept.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ffmpeg

from cameras import CameraUnavailable, children
from cameras.rtsp import PROTOCOLS, InputList, has_credentials, scrub

log = logging.getLogger(__name__)

# 100 ms fragments: a fragment is written when it is complete, so this bounds the delay the
# muxer adds (measured in bench/live.py). Shorter fragments cost more boxes per second.
FRAG_DURATION_US = 100_000
READ_CHUNK_BYTES = 64 * 1024
# A viewer more than this far behind is skipped ahead (about 2 s of a 4 Mb/s main stream).
VIEWER_BUDGET_BYTES = 1_000_000
# Never keep more than this of the current group of pictures for late joiners.
GOP_CACHE_MAX_BYTES = 4_000_000
STDERR_LINES = 20
# A transcoded picture is at most this wide (a 4K camera's main stream would cost a core or more
# to re-encode; the grid and the single view on a 1080p screen gain nothing above 720p).
TRANSCODE_MAX_WIDTH = 1280
# Keyframes every 2 s in the transcoded stream: a late joiner waits at most that long.
TRANSCODE_KEYFRAME_S = 2


class TranscodeLimit(CameraUnavailable):
    """Every transcoding slot is in use: this camera cannot be converted for the browser now."""


class TranscodeFailed(CameraUnavailable):
    """The camera sends video, but converting it to H.264 gave no picture."""


def is_h264(codec: str) -> bool:
    """Whether an RFC 6381 codec string (from :func:`codec_string`) is H.264, which every
    browser with MSE plays."""
    return codec.startswith(("avc1", "avc3"))



@dataclass(frozen=True)
class Source:
    """Where an upstream reads from: the credentialed URL (in memory only) and the secrets
    to scrub from anything ffmpeg prints."""

    url: str = field(repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)


# ---------------------------------------------------------------------------------------------
# The fragmented MP4 box stream
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fragment:
    """One ``moof`` + ``mdat`` pair, as bytes ready to append to a MSE SourceBuffer."""

    data: bytes
    keyframe: bool
    received_s: float  # time.monotonic() when it was complete


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[str, int, int]]:
    """(type, payload_start, box_end) of each complete box in ``data[start:end]``."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind.decode("latin-1"), pos + header, pos + size
        pos += size


def _child(data: bytes, start: int, end: int, path: list[str]) -> tuple[int, int] | None:
    """Payload span of the box at ``path`` (first match at each level) inside data[start:end]."""
    for name in path:
        for kind, payload, box_end in iter_boxes(data, start, end):
            if kind == name:
                start, end = payload, box_end
                break
        else:
            return None
    return start, end


def trex_default_flags(init: bytes) -> int:
    """default_sample_flags of the first track's ``trex`` in the init segment (0 if absent)."""
    span = _child(init, 0, len(init), ["moov", "mvex", "trex"])
    if span is None or span[1] - span[0] < 24:
        return 0
    return struct.unpack_from(">I", init, span[0] + 20)[0]


def fragment_is_keyframe(moof: bytes, default_flags: int = 0) -> bool:
    """Whether the first sample of a ``moof`` is a sync sample (ISO 14496-12 sample flags)."""
    traf = _child(moof, 0, len(moof), ["moof", "traf"])
    if traf is None:
        return False
    flags = default_flags
    for kind, payload, box_end in iter_boxes(moof, *traf):
        if kind == "tfhd":
            tf_flags = struct.unpack_from(">I", moof, payload)[0] & 0xFFFFFF
            pos = payload + 8  # version/flags, track_ID
            for bit, size in ((0x1, 8), (0x2, 4), (0x8, 4), (0x10, 4)):
                if tf_flags & bit:
                    pos += size
            if tf_flags & 0x20 and pos + 4 <= box_end:
                flags = struct.unpack_from(">I", moof, pos)[0]
        elif kind == "trun":
            tr_flags = struct.unpack_from(">I", moof, payload)[0] & 0xFFFFFF
            pos = payload + 8  # version/flags, sample_count
            if tr_flags & 0x1:
                pos += 4
            if tr_flags & 0x4:
                flags = struct.unpack_from(">I", moof, pos)[0]
            elif tr_flags & 0x400:
                pos += sum(4 for bit in (0x100, 0x200) if tr_flags & bit)
                flags = struct.unpack_from(">I", moof, pos)[0]
            break
    # sample_is_non_sync_sample is bit 16; sample_depends_on == 2 means "depends on nothing"
    return not (flags & 0x00010000)


def codec_string(init: bytes) -> str:
    """The RFC 6381 codec string MSE needs (``avc1.64001f``...) from the init segment."""
    idx = init.find(b"avcC")
    if idx >= 0 and idx + 8 <= len(init):
        profile, compat, level = init[idx + 5], init[idx + 6], init[idx + 7]
        return f"avc1.{profile:02x}{compat:02x}{level:02x}"
    if init.find(b"hvcC") >= 0:
        return "hvc1.1.6.L120.90"  # browsers that play HEVC accept this generic Main profile
    return "avc1.42e01e"


class BoxStream:
    """Feed it bytes; it yields the init segment once, then fragments."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.init: bytes | None = None
        self._default_flags = 0
        self._pending_init = bytearray()
        self._moof: bytes | None = None

    def feed(self, chunk: bytes) -> list[bytes | Fragment]:
        # Boxes are read in place and the buffer cut once per call: each fragment's bytes are
        # copied once (a recorder's live output is parsed whether or not anyone watches).
        self._buf += chunk
        out: list[bytes | Fragment] = []
        buf, pos, end = self._buf, 0, len(self._buf)
        view = memoryview(buf)
        try:
            while end - pos >= 8:
                size, kind = struct.unpack_from(">I4s", buf, pos)
                if size == 1:
                    if end - pos < 16:
                        break
                    size = struct.unpack_from(">Q", buf, pos + 8)[0]
                if size < 8:
                    raise ValueError(f"malformed box {kind!r} of size {size}")
                if end - pos < size:
                    break
                start, pos = pos, pos + size
                name = kind.decode("latin-1")
                if self.init is None:
                    if name == "moof":
                        raise ValueError("fragment before the init segment")
                    self._pending_init += view[start:pos]
                    if name == "moov":
                        self.init = bytes(self._pending_init)
                        self._default_flags = trex_default_flags(self.init)
                        out.append(self.init)
                elif name == "moof":
                    self._moof = bytes(view[start:pos])
                elif name == "mdat" and self._moof is not None:
                    out.append(Fragment(b"".join((self._moof, view[start:pos])),
                                        fragment_is_keyframe(self._moof, self._default_flags), time.monotonic()))
                    self._moof = None
                # anything else (styp, sidx, mfra at the end) is not needed by MSE
        finally:
            view.release()  # no slice of it outlives its statement: the buffer can be cut
            del buf[:pos]
        return out


# ---------------------------------------------------------------------------------------------
# Viewers and the upstream
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)  # compared and hashed by identity: viewers live in sets
class Viewer:
    """One browser's place in a stream: a bounded backlog of bytes to send."""

    budget_bytes: int = VIEWER_BUDGET_BYTES
    init: bytes | None = None
    skipped_fragments: int = 0
    skips: int = 0  # times this viewer was skipped ahead
    closed: bool = False
    end_reason: str = ""
    _backlog: collections.deque[bytes] = field(default_factory=collections.deque)
    _backlog_bytes: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _need_keyframe: bool = True

    def offer(self, frag: Fragment) -> None:
        """Queue a fragment, or skip ahead if this viewer is too far behind (never blocks)."""
        if self.closed:
            return
        if self._backlog_bytes + len(frag.data) > self.budget_bytes and self._backlog:
            self.skipped_fragments += len(self._backlog)
            self.skips += 1
            self._backlog.clear()
            self._backlog_bytes = 0
            self._need_keyframe = True
        if self._need_keyframe:
            if not frag.keyframe:
                self.skipped_fragments += 1
                return
            self._need_keyframe = False
        self._backlog.append(frag.data)
        self._backlog_bytes += len(frag.data)
        self._wake.set()

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed, self.end_reason = True, reason
            self._wake.set()

    async def next_chunk(self) -> bytes | None:
        """The next fragment's bytes to send; None once the stream has ended."""
        while not self._backlog:
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        data = self._backlog.popleft()
        self._backlog_bytes -= len(data)
        return data

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes


class Gop:
    """The current group of pictures (its keyframe fragment and those since), for late joiners;
    never more than GOP_CACHE_MAX_BYTES."""

    def __init__(self) -> None:
        self.fragments: list[Fragment] = []
        self.bytes = 0

    def add(self, frag: Fragment) -> None:
        if frag.keyframe or self.bytes + len(frag.data) > GOP_CACHE_MAX_BYTES:
            self.fragments, self.bytes = [], 0
        if frag.keyframe or self.fragments:
            self.fragments.append(frag)
            self.bytes += len(frag.data)


SourceFactory = Callable[[], Awaitable[Source]]


def upstream_input_options(url: str, rtsp: bool = True) -> dict[str, object]:
    # No "-fflags nobuffer": it drops the packets read while ffmpeg probes the stream, which
    # hold the first keyframe, so the first fragment waited a whole GOP (measured 2.3 s to the
    # first fragment with it, 1.3 s without, against the simulator). The player skips the
    # probed second to reach the live edge. Stream copy needs only the parameter sets (in the
    # SDP or at the first keyframe), so 0.3 s of analysis is enough: 0.9 s to the first fragment
    # instead of 1.3 s with ffmpeg's default 5 s limit (which waits for more packets).
    in_opts: dict[str, object] = {"analyzeduration": 300_000}
    if rtsp and url.startswith(("rtsp://", "rtsps://")):
        in_opts["rtsp_transport"] = "tcp"
    return in_opts


TRANSCODE_OPTIONS: dict[str, object] = {
    # ultrafast + zerolatency: no B-frames, no look-ahead, so no added delay; the CPU it costs
    # per camera is measured by bench.live. A keyframe every TRANSCODE_KEYFRAME_S.
    "c:v": "libx264", "preset": "ultrafast", "tune": "zerolatency", "pix_fmt": "yuv420p",
    "force_key_frames": f"expr:gte(t,n_forced*{TRANSCODE_KEYFRAME_S})",
}


def _upstream_output(stream, frag_duration_us: int, transcode: bool = False,
                     mask_png: Path | None = None) -> list[str]:
    video = stream["v:0"]
    codec: dict[str, object] = {"c": "copy"}
    if mask_png is not None:  # privacy masks painted by us (cameras.masking): decode, overlay, encode
        scaled = ffmpeg.filter_multi_output([ffmpeg.input(str(mask_png)), video], "scale2ref", flags="neighbor")
        video = ffmpeg.overlay(scaled[1], scaled[0], format="auto", eof_action="repeat")
        transcode = True
    if transcode:
        video = video.filter("scale", f"min({TRANSCODE_MAX_WIDTH},iw)", -2)
        codec = dict(TRANSCODE_OPTIONS)
    out = ffmpeg.output(
        video, "pipe:1", f="mp4", **codec,
        movflags="frag_keyframe+empty_moov+default_base_moof", frag_duration=frag_duration_us,
    )
    return ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", *ffmpeg.get_args(out)]


def upstream_args(url: str, frag_duration_us: int = FRAG_DURATION_US, rtsp: bool = True,
                  transcode: bool = False, mask_png: Path | None = None) -> list[str]:
    """The ffmpeg command for one upstream: stream copy of the first video track to fMP4
    (``transcode``: re-encoded to H.264 instead; ``mask_png``: privacy masks painted in, re-encoded)."""
    return _upstream_output(ffmpeg.input(url, **upstream_input_options(url, rtsp)), frag_duration_us, transcode,
                            mask_png)


def private_upstream_args(url: str, frag_duration_us: int = FRAG_DURATION_US, transcode: bool = False,
                          mask_png: Path | None = None) -> tuple[list[str], InputList]:
    """:func:`upstream_args` for a URL with credentials: the URL and its options go in a
    private list file (see cameras.rtsp.InputList), so the password is not in ffmpeg's argv."""
    listing = InputList(url, upstream_input_options(url))
    stream = ffmpeg.input(str(listing.path), f="concat", safe=0, protocol_whitelist=PROTOCOLS)
    return _upstream_output(stream, frag_duration_us, transcode, mask_png), listing


class Upstream:
    """One ffmpeg reading one camera stream, fanning its fragments out to viewers."""

    def __init__(self, key: str, source_factory: SourceFactory, *, stall_timeout_s: float = 10.0,
                 connect_timeout_s: float = 10.0, args_factory: Callable[[str], list[str]] = upstream_args,
                 on_idle: Callable[[Upstream], None] | None = None, transcode: bool = False,
                 mask_png: Path | None = None) -> None:
        self.key = key  # "<camera_id>/<stream>", used in log lines (never the URL)
        self.transcode = transcode  # re-encoded to H.264 for the browser, not stream copy
        self.mask_png = mask_png  # privacy masks painted in (re-encoded; the key names their version)
        self._source_factory = source_factory
        self._args_factory = args_factory
        self._stall_timeout_s = stall_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._on_idle = on_idle
        self.viewers: set[Viewer] = set()
        self.init: bytes | None = None
        self.codec = ""
        self._gop = Gop()
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.ready = asyncio.Event()
        self.ended = False
        self.end_reason = ""
        self.fragments = 0
        self.bytes = 0
        self.started_s = time.monotonic()
        self.last_fragment: Fragment | None = None
        self._secrets: tuple[str, ...] = ()

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"live {self.key}")

    async def stop(self) -> None:
        # Kill ffmpeg first, then cancel: the reader then sees the end of the stream even if
        # the cancellation is lost (Python 3.11's wait_for can swallow a cancellation that
        # arrives as its read completes, which a busy stream makes likely).
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def add(self, viewer: Viewer) -> None:
        """Attach a viewer: it gets the init segment and the current group of pictures."""
        self.viewers.add(viewer)
        if self.ended:
            viewer.close(self.end_reason)
            return
        if self.init is not None:
            self._prime(viewer)

    def remove(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        viewer.close("left")
        if not self.viewers and self._on_idle is not None:
            self._on_idle(self)

    def _prime(self, viewer: Viewer) -> None:
        viewer.init = self.init
        for frag in self._gop.fragments:
            viewer.offer(frag)

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait for the init segment; raise CameraUnavailable if the stream ends first."""
        timeout_s = self._connect_timeout_s if timeout_s is None else timeout_s
        waiter = asyncio.ensure_future(self.ready.wait())
        try:
            await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            raise CameraUnavailable(f"camera stream {self.key}: no video within {timeout_s:g}s") from None
        if self.init is None:
            raise CameraUnavailable(f"camera stream {self.key}: {self.end_reason or 'ended'}")

    # the reader --------------------------------------------------------------------------
    async def _run(self) -> None:
        reason = "upstream ended"
        try:
            reason = await self._read()
        except asyncio.CancelledError:
            reason = "stopped"
            raise
        except Exception as exc:
            reason = f"upstream failed: {type(exc).__name__}"
            log.exception("camera %s: live upstream failed", self.key)
        finally:
            await self._kill()
            self.ended, self.end_reason = True, reason
            self.ready.set()
            for viewer in list(self.viewers):
                viewer.close(reason)
            if reason not in ("stopped",):
                log.info("camera %s: live upstream ended (%s); stderr: %s", self.key, reason,
                         " | ".join(self.stderr_tail) or "-")
            if self._on_idle is not None:
                self._on_idle(self)

    async def _read(self) -> str:
        source = await self._source_factory()
        self._secrets = source.secrets
        listing: InputList | None = None
        if self._args_factory is upstream_args and has_credentials(source.url):
            # no password in the process list
            args, listing = private_upstream_args(source.url, transcode=self.transcode, mask_png=self.mask_png)
        elif self._args_factory is upstream_args:
            args = upstream_args(source.url, transcode=self.transcode, mask_png=self.mask_png)
        else:
            args = self._args_factory(source.url)
        del source
        try:
            self._proc = await children.spawn(  # killed with the service, even by SIGKILL
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except BaseException:
            if listing is not None:
                listing.remove()
            raise
        del args
        stderr_task = asyncio.create_task(self._drain_stderr(self._proc.stderr))
        boxes = BoxStream()
        try:
            assert self._proc.stdout is not None
            while True:
                timeout = self._connect_timeout_s if self.init is None else self._stall_timeout_s
                try:
                    async with asyncio.timeout(timeout):  # unlike wait_for, never loses a cancel
                        chunk = await self._proc.stdout.read(READ_CHUNK_BYTES)
                except TimeoutError:
                    return f"no data for {timeout:g}s"
                if not chunk:
                    return "camera stream closed"
                if listing is not None:
                    listing.remove()  # ffmpeg has opened the stream: the file is no longer needed
                self.bytes += len(chunk)
                for item in boxes.feed(chunk):
                    if isinstance(item, bytes):
                        self._got_init(item)
                    else:
                        self._publish(item)
        finally:
            if listing is not None:
                listing.remove()
            stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stderr_task

    def _got_init(self, init: bytes) -> None:
        self.init, self.codec = init, codec_string(init)
        for viewer in self.viewers:
            self._prime(viewer)
        self.ready.set()

    def _publish(self, frag: Fragment) -> None:
        self.fragments += 1
        self.last_fragment = frag
        self._gop.add(frag)
        for viewer in self.viewers:
            viewer.offer(frag)

    def keyframe_fragment(self) -> Fragment | None:
        """The fragment that starts the current group of pictures (for snapshots)."""
        return self._gop.fragments[0] if self._gop.fragments else None

    async def _drain_stderr(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while line := await stream.readline():
            self.stderr_tail.append(scrub(line.decode("utf-8", "replace").rstrip(), *self._secrets))

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            await children.end(proc)


# What a Feed hands its readers: an init segment (a new run), a fragment, or why the run ended.
FeedItem = bytes | Fragment | str


class Feed:
    """A camera stream's fragmented MP4 produced by another part of this process: the recorder's
    ffmpeg writes the main stream it records a second time, to a pipe (cameras.recorder), so live
    view costs the camera no session of its own. Keeps the current run's init segment and group
    of pictures for late joiners, and hands every fragment to the upstreams reading it
    (:class:`FeedUpstream`). Written from the event loop by its producer; never blocks it."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.init: bytes | None = None
        self.gop = Gop()
        # Why the feed gives no picture ("" while it works): the recorder's live output failed
        # in this ffmpeg run. Cleared by the next run's init segment.
        self.error = ""
        self.fragments = 0
        self.bytes = 0
        self._boxes = BoxStream()
        self._listeners: set[Callable[[FeedItem], None]] = set()

    @property
    def watched(self) -> bool:
        return bool(self._listeners)

    def begin(self) -> None:
        """A new run of the producer (a new ffmpeg): its own init segment comes first."""
        self._boxes, self.init, self.gop = BoxStream(), None, Gop()

    def data(self, chunk: bytes) -> None:
        """Bytes of the fMP4 stream, as read. ValueError on a malformed stream."""
        self.bytes += len(chunk)
        for item in self._boxes.feed(chunk):
            if isinstance(item, bytes):
                self.init, self.error = item, ""
            else:
                self.fragments += 1
                self.gop.add(item)
            self._tell(item)

    def end(self, reason: str, *, failed: bool = False) -> None:
        """This run's stream ended; ``failed``: the live output broke while recording goes on
        (kept in :attr:`error` until the next run's init segment)."""
        self.init, self.gop = None, Gop()
        if failed:
            self.error = reason
        self._tell(reason)

    def subscribe(self, listener: Callable[[FeedItem], None]) -> None:
        """Hand ``listener`` the current init segment and group of pictures, then every item."""
        self._listeners.add(listener)
        if self.init is not None:
            listener(self.init)
            for frag in self.gop.fragments:
                listener(frag)

    def unsubscribe(self, listener: Callable[[FeedItem], None]) -> None:
        self._listeners.discard(listener)

    def _tell(self, item: FeedItem) -> None:
        for listener in list(self._listeners):
            listener(item)


async def _no_source() -> Source:  # pragma: no cover - a FeedUpstream never asks for one
    raise CameraUnavailable("a feed has no source of its own")


class FeedUpstream(Upstream):
    """An upstream reading a :class:`Feed` instead of the camera: no ffmpeg and no camera session
    of its own. It ends with the feed's run (the recorder's ffmpeg restarted, or its live output
    failed): its viewers are told, and reconnect to what is there then."""

    def __init__(self, key: str, feed: Feed, **kwargs) -> None:
        super().__init__(key, _no_source, **kwargs)
        self.feed = feed

    async def _read(self) -> str:
        queue: asyncio.Queue[FeedItem] = asyncio.Queue()  # filled and emptied on this loop at once
        self.feed.subscribe(queue.put_nowait)
        try:
            while True:
                timeout = self._connect_timeout_s if self.init is None else self._stall_timeout_s
                try:
                    async with asyncio.timeout(timeout):
                        item = await queue.get()
                except TimeoutError:
                    return f"no data from the recorder's stream for {timeout:g}s"
                if isinstance(item, str):
                    return item
                if isinstance(item, bytes):
                    if self.init is not None:  # a new run: its viewers start again from its init
                        return "the recorder's stream restarted"
                    self._got_init(item)
                    continue
                self.bytes += len(item.data)
                self._publish(item)
        finally:
            self.feed.unsubscribe(queue.put_nowait)


class LiveHub:
    """Every live upstream of the service, keyed by camera and stream ("sub" or "main").

    ``viewer = await hub.join(key, source_factory)`` starts the upstream if needed and returns a
    :class:`Viewer`; ``hub.leave(key, viewer)`` detaches it. An upstream with no viewers is
    stopped ``grace_s`` later unless someone joins meanwhile.

    ``join(..., transcode=True)`` starts a transcoding upstream; at most ``max_transcodes`` run
    at once (:class:`TranscodeLimit` beyond). ``codecs`` remembers the codec each camera stream
    was last seen sending (by key and URL), so the next viewer goes straight to the right
    upstream.
    """

    def __init__(self, *, grace_s: float = 10.0, stall_timeout_s: float = 10.0,
                 connect_timeout_s: float = 10.0, budget_bytes: int = VIEWER_BUDGET_BYTES,
                 args_factory: Callable[[str], list[str]] = upstream_args, max_transcodes: int = 4) -> None:
        self.grace_s = grace_s
        self.max_transcodes = max_transcodes
        self.codecs: dict[str, tuple[str, str]] = {}  # key -> (URL fingerprint, RFC 6381 codec)
        self._stall_timeout_s = stall_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._budget_bytes = budget_bytes
        self._args_factory = args_factory
        self.upstreams: dict[str, Upstream] = {}
        self.feeds: dict[str, Feed] = {}
        self._stoppers: dict[str, asyncio.TimerHandle] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self.started = 0  # upstreams ever started (tests and benchmarks read it)
        self.closed = False  # the service is stopping: no upstream starts any more

    def transcoding(self) -> int:
        """How many transcoding upstreams run now."""
        return sum(1 for up in self.upstreams.values() if up.transcode and not up.ended)

    def upstream(self, key: str, source_factory: SourceFactory, *, transcode: bool = False,
                 mask_png: Path | None = None) -> Upstream:
        """The running upstream for ``key``, started now if there is none. A masked upstream
        (``mask_png``) re-encodes, and counts as a transcode."""
        transcode = transcode or mask_png is not None
        if self.closed:
            raise CameraUnavailable(f"camera stream {key}: the service is stopping")
        up = self.upstreams.get(key)
        if (up is None or up.ended) and transcode and self.transcoding() >= self.max_transcodes:
            raise TranscodeLimit(f"camera stream {key}: all {self.max_transcodes} transcoding slots are in use")
        self._cancel_stop(key)
        if up is None or up.ended:
            feed = None if transcode else self.feeds.get(key)
            if feed is not None and feed.error:
                log.warning("camera %s: the recorder's live output failed (%s): live view pulls the camera "
                            "itself until the recorder's next run", key, feed.error)
                feed = None
            timeouts = dict(stall_timeout_s=self._stall_timeout_s, connect_timeout_s=self._connect_timeout_s)
            if feed is not None:
                up = FeedUpstream(key, feed, on_idle=self._idle, **timeouts)
            else:
                up = Upstream(key, source_factory, args_factory=self._args_factory, on_idle=self._idle,
                              transcode=transcode, mask_png=mask_png, **timeouts)
            self.upstreams[key] = up
            self.started += 1
            up.start()
            log.info("camera %s: live upstream started%s", key, " (transcoding to H.264)" if transcode else
                     " (from the recorder's stream)" if feed is not None else "")
        return up

    async def join(self, key: str, source_factory: SourceFactory, *, transcode: bool = False,
                   mask_png: Path | None = None) -> tuple[Upstream, Viewer]:
        up = self.upstream(key, source_factory, transcode=transcode, mask_png=mask_png)
        viewer = Viewer(budget_bytes=self._budget_bytes)
        up.add(viewer)
        return up, viewer

    def leave(self, up: Upstream, viewer: Viewer, *, linger: bool = True) -> None:
        """Detach a viewer. ``linger=False``: an upstream left with no viewers stops now (it
        was opened only to learn the stream's codec, and is of no use to the next viewer)."""
        up.remove(viewer)
        if not linger and not up.viewers and self.upstreams.get(up.key) is up:
            self._cancel_stop(up.key)
            self._stop_if_idle(up)

    def learned_codec(self, key: str, fingerprint: str) -> str:
        """The codec ``key`` was last seen sending from this URL ("" if never)."""
        known = self.codecs.get(key)
        return known[1] if known and known[0] == fingerprint else ""

    def learn_codec(self, key: str, fingerprint: str, codec: str) -> None:
        self.codecs[key] = (fingerprint, codec)

    def _idle(self, up: Upstream) -> None:
        if up.ended:
            if self.upstreams.get(up.key) is up:
                del self.upstreams[up.key]
            self._cancel_stop(up.key)
            return
        if not up.viewers and up.key not in self._stoppers:
            loop = asyncio.get_running_loop()
            self._stoppers[up.key] = loop.call_later(self.grace_s, self._stop_if_idle, up)

    def _cancel_stop(self, key: str) -> None:
        handle = self._stoppers.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _stop_if_idle(self, up: Upstream) -> None:
        self._stoppers.pop(up.key, None)
        if up.viewers or self.upstreams.get(up.key) is not up:
            return
        del self.upstreams[up.key]
        log.info("camera %s: live upstream stopped (no viewers for %gs)", up.key, self.grace_s)
        task = asyncio.create_task(up.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def end_camera(self, camera_id: int, reason: str = "privacy masks changed") -> int:
        """Stop every upstream of a camera now (its viewers are told the stream ended, and
        reconnect under what now applies); returns how many were stopped."""
        ups = [up for key, up in self.upstreams.items() if key.split("/", 1)[0] == str(camera_id)]
        for up in ups:
            del self.upstreams[up.key]
            self._cancel_stop(up.key)
        await asyncio.gather(*(up.stop() for up in ups), return_exceptions=True)
        if ups:
            log.info("camera %s: %d live upstream(s) ended: %s", camera_id, len(ups), reason)
        return len(ups)

    async def close(self) -> None:
        """Stop every upstream (their viewers are told the stream ended) and start no more."""
        self.closed = True
        for handle in self._stoppers.values():
            handle.cancel()
        self._stoppers.clear()
        ups = list(self.upstreams.values())
        self.upstreams.clear()
        await asyncio.gather(*(up.stop() for up in ups), *list(self._stopping), return_exceptions=True)
