"""The service stops, and no child process outlives what it serves.

- The real service (``controlroom demo`` as a subprocess on a temporary data directory, with its
  simulated cameras) is stopped by SIGTERM while an alerts WebSocket, a live stream and a
  playback stream are open: it exits within 30 s, its segments finalised and catalogued, and no
  ffmpeg it started is left running (nor as a zombie).
- ``kill -9`` of the service: its ffmpeg children end with it.
- The simulated camera counts its RTSP sessions per mount: several viewers of one camera stream
  cost one live upstream, and the sessions fall back after the viewers leave. The main stream of
  a recorded camera is watched from the recorder's own pull (one /main session, however many
  viewers), whose segments keep being catalogued on time whatever the viewers and the live
  output do (docs/design/live-from-recorder.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from tcp_proxy import free_port
from ui_stack import OPERATOR, PASSWORD, running_stack

from cameras import recorder
from cameras.live import BoxStream, FeedUpstream, Fragment
from controlroom.context import HEALTH_NOTES, LIVE, SESSIONS, SUPERVISOR
from storage.catalogue import incoming_pattern
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


async def playback_stream_url(http: aiohttp.ClientSession, camera_id: int, since_s: float,
                              timeout_s: float = 60.0) -> str:
    """The stream URL of the playback plan from ``since_s`` (epoch seconds), once there is one."""
    deadline = time.monotonic() + timeout_s
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since_s))
    while True:
        resp = await http.get(f"/api/v1/cameras/{camera_id}/playback", params={"at": at})
        if resp.status == 200:
            return (await resp.json())["stream_url"]
        assert resp.status == 404 and time.monotonic() < deadline, await resp.text()
        await asyncio.sleep(1.0)


async def open_playback(http: aiohttp.ClientSession, camera_id: int, since_s: float) -> aiohttp.ClientResponse:
    """A playback stream from ``since_s`` (epoch seconds), read a little and then left open
    (unread: the remux blocks on a full pipe, as it does under a paused player)."""
    stream = await http.get(await playback_stream_url(http, camera_id, since_s))
    assert stream.status == 200, await stream.text()
    assert len(await asyncio.wait_for(stream.content.read(1024), 20)) > 0
    return stream


def store_files_open(root: Path) -> list[str]:
    """The files under ``root`` that this process has open."""
    root = root.resolve()
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(f"{root}/"):
                held.append(target)
    return held


class ErrorsLogged(logging.Handler):
    """The messages of the records at ERROR and above that reach the logger it is added to."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def stalled_live(base_url: str, cookies: str, camera_id: int, stream: str = "main") -> socket.socket:
    """A live WebSocket whose browser stopped reading (a background tab, a laptop lid shut, a
    dropped network): upgraded, then never read, with a small receive window."""
    return stalled(base_url, cookies, f"/api/v1/cameras/{camera_id}/live?stream={stream}",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"HTTP/1.1 101")


