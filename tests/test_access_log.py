"""The access log carries no secrets (issue 11, found 9): the one-time link's token in the path,
and secret-named query parameters, are redacted in every field of the line."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
from aiohttp import web

from controlroom.access_log import redact
from controlroom.app import create_app
from controlroom.commands.serve import make_runner

LINK_TOKEN = "Zq3sEcReT-link_token0123456789abcdefghijklm"


async def test_access_log_redacts_link_tokens_and_secret_query_values(settings, caplog):
    app = create_app(settings.with_overrides(**{"mqtt.enabled": False}), record=False)
    runner = make_runner(app)
    await runner.setup()
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/v1/evidence/download/{LINK_TOKEN}?part=1") as r:
                await r.read()
            async with http.get(f"{base}/healthz?access_token=QTOKEN1234&Password=hunter2hunter2&x=keep",
                                headers={"Referer": f"{base}/api/v1/evidence/download/{LINK_TOKEN}?secret=S3CR3T"}) as r:
                assert r.status == 200
    finally:
        await runner.cleanup()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 2, lines
    text = "\n".join(lines)
    for secret in (LINK_TOKEN, "QTOKEN1234", "hunter2hunter2", "S3CR3T"):
        assert secret not in text
    assert "GET /api/v1/evidence/download/[redacted]?part=1 HTTP/1.1" in lines[0]
    assert "access_token=[redacted]&Password=[redacted]&x=keep" in lines[1]
    assert "?secret=[redacted]" in lines[1]  # the Referer, whatever route it names


def test_redact_leaves_plain_lines_alone():
    line = 'GET /api/v1/cameras/3/recordings?from=2026-01-01T00:00:00Z&limit=10 HTTP/1.1'
    assert redact(line) == line
    assert redact("/x?monkey=1&sig=abc&keep=2") == "/x?monkey=[redacted]&sig=[redacted]&keep=2"


async def test_a_request_the_parser_refuses_is_answered_in_json_without_echoing_it(settings, caplog):
    """Found by the API fuzz: an empty Content-Length header made aiohttp answer 400 in
    text/plain quoting the raw header lines, the bearer token among them, and log them too."""
    app = create_app(settings.with_overrides(**{"mqtt.enabled": False}), record=False)
    runner = make_runner(app)
    await runner.setup()
    caplog.set_level(logging.DEBUG)
    token = "crt_SeCrEtBeArErToKeN0123456789abcdefghijk"
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(b"GET /api/v1/cameras HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n"
                     + f"Authorization: Bearer {token}\r\n\r\n".encode())
        await writer.drain()
        answer = (await asyncio.wait_for(reader.read(), 10)).decode()
        writer.close()
        # The access logger's first line was that routeless request: later lines are still redacted.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/evidence/download/{LINK_TOKEN}") as r:
                await r.read()
    finally:
        await runner.cleanup()
    head, _, body = answer.partition("\r\n\r\n")
    assert head.split()[1] == "400", answer
    assert "Content-Type: application/json" in head
    assert json.loads(body) == {"error": "malformed HTTP request: Empty Content-Length"}
    assert token not in answer
    logged = "\n".join(r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
                       for r in caplog.records)
    assert "malformed HTTP request from 127.0.0.1: Empty Content-Length" in logged
    assert token not in logged
    assert LINK_TOKEN not in logged and "/api/v1/evidence/download/[redacted]" in logged
    assert "Error in logging" not in logged  # the access logger copes with a request that has no route
