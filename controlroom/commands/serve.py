"""controlroom serve: run the whole service in one asyncio process until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl

from aiohttp import web

from controlroom.access_log import RedactingAccessLogger
from controlroom.app import create_app
from controlroom.settings import Settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the service (HTTP API, web UI, recorders, retention)")
    p.add_argument("--host", help="listen address (default from settings)")
    p.add_argument("--port", type=int, help="listen port (default from settings)")
    p.set_defaults(func=cmd_serve)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not (settings.http.tls_cert and settings.http.tls_key):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.http.tls_cert, settings.http.tls_key)
    return ctx


def make_runner(app: web.Application, **kwargs: object) -> web.AppRunner:
    """The app's runner: signals are ours, and the access log carries no secrets."""
    return web.AppRunner(app, handle_signals=False, access_log_class=RedactingAccessLogger, **kwargs)


async def run_service(settings: Settings, app: web.Application, ready: asyncio.Event | None = None) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, then stop cleanly (every segment finalised)."""
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.http.host, settings.http.port, ssl_context=ssl_context(settings))
    await site.start()
    scheme = "https" if settings.http.tls_cert else "http"
    log.info("serving on %s://%s:%s", scheme, settings.http.host, settings.http.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("stopping: finalising segments")
        await runner.cleanup()


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    changes = {k: v for k, v in {"http.host": args.host, "http.port": args.port}.items() if v is not None}
    settings = settings.with_overrides(**changes) if changes else settings
    await run_service(settings, create_app(settings))
    return 0
