"""The whole service with simulated cameras and a real Chromium, for the UI tests and bench/live.

Used by tests/test_ui*.py and bench/live.py: one simulator (GStreamer RTSP server), the real
``create_app()`` on a free loopback port with a temporary data directory (SQLite), the cameras
adopted into the inventory, an operator account, and Playwright driving Debian's chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from controlroom.app import create_app
from controlroom.context import KEYS, SESSIONS
from controlroom.settings import Settings, load_settings
from simulator import Simulation
from storage import accounts, audit, inventory
from storage.db import transaction

log = logging.getLogger(__name__)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--autoplay-policy=no-user-gesture-required"]
OPERATOR = "operator1"
PASSWORD = "correct horse battery staple"


@dataclass
class Stack:
    sim: Simulation
    app: web.Application
    settings: Settings
    base_url: str
    cameras: dict[str, int]  # simulated camera name -> inventory id

    def camera_id(self, name: str) -> int:
        return self.cameras[name]


@contextlib.asynccontextmanager
async def running_stack(work: Path, *, cameras: int = 4, live: int = 1, ptz: int = 1, record: bool = True,
                        onvif: bool = False, codecs: dict[str, str] | None = None,
                        users: dict[str, str] | None = None, **overrides: Any) -> AsyncIterator[Stack]:
    """The service and its simulator; ``users`` (username -> role) are made beside the operator,
    each with ``PASSWORD``."""
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    settings = load_settings(data, environ={}).with_overrides(
        **{"http.port": 0, "mqtt.enabled": False, **overrides})
    async with Simulation(work / "sim", cameras=cameras, live=live, ptz=ptz, onvif=onvif, codecs=codecs) as sim:
        app = create_app(settings, record=record)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=3.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            ids: dict[str, int] = {}
            hashed = await asyncio.to_thread(accounts.hash_password, PASSWORD)
            async with transaction(app[SESSIONS]) as session:
                for spec_data in sim.inventory():
                    spec = inventory.parse_spec(inventory.CameraSpec, spec_data, "simulator")
                    cam = await inventory.add_camera(session, spec, app[KEYS])
                    ids[cam.name] = cam.id
                for name, role in {OPERATOR: "operator", **(users or {})}.items():
                    await accounts.create_user(session, name, role, hashed)
                    await audit.append(session, "test", "user.add", f"user:{name}", role=role)
            if record:
                from controlroom.context import SUPERVISOR

                await app[SUPERVISOR].reload()
            yield Stack(sim, app, settings, f"http://127.0.0.1:{port}", ids)
        finally:
            log.info("ui stack: stopping the service")
            await runner.cleanup()
            log.info("ui stack: stopping the simulator")


@contextlib.asynccontextmanager
async def browser_page(base_url: str, *, width: int = 1920, height: int = 1080):
    """A page of a fresh browser (log in with ``log_in``)."""
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": width, "height": height})
        yield await context.new_page()


async def _submit_login(page, base_url: str, username: str, password: str, where: str = "") -> None:
    """Fill in and send the login form; ``where`` (a URL fragment) is where it leads."""
    await page.goto(f"{base_url}/login" + (f"?next={quote('/' + where)}" if where else ""))
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-button")


async def log_in(page, base_url: str, username: str = OPERATOR, password: str = PASSWORD) -> None:
    """Log in as an operator and wait for the grid's tiles."""
    await _submit_login(page, base_url, username, password)
    await page.wait_for_url(f"{base_url}/")
    await page.wait_for_selector("#grid .tile")


async def playing_times(page, selector: str) -> list[float]:
    return await page.eval_on_selector_all(selector, "els => els.map(v => v.currentTime)")


@contextlib.asynccontextmanager
async def chromium():
    """Debian's chromium through Playwright (no browser download), for several contexts."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            log.info("ui stack: closing the browser")
            await asyncio.wait_for(browser.close(), 20)
            log.info("ui stack: browser closed")


async def signed_in(browser, base_url: str, username: str, where: str, password: str = PASSWORD):
    """A page in a browser context of its own (own cookies), signed in and sent to ``where``
    (a URL fragment such as ``#evidence``); ``page.errors`` collects the page's script errors."""
    context = await browser.new_context(viewport={"width": 1920, "height": 1080}, locale="en-GB",
                                        timezone_id="Europe/London", accept_downloads=True)
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await _submit_login(page, base_url, username, password, where)
    return page


async def wait_for(predicate, timeout_s: float, interval_s: float = 0.25):
    """Poll the async ``predicate`` until it is truthy or ``timeout_s`` passes; its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval_s)
