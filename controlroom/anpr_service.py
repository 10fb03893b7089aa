"""ANPR in the running service: live reading of the ANPR cameras.

One cleanup context (:func:`anpr_ctx`): it starts :class:`anpr.live.LiveReading` for the enabled
cameras of kind ``anpr`` (following inventory changes) and stops it with the app. ANPR
retention (reads past ``[anpr] retention_days``) is a job (controlroom.jobs), run by a jobs node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from anpr.camera_reader import LiveOptions
from anpr.live import LiveReading
from controlroom.background import watched
from controlroom.context import ALERTS, ANPR_LIVE, KEYS, NODE, SESSIONS, SETTINGS
from controlroom.settings import Settings

log = logging.getLogger(__name__)


def live_options(settings: Settings) -> LiveOptions:
    a = settings.anpr
    return LiveOptions(
        sample_fps=a.sample_fps, mode=a.mode, max_parallel_reads=a.max_parallel_reads, agree_frames=a.agree_frames,
        track_gap_s=a.track_gap_s, min_confidence=a.min_confidence, max_frame_pixels=a.max_frame_pixels,
        overview_width=a.overview_width, jpeg_quality=a.jpeg_quality,
    )


async def anpr_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # A cluster's anpr node reads the ANPR cameras it holds a lease on (docs/design/cluster.md).
    lease = app[NODE].leases.get("anpr") if NODE in app else None
    live = LiveReading(app[SESSIONS], app[KEYS], app[ALERTS], settings.anpr_root, live_options(settings), lease=lease)
    app[ANPR_LIVE] = live
    await live.start(follow=False)
    syncing = watched(app, "anpr_sync", live.options.sync_interval_s, live.sync,
                      what="ANPR: following the camera inventory", log=log, wait_first=True)
    sync_task = asyncio.create_task(syncing.run(), name="anpr-sync")
    yield
    sync_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sync_task
    await live.stop()
