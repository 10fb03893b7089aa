"""Prometheus metrics at ``/metrics``: the same health ``/healthz`` judges, as numbers.

One :class:`prometheus_client.CollectorRegistry` per app (never the process-global one), so
tests that run several apps in one process do not collide. Every value is read when scraped
(a custom collector), from the recorders' memory and a few cheap database aggregates; when the
database does not answer, the in-memory figures are still served and
``controlroom_database_up`` is 0. Labels are camera ids and names only: no URL, user name or
password, and no personal data (no plates, no users).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from controlroom.auth import every_camera
from controlroom.context import HEALTH_NOTES, METRICS, SESSIONS, SUPERVISOR
from controlroom.permissions import Permission, requires
from storage.anpr.models import AnprRead
from storage.audit import AuditEntry
from storage.evidence import ExportJob
from storage.models import CameraState

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
# A scrape waits this long for the database's aggregates, then serves without them.
DB_TIMEOUT_S = 2.0
STATES = [s.value for s in CameraState]


class ServiceCollector(Collector):
    """Yields the service's metrics from a snapshot taken (asynchronously) before the scrape."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.db: dict[str, object] = {}

    async def refresh(self) -> None:
        """Read the database aggregates (bounded in time); keep ``db_up`` honest."""
        try:
            async with asyncio.timeout(DB_TIMEOUT_S), self.app[SESSIONS]() as session:
                audit = await session.scalar(select(func.max(AuditEntry.seq)))
                jobs = dict((await session.execute(select(ExportJob.state, func.count()).group_by(ExportJob.state))).all())
                reads = await session.scalar(select(func.max(AnprRead.id)))
            self.db = {"up": 1, "audit": audit or 0, "jobs": jobs, "reads": reads or 0}
        except Exception as exc:  # noqa: BLE001 - reported as a metric, and logged
            log.warning("metrics: database aggregates unavailable: %s", exc)
            self.db = {"up": 0}

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up = GaugeMetricFamily("controlroom_database_up", "1 if the database answered this scrape")
        up.add_metric([], float(self.db.get("up", 0)))
        yield up
        if self.db.get("up"):
            audit = CounterMetricFamily("controlroom_audit_appends", "Audit entries appended (the chain's last sequence number)")
            audit.add_metric([], float(self.db["audit"]))  # type: ignore[arg-type]
            yield audit
            jobs = GaugeMetricFamily("controlroom_export_jobs", "Evidence export jobs by state", labels=["state"])
            for state, count in sorted(self.db["jobs"].items()):  # type: ignore[union-attr]
                jobs.add_metric([state], float(count))
            yield jobs
            reads = CounterMetricFamily("controlroom_anpr_reads", "ANPR reads stored (the highest read id)")
            reads.add_metric([], float(self.db["reads"]))  # type: ignore[arg-type]
            yield reads

        failing = GaugeMetricFamily("controlroom_component_failing",
                                    "1 for each background component whose last run failed (as /healthz)",
                                    labels=["component"])
        for component in sorted(self.app[HEALTH_NOTES]):
            failing.add_metric([component], 1.0)
        yield failing
        sup = self.app.get(SUPERVISOR)
        if sup is None:
            return
        disk = GaugeMetricFamily("controlroom_disk_free_bytes", "Free bytes in the recording storage root")
        if sup.disk_free_bytes is not None:
            disk.add_metric([], float(sup.disk_free_bytes))
        yield disk
        steps = CounterMetricFamily("controlroom_clock_steps", "Steps of the host's wall clock seen by the recorders")
        steps.add_metric([], float(sup.clock_steps))
        yield steps
        # A cluster's recorder node (docs/design/cluster.md, "Fencing", "Cut off from the database").
        fenced = CounterMetricFamily("controlroom_segments_fenced",
                                     "Segments refused by the lease fence (kept in <camera>/fenced/)")
        fenced.add_metric([], float(sup.segments_fenced))
        yield fenced
        late = CounterMetricFamily("controlroom_segments_catalogued_late", "Segments of a lease generation "
                                   "catalogued after another node took the camera (they ended before its claim)")
        late.add_metric([], float(sup.segments_late))
        yield late
        floor = GaugeMetricFamily("controlroom_disk_floor_bytes", "The free-space floor retention restores")
        floor.add_metric([], float(sup.floor_bytes))
        yield floor
        labels = ["camera_id", "camera"]
        state = GaugeMetricFamily("controlroom_camera_recording_state",
                                  "1 for the camera's current recording state", labels=[*labels, "state"])
        healthy = GaugeMetricFamily("controlroom_camera_recording_healthy",
                                    "1 if the camera's footage is being catalogued as it should", labels=labels)
        since = GaugeMetricFamily("controlroom_camera_seconds_since_catalogued",
                                  "Seconds since the camera's last segment was catalogued", labels=labels)
        pending = GaugeMetricFamily("controlroom_camera_segments_pending",
                                    "Segments on disk waiting to be catalogued", labels=labels)
        written = CounterMetricFamily("controlroom_camera_recorded_bytes", "Bytes of footage catalogued", labels=labels)
        segments = CounterMetricFamily("controlroom_camera_segments", "Segments catalogued", labels=labels)
        reconnects = CounterMetricFamily("controlroom_camera_reconnects", "ffmpeg restarts (reconnections)", labels=labels)
        live_ok = GaugeMetricFamily("controlroom_camera_live_output_ok", "1 if the recorder's live output (live view "
                                    "of the main stream from its own pull) works; 0 if it failed", labels=labels)
        live_drops = CounterMetricFamily("controlroom_camera_live_output_drops", "Times the recorder's ffmpeg dropped "
                                         "live packets because its live pipe was not read in time", labels=labels)
        now = time.monotonic()
        for cam_id, rec in sorted(sup.recorders.items()):
            values = [str(cam_id), rec.cam.name]
            current, _ = rec.visible_state
            for name in STATES:
                state.add_metric([*values, name], 1.0 if name == current.value else 0.0)
            healthy.add_metric(values, 0.0 if rec.problem(now) else 1.0)
            since.add_metric(values, rec.seconds_since_catalogued(now))
            pending.add_metric(values, float(rec.pending))
            written.add_metric(values, float(rec.bytes_committed))
            segments.add_metric(values, float(rec.segments_committed))
            reconnects.add_metric(values, float(rec.restarts))
            if rec.live_feed is not None:
                live_ok.add_metric(values, 0.0 if rec.live_feed.error else 1.0)
                live_drops.add_metric(values, float(rec.live_drops))
        yield from (state, healthy, since, pending, written, segments, reconnects, live_ok, live_drops)


METRICS_COLLECTOR = web.AppKey("metrics_collector", ServiceCollector)


def install(app: web.Application) -> None:
    registry = CollectorRegistry(auto_describe=False)
    collector = ServiceCollector(app)
    registry.register(collector)
    app[METRICS] = registry
    app[METRICS_COLLECTOR] = collector



@routes.get("/metrics")
@requires(Permission.INVENTORY_READ, cameras=every_camera, produces="text/plain")  # every camera: not for narrowed users
async def metrics(request: web.Request) -> web.Response:
    await request.app[METRICS_COLLECTOR].refresh()
    body = generate_latest(request.app[METRICS])  # on the loop: it reads the recorders' live state
    # CONTENT_TYPE_LATEST carries a version parameter, which content_type= refuses.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
