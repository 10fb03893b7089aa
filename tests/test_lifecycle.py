"""The service stops, and no child process outlives what it serves.

- The real service (``controlroom demo`` as a subprocess on a temporary data directory, with its
  simulated cameras) is stopped by SIGTERM while an alerts WebSocket, a live stream and a
  playback stream are open: it exits within 30 s, its segments finalised and catalogued, and no
  ffmpeg it started is left running (nor as a zombie).
- ``kill -9`` of the service: its ffmpeg children end with it.
- The simulated camera counts its RTSP sessions per mount: several viewers of one camera stream
  cost one live upstream, and the sessions fall back after the viewers leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest
from ui_stack import OPERATOR, PASSWORD, running_stack

from controlroom.context import LIVE, SESSIONS
from storage.db import transaction
from storage.models import Camera

REPO = Path(__file__).resolve().parent.parent
STOP_LIMIT_S = 30.0


# --- the process table ------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a live process, None once it is gone (reaped)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


def descendants(root: int) -> dict[int, list[str]]:
    """Every process below ``root`` (by parent id), with its command line."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := proc_stat(int(entry))) is not None:
            children.setdefault(st[1], []).append(int(entry))
    out: dict[int, list[str]] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = cmdline(child)
            todo.append(child)
    return out


def ffmpegs(procs: dict[int, list[str]]) -> dict[int, list[str]]:
    return {pid: argv for pid, argv in procs.items() if argv and Path(argv[0]).name == "ffmpeg"}


def assert_no_credentials_in_argv(procs: dict[int, list[str]]) -> None:
    """No camera password in any command line (every local user can read them)."""
    for pid, argv in procs.items():
        assert not any(re.search(r"://[^/@\s]+@", arg) for arg in argv), (pid, argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the real service as a subprocess ---------------------------------------------------------


class Service:
    """``controlroom demo`` (one simulated camera) in its own process group."""

    def __init__(self, work: Path, segment_s: int = 4) -> None:
        self.data = work / "data"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = work / "test.toml"
        config.write_text(f"[recording]\nsegment_s = {segment_s}\n[mqtt]\nenabled = false\n")
        self.log_path = work / "service.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlroom.cli", "-v", "--data-dir", str(self.data), "--config", str(config),
             "demo", "--cameras", "1", "--ptz", "0", "--anpr", "0", "--port", str(self.port)],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_up(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"the service exited:\n{self.log_text()[-3000:]}"
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.base_url}/healthz") as resp:
                        if resp.status in (200, 503):
                            return
                await asyncio.sleep(0.5)
        raise AssertionError(f"the service did not come up:\n{self.log_text()[-3000:]}")

    def password(self) -> str:
        return (self.data / "demo-admin-password").read_text().splitlines()[0]

    def kill_everything(self) -> None:
        """Test clean-up only: whatever is left of the service and its children."""
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()


@pytest.fixture
def service(tmp_path: Path):
    svc = Service(tmp_path)
    try:
        yield svc
    finally:
        svc.kill_everything()


async def logged_in(base_url: str, username: str, password: str) -> tuple[aiohttp.ClientSession, dict[str, str]]:
    http = aiohttp.ClientSession(base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    resp = await http.post("/api/v1/session", json={"username": username, "password": password})
    assert resp.status == 200, await resp.text()
    return http, {"X-CSRF-Token": (await resp.json())["csrf_token"]}


async def open_live(http: aiohttp.ClientSession, camera_id: int, stream: str = "sub") -> aiohttp.ClientWebSocketResponse:
    """A live WebSocket that has delivered its init message and at least one fragment."""
    ws = await http.ws_connect(f"/api/v1/cameras/{camera_id}/live?stream={stream}")
    first = await asyncio.wait_for(ws.receive(), 20)
    assert first.type == aiohttp.WSMsgType.TEXT and first.json()["type"] == "init", first
    for _ in range(2):  # the init segment, then a fragment
        msg = await asyncio.wait_for(ws.receive(), 20)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
    return ws


async def open_playback(http: aiohttp.ClientSession, camera_id: int, since_s: float,
                        timeout_s: float = 60.0) -> aiohttp.ClientResponse:
    """A playback stream from ``since_s`` (epoch seconds), read a little and then left open
    (unread: the remux blocks on a full pipe, as it does under a paused player)."""
    deadline = time.monotonic() + timeout_s
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since_s))
    while True:
        resp = await http.get(f"/api/v1/cameras/{camera_id}/playback", params={"at": at})
        if resp.status == 200:
            plan = await resp.json()
            break
        assert resp.status == 404 and time.monotonic() < deadline, await resp.text()
        await asyncio.sleep(1.0)
    stream = await http.get(plan["stream_url"])
    assert stream.status == 200, await stream.text()
    assert len(await asyncio.wait_for(stream.content.read(1024), 20)) > 0
    return stream


