"""The aiohttp application and the lifecycle of everything the service runs.

Each resource is a cleanup context: started before its ``yield``, stopped after, in reverse
order, and only if it started. Background loops keep a reference to their task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from cameras.recorder import Supervisor
from controlroom import camera_health, cluster, disclosure, jobs, masking, metrics, security
from controlroom.anpr_service import anpr_ctx
from controlroom.api import admin as admin_routes
from controlroom.api import alerts, cameras, health, live, openapi, playback, session, ui, users
from controlroom.api import anpr as anpr_routes
from controlroom.api import audit as audit_routes
from controlroom.api import duty as duty_routes
from controlroom.api import evidence as evidence_routes
from controlroom.api import faults as fault_routes
from controlroom.api import incidents as incident_routes
from controlroom.api import masks as mask_routes
from controlroom.api import onvif as onvif_routes
from controlroom.api import redaction as redaction_routes
from controlroom.api import reports as reports_routes
from controlroom.api import ripa as ripa_routes
from controlroom.api import sar as sar_routes
from controlroom.api import stills as still_routes
from controlroom.api import views as view_routes
from controlroom.auditing import audit_anchor_ctx, audit_writer_ctx
from controlroom.auth import accounts_ctx, auth_middleware
from controlroom.context import (
    ALERTS,
    ENGINE,
    HEALTH_NOTES,
    KEYS,
    LIVE,
    NODE,
    PURGE_NOW,
    RECORDERS_STOP,
    SESSIONS,
    SETTINGS,
    SUPERVISOR,
)
from controlroom.contract import contract_middleware
from controlroom.errors import error_middleware
from controlroom.evidence import evidence_ctx
from controlroom.lawful import reminders_ctx
from controlroom.mqtt import mqtt_ctx
from controlroom.redaction.runner import redaction_ctx
from controlroom.settings import Settings
from storage.alerts import AlertHub
from storage.catalogue import reconcile
from storage.db import make_engine, make_sessionmaker
from storage.keys import load_or_create_keys
from storage.migrate import upgrade
from storage.nodes import parse_roles

log = logging.getLogger(__name__)
# In a cluster, a day-folder file younger than this may be between another node's rename and
# its row: start-up reconciliation leaves it (its node catalogues it, or the next start does).
RECONCILE_MIN_AGE_S = 120.0
ROUTE_MODULES = [onvif_routes, health, metrics, cameras, session, users, audit_routes, ui, live, playback, still_routes, alerts,
                 anpr_routes, evidence_routes, incident_routes, duty_routes, fault_routes, ripa_routes, sar_routes, redaction_routes, admin_routes, reports_routes, view_routes, mask_routes, openapi]


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app[KEYS] = await asyncio.to_thread(load_or_create_keys, settings.key_file)
    engine = make_engine(settings.db_url)
    await upgrade(engine)
    app[ENGINE] = engine
    app[SESSIONS] = make_sessionmaker(engine, audit_key=app[KEYS].audit_mac_key)
    yield
    await engine.dispose()


async def recorder_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # A cluster's node shares the store with nodes recording now (docs/design/cluster.md).
    clustered = NODE in app
    report = await reconcile(app[SESSIONS], settings.storage_root, min_age_s=RECONCILE_MIN_AGE_S if clustered else 0.0,
                             finish_deletions=not clustered)
    if report.missing:
        log.error("store: %d catalogued segments have no file", len(report.missing))
    supervisor = Supervisor(
        app[SESSIONS],
        app[KEYS],
        settings.storage_root,
        segment_s=settings.recording.segment_s,
        stall_timeout_s=settings.recording.stall_timeout_s,
        backoff_initial_s=settings.recording.backoff_initial_s,
        backoff_max_s=settings.recording.backoff_max_s,
        alerts=app[ALERTS],
        floor_bytes=settings.retention.free_space_floor_bytes,
        min_free_bytes=settings.recording.min_free_bytes,
        on_disk_low=app[PURGE_NOW].set,
        spool_root=settings.spool_root,
        # a cluster's recorder node: only the cameras it holds a recorder lease on
        lease=app[NODE].leases.get("recorder") if NODE in app else None,
        notes=app[HEALTH_NOTES],
        # live view of the main stream from each recorder's own pull (docs/design/live-from-recorder.md)
        live_feeds=app[LIVE].feeds if settings.live.from_recorder else None,
    )
    app[SUPERVISOR] = supervisor
    stopping: list[asyncio.Task[None]] = []  # set by recorders_stopping, when the stop begins
    app[RECORDERS_STOP] = stopping
    await supervisor.start()
    yield
    if stopping:
        await stopping[0]
    else:
        await supervisor.stop()


async def recorders_stopping(app: web.Application) -> None:
    """The first on_shutdown hook: no recorder reconnects from now on, and every recorder
    finalises its segment now, while the rest of the service stops (the segments matter
    most, and are never left waiting behind a slow WebSocket or export)."""
    if SUPERVISOR in app:
        app[SUPERVISOR].stopping()
        app[RECORDERS_STOP].append(asyncio.create_task(app[SUPERVISOR].stop(), name="recorders stop"))


def create_app(settings: Settings, *, record: bool = True, anpr: bool | None = None) -> web.Application:
    """The whole service. ``record=False`` leaves recorders and retention off (API-only tests);
    ``anpr`` (default: as ``record``) runs live ANPR reading, ANPR retention and MQTT."""
    # Order: errors become JSON; then who is asking and may they; then is the input what the
    # route declares (only for those allowed to call it); then the disclosure is audited; innermost,
    # the privacy masks are applied to the pictures (before the disclosure is recorded).
    app = web.Application(
        middlewares=[error_middleware, auth_middleware, contract_middleware, disclosure.disclosure_middleware,
                     masking.masking_middleware],
        client_max_size=8 * 1024 * 1024,
    )
    app[SETTINGS] = settings
    app[ALERTS] = AlertHub()
    app[PURGE_NOW] = asyncio.Event()
    app[HEALTH_NOTES] = {}
    app.cleanup_ctx.append(database_ctx)
    # What this node does (docs/design/cluster.md); by default every role, as on one machine.
    roles = parse_roles(settings.cluster.roles)
    anpr_on = record if anpr is None else anpr
    if not record:
        roles = tuple(r for r in roles if r != "recorder") or ("api",)
    if settings.cluster.enabled:
        app.cleanup_ctx.append(cluster.node_ctx(roles))  # before the recorders: it stops after them
    app.cleanup_ctx.append(audit_anchor_ctx)  # stops after the writer: the last anchor covers its last batch
    app.cleanup_ctx.append(audit_writer_ctx)
    app.cleanup_ctx.append(accounts_ctx)
    app.cleanup_ctx.append(live.live_ctx)
    app.cleanup_ctx.append(alerts.alerts_ctx)
    app.cleanup_ctx.append(playback.playback_ctx)
    app.cleanup_ctx.append(masking.masking_ctx)
    app.cleanup_ctx.append(camera_health.health_ctx)
    if record:
        app.on_shutdown.append(recorders_stopping)  # first: segments are finalised meanwhile
    app.on_shutdown.append(live.on_shutdown)
    app.on_shutdown.append(playback.on_shutdown)
    app.cleanup_ctx.append(evidence_ctx)
    app.cleanup_ctx.append(redaction_ctx)  # SAR redaction jobs (controlroom.redaction)
    app.cleanup_ctx.append(reminders_ctx)  # RIPA reviews and expiry, SAR deadlines (controlroom.lawful)
    security.install(app)
    masking.install(app)  # before the disclosure's hook: a refused stream discloses nothing
    disclosure.install(app)
    metrics.install(app)
    app.cleanup_ctx.append(onvif_routes.onvif_ctx)
    if record and "recorder" in roles:
        app.cleanup_ctx.append(recorder_ctx)
    if record and "recorder" in roles:
        app.cleanup_ctx.append(jobs.purge_ctx)  # the disk below its floor: an emergency retention job
    if "jobs" in roles:  # exports, retention, ANPR retention: taken from the jobs table
        app.cleanup_ctx.append(jobs.jobs_ctx)
        app.cleanup_ctx.append(jobs.schedule_ctx(record=record, anpr=anpr_on))
    if record and "recorder" in roles:
        app.cleanup_ctx.append(camera_health.health_loop_ctx)
        app.cleanup_ctx.append(onvif_routes.onvif_background_ctx)  # after the streams
    if anpr_on and "anpr" in roles:
        app.cleanup_ctx.append(mqtt_ctx)
        app.cleanup_ctx.append(anpr_ctx)
    for module in ROUTE_MODULES:
        app.router.add_routes(module.routes)
    return app
