"""Typed keys for everything the app holds (aiohttp AppKey: no singletons, no untyped attributes)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from controlroom.settings import Settings
from storage.alerts import AlertHub
from storage.audit import AuditWriter
from storage.keys import Keys

if TYPE_CHECKING:
    pass

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
KEYS = web.AppKey("keys", Keys)
AUDIT = web.AppKey("audit", AuditWriter)  # group commit for entries of actions that write nothing else
SUPERVISOR = web.AppKey("supervisor", "Supervisor")
# component -> why its background loop is failing, for /healthz and /metrics (controlroom.background);
# the recorder supervisor writes its own notes here too
HEALTH_NOTES = web.AppKey("health_notes", dict)
ALERTS = web.AppKey("alerts", AlertHub)
ONVIF = web.AppKey("onvif", "OnvifRuntime")  # controlroom.api.onvif.OnvifRuntime
AUTH = web.AppKey("auth", "Authenticator")  # controlroom.auth.Authenticator
MQTT = web.AppKey("mqtt", "MqttBridge")  # controlroom.mqtt.MqttBridge
ANPR_LIVE = web.AppKey("anpr_live", "LiveReading")  # anpr.live.LiveReading
LIVE = web.AppKey("live", "LiveHub")  # cameras.live.LiveHub: live view upstreams
MASKING = web.AppKey("masking", "Masking")  # controlroom.masking.Masking: privacy masks' pictures and watch
ALERT_ACKS = web.AppKey("alert_acks", AlertHub)  # acknowledgements, fanned out to alert panels
EVIDENCE = web.AppKey("evidence", "ExportRunner")  # controlroom.evidence.runner.ExportRunner
REDACTION = web.AppKey("redaction", "Redactor")  # controlroom.redaction.runner.Redactor: runs the sar.redaction jobs
PURGE_NOW = web.AppKey("purge_now", asyncio.Event)  # set: the disk is below its floor, purge now
METRICS = web.AppKey("metrics", "CollectorRegistry")  # prometheus_client registry of this app
PLAYBACK_PROCS = web.AppKey("playback_procs", set)  # running playback remux processes
OPEN_SOCKETS = web.AppKey("open_sockets", object)  # WeakSet of open WebSockets, closed when the service stops
RECORDERS_STOP = web.AppKey("recorders_stop", list)  # [the task of every recorder finalising], from on_shutdown
JOBS = web.AppKey("jobs", "JobRunner")  # controlroom.jobs.JobRunner: this node's job runner (the jobs role)
NODE = web.AppKey("node", "LeaseKeeper")  # storage.nodes.LeaseKeeper: this node of a cluster (cluster.enabled)
