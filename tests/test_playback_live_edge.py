"""Playback at the live edge through the API, on SQLite and PostgreSQL: while the recorder is
writing, a time after the catalogue's end that nothing covers is looked for again for a moment
(a segment may be between its rename and its row: storage.catalogue.find_run) and then answered
as a clear 404 naming the camera. The catalogue-level race itself is
tests/test_catalogue.py::test_find_run_waits_out_a_segment_between_its_rename_and_its_row."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import quote

from controlroom.app import create_app
from controlroom.context import KEYS, SESSIONS, SETTINGS
from controlroom.timefmt import us_to_iso
from storage.catalogue import NewSegment, commit_segment, incoming_dir, incoming_pattern
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
