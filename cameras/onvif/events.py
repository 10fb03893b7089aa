"""ONVIF PullPoint event subscriptions: one per camera, renewed before expiry, re-created when
lost; motion and tamper notifications stored as :class:`storage.onvif.CameraEvent`.

:class:`EventSubscriptions` keeps one :class:`CameraEvents` per enabled ONVIF camera that offers
events. ``run_once()`` makes sure each has a subscription and pulls once with a short wait (the
tests call it); ``run()`` keeps one long-polling task per camera. The service starts this after
the recorders, because some cameras slow down while they serve event subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import Any

from lxml import etree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cameras import CameraError
from cameras.onvif.errors import translate
from cameras.onvif.session import OnvifSession, open_session
from storage.db import now_us, transaction
from storage.keys import Keys
from storage.models import Camera
from storage.onvif import CameraEvent, add_events

log = logging.getLogger(__name__)

NS_PULLPOINT = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"
# Ask for this long a subscription; renew when less than RENEW_MARGIN_S of it remains.
SUBSCRIPTION_S = 60
RENEW_MARGIN_S = 15
# How long one PullMessages waits on the camera for something to happen.
PULL_WAIT_S = 10
MESSAGE_LIMIT = 100
# After a failure, wait this long (doubling up to the cap) before subscribing again.
RETRY_INITIAL_S = 2.0
RETRY_MAX_S = 60.0


def classify(topic: str) -> str | None:
    """``motion`` or ``tamper`` for the topics cameras use for them; ``None`` for others."""
    t = topic.lower()
    if "tamper" in t or "globalscenechange" in t:
        return "tamper"
    if "motion" in t:
        return "motion"
    return None


def _items(part: Any) -> dict[str, str]:
    """SimpleItems of a tt:Message Source or Data (zeep object or raw XML element)."""
    if part is None:
        return {}
    if isinstance(part, etree._Element):
        return {el.get("Name", ""): el.get("Value", "") for el in part.iter("{*}SimpleItem")}
    items = getattr(part, "SimpleItem", None) or []
    return {str(i.Name): str(i.Value) for i in items}


def parse_notification(msg: Any) -> dict[str, Any] | None:
    """Topic, kind, state, camera time, source and data of one wsnt:NotificationMessage."""
    topic_node = getattr(msg, "Topic", None)
    topic = str(getattr(topic_node, "_value_1", "") or "").strip()
    kind = classify(topic)
    if kind is None:
        return None
    body = getattr(getattr(msg, "Message", None), "_value_1", None)
    if isinstance(body, etree._Element):
        message = body if etree.QName(body).localname == "Message" else next(body.iter("{*}Message"), body)
        source, data = _items(message.find("{*}Source")), _items(message.find("{*}Data"))
        utc_text = message.get("UtcTime")
        utc = dt.datetime.fromisoformat(utc_text.replace("Z", "+00:00")) if utc_text else None
    else:
        source, data = _items(getattr(body, "Source", None)), _items(getattr(body, "Data", None))
        utc = getattr(body, "UtcTime", None)
    state_text = next((data[k] for k in ("State", "IsMotion", "IsTamper", "Value") if k in data), "true")
    if isinstance(utc, dt.datetime) and utc.tzinfo is None:
        utc = utc.replace(tzinfo=dt.UTC)
    return {
        "topic": topic, "kind": kind, "state": state_text.strip().lower() in ("true", "1"),
        "camera_time_us": int(utc.timestamp() * 1_000_000) if isinstance(utc, dt.datetime) else None,
        "source": ",".join(f"{k}={v}" for k, v in source.items()), "data": data,
    }


class CameraEvents:
    """The PullPoint subscription of one camera."""

    def __init__(self, camera_id: int, xaddr: str, username: str, password: str, *, timeout_s: float = 10.0) -> None:
        self.camera_id, self.xaddr = camera_id, xaddr
        self._credentials = (username, password)
        self.timeout_s = timeout_s
        self.onvif: OnvifSession | None = None
        self._pull: Any = None
        self._manager: Any = None
        self.terminates_at: float = 0.0  # our monotonic clock
        self.subscriptions_created = 0
        self.renewals = 0

    @property
    def subscribed(self) -> bool:
        return self._pull is not None and time.monotonic() < self.terminates_at

    async def subscribe(self) -> None:
        await self.close()
        self.onvif = await open_session(self.xaddr, *self._credentials, timeout_s=self.timeout_s)
        reply = await self.onvif.call("events", "CreatePullPointSubscription",
                                      {"InitialTerminationTime": f"PT{SUBSCRIPTION_S}S"})
        address = reply.SubscriptionReference.Address._value_1
        device = self.onvif.device
        device.xaddrs[NS_PULLPOINT] = address
        with translate(self.xaddr):
            self._pull = await device.create_pullpoint_service()
            self._manager = await device.create_subscription_service("PullPointSubscription")
        self._set_termination(reply.CurrentTime, reply.TerminationTime)
        self.subscriptions_created += 1
        log.info("camera %s: event subscription created", self.camera_id)

    def _set_termination(self, current: Any, termination: Any) -> None:
        if isinstance(current, dt.datetime) and isinstance(termination, dt.datetime):
            remaining = (termination - current).total_seconds()
        else:
            remaining = SUBSCRIPTION_S
        self.terminates_at = time.monotonic() + max(remaining, 0.0)

    async def renew_if_due(self) -> None:
        if self._manager is None or self.onvif is None:
            return
        if self.terminates_at - time.monotonic() > RENEW_MARGIN_S:
            return
        reply = await self.onvif.call_service(self._manager, "Renew", {"TerminationTime": f"PT{SUBSCRIPTION_S}S"})
        self._set_termination(reply.CurrentTime, reply.TerminationTime)
        self.renewals += 1

    async def pull(self, wait_s: float = PULL_WAIT_S) -> list[dict[str, Any]]:
        """One PullMessages; the parsed motion/tamper notifications it returned."""
        assert self.onvif is not None and self._pull is not None
        reply = await self.onvif.call_service(
            self._pull, "PullMessages", {"Timeout": f"PT{wait_s:g}S", "MessageLimit": MESSAGE_LIMIT},
            timeout_s=wait_s + self.timeout_s, exclusive=False,
        )
        if reply.CurrentTime is not None and reply.TerminationTime is not None:
            self._set_termination(reply.CurrentTime, reply.TerminationTime)
        out = []
        for msg in reply.NotificationMessage or []:
            try:
                parsed = parse_notification(msg)
            except (ValueError, TypeError, AttributeError) as exc:
                log.warning("camera %s: unreadable event notification (%s)", self.camera_id, exc)
                continue
            if parsed is not None:
                out.append(parsed)
        return out

    async def close(self) -> None:
        if self.onvif is not None:
            if self._manager is not None:
                with contextlib.suppress(CameraError, asyncio.TimeoutError):
                    await self.onvif.call_service(self._manager, "Unsubscribe", timeout_s=2)
            await self.onvif.close()
        self.onvif, self._pull, self._manager = None, None, None


class EventSubscriptions:
    """Event subscriptions of every enabled ONVIF camera that offers events."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], keys: Keys, *, pull_wait_s: float = PULL_WAIT_S,
                 timeout_s: float = 10.0) -> None:
        self.sessions, self.keys = sessions, keys
        self.pull_wait_s, self.timeout_s = pull_wait_s, timeout_s
        self.cameras: dict[int, CameraEvents] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._offsets: dict[int, float] = {}
        self.stored = 0

    async def refresh(self) -> None:
        """Follow the inventory: subscribe new cameras, drop removed or disabled ones."""
        async with self.sessions() as session:
            rows = list((await session.execute(
                select(Camera).where(Camera.enabled.is_(True), Camera.onvif_xaddr != "")
            )).scalars())
        wanted = {}
        for cam in rows:
            onvif_extra = (cam.extra or {}).get("onvif", {})
            if onvif_extra and not onvif_extra.get("events", True):
                continue
            wanted[cam.id] = (cam.onvif_xaddr, cam.username, self.keys.decrypt(cam.password_enc))
            self._offsets[cam.id] = cam.clock_offset_s or 0.0
        for cid in [c for c in self.cameras if c not in wanted]:
            await self._drop(cid)
        for cid, (xaddr, user, password) in wanted.items():
            known = self.cameras.get(cid)
            if known is not None and (known.xaddr, *known._credentials) == (xaddr, user, password):
                continue
            if known is not None:
                await self._drop(cid)
            self.cameras[cid] = CameraEvents(cid, xaddr, user, password, timeout_s=self.timeout_s)

    async def _drop(self, cid: int) -> None:
        task = self._tasks.pop(cid, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        watcher = self.cameras.pop(cid, None)
        if watcher is not None:
            await watcher.close()

    async def store(self, camera_id: int, parsed: list[dict[str, Any]]) -> int:
        if not parsed:
            return 0
        received = now_us()
        offset_us = int(self._offsets.get(camera_id, 0.0) * 1_000_000)
        rows = [CameraEvent(
            camera_id=camera_id, kind=p["kind"], state=p["state"], topic=p["topic"][:200], source=p["source"][:200],
            data=p["data"], camera_time_us=p["camera_time_us"], received_us=received,
            at_us=(p["camera_time_us"] - offset_us) if p["camera_time_us"] is not None else received,
        ) for p in parsed]
        async with transaction(self.sessions) as session:
            await add_events(session, rows)
        self.stored += len(rows)
        log.debug("camera %s: stored %d events", camera_id, len(rows))
        return len(rows)

    async def step(self, watcher: CameraEvents, wait_s: float) -> int:
        """Subscribe if needed, renew if due, pull once and store. Raises CameraError."""
        if not watcher.subscribed:
            await watcher.subscribe()
        await watcher.renew_if_due()
        return await self.store(watcher.camera_id, await watcher.pull(wait_s))

    async def run_once(self, wait_s: float = 0.5) -> int:
        """One pass over every camera; returns how many events were stored."""
        await self.refresh()
        stored = 0
        results = await asyncio.gather(*(self.step(w, wait_s) for w in self.cameras.values()), return_exceptions=True)
        for watcher, result in zip(list(self.cameras.values()), results, strict=True):
            if isinstance(result, CameraError):
                log.warning("camera %s: events: %s", watcher.camera_id, result)
                await watcher.close()
            elif isinstance(result, BaseException):
                raise result
            else:
                stored += result
        return stored

    async def _camera_loop(self, watcher: CameraEvents) -> None:
        backoff = RETRY_INITIAL_S
        while True:
            try:
                await self.step(watcher, self.pull_wait_s)
                backoff = RETRY_INITIAL_S
            except CameraError as exc:
                log.warning("camera %s: event subscription lost (%s); again in %.0f s", watcher.camera_id, exc, backoff)
                await watcher.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)

    async def start(self) -> None:
        await self.refresh()
        self._spawn()

    def _spawn(self) -> None:
        for cid, watcher in self.cameras.items():
            task = self._tasks.get(cid)
            if task is None or task.done():
                self._tasks[cid] = asyncio.create_task(self._camera_loop(watcher), name=f"onvif-events-{cid}")

    async def reload(self) -> None:
        """Pick up inventory changes (an adopted camera) while running."""
        await self.refresh()
        self._spawn()

    async def stop(self) -> None:
        for cid in list(self.cameras):
            await self._drop(cid)
