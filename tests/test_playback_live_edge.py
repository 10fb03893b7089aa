"""Playback at the live edge through the API, on SQLite and PostgreSQL: while the recorder is
writing, a time after the catalogue's end that nothing covers is looked for again for a moment
(a segment may be between its rename and its row: storage.catalogue.find_run) and then answered
as a clear 404 naming the camera. The catalogue-level race itself is
tests/test_catalogue.py::test_find_run_waits_out_a_segment_between_its_rename_and_its_row."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from datetime import UTC, datetime
from urllib.parse import quote

from cameras.recorder import media_duration_s
from controlroom.app import create_app
from controlroom.context import KEYS, SESSIONS, SETTINGS
from controlroom.timefmt import us_to_iso
from storage.catalogue import (
    NewSegment,
    commit_segment,
    growing_start_us,
    incoming_dir,
    incoming_pattern,
)
from storage.db import now_us, transaction
from storage.inventory import CameraSpec, add_camera

S = 1_000_000


async def test_a_gap_at_the_live_edge_is_a_clear_404_after_the_wait(db_url, aiohttp_client, settings, login, tmp_path):
    app = create_app(settings.with_overrides(database_url=db_url), record=False)
    client = await aiohttp_client(app)
    async with transaction(app[SESSIONS]) as s:
        cam = await add_camera(s, CameraSpec(name="Market Cross", main_url="rtsp://127.0.0.1:1/a", recording=False),
                               app[KEYS])
    root = app[SETTINGS].storage_root
    base = (now_us() // S - 300) * S
    finished = tmp_path / "finished.mkv"
    finished.write_bytes(b"segment")
    await commit_segment(app[SESSIONS], root, finished, NewSegment(cam.id, base, base + 30 * S))
    # ffmpeg has just opened its next file (empty so far): the recorder is writing.
    folder = incoming_dir(root, cam.id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / datetime.fromtimestamp(now_us() / 1e6, UTC).strftime(incoming_pattern("9"))).write_bytes(b"")

    headers = await login(client, "operator")
    at = quote(us_to_iso(base + 120 * S))
    for url in (f"/api/v1/cameras/{cam.id}/playback?at={at}", f"/api/v1/cameras/{cam.id}/still.png?at={at}",
                f"/api/v1/cameras/{cam.id}/playback/stream.mp4?start_us={base + 120 * S}"):
        started = time.monotonic()
        resp = await client.get(url, headers=headers)
        body = await resp.json()
        assert resp.status == 404, (url, resp.status, body)
        assert "Market Cross" in body["error"] or "no longer available" in body["error"], body
        assert time.monotonic() - started >= 3, "answered before the wait a commit may need"


async def test_a_growing_first_file_keeps_one_start_while_it_grows(tmp_path):
    """The start of a recorder run's first file (no segment before it) is measured as its
    modification time minus its media duration, which moves from look to look when the writes
    reach the disk late by varying amounts (a loaded machine). The first measure is kept: a plan,
    its stream and a still of the frame on screen must map a wall time to one frame (in CI a
    still sought past the end of the file under a later measure: no picture).

    A real ffmpeg encodes at the real-time rate, a keyframe every second, into a pipe; the test
    writes what comes out to the file in bursts held back 0.1-1.2 s, as a loaded machine's
    scheduling does."""
    path = tmp_path / "growing.mkv"
    began_us = now_us()
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-t", "40", "-f", "matroska", "pipe:1",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)

    async def write_late() -> None:
        assert proc.stdout is not None
        delays = itertools.cycle([0.1, 1.2, 0.4, 0.9, 0.2, 0.7])
        with path.open("wb") as out:
            while chunk := await proc.stdout.read(1 << 20):
                await asyncio.sleep(next(delays))  # what ffmpeg writes meanwhile waits in the pipe
                out.write(chunk)
                out.flush()

    writer = asyncio.create_task(write_late())
    try:
        seen = []
        deadline = time.monotonic() + 30
        while len(seen) < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.9)
            if path.exists() and path.stat().st_size > 0 and await media_duration_s(path) > 0:
                seen.append(await growing_start_us(path, None, media_duration_s))
        assert len(seen) == 6, seen
        assert len(set(seen)) == 1, [(v - seen[0]) / S for v in seen]
        assert abs(seen[0] - began_us) < 3 * S, (seen[0] - began_us) / S
    finally:
        proc.kill()
        await proc.wait()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