def stalled(base_url: str, cookies: str, path: str, headers: str = "", status: bytes = b"HTTP/1.1 200") -> socket.socket:
    """A GET of ``path`` whose client reads the response's head and then stops reading, with a
    small receive window: the service's writes soon wait on back-pressure."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}Cookie: {cookies}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(status), head
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
        # The main stream is watched from the recorder's own pull: /main stays at one session
        # (before: the recorder's and a live upstream's, 2).
        expected_live = {names[0]: {"/main": 1, "/sub": 1}, no_sub: {"/main": 1}}
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
            for name in names:
                assert isinstance(stack.app[LIVE].upstreams[f"{stack.camera_id(name)}/main"], FeedUpstream)
            for name in names:  # recording (which feeds the main stream's live view) + the sub stream's upstream
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
    """The remux ends with its player, and a player leaving is no error of the service's: none
    is logged. A player that leaves while the stream waits on back-pressure (its buffer full)
    is told by aiohttp as a plain ConnectionError, which the stream took for a 503 of its own
    and logged with its traceback (seen in CI, as a synchronised-playback page closed)."""
    async with running_stack(tmp_path, cameras=1, live=0, ptz=0, record=True,
                             **{"recording.segment_s": 4}) as stack:
        from controlroom.context import PLAYBACK_PROCS

        since_s = time.time()
        await asyncio.sleep(16)  # footage enough that the remux cannot write it all at once
        http, _ = await logged_in(stack.base_url, OPERATOR, PASSWORD)
        errors = ErrorsLogged()  # on the service's own logger (the app's logging set-up owns the root's)
        logging.getLogger("controlroom").addHandler(errors)
        try:
            cam_id = stack.camera_id(next(iter(stack.cameras)))
            for how in ("reading", "waiting on back-pressure"):
                if how == "reading":
                    stream = await open_playback(http, cam_id, since_s)
                else:
                    url = await playback_stream_url(http, cam_id, since_s)
                    cookies = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
                    stream = await asyncio.to_thread(stalled, stack.base_url, cookies, url)
                    await asyncio.sleep(2)  # the small window fills: the stream waits on back-pressure
                remuxes = {pid: argv for pid, argv in ffmpegs(descendants(os.getpid())).items()
                           if any(a.endswith("run.ffconcat") for a in argv)}
                assert len(stack.app[PLAYBACK_PROCS]) == 1 and len(remuxes) == 1, (how, remuxes)
                stream.close()  # the operator leaves (or seeks: the player drops the connection)
                deadline = time.monotonic() + 5
                while stack.app[PLAYBACK_PROCS] and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert not stack.app[PLAYBACK_PROCS], how
                assert all(proc_stat(pid) is None for pid in remuxes), f"{how}: the remux outlived its player"
                # The stream's handler has ended too: it let go of the footage it had open (a
                # segment that retention deletes meanwhile would keep its disk space otherwise).
                deadline = time.monotonic() + 5
                while (held := store_files_open(stack.settings.storage_root)) and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert not held, (how, held)
                assert not errors.messages, (how, errors.messages)
        finally:
            logging.getLogger("controlroom").removeHandler(errors)
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


# --- live view of the main stream from the recorder's own pull --------------------------------


async def live_bytes(ws: aiohttp.ClientWebSocketResponse, fragments: int = 30, timeout_s: float = 20.0) -> bytes:
    """What a live WebSocket sends after its init message: the init segment and ``fragments`` fragments."""
    first = await asyncio.wait_for(ws.receive(), timeout_s)
    assert first.type == aiohttp.WSMsgType.TEXT and first.json()["type"] == "init", first
    data = b""
    for _ in range(fragments + 1):
        msg = await asyncio.wait_for(ws.receive(), timeout_s)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        data += msg.data
    return data


def decoded_frames(data: bytes) -> int:
    """An init segment, then fragments starting at a keyframe, which ffmpeg decodes: the frames it decoded."""
    items = BoxStream().feed(data)
    assert isinstance(items[0], bytes) and items[0][4:8] == b"ftyp", items[:1]
    frags = items[1:]
    assert frags and all(isinstance(f, Fragment) for f in frags) and frags[0].keyframe, frags[:1]
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=codec_name,nb_read_frames", "-of", "csv=p=0", "-i", "pipe:0"],
                           input=data, capture_output=True, check=True)
    codec, frames = probe.stdout.decode().strip().split(",")
    assert codec == "h264", probe
    return int(frames)


async def catalogued_on_time(stack, camera_id: int, seconds: float) -> tuple[int, float]:
    """(segments catalogued, the longest time without one) over ``seconds``; the recording stays healthy."""
    rec = stack.app[SUPERVISOR].recorders[camera_id]
    deadline = time.monotonic() + 20
    while rec.segments_committed == 0:  # measured from the first segment on (not the camera's connect)
        assert time.monotonic() < deadline, "no segment catalogued"
        await asyncio.sleep(0.1)
    before, worst = rec.segments_committed, 0.0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        await asyncio.sleep(0.25)
        worst = max(worst, rec.seconds_since_catalogued())
        assert not stack.app[SUPERVISOR].problems, stack.app[SUPERVISOR].problems
    return rec.segments_committed - before, worst


SEGMENT_S = 2
RECORDING_LIVE = {"recording.segment_s": SEGMENT_S, "live.linger_s": 1.0, "live.send_timeout_s": 60.0}


@pytest.mark.slow
async def test_main_stream_viewers_share_the_recorders_pull_which_never_waits_for_them(tmp_path: Path):
    """A browser watching the main stream and one that stopped reading cost the camera no session
    beside the recorder's (before: a second /main session); the watcher gets playable fMP4, and
    the recorder's segments keep being catalogued on time, its live pipe always drained."""
    async with running_stack(tmp_path, cameras=1, live=0, ptz=0, record=True, **RECORDING_LIVE) as stack:
        name = next(iter(stack.cameras))
        camera_id = stack.camera_id(name)
        assert await wait_sessions(stack.sim, name, {"/main": 1}) == {"/main": 1}  # the recorder
        await stack.sim.reset_peak_sessions(name)
        rec = stack.app[SUPERVISOR].recorders[camera_id]
        http, _ = await logged_in(stack.base_url, OPERATOR, PASSWORD)
        try:
            cookies = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
            stalled = await asyncio.to_thread(stalled_live, stack.base_url, cookies, camera_id, "main")
            ws = await http.ws_connect(f"/api/v1/cameras/{camera_id}/live?stream=main")
            frames = await asyncio.to_thread(decoded_frames, await live_bytes(ws))
            assert frames >= 25, frames
            up = stack.app[LIVE].upstreams[f"{camera_id}/main"]
            assert isinstance(up, FeedUpstream) and up.feed is rec.live_feed and len(up.viewers) == 2
            count, worst_s = await catalogued_on_time(stack, camera_id, 12)
            print(f"{count} segments in 12 s, at most {worst_s:.1f} s without one; viewer skips "
                  f"{[v.skips for v in up.viewers]}")
            assert count >= 12 // SEGMENT_S - 1 and worst_s <= 2 * SEGMENT_S, (count, worst_s)
            assert any(v.skips for v in up.viewers), "the stalled browser's backlog should have been dropped"
            assert rec.live_drops == 0  # the recorder drained its live pipe all along
            # the tee left the camera's timestamps alone (before -copytb 1: one rewritten per packet)
            assert sum("Non-monotonous DTS" in line for line in rec.stderr_tail) <= 1, list(rec.stderr_tail)
            now, peak = await stack.sim.sessions(name)
            assert {k: v for k, v in now.items() if v} == {"/main": 1} and peak == {"/main": 1}, (now, peak)
            stalled.close()
            await ws.close()
        finally:
            await http.close()


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["unread", "closed"])
async def test_recording_goes_on_when_the_live_output_is_not_read_or_fails(tmp_path: Path, monkeypatch, fault):
    """The recorder's live pipe left unread (a stalled event loop; a one-page pipe so it fills at
    once): ffmpeg drops live packets, never segments. The pipe closed by its reader (the live
    output fails): recording goes on, the failure is logged and in /healthz, and a viewer of the
    main stream is served from a pull of its own, as before."""
    release = asyncio.Event()
    drain = recorder.CameraRecorder._read_live

    async def faulty_reader(self, fd: int) -> None:
        if fault == "closed":
            os.close(fd)
            return
        await release.wait()
        await drain(self, fd)

    monkeypatch.setattr(recorder.CameraRecorder, "_read_live", faulty_reader)
    monkeypatch.setattr(recorder, "LIVE_PIPE_BYTES", 4096)
    async with running_stack(tmp_path, cameras=1, live=0, ptz=0, record=True, **RECORDING_LIVE) as stack:
        name = next(iter(stack.cameras))
        camera_id = stack.camera_id(name)
        assert await wait_sessions(stack.sim, name, {"/main": 1}) == {"/main": 1}
        rec = stack.app[SUPERVISOR].recorders[camera_id]
        try:
            count, worst_s = await catalogued_on_time(stack, camera_id, 12)
            print(f"{fault}: {count} segments in 12 s, at most {worst_s:.1f} s without one; live drops {rec.live_drops}, "
                  f"feed error {rec.live_feed.error!r}")
            assert count >= 12 // SEGMENT_S - 1 and worst_s <= 2 * SEGMENT_S, (count, worst_s)
            assert rec.restarts == 0
            if fault == "unread":
                assert rec.live_drops >= 1 and not rec.live_feed.error
                return
            assert "Broken pipe" in rec.live_feed.error, rec.live_feed.error
            note = stack.app[HEALTH_NOTES].get(f"live view of camera {camera_id}", "")
            assert "live output failed" in note, stack.app[HEALTH_NOTES]
            http, _ = await logged_in(stack.base_url, OPERATOR, PASSWORD)
            try:
                async with http.get("/healthz") as resp:
                    assert resp.status == 503 and any(p["component"] == f"live view of camera {camera_id}"
                                                      for p in (await resp.json())["problems"])
                ws = await http.ws_connect(f"/api/v1/cameras/{camera_id}/live?stream=main")
                assert await asyncio.to_thread(decoded_frames, await live_bytes(ws, fragments=10)) > 0
                assert not isinstance(stack.app[LIVE].upstreams[f"{camera_id}/main"], FeedUpstream)
                await ws.close()
            finally:
                await http.close()
        finally:
            release.set()


