"""The segment catalogue and the files behind it. Invariants: docs/design/recording-store.md.

Layout under the storage root::

    <camera_id>/incoming/          segments ffmpeg is writing (or was, before a crash)
    <camera_id>/<YYYY-MM-DD>/<start_us>_<end_us>.mkv   finished, catalogued segments (UTC day)

A finished segment is committed by: fsync the file, rename it into its day folder, fsync the
folder, then insert its row. Deletion: mark the row garbage (commit), unlink, fsync the folder,
drop the row. :func:`reconcile` repairs whatever a crash left between those steps.

:func:`find_run` answers "what is recorded around time T", including the segment ffmpeg is
writing now (see its docstring); playback and anything else that reads footage by time ask it.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, TypeVar, overload

from sqlalchemy import case, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import Invalid, audit
from storage.db import now_us, transaction
from storage.models import Camera, Gap, Segment, SegmentState
from storage.nodes import Fence, Fenced, Late, check_fence

log = logging.getLogger(__name__)
HASH_CHUNK_BYTES = 1 << 20


def sha256_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in 1 MiB chunks. Blocking: call off the loop."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def incoming_dir(root: Path, camera_id: int) -> Path:
    return root / str(camera_id) / "incoming"


# The name of a segment being written, ``<run>-<YYYYmmddTHHMMSS>Z.mkv``: the recorder hands
# ffmpeg this strftime pattern (the segment muxer fills in the UTC second it opens the file),
# and a reader of the growing file parses it back (:func:`incoming_named_us`). One rule, here.
_INCOMING_TIME = "%Y%m%dT%H%M%S"
_INCOMING_NAME = re.compile(r"(\d{8}T\d{6})Z\.mkv$")


def incoming_pattern(run_id: str) -> str:
    """The strftime file-name pattern ffmpeg writes a recorder run's segments under."""
    return f"{run_id}-{_INCOMING_TIME}Z.mkv"


def incoming_named_us(path: Path) -> int | None:
    """The UTC start (microseconds, whole seconds) in a growing segment's name, if it has one."""
    match = _INCOMING_NAME.search(path.name)
    if match is None:
        return None
    return int(datetime.strptime(match[1], _INCOMING_TIME).replace(tzinfo=UTC).timestamp() * 1e6)


def segment_relpath(camera_id: int, start_us: int, end_us: int, suffix: str = ".mkv") -> str:
    day = datetime.fromtimestamp(start_us / 1e6, UTC).strftime("%Y-%m-%d")
    return f"{camera_id}/{day}/{start_us}_{end_us}{suffix}"


def safe_path(root: Path, relpath: str) -> Path:
    """``root / relpath``, refusing anything that would resolve outside the root."""
    full = (root / relpath).resolve()
    if not full.is_relative_to(root.resolve()):
        raise Invalid(f"path {relpath!r} is outside the storage root")
    return full


@dataclass(frozen=True)
class NewSegment:
    camera_id: int
    start_us: int
    end_us: int
    codec: str = ""
    width: int = 0
    height: int = 0
    clock_offset_s: float | None = None
    clock_flag: bool = False
    state: SegmentState = SegmentState.OK


def _move_into_place(root: Path, tmp: Path, relpath: str) -> tuple[str, int]:
    """fsync, hash, rename into the day folder, fsync the folder. Blocking.

    Idempotent: when a retry finds the file already moved (the row's insert failed after the
    rename, e.g. the database was locked or restarting), it only hashes the file in place.
    """
    final = root / relpath
    if not tmp.exists() and final.is_file():
        return sha256_file(final)
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    sha, size = sha256_file(tmp)
    final.parent.mkdir(parents=True, exist_ok=True)
    move_file(tmp, final)
    return sha, size


