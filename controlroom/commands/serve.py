"""controlroom serve: run the whole service in one asyncio process until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import ssl
import threading
import time
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from cameras import children
from controlroom.access_log import RedactingAccessLogger
from controlroom.app import create_app
from controlroom.settings import Settings
from storage.nodes import parse_roles

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the service (HTTP API, web UI, recorders, retention)")
    p.add_argument("--host", help="listen address (default from settings)")
    p.add_argument("--port", type=int, help="listen port (default from settings)")
    p.add_argument("--roles", help="what this node does, comma-separated: recorder,anpr,api,jobs "
                   "(default: cluster.roles, every role; docs/design/cluster.md)")
    p.set_defaults(func=cmd_serve)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not (settings.http.tls_cert and settings.http.tls_key):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.http.tls_cert, settings.http.tls_key)
    return ctx


class Stop:
    """The stop of the service: the first SIGTERM/SIGINT begins it, a second cuts it short.

    The stop is bounded whatever is open: a watchdog thread (it runs even if the event loop or
    the interpreter's exit is stuck, e.g. joining a blocked worker thread) ends every child
    process and exits the process at the deadline, after printing every thread's stack so the
    cause can be found. The deadline is ``stop_timeout_s`` after the first signal, and
    ``force_stop_s`` after a second one.
    """

    def __init__(self, stop_timeout_s: float, force_stop_s: float) -> None:
        self.stop_timeout_s = stop_timeout_s
        self.force_stop_s = force_stop_s
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()
        self.signal_name = ""
        self._deadline_s: float | None = None  # time.monotonic() at which the watchdog fires
        self._wake = threading.Event()

    def on_signal(self, sig: signal.Signals) -> None:
        if not self.requested.is_set():
            self.signal_name = sig.name
            self.requested.set()
            self._arm(self.stop_timeout_s)
        elif not self.forced.is_set():
            log.warning("%s again: stopping now; %g s to finalise segments, then every child is killed",
                        sig.name, self.force_stop_s)
            self.forced.set()
            self._arm(self.force_stop_s)

    def _arm(self, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        first = self._deadline_s is None
        self._deadline_s = deadline if first else min(deadline, self._deadline_s)
        if first:
            threading.Thread(target=self._watch, name="stop-watchdog", daemon=True).start()
        else:
            self._wake.set()

    def _watch(self) -> None:  # the watchdog thread
        while True:
            assert self._deadline_s is not None
            left = self._deadline_s - time.monotonic()
            if left <= 0:
                break
            self._wake.wait(left)
            self._wake.clear()
        log.error("the service did not stop in time; every thread's stack follows, then every child "
                  "process is ended and the service exits")
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(all_threads=True)
        killed = children.end_descendants(grace_s=1.0)
        if killed:
            log.error("killed child processes that did not end on SIGTERM: %s", killed)
        logging.shutdown()
        os._exit(1)


class _Connection(RequestHandler):
    """aiohttp's connection handler, answering what never reaches the app (a request it cannot
    parse, a failure outside the middlewares) in JSON like every other error. aiohttp's own
    answer quotes the raw request bytes, and its log line carries them in the exception, so a
    malformed header beside ``Authorization: Bearer ...`` put the token in the log and in a
    text/plain body: here only the parser's first line is kept."""

    __slots__ = ()

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # aiohttp's rule: the answer has begun, the connection is broken
            raise ConnectionError("response already sent, cannot send the error")
        if status < 500:
            reason = (message or HTTPStatus(status).phrase).strip().splitlines()[0].rstrip(":")
            self.logger.warning("malformed HTTP request from %s: %s (%s)", request.remote, reason,
                                type(exc).__name__ if exc else status)
            error = f"malformed HTTP request: {reason}"
        else:
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
            error = HTTPStatus(status).phrase.lower()
        response = web.json_response({"error": error}, status=status)
        response.force_close()
        return response


class _Server(Server):
    __slots__ = ()

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server, making _Connection handlers
        return server


def make_runner(app: web.Application, **kwargs: object) -> web.AppRunner:
    """The app's runner: signals are ours, the access log carries no secrets, and requests that
    never reach the app are answered in JSON without echoing them (``_Connection``)."""
    return _Runner(app, handle_signals=False, access_log_class=RedactingAccessLogger, **kwargs)


async def run_service(settings: Settings, app: web.Application, ready: asyncio.Event | None = None) -> int:
    """Serve ``app`` until SIGTERM/SIGINT, then stop cleanly (every segment finalised) within
    ``http.stop_timeout_s``; a second signal cuts the stop to ``http.force_stop_s``.
    Returns the exit status: 0 after a clean stop, 1 after a forced one."""
    http = settings.http
    # Requests still running when the stop begins get handler_grace_s, then are cancelled
    # (aiohttp's default is 60 s to finish, then 60 s more after cancelling).
    runner = make_runner(app, shutdown_timeout=http.handler_grace_s)
    await runner.setup()
    if "api" in parse_roles(settings.cluster.roles):
        site = web.TCPSite(runner, http.host, http.port, ssl_context=ssl_context(settings))
        await site.start()
        scheme = "https" if http.tls_cert else "http"
        log.info("serving on %s://%s:%s", scheme, http.host, http.port)
    else:
        log.info("no api role: not listening for HTTP (roles %s)", settings.cluster.roles)
    stop = Stop(http.stop_timeout_s, http.force_stop_s)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.on_signal, sig)
    if ready is not None:
        ready.set()
    try:
        await stop.requested.wait()
    finally:
        log.info("stopping (%s): finalising segments; at most %g s", stop.signal_name or "cancelled",
                 http.stop_timeout_s)
        cleanup = asyncio.create_task(runner.cleanup(), name="service stop")
        forced = asyncio.create_task(stop.forced.wait())
        started = time.monotonic()
        await asyncio.wait([cleanup, forced], return_when=asyncio.FIRST_COMPLETED)
        if not cleanup.done():
            # The second signal: the recorders were told to finalise first (on_shutdown); give
            # them most of force_stop_s, then cancel what is left of the stop.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(cleanup), max(0.0, http.force_stop_s - 1.5))
            if not cleanup.done():
                log.warning("stop cut short: %s", "; ".join(sorted(
                    t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task())) or "-")
                cleanup.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cleanup
            status = 1  # anything still running is ended by the watchdog at the deadline
        else:
            forced.cancel()
            cleanup.result()
            status = 0
        log.info("stopped in %.1f s", time.monotonic() - started)
    return status


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    changes = {k: v for k, v in {"http.host": args.host, "http.port": args.port,
                                 "cluster.roles": getattr(args, "roles", None)}.items() if v is not None}
    if "cluster.roles" in changes:
        parse_roles(changes["cluster.roles"])  # an unknown role stops start-up, naming it
    settings = settings.with_overrides(**changes) if changes else settings
    return await run_service(settings, create_app(settings))
