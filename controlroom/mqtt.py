"""Alerts to MQTT (Mosquitto on loopback): hotlist hits for other systems to act on.

The bridge subscribes to the alert hub (storage.alerts.AlertHub) and publishes each alert as
JSON: ANPR hotlist hits to ``<topic_prefix>/anpr/hits`` (QoS 1), every other alert to
``<topic_prefix>/alerts/<kind>``. It reconnects with a doubling backoff; alerts raised while the
broker is away wait in the hub's bounded queue (oldest dropped first when it fills) and go out
on reconnection. MQTT is an extra channel: the alert is already stored and on the WebSocket.

Other parts of the service send their own messages with :meth:`MqttBridge.send` (the audit
chain's signed anchor, ``<topic_prefix>/audit/anchor``, retained): they wait in a small outbox
while the broker is away, the newest kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
from aiohttp import web

from controlroom.context import ALERTS, MQTT, SETTINGS
from controlroom.settings import MqttSettings
from storage.alerts import AlertHub

log = logging.getLogger(__name__)


def topic_for(prefix: str, alert: dict[str, Any]) -> str:
    kind = str(alert.get("kind", "unknown"))
    if kind == "anpr_hit":
        return f"{prefix}/anpr/hits"
    return f"{prefix}/alerts/{kind}"


def payload_for(alert: dict[str, Any]) -> bytes:
    """The alert as stored (id, at_us, kind, camera_id, message, data) as compact JSON."""
    return json.dumps(alert, sort_keys=True, separators=(",", ":"), default=str).encode()


class MqttBridge:
    """Publishes the hub's alerts to the broker; :meth:`run` loops until cancelled."""

    def __init__(self, hub: AlertHub, settings: MqttSettings) -> None:
        self.hub, self.settings = hub, settings
        self.queue = hub.subscribe()
        self.connected = asyncio.Event()
        self.published = 0
        self._pending: dict[str, Any] | None = None
        # (topic under the prefix, payload, retain); the oldest dropped when full.
        self.outbox: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue(maxsize=100)
        self._pending_out: tuple[str, bytes, bool] | None = None

    def send(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish ``payload`` to ``<topic_prefix>/<topic>`` (QoS 1) as soon as connected."""
        if self.outbox.full():
            dropped = self.outbox.get_nowait()
            log.warning("mqtt: outbox full; dropped the oldest message (to %s)", dropped[0])
        self.outbox.put_nowait((topic, payload, retain))

    async def run_once(self) -> None:
        """One connection: publish until it fails (raises aiomqtt.MqttError) or is cancelled."""
        s = self.settings
        async with aiomqtt.Client(s.host, s.port, timeout=10) as client:
            self.connected.set()
            log.info("mqtt: connected to %s:%s", s.host, s.port)
            # Waiting for the next alert does not notice a dead broker; the (empty) message
            # stream does: it ends with MqttError on disconnection.
            tasks = {asyncio.create_task(self._publish(client)), asyncio.create_task(self._watch(client)),
                     asyncio.create_task(self._send_outbox(client))}
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await task

    async def _publish(self, client: aiomqtt.Client) -> None:
        prefix = self.settings.topic_prefix
        while True:
            if self._pending is None:
                self._pending = await self.queue.get()
            alert = self._pending  # kept until the broker has it: re-sent after a reconnection
            await client.publish(topic_for(prefix, alert), payload_for(alert), qos=1)
            self._pending = None
            self.published += 1

    async def _send_outbox(self, client: aiomqtt.Client) -> None:
        prefix = self.settings.topic_prefix
        while True:
            if self._pending_out is None:
                self._pending_out = await self.outbox.get()
            topic, payload, retain = self._pending_out  # kept until the broker has it
            await client.publish(f"{prefix}/{topic}", payload, qos=1, retain=retain)
            self._pending_out = None

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        async for _ in client.messages:
            pass
        raise aiomqtt.MqttError("disconnected")

    async def run(self) -> None:
        backoff = self.settings.reconnect_initial_s
        try:
            while True:
                try:
                    await self.run_once()
                except aiomqtt.MqttError as exc:
                    was_up = self.connected.is_set()
                    self.connected.clear()
                    log.warning("mqtt: %s to %s:%s (%s); retrying in %.1f s",
                                "lost connection" if was_up else "cannot connect",
                                self.settings.host, self.settings.port, exc, backoff)
                    if was_up:
                        backoff = self.settings.reconnect_initial_s
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.settings.reconnect_max_s)
        finally:
            self.hub.unsubscribe(self.queue)


async def mqtt_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the bridge runs while the app does (when ``[mqtt] enabled``)."""
    settings = app[SETTINGS].mqtt
    if not settings.enabled:
        yield
        return
    bridge = MqttBridge(app[ALERTS], settings)
    app[MQTT] = bridge
    task = asyncio.create_task(bridge.run(), name="mqtt")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
