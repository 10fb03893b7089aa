"""The audit writer (group commit, ``app[AUDIT]``), and the loop that writes the signed digest
of the audit chain head outside the database and purges expired login sessions.

``run_once()`` is what the loop does each interval (tests call it directly). A digest that the
database contradicts (its entry is gone or different) is never overwritten: the loop raises an
alert instead, so the evidence of truncation stays on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlroom.context import ALERTS, AUDIT, KEYS, SESSIONS, SETTINGS
from storage import accounts, audit
from storage.alerts import AlertHub, raise_alert
from storage.db import now_us, transaction
from storage.keys import Keys

log = logging.getLogger(__name__)


class DigestLoop:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], keys: Keys, directory: Path,
        *, interval_s: float, session_idle_s: float, alerts: AlertHub | None = None,
    ) -> None:
        self.sessions, self.keys, self.directory = sessions, keys, directory
        self.interval_s, self.session_idle_s, self.alerts = interval_s, session_idle_s, alerts

    async def run_once(self) -> Path | None:
        async with transaction(self.sessions) as session:
            await accounts.purge_sessions(session, now_us(), self.session_idle_s)
        try:
            async with self.sessions() as session:
                return await audit.write_digest(session, self.keys, self.directory)
        except audit.DigestError as exc:
            log.error("audit: %s", exc)
            async with transaction(self.sessions) as session:
                await raise_alert(session, self.alerts, "audit.truncated", str(exc), None)
            return None

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("audit digest failed; next try in %ss", self.interval_s)
            await asyncio.sleep(self.interval_s)


async def audit_writer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Right after database_ctx, so it stops last: what is queued at shutdown is still written."""
    writer = audit.AuditWriter(app[SESSIONS])
    writer.start()
    app[AUDIT] = writer
    yield
    await writer.close()


async def audit_digest_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    loop = DigestLoop(
        app[SESSIONS], app[KEYS], settings.audit_digest_dir,
        interval_s=settings.security.audit_digest_interval_s,
        session_idle_s=settings.security.session_idle_s, alerts=app[ALERTS],
    )
    task = asyncio.create_task(loop.run(), name="audit-digest")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with contextlib.suppress(Exception):
        await loop.run_once()  # the head at shutdown
