"""Live reading, on the event loop's side: one :class:`anpr.camera_reader.CameraReader` per
enabled ANPR camera, following the inventory; each vehicle a reader commits is stored here, checked
against the hotlists, and raises an ``anpr_hit`` alert (stored, on the WebSocket hub, and from
there on MQTT).

In a cluster (docs/design/cluster.md) an anpr node reads only the ANPR cameras it holds an
``anpr`` lease on (storage.nodes, the recorders' mechanism), each reader under its lease's
generation: a read is stored only if the lease is still this node's and of that generation
(the fence, checked in the transaction that stores it), so a node that lost a camera never
stores a read of it beside the new holder's. A camera asked to move is stopped (its tracked
vehicles committed and stored) before its lease is handed over.

The rest of live reading: frame utilities in ``anpr/frames.py``, vehicle tracking and voting
(pure) in ``anpr/tracking.py``, the capture and worker threads in ``anpr/camera_reader.py``.
Imports storage only (never cameras or controlroom).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anpr import AnprError
from anpr.camera_reader import (
    CameraConfig,
    CameraReader,
    CameraStats,
    LiveOptions,
    Reader,
    default_reader_factory,
)
from anpr.frames import parse_roi
from anpr.hotlist import check_read
from anpr.tracking import Vehicle
from storage.alerts import AlertHub, raise_alert
from storage.anpr.hits import add_hit
from storage.anpr.reads import NewRead, add_read
from storage.db import transaction
from storage.inventory import credentialed_url
from storage.keys import Keys
from storage.loops import run_every
from storage.models import Camera
from storage.nodes import Fence, Fenced, RoleLeases, check_fence, leasable

log = logging.getLogger(__name__)


@dataclass
class StoredVehicle:
    read_id: int
    camera_id: int
    vrm: str
    read_us: int
    commit_frame_us: int
    stored_us: int
    hits: list[int] = field(default_factory=list)
    alert_ids: list[int] = field(default_factory=list)


class LiveReading:
    """Runs a :class:`CameraReader` for every enabled camera of kind ``anpr``.

    :meth:`sync` (the ``run_once``) starts, restarts and stops readers to follow the inventory;
    :meth:`store_vehicle` stores one vehicle's read, checks the hotlists and raises alerts.
    ``on_stored`` (optional) is called with each :class:`StoredVehicle` (tests and benchmarks).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], keys: Keys, hub: AlertHub | None,
                 image_root: Path, options: LiveOptions,
                 reader_factory: Callable[[str], Reader] = default_reader_factory,
                 on_stored: Callable[[StoredVehicle], None] | None = None, lease: RoleLeases | None = None) -> None:
        self.sessions, self.keys, self.hub, self.image_root = sessions, keys, hub, image_root
        self.options, self.reader_factory, self.on_stored = options, reader_factory, on_stored
        self.lease = lease  # a cluster's anpr node: only the cameras it holds a lease on
        self.reads_fenced = 0
        self._sync_lock = asyncio.Lock()
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_again = False
        self.semaphore = threading.BoundedSemaphore(options.max_parallel_reads)
        self.readers: dict[int, CameraReader] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._pending_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    async def configs(self) -> list[CameraConfig]:
        async with self.sessions() as session:
            cams = (await session.execute(select(Camera).where(*leasable("anpr")).order_by(Camera.id))).scalars().all()
        held = self.lease.held if self.lease is not None else None
        out = []
        for cam in cams:
            if held is not None and cam.id not in held:
                continue
            extra = cam.extra or {}
            url = cam.sub_url if extra.get("anpr_stream") == "sub" and cam.sub_url else cam.main_url
            if not url:
                log.warning("camera %d: ANPR camera has no stream URL; not reading it", cam.id)
                continue
            try:
                roi = parse_roi(extra.get("anpr_roi"))
            except AnprError as exc:
                log.warning("camera %d: %s; reading the whole frame", cam.id, exc)
                roi = None
            password = await asyncio.to_thread(self.keys.decrypt, cam.password_enc) if cam.password_enc else ""
            out.append(CameraConfig(cam.id, cam.name, credentialed_url(url, cam.username, password), roi,
                                    held[cam.id].generation if held is not None else 0))
        return out

    def _make_reader(self, config: CameraConfig, capture: bool = True) -> CameraReader:
        fence = Fence(self.lease.node_id, config.generation, "anpr") if self.lease is not None else None

        def sink(camera_id: int, vehicle: Vehicle, plate_rel: str, overview_rel: str) -> None:
            self._sink(camera_id, vehicle, plate_rel, overview_rel, fence)

        return CameraReader(config, self.options, self.image_root, sink, self.semaphore,
                            self.reader_factory, capture=capture)

    async def sync(self) -> None:
        """Start readers for new ANPR cameras, restart changed ones, stop removed ones; in a
        cluster, stop those asked to move and hand their leases over."""
        async with self._sync_lock:
            await self._sync()

    async def _sync(self) -> None:
        self._loop = asyncio.get_running_loop()
        moving = self.lease.moving() if self.lease is not None else set()
        wanted = {c.camera_id: c for c in await self.configs() if c.camera_id not in moving}
        for cid in list(self.readers):
            if cid not in wanted or self.readers[cid].config.signature() != wanted[cid].signature():
                await asyncio.to_thread(self.readers.pop(cid).stop)
        if moving and self.lease is not None:
            await self.drain()  # the vehicles the stopped readers committed, stored under their lease
            for cid in moving:
                await self.lease.hand_over(cid)
        for cid, config in wanted.items():
            if cid not in self.readers:
                reader = self._make_reader(config)
                self.readers[cid] = reader
                reader.start()
                log.info("camera %d: live ANPR reading started", cid)

    def attach(self, config: CameraConfig) -> CameraReader:
        """A reader with no capture thread, fed by :meth:`CameraReader.submit` (tests, tools)."""
        self._loop = asyncio.get_running_loop()
        reader = self._make_reader(config, capture=False)
        self.readers[config.camera_id] = reader
        reader.start()
        return reader

    def sync_soon(self) -> None:
        """Sync in a task of its own, now (the lease loop must not wait for readers to stop)."""
        if self._sync_task is not None and not self._sync_task.done():
            self._sync_again = True
            return

        async def run() -> None:
            while True:
                self._sync_again = False
                try:
                    await self.sync()
                except Exception:  # noqa: BLE001 - logged; the periodic sync tries again
                    log.exception("ANPR: following a lease change failed; the periodic sync tries again")
                if not self._sync_again:
                    return

        self._sync_task = asyncio.create_task(run(), name="anpr-sync-now")

    async def start(self, *, follow: bool = True) -> None:
        """Read the cameras of the inventory; with ``follow``, sync again every
        ``sync_interval_s`` (the service runs that loop itself, watched: controlroom.anpr_service).
        With a lease, also at once whenever the node's anpr leases change."""
        if self.lease is not None:

            async def changed() -> None:
                self.sync_soon()

            self.lease.on_change = changed
        await self.sync()
        if not follow:
            return
        self._task = asyncio.create_task(run_every(
            self.options.sync_interval_s, self.sync, name="ANPR: following the camera inventory", log=log,
            wait_first=True), name="anpr-sync")

    async def stop(self) -> None:
        if self.lease is not None:
            self.lease.on_change = None
        for task in (self._task, self._sync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        readers, self.readers = list(self.readers.values()), {}
        for r in readers:  # all at once: the joins below share a few executor threads
            r.request_stop()
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in readers))
        await self.drain()

    async def drain(self) -> None:
        """Wait until every vehicle handed over by the worker threads has been stored."""
        with self._pending_lock:
            pending = list(self._pending)
        if pending:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in pending), return_exceptions=True)

    def status(self) -> dict[int, CameraStats]:
        return {cid: r.stats for cid, r in self.readers.items()}

    # -- from worker threads to the loop

    def _sink(self, camera_id: int, vehicle: Vehicle, plate_rel: str, overview_rel: str,
              fence: Fence | None = None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            log.error("camera %d: read of a vehicle lost: the event loop is gone", camera_id)
            return
        future = asyncio.run_coroutine_threadsafe(
            self._store_logged(camera_id, vehicle, plate_rel, overview_rel, fence), loop)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    async def _store_logged(self, camera_id: int, vehicle: Vehicle, plate_rel: str, overview_rel: str,
                            fence: Fence | None = None) -> None:
        try:
            stored = await self.store_vehicle(camera_id, vehicle, plate_rel, overview_rel, fence)
        except Fenced as exc:
            await self._fenced(camera_id, plate_rel, overview_rel, str(exc))
            return
        except Exception:
            log.exception("camera %d: storing a read failed", camera_id)
            return
        if self.on_stored is not None:
            self.on_stored(stored)

    async def _fenced(self, camera_id: int, plate_rel: str, overview_rel: str, reason: str) -> None:
        """A read made after this node lost the camera's anpr lease: the new holder reads the
        camera, so this read is not stored (it would be the second of one vehicle). Logged,
        counted (``/healthz``), alerted; its pictures removed (a plate not in the store is
        personal data nobody controls); the reader is stopped at the next sync."""
        self.reads_fenced += 1
        log.error("camera %d: a plate read refused by the lease fence, not stored: %s", camera_id, reason)
        for rel in (plate_rel, overview_rel):
            if rel:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread((self.image_root / rel).unlink)
        try:
            async with transaction(self.sessions) as session:
                await raise_alert(session, self.hub, "anpr_read_fenced",
                                  f"camera {camera_id}: a plate read made after this node lost the camera's ANPR "
                                  f"lease was not stored: {reason}", camera_id, reason=reason)
        except Exception:
            log.exception("camera %d: the alert of a fenced plate read could not be stored", camera_id)
        if self.lease is not None:
            self.lease.held.pop(camera_id, None)
            self.sync_soon()

    async def store_vehicle(self, camera_id: int, vehicle: Vehicle, plate_rel: str = "",
                            overview_rel: str = "", fence: Fence | None = None) -> StoredVehicle:
        """Store the read, check the hotlists, store each hit and raise its alert: one
        transaction, refused (:class:`storage.nodes.Fenced`) unless ``fence`` is the camera's
        anpr lease."""
        async with transaction(self.sessions) as session:
            if fence is not None:
                await check_fence(session, camera_id, fence)
            read = await add_read(session, NewRead(
                vrm=vehicle.text, confidence=vehicle.confidence, read_us=vehicle.read_us, camera_id=camera_id,
                raw_text=vehicle.raw_text, plate_format=vehicle.format, box=list(vehicle.box),
                char_confidences=vehicle.char_confidences, frames=vehicle.frames, plate_path=plate_rel,
                overview_path=overview_rel,
            ))
            stored = StoredVehicle(read.id, camera_id, read.vrm, read.read_us, vehicle.commit_frame_us, read.stored_us)
            for entry, hotlist in await check_read(session, read.vrm, read.read_us):
                hit = await add_hit(session, read, entry)
                where = " ".join(p for p in (read.site_name, read.lane and f"lane {read.lane}", read.direction) if p)
                alert = await raise_alert(
                    session, self.hub, "anpr_hit",
                    f"{read.vrm} on hotlist {hotlist.name!r} ({entry.reason}) at {where or f'camera {camera_id}'}",
                    camera_id, vrm=read.vrm, hotlist=hotlist.name, hotlist_id=hotlist.id, entry_id=entry.id,
                    pattern=entry.pattern, reason=entry.reason, source=entry.source, read_id=read.id, hit_id=hit.id,
                    priority=entry.priority, site=read.site_name, lane=read.lane, direction=read.direction,
                    read_us=read.read_us, frame_us=vehicle.commit_frame_us, confidence=read.confidence,
                )
                hit.alert_id = alert.id
                stored.hits.append(hit.id)
                stored.alert_ids.append(alert.id)
            await session.flush()
        if stored.hits:
            # No registration in the log: it is personal data, kept only where it is controlled.
            log.info("camera %d: hotlist hit on read %d (hits %s)", camera_id, read.id, stored.hits)
        return stored
