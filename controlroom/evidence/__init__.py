"""Evidence packages for the police: planning, writing, signing, verifying, the export runner.

See docs/design/evidence.md. ``evidence_ctx`` makes the export runner; a jobs node's job runner
(controlroom.jobs) runs the exports it takes from the job queue through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from controlroom.context import EVIDENCE, KEYS, SESSIONS, SETTINGS
from controlroom.evidence.runner import ExportRunner


async def evidence_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    runner = ExportRunner(
        app[SESSIONS], app[KEYS],
        storage_root=settings.storage_root,
        export_root=settings.evidence_root,
        heartbeat_s=settings.evidence.heartbeat_s,
        stale_after_s=settings.evidence.stale_after_s,
        free_space_margin_bytes=settings.evidence.free_space_margin_bytes,
    )
    app[EVIDENCE] = runner
    await asyncio.to_thread(settings.evidence_root.mkdir, parents=True, exist_ok=True)
    yield
