"""Camera clocks: measure each camera's offset, store it, flag and alert; set a camera's clock.

ONVIF's GetSystemDateAndTime gives whole seconds only, so one reading pins the offset down to
a one-second window, no better than the 1 s default threshold. :func:`measure_offset` takes
further readings timed so that each one halves the window (bisection on the moment the camera's
second ticks over), intersecting the windows (each widened by the round trip), until the window
is narrower than ``target_uncertainty_s`` or ``max_samples`` readings are spent; the middle of the
window is the offset. About five readings reach +-0.1 s on a LAN; the floor is half the round
trip.

The offset is camera clock minus our clock, in seconds (positive: the camera is ahead). A camera
is flagged when ``|offset| > threshold_s``; the recorder copies ``Camera.clock_flag`` and
``clock_offset_s`` onto the segments it records meanwhile. A ``clock_off`` alert is raised when
a camera becomes flagged (not again while it stays flagged).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cameras import CameraError
from cameras.onvif.session import OnvifSession, connect
from cameras.onvif.session import camera_utc_s as camera_utc_s  # re-exported: a reply's UTC time
from storage.alerts import AlertHub, raise_alert
from storage.db import now_us, transaction
from storage.keys import Keys
from storage.models import Camera

log = logging.getLogger(__name__)

MAX_SAMPLES = 8
TARGET_UNCERTAINTY_S = 0.1  # seconds, half-width: a tenth of the default 1 s threshold


@dataclass(frozen=True)
class ClockReading:
    offset_s: float  # camera minus ours, seconds
    uncertainty_s: float  # half-width of the window the true offset lies in
    samples: int


async def measure_offset(session: OnvifSession, *, max_samples: int = MAX_SAMPLES,
                         target_uncertainty_s: float = TARGET_UNCERTAINTY_S) -> ClockReading:
    low, high = float("-inf"), float("inf")
    rtt_s = 0.0
    last_width = float("inf")
    samples = 0
    for samples in range(1, max_samples + 1):  # noqa: B007 - the count is reported
        if samples > 1:
            # Bisect: time the next reading so that, if the offset were the middle of the window,
            # the camera's second would tick over just as it reads its clock. Whole second or
            # not tells which half the offset is in.
            mid = (low + high) / 2
            now = time.time()
            tick = math.ceil(now + rtt_s / 2 + mid + 0.002)
            await asyncio.sleep(max(0.0, tick - mid - rtt_s / 2 - now))
        sent, received, cam_s = await session.read_clock()
        rtt_s = received - sent
        # The camera read its clock somewhere in [sent, received], and its true time then was in
        # [cam_s, cam_s + 1): so offset is in [cam_s - received, cam_s + 1 - sent).
        low, high = max(low, cam_s - received), min(high, cam_s + 1 - sent)
        if high < low:  # the camera's clock jumped (someone set it): start again
            low, high = cam_s - received, cam_s + 1 - sent
        width = high - low
        if width / 2 <= target_uncertainty_s:
            break
        # The round trip is the floor: once a reading no longer narrows the window, stop.
        if samples >= 3 and width > 0.8 * last_width:
            break
        last_width = width
    return ClockReading((low + high) / 2, (high - low) / 2, samples)


async def set_camera_clock(session: OnvifSession) -> None:
    """Set the camera's clock to ours (UTC, manual). Sent on a whole second, as cameras keep
    whole seconds: the camera starts that second when the request arrives."""
    now = time.time()
    await asyncio.sleep(1 - (now - int(now)))
    when = dt.datetime.fromtimestamp(round(time.time()), dt.UTC)
    await session.call("devicemgmt", "SetSystemDateAndTime", {
        "DateTimeType": "Manual",
        "DaylightSavings": False,
        "UTCDateTime": {
            "Date": {"Year": when.year, "Month": when.month, "Day": when.day},
            "Time": {"Hour": when.hour, "Minute": when.minute, "Second": when.second},
        },
    })


async def record_offset(session: AsyncSession, hub: AlertHub | None, cam: Camera, reading: ClockReading,
                        threshold_s: float) -> bool:
    """Store a reading on the camera; raise ``clock_off`` when it becomes flagged. Returns the flag."""
    flagged = abs(reading.offset_s) > threshold_s
    was = cam.clock_flag
    cam.clock_offset_s = round(reading.offset_s, 3)
    cam.clock_checked_us = now_us()
    cam.clock_flag = flagged
    if flagged and not was:
        log.warning("camera %s: clock is off by %+.1f s (threshold %.1f s)", cam.id, reading.offset_s, threshold_s)
        await raise_alert(
            session, hub, "clock_off",
            f"Camera {cam.name}: clock is off by {reading.offset_s:+.1f} s; footage is flagged until it is corrected",
            cam.id, offset_s=round(reading.offset_s, 3), threshold_s=threshold_s,
        )
    elif was and not flagged:
        log.info("camera %s: clock back within %.1f s (%+.2f s)", cam.id, threshold_s, reading.offset_s)
    await session.flush()
    return flagged


class ClockWatcher:
    """Checks every enabled ONVIF camera's clock; ``run_once()`` is one pass, ``run()`` loops."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], keys: Keys, hub: AlertHub | None, *,
                 threshold_s: float, interval_s: float, concurrency: int = 8, timeout_s: float = 10.0) -> None:
        self.sessions, self.keys, self.hub = sessions, keys, hub
        self.threshold_s, self.interval_s = threshold_s, interval_s
        self.timeout_s = timeout_s
        self._limit = asyncio.Semaphore(concurrency)

    async def check(self, camera_id: int) -> ClockReading | None:
        """Measure and store one camera's offset; ``None`` when it could not be reached."""
        async with self.sessions() as session:
            cam = await session.get(Camera, camera_id)
            if cam is None or not cam.onvif_xaddr:
                return None
            xaddr, user, password = cam.onvif_xaddr, cam.username, self.keys.decrypt(cam.password_enc)
        async with self._limit:
            try:
                async with connect(xaddr, user, password, timeout_s=self.timeout_s) as onvif:
                    reading = await measure_offset(onvif)
            except CameraError as exc:
                log.warning("camera %s: clock check failed: %s", camera_id, exc)
                return None
        async with transaction(self.sessions) as session:
            cam = await session.get(Camera, camera_id)
            if cam is not None:
                await record_offset(session, self.hub, cam, reading, self.threshold_s)
        return reading

    async def run_once(self) -> dict[int, ClockReading | None]:
        async with self.sessions() as session:
            ids = list((await session.execute(
                select(Camera.id).where(Camera.enabled.is_(True), Camera.onvif_xaddr != "").order_by(Camera.id)
            )).scalars())
        results = await asyncio.gather(*(self.check(i) for i in ids))
        return dict(zip(ids, results, strict=True))

