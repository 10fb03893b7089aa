"""ONVIF against the simulated cameras: real SOAP over HTTP on loopback, real onvif-zeep-async
with the WSDLs it ships, real databases (SQLite and PostgreSQL where storage is involved)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest
from aiohttp import web
from tcp_proxy import free_port

from cameras import CameraAuthError, CameraUnavailable
from cameras.onvif import NotOnvifDevice, ServiceMissing, adopt, clock, discovery, ptz
from cameras.onvif.events import EventSubscriptions
from cameras.onvif.session import connect
from simulator.onvif import OnvifSimulator, SimOnvifCamera
from storage import Invalid, audit
from storage.alerts import Alert, AlertHub
from storage.db import transaction
from storage.keys import load_or_create_keys
from storage.models import Camera
from storage.onvif import list_events

PASSWORD = "s3cret-pw"


def make_cams(n: int = 2, **extra) -> list[SimOnvifCamera]:
    cams = []
    for i in range(n):
        cams.append(SimOnvifCamera(
            name=f"Sim Cam {i + 1}", main_url=f"rtsp://127.0.0.1:8554/cam{i + 1}/main",
            sub_url=f"rtsp://127.0.0.1:8554/cam{i + 1}/sub", ptz=(i == 0), password=PASSWORD, **extra,
        ))
    return cams


@pytest.fixture
async def sim():
    async with OnvifSimulator(cameras=make_cams(2)) as s:
        yield s


@pytest.fixture
def keys(tmp_path: Path):
    return load_or_create_keys(tmp_path / "secret.key")


# -- the simulator speaks ONVIF that the real client library parses --------------------------

async def test_every_operation_parses_with_onvif_zeep_async(sim: OnvifSimulator):
    cam = sim.cameras[0]
    async with connect(cam.xaddr, "admin", PASSWORD) as onvif:
        info = await onvif.call("devicemgmt", "GetDeviceInformation")
        assert info.Manufacturer == "Controlroom Simulator" and info.HardwareId == "SimCam-1080"
        caps = await onvif.device.get_capabilities()
        assert caps["Media"]["XAddr"].endswith("/onvif/media_service")
        assert caps["Events"]["WSPullPointSupport"] is True
        scopes = [s.ScopeItem for s in await onvif.call("devicemgmt", "GetScopes")]
        assert "onvif://www.onvif.org/name/Sim%20Cam%201" in scopes
        when = await onvif.call("devicemgmt", "GetSystemDateAndTime")
        assert abs(clock.camera_utc_s(when) - time.time()) < 3
        profiles = await onvif.call("media", "GetProfiles")
        sizes = {p.token: (p.VideoEncoderConfiguration.Resolution.Width, p.VideoEncoderConfiguration.Resolution.Height)
                 for p in profiles}
        assert sizes == {"Profile_main": (1920, 1080), "Profile_sub": (640, 360)}
        snap = await onvif.device.get_snapshot("Profile_main")
        assert snap[:3] == b"\xff\xd8\xff" and len(snap) > 5000  # a real JPEG
        token = await ptz.profile_token(onvif)
        await ptz.absolute(onvif, token, pan=0.25, tilt=-0.5, zoom=0.1)
        st = await ptz.status(onvif, token)
        assert (round(st.pan, 3), round(st.tilt, 3), round(st.zoom, 3)) == (0.25, -0.5, 0.1)


async def test_the_remaining_operations_parse_too(sim: OnvifSimulator):
    """Each simulated operation once through the real client (the rest are covered above)."""
    cam = sim.cameras[0]
    async with connect(cam.xaddr, "admin", PASSWORD) as onvif:
        for service in ("devicemgmt", "media", "ptz", "events"):
            await onvif.call(service, "GetServiceCapabilities")
        services = await onvif.call("devicemgmt", "GetServices", {"IncludeCapability": False})
        assert {s.Namespace for s in services} >= {"http://www.onvif.org/ver20/ptz/wsdl"}
        stream = await onvif.call("media", "GetStreamUri", {
            "ProfileToken": "Profile_sub", "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}})
        assert stream.Uri == cam.sub_url
        snap = await onvif.call("media", "GetSnapshotUri", {"ProfileToken": "Profile_sub"})
        assert snap.Uri.endswith("/snapshot/Profile_sub.jpg")
        token = "Profile_main"
        await onvif.call("ptz", "RelativeMove", {"ProfileToken": token, "Translation": {
            "PanTilt": {"x": 0.1, "y": 0.1}, "Zoom": {"x": 0.1}}})
        await onvif.call("ptz", "SetHomePosition", {"ProfileToken": token})
        await onvif.call("ptz", "ContinuousMove", {"ProfileToken": token, "Velocity": {"PanTilt": {"x": -1, "y": 0}}})
        await onvif.call("ptz", "Stop", {"ProfileToken": token, "PanTilt": True, "Zoom": True})
        await onvif.call("ptz", "GotoHomePosition", {"ProfileToken": token})
        st = await ptz.status(onvif, token)
        assert (round(st.pan, 3), round(st.tilt, 3), round(st.zoom, 3)) == (0.1, 0.1, 0.1)
        preset = await onvif.call("ptz", "SetPreset", {"ProfileToken": token, "PresetName": "tmp"})
        await onvif.call("ptz", "RemovePreset", {"ProfileToken": token, "PresetToken": preset})
        assert await ptz.presets(onvif, token) == []
        props = await onvif.call("events", "GetEventProperties")
        assert props.FixedTopicSet is True
        sub = await onvif.call("events", "CreatePullPointSubscription", {"InitialTerminationTime": "PT10S"})
        onvif.device.xaddrs["http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"] = (
            sub.SubscriptionReference.Address._value_1)
        pull = await onvif.device.create_pullpoint_service()
        await onvif.call_service(pull, "SetSynchronizationPoint")
        manager = await onvif.device.create_subscription_service("PullPointSubscription")
        await onvif.call_service(manager, "Unsubscribe")
        from cameras.onvif import OnvifFault

        with pytest.raises(OnvifFault, match="does not exist or has expired"):
            await onvif.call_service(pull, "PullMessages", {"Timeout": "PT1S", "MessageLimit": 1})


async def test_wrong_password_is_an_auth_error(sim: OnvifSimulator):
    with pytest.raises(CameraAuthError, match="refused these credentials"):
        await adopt.inspect(sim.cameras[0].xaddr, "admin", "not-the-password")


async def test_unreachable_address_means_retry_later():
    port = free_port()
    with pytest.raises(CameraUnavailable, match="retry later"):
        await adopt.inspect(f"http://127.0.0.1:{port}/onvif/device_service", "admin", "x", timeout_s=3)


async def test_a_silent_camera_times_out_as_unavailable():
    with socket.socket() as server:  # accepts connections, never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with pytest.raises(CameraUnavailable, match="did not answer in time"):
            await adopt.inspect(f"http://127.0.0.1:{port}/onvif/device_service", "admin", "x", timeout_s=1)


async def test_plain_http_server_is_not_an_onvif_device():
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>router admin</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(NotOnvifDevice, match="not an ONVIF device"):
            await adopt.inspect(f"http://127.0.0.1:{port}/onvif/device_service", "admin", "x")
    finally:
        await runner.cleanup()


async def test_missing_service_is_told_apart(sim: OnvifSimulator):
    fixed = sim.cameras[1]  # no PTZ service
    async with connect(fixed.xaddr, "admin", PASSWORD) as onvif:
        with pytest.raises(ServiceMissing, match="ptz"):
            await ptz.status(onvif, "Profile_main")


async def test_soap_fault_keeps_the_cameras_text(sim: OnvifSimulator):
    from cameras.onvif import OnvifFault

    async with connect(sim.cameras[0].xaddr, "admin", PASSWORD) as onvif:
        with pytest.raises(OnvifFault, match="no such preset") as caught:
            await onvif.call("ptz", "GotoPreset", {"ProfileToken": "Profile_main", "PresetToken": "nope"})
        assert "NoToken" in caught.value.subcodes


async def test_camera_90_s_off_still_authenticates_and_is_flagged(sessions, keys):
    cam = make_cams(1, clock_offset_s=90.0)[0]
    hub = AlertHub()
    queue = hub.subscribe()
    async with OnvifSimulator(cameras=[cam]):
        facts = await adopt.inspect(cam.xaddr, "admin", PASSWORD)
        assert facts.clock is not None and abs(facts.clock.offset_s - 90.0) < 0.3, facts.clock
        async with transaction(sessions) as session:
            row = await adopt.save(session, keys, facts, "admin", PASSWORD, threshold_s=1.0, hub=hub)
        assert row.clock_flag and abs(row.clock_offset_s - 90) < 0.3
        alert = queue.get_nowait()
        assert alert["kind"] == "clock_off" and alert["camera_id"] == row.id

        # Without the timestamp adjustment the same camera refuses us: the skew is real.
        from onvif import ONVIFCamera
        from zeep.exceptions import Fault

        plain = ONVIFCamera("127.0.0.1", cam.port, "admin", PASSWORD, no_cache=True, adjust_time=False)
        with pytest.raises(Fault):
            await plain.update_xaddrs()
        await plain.close()

        # An administrator sets the camera's clock; the next check clears the flag.
        watcher = clock.ClockWatcher(sessions, keys, hub, threshold_s=1.0, interval_s=600)
        async with connect(cam.xaddr, "admin", PASSWORD) as onvif:
            await clock.set_camera_clock(onvif)
        readings = await watcher.run_once()
        assert abs(readings[row.id].offset_s) < 0.5
        async with sessions() as session:
            again = await session.get(Camera, row.id)
            assert not again.clock_flag and abs(again.clock_offset_s) < 0.5
            alerts = (await session.execute(Alert.__table__.select())).all()
            assert len(alerts) == 1  # raised once, when it became flagged


async def test_clock_reading_is_better_than_a_whole_second(sim: OnvifSimulator):
    cam = sim.cameras[1]
    cam.clock_offset_s = 2.4
    async with connect(cam.xaddr, "admin", PASSWORD) as onvif:
        reading = await clock.measure_offset(onvif)
    assert abs(reading.offset_s - 2.4) <= max(0.15, reading.uncertainty_s + 0.05), reading
    assert reading.uncertainty_s < 0.3


async def test_adopt_saves_camera_with_streams_and_encrypted_password(sim: OnvifSimulator, sessions, keys):
    ptz_cam = sim.cameras[0]
    async with connect(ptz_cam.xaddr, "admin", PASSWORD) as onvif:
        await ptz.set_preset(onvif, "Profile_main", "Gate")
    facts = await adopt.inspect(ptz_cam.xaddr, "admin", PASSWORD)
    assert facts.main_url == ptz_cam.main_url and facts.sub_url == ptz_cam.sub_url
    assert facts.snapshot_url.endswith("/snapshot/Profile_main.jpg")
    assert facts.ptz and facts.presets == [{"token": "Preset_1", "name": "Gate"}]
    assert facts.scope_name == "Sim Cam 1"
    async with transaction(sessions) as session:
        row = await adopt.save(session, keys, facts, "admin", PASSWORD, site="Town Centre")
    assert row.name == "Sim Cam 1" and row.kind == "ptz" and row.ptz
    assert row.password_enc and PASSWORD not in row.password_enc
    assert keys.decrypt(row.password_enc) == PASSWORD
    assert row.extra["onvif"]["ptz_profile"] == "Profile_main"
    async with transaction(sessions) as session:
        with pytest.raises(Invalid, match="already adopted"):
            await adopt.save(session, keys, facts, "admin", PASSWORD, name="Another name")


async def test_ptz_preset_round_trip(sim: OnvifSimulator):
    async with connect(sim.cameras[0].xaddr, "admin", PASSWORD) as onvif:
        token = await ptz.profile_token(onvif)
        await ptz.absolute(onvif, token, pan=-0.4, tilt=0.2, zoom=0.3)
        preset = await ptz.set_preset(onvif, token, "Bus stop")
        await ptz.move(onvif, token, pan=1.0, tilt=0.0, timeout_s=0.4)
        assert (await ptz.status(onvif, token)).moving
        await asyncio.sleep(0.6)
        away = await ptz.status(onvif, token)
        assert not away.moving and away.pan > -0.4 + 0.15
        assert await ptz.goto(onvif, token, "Bus stop") == preset
        back = await ptz.status(onvif, token)
        assert (round(back.pan, 3), round(back.tilt, 3), round(back.zoom, 3)) == (-0.4, 0.2, 0.3)
        await ptz.home(onvif, token)
        assert (await ptz.status(onvif, token)).pan == 0.0
        with pytest.raises(Invalid, match="no preset"):
            await ptz.goto(onvif, token, "Nowhere")


async def test_motion_arrives_as_a_stored_event(sim: OnvifSimulator, sessions, keys):
    cam = sim.cameras[1]
    cam.clock_offset_s = 5.0  # event times are corrected by the camera's measured offset
    facts = await adopt.inspect(cam.xaddr, "admin", PASSWORD)
    async with transaction(sessions) as session:
        row = await adopt.save(session, keys, facts, "admin", PASSWORD)
    events = EventSubscriptions(sessions, keys)
    try:
        assert await events.run_once(wait_s=0.1) == 0  # subscribed, nothing yet
        assert len(cam.subscriptions) == 1
        before = time.time()
        cam.trigger_motion(True)
        cam.trigger_tamper(True)
        stored = await events.run_once(wait_s=0.1)
        assert stored == 2
        async with sessions() as session:
            got = await list_events(session, row.id)
        assert [(e.kind, e.state) for e in got] == [("motion", True), ("tamper", True)]
        assert got[0].topic == "tns1:VideoSource/MotionAlarm" and got[0].source == "Source=VideoSource_1"
        assert abs(got[0].at_us / 1e6 - before) < 1.5  # camera said +5 s; corrected back
        assert got[0].camera_time_us - got[0].at_us == pytest.approx(5_000_000, abs=400_000)

        # The camera forgets the subscription (a reboot): the next pass creates a new one.
        cam.subscriptions.clear()
        await events.run_once(wait_s=0.1)  # fails, logged, closed
        cam.trigger_motion(False)
        await events.run_once(wait_s=0.1)
        assert events.cameras[row.id].subscriptions_created == 2
    finally:
        await events.stop()
    assert not cam.subscriptions  # unsubscribed on stop


async def test_subscription_is_renewed_before_it_expires(sim: OnvifSimulator, sessions, keys, monkeypatch):
    from cameras.onvif import events as events_mod

    cam = sim.cameras[1]
    facts = await adopt.inspect(cam.xaddr, "admin", PASSWORD)
    async with transaction(sessions) as session:
        await adopt.save(session, keys, facts, "admin", PASSWORD)
    monkeypatch.setattr(events_mod, "SUBSCRIPTION_S", 3)
    monkeypatch.setattr(events_mod, "RENEW_MARGIN_S", 2.5)
    subs = EventSubscriptions(sessions, keys)
    try:
        await subs.run_once(wait_s=0.1)
        await asyncio.sleep(0.7)
        await subs.run_once(wait_s=0.1)
        watcher = next(iter(subs.cameras.values()))
        assert watcher.renewals >= 1 and watcher.subscriptions_created == 1
    finally:
        await subs.stop()


# -- discovery ---------------------------------------------------------------------------------

async def test_directed_probe_on_loopback_finds_every_camera(sim: OnvifSimulator):
    found = await discovery.discover(targets=[f"127.0.0.1:{sim.discovery_port}"], timeout_s=0.8)
    assert sorted(d.name for d in found) == ["Sim Cam 1", "Sim Cam 2"]
    one = next(d for d in found if d.name == "Sim Cam 1")
    assert one.xaddrs == [sim.cameras[0].xaddr]
    assert one.hardware == "SimCam-1080" and one.location == "town-centre"
    assert one.endpoint == sim.cameras[0].endpoint


async def test_discover_needs_an_interface_or_a_target():
    with pytest.raises(discovery.DiscoveryError, match="nothing to probe"):
        await discovery.discover(timeout_s=0.1)


async def test_hello_and_bye_are_heard():
    async with discovery.HelloListener(bind=("127.0.0.1", 0)) as listener:
        cams = make_cams(1)
        sim = OnvifSimulator(cameras=cams, hello_targets=[("127.0.0.1", listener.port)])
        await sim.start()
        await asyncio.sleep(0.2)
        assert list(listener.devices) == [cams[0].endpoint]
        assert listener.devices[cams[0].endpoint].xaddrs == [cams[0].xaddr]
        await sim.stop()
        await asyncio.sleep(0.2)
        assert not listener.devices and cams[0].endpoint in listener.gone


def test_garbage_datagrams_are_ignored():
    assert discovery.parse_message(b"not xml") is None
    assert discovery.parse_message(b"<a/>") is None
    assert discovery.parse_message(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>') is None


async def test_audit_records_ptz_actions_with_who(sim: OnvifSimulator, sessions, keys, settings):
    from controlroom import onvif_actions

    facts = await adopt.inspect(sim.cameras[0].xaddr, "admin", PASSWORD)
    async with transaction(sessions) as session:
        row = await adopt.save(session, keys, facts, "admin", PASSWORD)
    await onvif_actions.ptz_call(sessions, keys, None, "operator7", row.id, "set_preset", name="Door")
    await onvif_actions.ptz_call(sessions, keys, None, "operator7", row.id, "move", pan=0.5, tilt=0.0, zoom=0.0,
                                 timeout_s=0.2)
    status = await onvif_actions.ptz_call(sessions, keys, None, "operator7", row.id, "status")
    assert set(status) == {"pan", "tilt", "zoom", "moving", "utc"}
    with pytest.raises(Invalid):
        await onvif_actions.ptz_call(sessions, keys, None, "operator7", row.id, "goto", preset="Nope")
    async with sessions() as session:
        entries = (await session.execute(audit.AuditEntry.__table__.select().order_by(audit.AuditEntry.seq))).all()
    actions = [(e.actor, e.action) for e in entries]
    assert actions == [("operator7", "ptz.set_preset"), ("operator7", "ptz.move"), ("operator7", "ptz.goto")]
    assert "failed" in entries[-1].details


# -- the HTTP API --------------------------------------------------------------------------------

async def test_api_errors_permissions_and_clock(sim: OnvifSimulator, settings, login, tmp_path: Path):
    from aiohttp.test_utils import TestClient, TestServer

    from controlroom.app import create_app

    app = create_app(settings.with_overrides(**{"http.port": 0, "mqtt.enabled": False}), record=False, anpr=False)
    dead = free_port()
    ptz_cam, fixed = sim.cameras
    async with TestClient(TestServer(app)) as client:
        admin = await login(client, "administrator")

        async def adopt_with(xaddr: str, password: str) -> tuple[int, dict]:
            r = await client.post("/api/v1/cameras/adopt", headers=admin,
                                  json={"xaddr": xaddr, "username": "admin", "password": password})
            return r.status, await r.json()

        status, body = await adopt_with(ptz_cam.xaddr, "wrong")
        assert status == 502 and "refused these credentials" in body["error"] and "wrong" not in body["error"]
        status, body = await adopt_with(f"http://127.0.0.1:{dead}/onvif/device_service", PASSWORD)
        assert status == 503 and "retry later" in body["error"]
        status, body = await adopt_with(f"http://127.0.0.1:{sim.cameras[0].port}/not-onvif", PASSWORD)
        assert status == 422 and "not an ONVIF device" in body["error"]

        fixed.clock_offset_s = -4.0
        status, body = await adopt_with(ptz_cam.xaddr, PASSWORD)
        assert status == 201, body
        ptz_id = body["camera"]["id"]
        assert body["onvif"]["ptz"] and PASSWORD not in json.dumps(body)
        status, body = await adopt_with(fixed.xaddr, PASSWORD)
        fixed_id = body["camera"]["id"]
        assert body["camera"]["clock_flag"] is True

        police = await login(client, "police")
        r = await client.post(f"/api/v1/cameras/{ptz_id}/ptz/move", json={"pan": 0.5}, headers=police)
        assert r.status == 403
        operator = await login(client, "operator")
        r = await client.post(f"/api/v1/cameras/{ptz_id}/ptz/move", json={"pan": 0.5, "timeout_s": 0.2},
                              headers=operator)
        assert r.status == 200, await r.text()
        r = await client.post(f"/api/v1/cameras/{ptz_id}/ptz/move", json={"pan": "fast"}, headers=operator)
        assert r.status == 400
        r = await client.get(f"/api/v1/cameras/{fixed_id}/ptz", headers=operator)
        assert r.status == 400 and "not a PTZ camera" in (await r.json())["error"]
        r = await client.post(f"/api/v1/cameras/{fixed_id}/clock", headers=operator)
        assert r.status == 403

        admin = await login(client, "administrator")
        r = await client.post(f"/api/v1/cameras/{fixed_id}/clock", headers=admin)
        assert r.status == 200, await r.text()
        result = await r.json()
        assert abs(result["offset_before_s"] + 4) < 0.3 and abs(result["offset_s"]) < 0.3 and not result["flagged"]
        r = await client.get(f"/api/v1/cameras/{fixed_id}", headers=admin)
        assert (await r.json())["clock_flag"] is False


async def test_service_hears_hello_and_lists_it(settings, login):
    from aiohttp.test_utils import TestClient, TestServer

    from controlroom.app import create_app

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(settings.with_overrides(**{"http.port": 0, "mqtt.enabled": False,
                                                "cameras.discovery_listen": f"127.0.0.1:{port}"}),
                     record=False, anpr=False)
    async with TestClient(TestServer(app)) as client:
        admin = await login(client, "administrator")
        cams = make_cams(1)
        async with OnvifSimulator(cameras=cams, hello_targets=[("127.0.0.1", port)]):
            await asyncio.sleep(0.3)
            r = await client.post("/api/v1/discover", json={}, headers=admin)
            assert r.status == 200, await r.text()
            devices = (await r.json())["devices"]
            assert [(d["name"], d["xaddrs"], d["adopted"]) for d in devices] == [("Sim Cam 1", [cams[0].xaddr], False)]
        await asyncio.sleep(0.3)  # Bye
        r = await client.post("/api/v1/discover", json={}, headers=admin)
        assert (await r.json())["devices"] == []


@pytest.mark.parametrize("quirk", ["absent", "unfilled"])
async def test_camera_without_utc_time_adopts_and_its_clock_is_one_clear_line(quirk, data_dir, capsys):
    """Issue 11, found 13: a camera whose GetSystemDateAndTime leaves UTCDateTime unfilled (or
    out) could not be adopted ("not an ONVIF device (AttributeError)") and its clock gave a
    library error. Now it adopts, with its offset unknown, and asking for its clock says why."""
    from controlroom.cli import main as cli_main

    cam = SimOnvifCamera(name=f"No UTC {quirk}", utc_quirk=quirk, password=PASSWORD,
                         main_url="rtsp://127.0.0.1:8554/n/main", sub_url="rtsp://127.0.0.1:8554/n/sub")
    pw = data_dir / "camera-pw"
    pw.write_text(PASSWORD + "\n")
    async with OnvifSimulator(cameras=[cam]):
        code = await asyncio.to_thread(cli_main, ["--data-dir", str(data_dir), "cameras", "adopt", cam.xaddr,
                                                  "--username", "admin", "--password-file", str(pw), "--json"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert json.loads(out.out)["camera"]["name"] == cam.name
        code = await asyncio.to_thread(cli_main, ["--data-dir", str(data_dir), "clock", "check", cam.name])
        err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "does not report its UTC time" in err[0], err