def stalled_live(base_url: str, cookies: str, camera_id: int, stream: str = "main") -> socket.socket:
    """A live WebSocket whose browser stopped reading (a background tab, a laptop lid shut, a
    dropped network): upgraded, then never read, with a small receive window."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall((f"GET /api/v1/cameras/{camera_id}/live?stream={stream} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: {cookies}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


@pytest.mark.slow
@pytest.mark.parametrize("signals, status, limit_s", [
    ((signal.SIGTERM,), 0, STOP_LIMIT_S),
    # a second signal cuts the stop short (http.force_stop_s, 5 s), still finalising segments
    ((signal.SIGTERM, signal.SIGINT), 1, 10.0),
], ids=["sigterm", "sigterm-then-sigint"])
async def test_sigterm_stops_the_service_within_30s_whatever_is_open(service: Service, signals, status, limit_s):
    await service.wait_up()
    up_s = time.time()
    http, _ = await logged_in(service.base_url, "operator", service.password())
    try:
        alerts = await http.ws_connect("/api/v1/alerts/ws")
        live = await open_live(http, 1)
        cookies = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
        stalled = stalled_live(service.base_url, cookies, 1)
        # Enough footage that the remux cannot write it all into the socket buffers at once.
        await asyncio.sleep(max(0.0, up_s + 20 - time.time()))
        playback = await open_playback(http, 1, up_s)
        running = ffmpegs(descendants(service.proc.pid))
        # the recorder, the live upstream and the playback remux
        assert len(running) >= 3, running
        assert_no_credentials_in_argv(running)
        started = time.monotonic()
        for sig in signals:
            service.proc.send_signal(sig)
            await asyncio.sleep(0.3)
        while service.proc.poll() is None and time.monotonic() - started < STOP_LIMIT_S + 30:
            await asyncio.sleep(0.2)
        took_s = time.monotonic() - started
        assert service.proc.poll() is not None, f"still running {took_s:.0f} s after {signals}"
        assert took_s <= limit_s, f"stopped after {took_s:.1f} s"
        assert service.proc.returncode == status, service.log_text()[-3000:]
        print(f"stopped {took_s:.1f} s after SIGTERM")
        playback.close()
        stalled.close()
        for ws in (alerts, live):
            with contextlib.suppress(aiohttp.ClientError):
                await ws.close()
    finally:
        await http.close()
    left = {pid: proc_stat(pid) for pid in running}
    assert all(st is None for st in left.values()), f"ffmpeg left behind: {left}"
    assert not ffmpegs(descendants(service.proc.pid))
    # Every segment finalised and catalogued: nothing left in incoming/, every row has its file.
    incoming = list((service.data / "recordings").glob("*/incoming/*"))
    assert incoming == [], incoming
    with sqlite3.connect(service.data / "controlroom.db") as db:
        rows = db.execute("SELECT path, bytes FROM segments").fetchall()
    assert rows, "no segment catalogued"
    for path, size in rows:
        assert (service.data / "recordings" / path).stat().st_size == size


# --- RTSP sessions per camera -----------------------------------------------------------------


async def wait_sessions(sim, name: str, want: dict[str, int], timeout_s: float = 20.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        now, _ = await sim.sessions(name)
        now = {k: v for k, v in now.items() if v}
        if now == want or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.25)


@pytest.mark.slow
async def test_live_viewers_share_one_rtsp_session_per_stream_and_it_ends_after_them(tmp_path: Path):
    """Three operators each watch two cameras' sub and main streams (grid and single view) and
    take a snapshot. The second camera has no sub stream: its "sub" view reads the main stream
    and must share the main stream's upstream, not open a session of its own."""
    async with running_stack(tmp_path, cameras=2, live=0, ptz=0, record=True,
                             **{"live.linger_s": 1.0}) as stack:
        names = sorted(stack.cameras, key=stack.camera_id)
        no_sub = names[1]
        async with transaction(stack.app[SESSIONS]) as session:
            (await session.get(Camera, stack.camera_id(no_sub))).sub_url = ""
        expected_live = {names[0]: {"/main": 2, "/sub": 1}, no_sub: {"/main": 2}}
        for name in names:
            assert await wait_sessions(stack.sim, name, {"/main": 1}) == {"/main": 1}  # the recorder
            await stack.sim.reset_peak_sessions(name)
        clients = [await logged_in(stack.base_url, OPERATOR, PASSWORD) for _ in range(3)]
        try:
            views = []
            for http, _ in clients:
                for name in names:
                    views.append(await open_live(http, stack.camera_id(name), "sub"))
                    views.append(await open_live(http, stack.camera_id(name), "main"))
            for name in names:
                snap = await clients[0][0].get(f"/api/v1/cameras/{stack.camera_id(name)}/snapshot.jpg?stream=sub")
                assert snap.status == 200 and (await snap.read())[:2] == b"\xff\xd8"
            assert_no_credentials_in_argv(ffmpegs(descendants(os.getpid())))
            for name in names:  # recording + one live upstream per camera stream
                now, _ = await stack.sim.sessions(name)
                assert {k: v for k, v in now.items() if v} == expected_live[name], (name, now)
            for ws in views:
                await ws.close()
        finally:
            for http, _ in clients:
                await http.close()
        for name in names:
            # the upstreams linger a second, then end: only the recorder is left
            assert await wait_sessions(stack.sim, name, {"/main": 1}, timeout_s=10) == {"/main": 1}
            _, peak = await stack.sim.sessions(name)
            assert peak == expected_live[name], (name, peak)  # never more, at any moment