def move_file(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` and fsync both folders. Blocking.

    Across filesystems (a node's local spool to the shared store, docs/design/cluster.md,
    "Losing the shared storage") the bytes are copied to a hidden ``.<name>.part`` beside
    ``dst``, fsynced and renamed into place before ``src`` is unlinked: ``dst`` appears whole or
    not at all, and a retry after a crash copies again from ``src``."""
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        part = dst.parent / f".{dst.name}.part"
        with src.open("rb") as fin, part.open("wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(part, dst)
        fsync_dir(dst.parent)
        src.unlink()
    else:
        fsync_dir(dst.parent)
    fsync_dir(src.parent)


async def commit_segment(
    sessions: async_sessionmaker[AsyncSession], root: Path, tmp: Path, seg: NewSegment, *, closes_gap: bool = False,
    fence: Fence | None = None, on_late: Callable[[Late], None] | None = None,
) -> Segment:
    """Move a finished file into the store and catalogue it (file first, then row).

    Safe to retry after any failure (the move is idempotent, and a row already inserted for the
    path, as when a commit's acknowledgement was lost to a database restart, is returned as is).
    In the row's transaction: ``closes_gap`` ends the camera's open gap at the segment's start,
    and every gap is cut back so that none overlaps the segment (:func:`trim_gaps`).

    ``fence`` (a cluster recorder's lease, docs/design/cluster.md): the segment is catalogued
    only if the camera's lease is still that node's and generation, checked before the file
    leaves ``incoming/`` and again in the row's transaction. A refused file is moved to
    ``<camera>/fenced/`` (never deleted, never in a day folder) and :class:`Fenced` raised.
    A segment of an older generation that ended before the next generation began is catalogued
    **late** (:func:`storage.nodes.check_fence`) unless it overlaps a catalogued segment; it then
    closes no gap (the open gap is the new holder's: the segment only cuts its span out of the
    gaps) and ``on_late`` is told after the commit.
    """
    relpath = segment_relpath(seg.camera_id, seg.start_us, seg.end_us, tmp.suffix or ".mkv")
    if fence is not None:
        try:
            async with sessions() as session:
                existing = await session.scalar(select(Segment).where(Segment.path == relpath))
                if existing is not None:  # a retry after a lost acknowledgement
                    return existing
                await _fence_segment(session, seg, fence)
        except Fenced:
            await asyncio.to_thread(set_aside_fenced, root, seg.camera_id, tmp)
            raise
    sha, size = await asyncio.to_thread(_move_into_place, root, tmp, relpath)
    row = Segment(
        camera_id=seg.camera_id, start_us=seg.start_us, end_us=seg.end_us, bytes=size, sha256=sha,
        path=relpath, codec=seg.codec, width=seg.width, height=seg.height, state=seg.state.value,
        clock_offset_s=seg.clock_offset_s, clock_flag=seg.clock_flag,
    )
    late: Late | None = None
    try:
        async with transaction(sessions) as session:
            existing = await session.scalar(select(Segment).where(Segment.path == relpath))
            if existing is not None:
                return existing
            if fence is not None:
                late = await _fence_segment(session, seg, fence)
            session.add(row)
            if closes_gap and late is None:
                await close_gap(session, seg.camera_id, seg.start_us)
            await trim_gaps(session, seg.camera_id, seg.start_us, seg.end_us)
            await session.execute(
                update(Camera).where(Camera.id == seg.camera_id)
                .values(last_segment_us=case(
                    (Camera.last_segment_us.is_(None) | (Camera.last_segment_us < seg.end_us), seg.end_us),
                    else_=Camera.last_segment_us))
            )
    except Fenced:
        await asyncio.to_thread(set_aside_fenced, root, seg.camera_id, root / relpath)
        raise
    if late is not None and on_late is not None:
        on_late(late)
    return row


# A segment let in late may touch catalogued footage by this much: contiguous segments stamped by
# two methods (ffmpeg's media times, a recovered file's modification time) meet within a fraction
# of a second; two recorders of one camera overlap by whole segments.
LATE_OVERLAP_US = 1_000_000


async def _fence_segment(session: AsyncSession, seg: NewSegment, fence: Fence) -> Late | None:
    """The fence of a segment (:func:`storage.nodes.check_fence`); a segment let in late must
    also not overlap catalogued footage of the camera by more than :data:`LATE_OVERLAP_US`
    (the last guard against two nodes' clocks disagreeing), else it is :class:`Fenced` too."""
    late = await check_fence(session, seg.camera_id, fence, seg.end_us)
    if late is not None:
        overlap = await session.scalar(select(Segment.path).where(
            Segment.camera_id == seg.camera_id, Segment.start_us < seg.end_us - LATE_OVERLAP_US,
            Segment.end_us > seg.start_us + LATE_OVERLAP_US).limit(1))
        if overlap is not None:
            raise Fenced(f"camera {seg.camera_id}: segment recorded under node {fence.node_id}, generation "
                         f"{fence.generation}, before node {late.node_id} took the camera, overlaps the catalogued "
                         f"{overlap}")
    return late


def fenced_dir(root: Path, camera_id: int) -> Path:
    """Where segments refused by the lease fence are kept (docs/design/cluster.md, "Fencing")."""
    return root / str(camera_id) / "fenced"


def set_aside_fenced(root: Path, camera_id: int, path: Path) -> Path:
    """Move a refused segment out of ``incoming/`` or its day folder into ``fenced/``. Blocking."""
    folder = fenced_dir(root, camera_id)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if path.exists():
        move_file(path, target)
    return target


class SegmentRow(NamedTuple):
    """One segment of a timeline: the columns of :class:`storage.models.Segment` it shows."""

    id: int
    camera_id: int
    start_us: int
    end_us: int
    bytes: int
    sha256: str
    path: str
    codec: str
    width: int
    height: int
    state: str
    clock_offset_s: float | None
    clock_flag: bool


class GapRow(NamedTuple):
    start_us: int
    end_us: int | None  # None while the gap lasts
    reason: str


T = TypeVar("T", bound=tuple)


class Rows(Sequence[T]):
    """Rows kept as plain tuples and made into ``T`` only when read.

    A camera-day is thousands of rows. The garbage collector stops tracking a plain tuple of
    numbers and strings, but not a named tuple or a SQLAlchemy ``Row``: kept by the thousand,
    those were promoted into the oldest generation on every call, so every few calls a full
    collection of the whole heap ran in the middle of one (profiled on SQLite, 100 cameras x 31
    days: 10 full collections in 150 camera-days, 40-60 ms each; the timeline's p95 was 95 ms
    against 16 ms with plain tuples). A ``T`` made while iterating dies at once and costs the
    collector nothing.
    """

    __slots__ = ("_make", "_rows")

    def __init__(self, make: Callable[[tuple], T], rows: list[tuple]) -> None:
        self._make, self._rows = make, rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> Rows[T]: ...
    def __getitem__(self, index: int | slice) -> T | Rows[T]:
        if isinstance(index, slice):
            return Rows(self._make, self._rows[index])
        return self._make(self._rows[index])

    def __iter__(self) -> Iterator[T]:
        return map(self._make, self._rows)

    def __repr__(self) -> str:
        return f"Rows({list(self)!r})"


@dataclass
class Timeline:
    segments: Rows[SegmentRow]  # in time order
    gaps: Rows[GapRow]  # in time order


def _columns(model: type, row: type[tuple]) -> list:
    return [getattr(model, name) for name in row._fields]


async def timeline(session: AsyncSession, camera_id: int, from_us: int, to_us: int) -> Timeline:
    """Segments and gaps of one camera overlapping [from_us, to_us), in time order."""
    if to_us <= from_us:
        raise Invalid("the end of the range must be after its start")
    # Segments are at most a few minutes long: bounding start_us from below lets the
    # (camera_id, start_us) index do all the work.
    lookback_us = 15 * 60 * 1_000_000
    # Through the session's Core connection: the ORM's row loading would cost as much as the
    # query itself for a camera-day of rows (profiled: 7 of 23 ms).
    conn = await session.connection()
    segs = await conn.execute(
        select(*_columns(Segment, SegmentRow))
        .where(
            Segment.camera_id == camera_id,
            Segment.start_us >= from_us - lookback_us,
            Segment.start_us < to_us,
            Segment.end_us > from_us,
            Segment.state != SegmentState.GARBAGE.value,
        )
        .order_by(Segment.start_us)
    )
    gaps = await conn.execute(
        select(*_columns(Gap, GapRow))
        .where(Gap.camera_id == camera_id, Gap.start_us < to_us)
        .where((Gap.end_us.is_(None)) | (Gap.end_us > from_us))
        .order_by(Gap.start_us)
    )
    # tuple(row): each Row dies as soon as it is copied (see Rows).
    return Timeline(Rows(SegmentRow._make, list(map(tuple, segs))), Rows(GapRow._make, list(map(tuple, gaps))))


JOIN_GAP_US = 1_500_000  # segments closer than this play as one run (keyframe-cut boundaries)
MAX_RUN_US = 15 * 60 * 1_000_000  # one run covers at most this much; a player asks again

MediaDuration = Callable[[Path], Awaitable[float]]
"""Media duration in seconds of a possibly unfinished segment file (cameras.recorder
probes it with ffprobe; storage imports nothing of ours, so the reader passes it in)."""


@dataclass(frozen=True)
class Piece:
    """One file of a run: a catalogued segment, or the one being written (``end_us`` None)."""

    path: Path
    start_us: int
    end_us: int | None  # None: the file being written now
    media_offset_s: float = 0.0  # where the piece begins in the run's media timeline


# The first estimate of each recorder run's first file, kept while the file grows (at most this
# many files: older entries go first). See growing_start_us.
_FIRST_ESTIMATES: OrderedDict[tuple[str, int], int] = OrderedDict()
_FIRST_ESTIMATES_MAX = 4096


async def growing_start_us(path: Path, last_end_us: int | None, duration_s: MediaDuration) -> int | None:
    """When the file being written began: the end of the segment before it (the recorder closes
    one segment exactly where the next begins) when its name agrees within 3 s; otherwise, the
    first segment of a recorder run, its modification time minus its media duration so far (as
    the recorder will catalogue it), or failing that the time in its name.

    That measure moves from one look to the next: the writes reach the disk late by varying
    amounts on a loaded machine, and the file may grow between the look at its time and the read
    of its packets (so both are taken of the same bytes, up to three tries). The first measure
    made for a file is kept for it: a plan, its stream and a still of the frame on screen map the
    same wall time to the same frame. Seen in CI: a still of the frame a paused tile showed
    sought past the end of the file under a later measure, and ffmpeg gave no picture.

    Raises FileNotFoundError when the file is gone meanwhile: the recorder has committed it (it
    is between its rename and its row, or catalogued)."""
    named_us = incoming_named_us(path)
    if last_end_us is not None and (named_us is None or abs(named_us - last_end_us) < 3_000_000):
        return last_end_us
    # The first segment of a recorder run: its name has whole seconds only, so measure it as
    # the recorder will when it closes it (the time now minus its media duration so far).
    stat = await asyncio.to_thread(path.stat)
    key = (str(path), stat.st_ino)
    if (known := _FIRST_ESTIMATES.get(key)) is not None:
        return known
    for _ in range(3):  # a time and a duration of the same bytes: not written to in between
        seconds = await duration_s(path)
        after = await asyncio.to_thread(path.stat)
        if after.st_mtime_ns == stat.st_mtime_ns:
            break
        stat = after
    if seconds <= 0:
        return named_us
    estimate = _FIRST_ESTIMATES.setdefault(key, int(stat.st_mtime * 1e6) - int(seconds * 1e6))
    while len(_FIRST_ESTIMATES) > _FIRST_ESTIMATES_MAX:
        _FIRST_ESTIMATES.popitem(last=False)
    return estimate


def newest_incoming(root: Path, camera_id: int) -> Path | None:
    """The camera's segment file being written now (the newest non-empty one). Blocking."""
    folder = incoming_dir(root, camera_id)
    try:
        names = [p for p in folder.iterdir() if p.suffix == ".mkv"]
    except FileNotFoundError:
        return None
    files = []
    for path in names:
        try:
            stat = path.stat()
        except FileNotFoundError:  # committed since the listing
            continue
        if stat.st_size > 0:
            files.append((stat.st_mtime, path))
    return max(files, default=(0.0, None))[1]


def any_incoming(root: Path, camera_id: int) -> bool:
    """Whether ffmpeg has a segment file open for the camera (even an empty one). Blocking."""
    try:
        return any(p.suffix == ".mkv" for p in incoming_dir(root, camera_id).iterdir())
    except FileNotFoundError:
        return False


# A segment's commit (fsync, hash, rename into the day folder, then the row) takes a moment, longer
# on a loaded machine; in between, its footage is neither in ``incoming/`` nor catalogued. A reader
# asking about the live edge then sees a hole where that segment is, so :func:`find_run` looks
# again, in a new snapshot, for up to SETTLE_S while its answer misses ``at_us`` at the live edge.
SETTLE_S = 4.0
SETTLE_POLL_S = 0.2
SETTLE_SPAN_US = 10 * 60 * 1_000_000  # no segment in commit is longer than this


async def find_run(
    session: AsyncSession, root: Path, camera_id: int, at_us: int, duration_s: MediaDuration,
    *, settle_s: float = SETTLE_S,
) -> list[Piece]:
    """What is recorded around ``at_us``: the pieces of the run that contains it, or of the next
    run after it ([] if none).

    A run is catalogued segments joined while the gap between them is at most ``JOIN_GAP_US``,
    capped at ``MAX_RUN_US``, and, when it reaches the newest catalogued segment, the segment
    the recorder is writing now in ``incoming/`` (Matroska is readable while it is written;
    its start is :func:`growing_start_us`, measured with ``duration_s``).

    An answer that misses ``at_us`` after the newest catalogued segment while the recorder is
    writing may be a segment caught between its rename and its row (see ``SETTLE_S``): the
    question is asked again until it is answered or ``settle_s`` has passed (a real gap at the
    live edge). The later looks are made in a session of their own, each in a new transaction:
    the caller's session is not ended in between, which would expire the caller's objects (their
    next attribute read would be database I/O outside the event loop's greenlet: MissingGreenlet).
    """
    deadline = time.monotonic() + settle_s
    look_in, fresh = session, None
    try:
        while True:
            pieces, newest_end, writing = await _find_run_once(look_in, root, camera_id, at_us, duration_s)
            covered = bool(pieces) and pieces[0].start_us <= at_us + JOIN_GAP_US
            after_catalogue = newest_end is None or at_us >= newest_end - JOIN_GAP_US
            near_growing = writing is not None and writing - at_us <= SETTLE_SPAN_US
            if covered or not after_catalogue or not near_growing or time.monotonic() >= deadline:
                return pieces
            await asyncio.sleep(SETTLE_POLL_S)
            # Look again in a transaction of our own, begun now, so that it sees the row whatever
            # the caller's transaction has seen (a SQLite read transaction keeps its snapshot);
            # the caller's session is left as it was (ending it would expire the caller's objects).
            if fresh is None:
                fresh = AsyncSession(session.bind)
            else:
                await fresh.rollback()
            look_in = fresh
    finally:
        if fresh is not None:
            await fresh.close()


async def _find_run_once(
    session: AsyncSession, root: Path, camera_id: int, at_us: int, duration_s: MediaDuration
) -> tuple[list[Piece], int | None, int | None]:
    """:func:`find_run`'s one look: the pieces, the newest catalogued end, and when the file
    being written began (None if none is)."""
    # The newest end first: a segment catalogued between the two reads then shows in the rows
    # (read second), never only in the newest end, which would make an answer that misses it look
    # settled (at_us before the catalogue's end).
    newest_end = await session.scalar(
        select(Segment.end_us).where(Segment.camera_id == camera_id).order_by(Segment.end_us.desc()).limit(1)
    )
    rows = (await session.execute(
        select(Segment).where(
            Segment.camera_id == camera_id, Segment.end_us > at_us,
            Segment.start_us < at_us + MAX_RUN_US, Segment.state != SegmentState.GARBAGE.value,
        ).order_by(Segment.start_us).limit(200)
    )).scalars().all()
    pieces: list[Piece] = []
    media_s = 0.0
    for seg in rows:
        if pieces:
            prev_end = pieces[-1].end_us or 0
            if seg.start_us - prev_end > JOIN_GAP_US or seg.start_us - pieces[0].start_us > MAX_RUN_US:
                return pieces, newest_end, None
        pieces.append(Piece(safe_path(root, seg.path), seg.start_us, seg.end_us, media_s))
        media_s += (seg.end_us - seg.start_us) / 1e6
    # The run reached the newest catalogued segment (or there is none after at_us): the file
    # being written may continue it.
    if pieces and pieces[-1].end_us != newest_end:
        return pieces, newest_end, None
    growing = await asyncio.to_thread(newest_incoming, root, camera_id)
    if growing is None:
        # An empty file only: ffmpeg has just opened the next segment (the one before may be in
        # its commit); say the recorder is writing, from now.
        writing = now_us() if await asyncio.to_thread(any_incoming, root, camera_id) else None
        return pieces, newest_end, writing
    try:
        start = await growing_start_us(growing, newest_end, duration_s)
    except FileNotFoundError:
        # Committed while it was measured: in its commit, as above (find_run waits for its row).
        return pieces, newest_end, now_us()
    if start is None:
        return pieces, newest_end, None
    if pieces and start - (pieces[-1].end_us or 0) > JOIN_GAP_US:
        return pieces, newest_end, start
    if not pieces and start > at_us + MAX_RUN_US:
        return pieces, newest_end, start
    pieces.append(Piece(growing, start, None, media_s))
    return pieces, newest_end, start


async def open_run(lookup: Callable[[], Awaitable[list[Piece]]]) -> tuple[list[Piece], list[int]]:
    """Look the pieces up and open their files; the descriptors stay valid when the recorder
    renames the growing file into the store or retention unlinks a segment. A file that vanished
    between the lookup and the open was (almost always) the growing one, just committed: look
    once more, which finds it catalogued. ``([], [])`` when nothing is there."""
    for _ in range(2):
        pieces = await lookup()
        fds: list[int] = []
        try:
            for piece in pieces:
                fds.append(await asyncio.to_thread(os.open, piece.path, os.O_RDONLY))
        except FileNotFoundError:
            for fd in fds:
                os.close(fd)
            continue
        return pieces, fds
    return [], []


def run_from(pieces: list[Piece], start_us: int) -> list[Piece]:
    """The pieces of a run from the one that starts at ``start_us`` (as a plan named it).

    A segment that ends within JOIN_GAP_US after ``start_us`` cannot be that first piece
    (segments are longer): it is an earlier one that the recorder's clock estimate made
    overlap by a few milliseconds. Media offsets are made relative to the new first piece.
    """
    while len(pieces) > 1 and pieces[0].end_us is not None and pieces[0].end_us <= start_us + JOIN_GAP_US:
        pieces = pieces[1:]
    if not pieces:
        return []
    base = pieces[0].media_offset_s
    return [Piece(p.path, p.start_us, p.end_us, p.media_offset_s - base) for p in pieces]


async def run_starting(
    session: AsyncSession, root: Path, camera_id: int, start_us: int, duration_s: MediaDuration
) -> list[Piece]:
    """The run that a :func:`find_run` answer named by its first piece's ``start_us``, from that
    piece on; [] when it is no longer recorded.

    The growing file may have been catalogued meanwhile (its catalogued start can differ from
    the estimate by a few milliseconds), and its estimated start moves a little as it grows.
    """
    pieces = run_from(await find_run(session, root, camera_id, start_us + 1, duration_s), start_us)
    if not pieces or (abs(pieces[0].start_us - start_us) > JOIN_GAP_US and pieces[0].end_us is not None):
        return []
    return pieces


def media_offset_s(pieces: Sequence[Piece], at_us: int) -> float:
    """Where ``at_us`` falls in a run's media timeline (0 if the run starts after it)."""
    for piece in pieces:
        if piece.end_us is None or piece.end_us > at_us:
            return piece.media_offset_s + max(0, at_us - piece.start_us) / 1e6
    return 0.0


async def open_gap(session: AsyncSession, camera_id: int, start_us: int, reason: str) -> None:
    """Start a gap unless one is already open for the camera."""
    existing = await session.scalar(select(Gap.id).where(Gap.camera_id == camera_id, Gap.end_us.is_(None)))
    if existing is None:
        session.add(Gap(camera_id=camera_id, start_us=start_us, reason=reason))


async def close_gap(session: AsyncSession, camera_id: int, end_us: int) -> None:
    """End the camera's open gap at ``end_us``; a gap that would end before it began is dropped
    (it was opened after the footage that closes it began: nothing was missing)."""
    await session.execute(
        update(Gap).where(Gap.camera_id == camera_id, Gap.end_us.is_(None)).values(end_us=end_us)
    )
    await session.execute(delete(Gap).where(Gap.camera_id == camera_id, Gap.end_us <= Gap.start_us))


async def trim_gaps(session: AsyncSession, camera_id: int, start_us: int, end_us: int) -> None:
    """Cut the footage [start_us, end_us) out of the camera's gaps: a gap never overlaps a
    catalogued segment. A gap is opened at the end of the last catalogued footage; a segment
    recovered afterwards (a crash's or a stall's partial file) lies inside it, and the gap
    would otherwise overstate what is missing. A gap around the segment is split in two."""
    gaps = (await session.execute(
        select(Gap).where(Gap.camera_id == camera_id, Gap.start_us < end_us)
        .where(Gap.end_us.is_(None) | (Gap.end_us > start_us))
    )).scalars().all()
    for gap in gaps:
        before = gap.start_us < start_us
        after = gap.end_us is None or gap.end_us > end_us
        if before and after:
            session.add(Gap(camera_id=camera_id, start_us=end_us, end_us=gap.end_us, reason=gap.reason))
            gap.end_us = start_us
        elif before:
            gap.end_us = start_us
        elif after:
            gap.start_us = end_us
        else:
            await session.delete(gap)
    await session.flush()


@dataclass
class ReconcileReport:
    recatalogued: list[str] = field(default_factory=list)  # files in place without a row
    missing: list[str] = field(default_factory=list)  # rows whose file is gone
    garbage_finished: int = 0  # deletions a crash interrupted, now completed


def scan_store(root: Path) -> set[str]:
    """Relative paths of every file in the day folders (not ``incoming/``). Blocking."""
    found: set[str] = set()
    if root.is_dir():
        for cam_dir in root.iterdir():
            if not (cam_dir.is_dir() and cam_dir.name.isdigit()):
                continue
            for day in cam_dir.iterdir():
                if day.name in ("incoming", "damaged", "fenced") or not day.is_dir():
                    continue
                found.update(f"{cam_dir.name}/{day.name}/{f.name}" for f in day.iterdir())
    return found


def unlink_segments(root: Path, paths: list[str]) -> None:
    """Unlink files, fsync their folders, drop day folders left empty. Blocking."""
    folders = set()
    for rel in paths:
        path = root / rel
        path.unlink(missing_ok=True)
        folders.add(path.parent)
    for folder in folders:
        if folder.is_dir():
            fsync_dir(folder)
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty


def _younger_than(path: Path, age_s: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < age_s
    except FileNotFoundError:  # deleted meanwhile (another node's retention)
        return True


def _parse_name(name: str) -> tuple[int, int] | None:
    stem = name.rsplit(".", 1)[0]
    parts = stem.split("_")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


async def reconcile(
    sessions: async_sessionmaker[AsyncSession], root: Path, *, min_age_s: float = 0.0, finish_deletions: bool = True,
) -> ReconcileReport:
    """Repair the store after a crash. Call at start-up, before any recorder runs.

    In a cluster (docs/design/cluster.md) other nodes write the shared store meanwhile:
    ``min_age_s`` leaves alone a day-folder file written that recently (another node may be
    between its rename and its row), a row inserted by another node meanwhile is not an error,
    and ``finish_deletions=False`` leaves garbage rows to the retention run that made them.

    - garbage rows: unlink the file if still there, then drop the row;
    - files in a day folder with no row: catalogue them (state ``recovered``), since their
      names carry their times and they were complete when renamed;
    - rows whose file is missing: reported (and logged), never silently dropped.
    Files in ``incoming/`` are the recorder's business (it probes and recovers them).
    """
    report = ReconcileReport()
    async with transaction(sessions) as session:
        garbage = (await session.execute(select(Segment).where(Segment.state == SegmentState.GARBAGE.value))).scalars().all()
        if not finish_deletions:
            garbage = []
        await asyncio.to_thread(unlink_segments, root, [s.path for s in garbage])
        if garbage:
            await session.execute(delete(Segment).where(Segment.id.in_([s.id for s in garbage])))
            # The interrupted run died before its audit entry: footage is never deleted unaudited.
            per: dict[int, list[int]] = {}
            for seg in garbage:
                agg = per.setdefault(seg.camera_id, [0, 0, seg.start_us, seg.end_us])
                agg[0] += 1
                agg[1] += seg.bytes
                agg[2], agg[3] = min(agg[2], seg.start_us), max(agg[3], seg.end_us)
            summary = [{"camera_id": c, "reason": "interrupted deletion", "segments": n, "bytes": b,
                        "from_us": lo, "to_us": hi} for c, (n, b, lo, hi) in sorted(per.items())]
            await audit.append(session, "system:reconcile", "retention.delete", "reconcile",
                               segments=len(garbage), bytes=sum(s.bytes for s in garbage), summary=summary)
            log.warning("store: finished %d deletions an interrupted retention run left, and audited them", len(garbage))
        report.garbage_finished = len(garbage)
        known = set((await session.execute(select(Segment.path))).scalars())
        camera_ids = set((await session.execute(select(Camera.id))).scalars())

    on_disk = await asyncio.to_thread(scan_store, root)

    for rel in sorted(on_disk - known):
        cam_id = int(rel.split("/", 1)[0])
        times = _parse_name(rel.rsplit("/", 1)[1])
        if times is None or cam_id not in camera_ids:
            log.warning("store: unknown file %s left in place for an administrator", rel)
            continue
        if min_age_s and await asyncio.to_thread(_younger_than, root / rel, min_age_s):
            continue
        sha, size = await asyncio.to_thread(sha256_file, root / rel)
        try:
            async with transaction(sessions) as session:
                session.add(Segment(camera_id=cam_id, start_us=times[0], end_us=times[1], bytes=size, sha256=sha,
                                    path=rel, state=SegmentState.RECOVERED.value))
                await trim_gaps(session, cam_id, times[0], times[1])
        except IntegrityError:
            if not min_age_s:
                raise
            log.info("camera %s: %s was catalogued by another node meanwhile", cam_id, rel)
            continue
        report.recatalogued.append(rel)
        log.warning("camera %s: catalogued orphan segment %s", cam_id, rel)

    for rel in sorted(known - on_disk):
        report.missing.append(rel)
        log.error("store: catalogued segment %s has no file", rel)
    return report