def test_the_recorders_ffmpeg_writes_live_view_through_a_fifo_that_drops_and_a_tee_that_goes_on():
    """The command: the same packets to the MKV segments and, as fragmented MP4, to the live pipe,
    through ffmpeg's fifo (drops when full) in the tee (a failed output is dropped, not fatal)."""
    args = recorder.ffmpeg_args("rtsp://127.0.0.1:8554/main", Path("/srv/rec/1/incoming"), "7", 30, live_fd=9)
    assert args[args.index("-f") + 1] == "tee" and args[args.index("-copytb") + 1] == "1"
    tee = args[-1]
    segments, live = tee.split("|")
    assert segments.startswith("[f=segment:onfail=abort:") and segments.endswith(f"]/srv/rec/1/incoming/{incoming_pattern('7')}")
    assert "segment_list=pipe\\\\:1" in segments and "segment_format=matroska" in segments
    assert live.endswith("]pipe:9") and "onfail=ignore" in live and "use_fifo=1" in live
    assert "drop_pkts_on_overflow=1\\\\:queue_size=" in live and "frag_keyframe+empty_moov" in live
    assert args[args.index("-map") + 1] == "0:v" and args[args.index("-c") + 1] == "copy"
    plain = recorder.ffmpeg_args("rtsp://127.0.0.1:8554/main", Path("/srv/rec/1/incoming"), "7", 30)
    assert "tee" not in plain and "-copytb" not in plain and plain[plain.index("-f") + 1] == "segment"
    assert not recorder.tee_safe(Path("/srv/a|b")) and recorder.tee_safe(Path("/srv/rec"))