@pytest.mark.slow
async def test_children_end_with_the_service_even_on_kill_9(service: Service):
    await service.wait_up()
    http, _ = await logged_in(service.base_url, "operator", service.password())
    try:
        await open_live(http, 1)
        running = descendants(service.proc.pid)
        assert len(ffmpegs(running)) >= 2, running  # the recorder and the live upstream
        service.proc.kill()
        service.proc.wait(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            alive = {pid: st for pid in running if (st := proc_stat(pid)) is not None and st[0] != "Z"}
            if not alive:
                break
            await asyncio.sleep(0.1)
        assert not alive, {pid: (st, cmdline(pid)[:3]) for pid, st in alive.items()}
    finally:
        await http.close()


# --- credentials out of the process list --------------------------------------------------------


def test_credentials_reach_ffmpeg_in_a_private_file_not_its_argv():
    from cameras.live import private_upstream_args
    from cameras.recorder import ffmpeg_args, input_options
    from cameras.rtsp import InputList, has_credentials

    url = "rtsp://admin:s3cr%27et@127.0.0.1:8554/main"
    assert has_credentials(url) and not has_credentials("rtsp://127.0.0.1:8554/main")
    args, listing = private_upstream_args(url)
    recorder = InputList(url, input_options())
    try:
        for argv, lst in ((args, listing), (ffmpeg_args(url, Path("/tmp/x"), "1", 30, recorder), recorder)):
            assert not any("s3cr" in a or "@" in a for a in argv), argv
            assert argv[argv.index("-i") + 1] == str(lst.path)
            assert lst.path.stat().st_mode & 0o777 == 0o600
            assert lst.path.parent.stat().st_mode & 0o777 == 0o700
            text = lst.path.read_text()
            assert f"file '{url}'" in text and "option rtsp_transport tcp" in text
    finally:
        listing.remove()
        recorder.remove()
    assert not listing.path.exists() and not listing.path.parent.exists()
    listing.remove()  # idempotent
    # a list left by a service killed before its ffmpeg opened it is swept by the next one
    stale = Path(tempfile.mkdtemp(prefix="controlroom-input-"))
    fresh = Path(tempfile.mkdtemp(prefix="controlroom-input-"))
    os.utime(stale, (time.time() - 120, time.time() - 120))
    InputList(url).remove()
    assert not stale.exists() and fresh.exists()
    fresh.rmdir()


@pytest.mark.slow
async def test_a_playback_remux_ends_when_its_player_goes(tmp_path: Path):
    async with running_stack(tmp_path, cameras=1, live=0, ptz=0, record=True,
                             **{"recording.segment_s": 4}) as stack:
        from controlroom.context import PLAYBACK_PROCS

        since_s = time.time()
        await asyncio.sleep(16)  # footage enough that the remux cannot write it all at once
        http, _ = await logged_in(stack.base_url, OPERATOR, PASSWORD)
        try:
            stream = await open_playback(http, stack.camera_id(next(iter(stack.cameras))), since_s)
            remuxes = {pid: argv for pid, argv in ffmpegs(descendants(os.getpid())).items() if any(a.endswith("run.ffconcat") for a in argv)}
            assert len(stack.app[PLAYBACK_PROCS]) == 1 and len(remuxes) == 1, remuxes
            stream.close()  # the operator leaves (or seeks: the player drops the connection)
            deadline = time.monotonic() + 5
            while stack.app[PLAYBACK_PROCS] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not stack.app[PLAYBACK_PROCS]
            assert all(proc_stat(pid) is None for pid in remuxes), "the remux outlived its player (or is a zombie)"
        finally:
            await http.close()


@pytest.mark.slow
async def test_a_viewer_that_stopped_reading_does_not_hold_the_camera(tmp_path: Path):
    """A browser that stops reading (lid shut, network dropped) is disconnected after
    live.send_timeout_s, and the upstream it held ends after the linger: the camera's session
    is free again (before, it stayed until TCP gave up, many minutes later)."""
    async with running_stack(tmp_path, cameras=1, live=0, ptz=0, record=False,
                             **{"live.linger_s": 1.0, "live.send_timeout_s": 2.0}) as stack:
        name = next(iter(stack.cameras))
        http, _ = await logged_in(stack.base_url, OPERATOR, PASSWORD)
        try:
            cookies = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
            stalled = await asyncio.to_thread(stalled_live, stack.base_url, cookies, stack.camera_id(name))
            try:
                assert await wait_sessions(stack.sim, name, {"/main": 1}) == {"/main": 1}
                # send buffers fill, then 2 s without progress, then 1 s of linger
                assert await wait_sessions(stack.sim, name, {}, timeout_s=30) == {}
                assert not stack.app[LIVE].upstreams
            finally:
                stalled.close()
        finally:
            await http.close()
