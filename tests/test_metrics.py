"""/metrics and /healthz without recording: who may scrape, what is (not) in it, one registry per app."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from controlroom.app import create_app
from controlroom.context import SESSIONS
from storage import accounts, inventory
from storage.db import now_us, transaction


async def test_metrics_need_inventory_read_and_hold_no_secret(aiohttp_client, settings, login) -> None:
    settings = settings.with_overrides(**{"security.auth_cache_s": 0})
    client = await aiohttp_client(create_app(settings, record=False))
    other = await aiohttp_client(create_app(settings.with_overrides(**{"data_dir": str(settings.data_dir / "b")}),
                                            record=False))  # a second app in the same process
    app = client.server.app
    from controlroom.context import KEYS
    async with transaction(app[SESSIONS]) as s:
        await inventory.add_camera(s, inventory.CameraSpec(name="Gate", main_url="rtsp://127.0.0.1:9/s",
                                                           username="viewer", password="camera-secret-77"), app[KEYS])
        user = await accounts.create_user(s, "scraper", "operator", "x")
        token, _ = await accounts.create_token(s, "prometheus", user, ["inventory_read"], now_us() + 3_600_000_000, "test")
        narrow, _ = await accounts.create_token(s, "nosy", user, ["playback"], now_us() + 3_600_000_000, "test")

    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers={"Authorization": f"Bearer {narrow}"})).status == 403
    headers = await login(client, "police")
    assert (await client.get("/metrics", headers=headers)).status == 403

    r = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=")
    text = await r.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["controlroom_database_up"].samples[0].value == 1
    assert families["controlroom_audit_appends"].samples[0].value >= 1  # the token's creation... or the login
    assert "controlroom_export_jobs" in families and "controlroom_anpr_reads" in families
    assert "camera-secret-77" not in text and "viewer" not in text and "rtsp" not in text and "scraper" not in text

    r2 = await other.get("/metrics")
    assert r2.status == 401  # its own app, its own registry: no "Duplicated timeseries" error at creation


async def test_healthz_says_ok_without_recorders(aiohttp_client, settings) -> None:
    client = await aiohttp_client(create_app(settings, record=False))
    r = await client.get("/healthz")
    assert r.status == 200 and (await r.json())["status"] == "ok"
