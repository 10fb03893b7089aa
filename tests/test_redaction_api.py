"""SAR redaction over HTTP and from the command line: rights, marks, bad input as clear 4xx,
one job at a time, a job without footage failing visibly, the CLI's commands. The job's real
work (detection, the package) is tested in test_redaction_job.py and test_ui_redaction.py."""

from __future__ import annotations

import asyncio
import io
import json
from contextlib import redirect_stdout

import pytest
from evidence_media import add_cameras
from test_evidence_api import Users

from controlroom.app import create_app
from controlroom.cli import main as cli_main
from controlroom.context import JOBS, SESSIONS
from controlroom.timefmt import us_to_iso
from storage.db import now_us

HOUR = 3_600_000_000


@pytest.fixture
async def client(db_url, aiohttp_client, settings):
    return await aiohttp_client(create_app(settings.with_overrides(database_url=db_url), record=False))


async def test_redaction_routes(client, login):
    users = Users(client, login)
    (cam,) = await add_cameras(client.server.app[SESSIONS], ["Market Cam"])
    sup = await users.as_("supervisor", "dpo1")
    resp = await client.post("/api/v1/sar/requests", headers=sup, json={
        "requester_name": "Jane Doe", "received": us_to_iso(now_us()), "identity_method": "passport",
        "description": "woman, green coat", "places_times": "Market Square"})
    s = await resp.json()
    base = f"/api/v1/sar/requests/{s['id']}"
    assert (await client.post(f"{base}/redact", headers=sup)).status == 400  # no windows yet
    start = now_us() - 3 * HOUR
    resp = await client.post(f"{base}/windows", headers=sup, json={
        "camera": "Market Cam", "from": us_to_iso(start), "to": us_to_iso(start + 60_000_000)})
    window = (await resp.json())["windows"][0]["id"]

    mark = {"window": window, "kind": "requester", "frame": 10, "x": 10, "y": 20, "w": 30, "h": 40}
    for bad, why in (({**mark, "kind": "blur"}, "kind"), ({**mark, "w": 2}, "w"), ({**mark, "window": 999}, "window"),
                     ({**mark, "frame": -1}, "frame"), ({**mark, "until_frame": 3}, "until_frame")):
        resp = await client.post(f"{base}/marks", headers=sup, json=bad)
        assert resp.status in (400, 422) and why in (await resp.text()), (bad, await resp.text())
    resp = await client.post(f"{base}/marks", headers=sup, json=mark)
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    assert made["kind"] == "requester" and made["box"] == [10, 20, 30, 40] and made["by"] == "dpo1"
    boxes = await (await client.get(f"{base}/windows/{window}/boxes?frame=10", headers=sup)).json()
    assert boxes["analysed"] is False and [m["id"] for m in boxes["marks"]] == [made["id"]]
    resp = await client.get(f"{base}/windows/{window}/frame.jpg?frame=0", headers=sup)
    assert resp.status == 400 and "no recorded footage" in (await resp.json())["error"]
    assert (await client.get(f"{base}/windows/abc/boxes", headers=sup)).status == 404

    await client.server.app[JOBS].stop()  # the test runs the jobs itself, below
    resp = await client.post(f"{base}/redact", headers=sup)
    assert resp.status == 201
    job = await resp.json()
    assert job["state"] == "queued"
    resp = await client.post(f"{base}/redact", headers=sup)
    assert resp.status == 400 and "already queued" in (await resp.json())["error"]
    resp = await client.get(f"{base}/redaction/{job['id']}/package", headers=sup)
    assert resp.status == 400 and "no package" in (await resp.json())["error"]
    resp = await client.post(f"{base}/redaction/{job['id']}/cancel", headers=sup)
    assert (await resp.json())["state"] == "cancelled"
    resp = await client.post(f"{base}/redaction/{job['id']}/cancel", headers=sup)
    assert resp.status == 400
    # Queued again and run: nothing was recorded, so it fails, with the reason, not silently.
    job = await (await client.post(f"{base}/redact", headers=sup)).json()
    runner = client.server.app[JOBS]
    for _ in range(100):
        status = await (await client.get(f"{base}/redaction", headers=sup)).json()
        if status["jobs"][0]["state"] not in ("queued", "running"):
            break
        await runner.run_once()
        await asyncio.sleep(0.1)
    latest = status["jobs"][0]
    assert latest["id"] == job["id"] and latest["state"] == "failed" and "no recorded footage" in latest["error"]
    assert [j["state"] for j in status["jobs"]] == ["failed", "cancelled"]
    resp = await client.post(f"{base}/marks/remove", headers=sup, json={"mark": made["id"]})
    assert resp.status == 200
    assert (await client.post(f"{base}/marks/remove", headers=sup, json={"mark": made["id"]})).status == 404
    op = await users.as_("operator", "op1")
    for method, path in (("GET", "/redaction"), ("POST", "/redact"), ("POST", "/marks"),
                         ("GET", f"/windows/{window}/frame.jpg"), ("GET", f"/windows/{window}/boxes")):
        assert (await client.request(method, base + path, headers=op, json={} if method == "POST" else None)).status == 403


def _cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli_main(argv)
    return code, out.getvalue()


async def test_redaction_from_the_command_line(settings):
    d = ["--data-dir", str(settings.data_dir)]
    code, out = await asyncio.to_thread(_cli, [*d, "cameras", "add", "Cam CLI", "--main-url", "rtsp://127.0.0.1:1/main"])
    assert code == 0, out
    code, out = await asyncio.to_thread(_cli, [*d, "sar", "add", "John Roe", "--received", "2026-12-01",
                                               "--identity", "driving licence", "--description", "blue anorak",
                                               "--places-times", "High Street"])
    reference = out.split(":")[0]
    start = now_us() - 3 * HOUR
    code, out = await asyncio.to_thread(_cli, [*d, "sar", "add-window", reference, "Cam CLI", "--from",
                                               us_to_iso(start), "--to", us_to_iso(start + 60_000_000)])
    window = int(out.split("window ")[1].split()[0])
    code, out = await asyncio.to_thread(_cli, [*d, "sar", "mark", reference, str(window), "add", "--frame", "5",
                                               "--box", "1,2,30,40", "--until", "50", "--note", "a sign"])
    assert code == 0 and "mark 1 (add)" in out, out
    code, out = await asyncio.to_thread(_cli, [*d, "sar", "mark", reference, str(window), "add", "--frame", "5",
                                               "--box", "1,2,30"])
    assert code == 1
    code, out = await asyncio.to_thread(_cli, [*d, "sar", "redact", reference])
    assert code == 1 and "failed" in out and "no recorded footage" in out, out
    code, out = await asyncio.to_thread(_cli, [*d, "sar", "redaction", reference])
    data = json.loads(out)
    assert data["jobs"][0]["state"] == "failed" and data["marks"][0]["until_frame"] == 50
    code, out = await asyncio.to_thread(_cli, [*d, "sar", "unmark", reference, "1"])
    assert code == 0 and "removed" in out
