"""Simulated cameras: a real RTSP server (GStreamer) serving many cameras on 127.0.0.1.

    async with Simulation(work_dir, cameras=4, anpr=2, ptz=1, live=1) as sim:
        for cam in sim.cameras: ...          # SimCamera: name, kind, site, URLs, credentials
        await sim.set_off_air(name, True)    # the camera's port closes, its clients drop
        await sim.set_ptz(name, pan, tilt, zoom); await sim.move_ptz(name, vp, vt, vz)
        sim.inventory()                      # dicts for storage.inventory.CameraSpec

Counts are separate: ``cameras`` pre-encoded fixed cameras, then ``live`` live-encoded fixed
cameras (wall clock burnt in), ``ptz`` PTZ cameras, ``anpr`` ANPR cameras. Names and ports are
deterministic for a given argument set (ports are ``base_port + index`` when ``base_port`` is
given; otherwise free ports picked at start). The GStreamer side runs as its own process under
``/usr/bin/python3`` (``rtsp_server.py``); see docs/design/simulator.md.

``codecs={"Live Town Centre 01": "h265"}`` makes a live-encoded camera (live, PTZ, ANPR) send
H.265 on both streams, as most current CCTV cameras do by default; ``"h265+h264sub"`` sends
H.265 on the main stream and H.264 on the sub stream (the other common setting).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from cameras import CameraError, children
from simulator import anpr_schedule, clips
from simulator.link import SimCamera
from simulator.onvif import OnvifSimulator

log = logging.getLogger(__name__)

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "controlroom" / "simulator"
START_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 10.0
FIXED_SITES = ("Town Centre", "Queens Park")
# codec option -> (main stream codec, sub stream codec)
CODECS = {"h264": ("h264", "h264"), "h265": ("h265", "h265"), "h265+h264sub": ("h265", "h264")}
MASK_SUPPORT = ("media2", "refuse")  # Simulation(masks=): see simulator/onvif.py, "Media2"
PTZ_PLACES = ("Market Square", "Bus Station", "Castle Gate")


def plan_cameras(cameras: int = 4, anpr: int = 0, ptz: int = 0, live: int = 0) -> list[dict[str, Any]]:
    """The simulated cameras for these counts: name, kind, site, mode, lane... (no URLs yet)."""
    plan: list[dict[str, Any]] = []
    for i in range(cameras):
        site = FIXED_SITES[i % len(FIXED_SITES)]
        plan.append({"name": f"{site} {i // len(FIXED_SITES) + 1:02d}", "kind": "fixed", "site": site,
                     "mode": "clip", "position": f"Pole {i + 1}", "scene": i})
    for i in range(live):
        plan.append({"name": f"Live Town Centre {i + 1:02d}", "kind": "fixed", "site": "Town Centre",
                     "mode": "live", "live": True, "position": f"Live pole {i + 1}"})
    for i in range(ptz):
        place = PTZ_PLACES[i % len(PTZ_PLACES)]
        plan.append({"name": f"PTZ {place} {i // len(PTZ_PLACES) + 1:02d}", "kind": "ptz",
                     "site": "Town Centre", "mode": "ptz", "position": place})
    for i in range(anpr):
        site = anpr_schedule.SITES[i % 2]
        lane = i // 2 + 1
        plan.append({"name": anpr_schedule.camera_name(site, lane), "kind": "anpr", "site": site,
                     "mode": "anpr", "lane": str(lane), "direction": anpr_schedule.direction(lane),
                     "position": f"Lane {lane} {anpr_schedule.direction(lane)}"})
    return plan


class Simulation:
    """Simulated cameras served by one RTSP server subprocess; an async context manager."""

    def __init__(
        self,
        work_dir: Path,
        cameras: int = 4,
        anpr: int = 0,
        ptz: int = 0,
        live: int = 0,
        password: str = "sim-password",
        host: str = "127.0.0.1",
        clock_offsets_s: dict[str, float] | None = None,
        *,
        username: str = "admin",
        base_port: int = 0,
        cache_dir: Path | None = None,
        onvif: bool = False,
        codecs: dict[str, str] | None = None,
        masks: dict[str, str] | None = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.host, self.username, self.password = host, username, password
        self.base_port = base_port
        self.cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
        self.clock_offsets_s = dict(clock_offsets_s or {})
        self.onvif_enabled = onvif
        self.onvif: OnvifSimulator | None = None  # once started
        self._plan = plan_cameras(cameras, anpr, ptz, live)
        unknown = set(self.clock_offsets_s) - {p["name"] for p in self._plan}
        if unknown:
            raise CameraError(f"clock offsets given for unknown cameras: {sorted(unknown)}")
        self.codecs = dict(codecs or {})
        modes = {p["name"]: p["mode"] for p in self._plan}
        for name, codec in self.codecs.items():
            if name not in modes:
                raise CameraError(f"a codec given for an unknown camera: {name!r}")
            if codec not in CODECS:
                raise CameraError(f"camera {name!r}: codec {codec!r} is not one of {sorted(CODECS)}")
            if codec != "h264" and modes[name] == "clip":  # clips are pre-encoded H.264
                raise CameraError(f"camera {name!r}: H.265 is offered by live-encoded cameras only "
                                  "(live, PTZ, ANPR), not by pre-encoded clip cameras")
        # ONVIF Media2 privacy masks per camera: "media2" (it takes CreateMask and paints the
        # masks into its RTSP streams), "refuse" (it offers Media2 but faults CreateMask).
        self.masks = dict(masks or {})
        for name, support in self.masks.items():
            if name not in modes:
                raise CameraError(f"masks given for an unknown camera: {name!r}")
            if support not in MASK_SUPPORT:
                raise CameraError(f"camera {name!r}: masks {support!r} is not one of {sorted(MASK_SUPPORT)}")
            if support == "media2" and modes[name] == "clip":  # painting needs the encoder
                raise CameraError(f"camera {name!r}: privacy masks are painted by live-encoded cameras only "
                                  "(live, PTZ, ANPR), not by pre-encoded clip cameras")
        self.cameras: list[SimCamera] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._log_file: BinaryIO | None = None
        self.startup_s: float = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Simulation:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.to_thread(self.work_dir.mkdir, parents=True, exist_ok=True)
        specs = await self._server_specs()
        config = {"host": self.host, "username": self.username, "password": self.password,
                  "cache_dir": str(self.cache_dir), "cameras": specs}
        self._log_file = await asyncio.to_thread(open, self.work_dir / "simulator.log", "ab")
        self._proc = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON, "-u", str(SERVER_SCRIPT),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=self._log_file,
            # Killed with its parent, even by SIGKILL; its own process group, so a terminal's
            # Ctrl-C reaches the service, which stops the recorders before the cameras.
            preexec_fn=children.bind_to_parent(signal.SIGKILL), limit=2**20,
        )
        self._ready = loop.create_future()
        self._reader = asyncio.create_task(self._read_replies(), name="simulator replies")
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps(config).encode() + b"\n")
            await self._proc.stdin.drain()
            ready = await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT_S)
            self.cameras = [self._camera(p, ready["ports"][p["name"]]) for p in self._plan]
            if self.onvif_enabled:
                await self._start_onvif()
        except BaseException:
            await self.stop()
            raise
        self.startup_s = loop.time() - started
        log.info("simulator: %d cameras on %s in %.2f s", len(self.cameras), self.host, self.startup_s)

    async def prepare(self) -> None:
        """Encode (or find in the cache) every clip these cameras need, without serving them."""
        await self._server_specs()

    async def _server_specs(self) -> list[dict[str, Any]]:
        fixed = [p for p in self._plan if p["mode"] == "clip"]
        scenes = sorted({p["scene"] % len(clips.MAIN_SCENES) for p in fixed})
        recipes = [clips.main_recipe(s) for s in scenes] + [clips.sub_recipe(p["name"], p["scene"]) for p in fixed]
        paths = await clips.ensure_clips(self.cache_dir, recipes)
        main_paths = dict(zip(scenes, paths[: len(scenes)], strict=True))
        sub_paths = dict(zip((p["name"] for p in fixed), paths[len(scenes):], strict=True))
        specs = []
        for index, p in enumerate(self._plan):
            spec = {"name": p["name"], "mode": p["mode"],
                    "port": self.base_port + index if self.base_port else 0,
                    "clock_offset_s": self.clock_offsets_s.get(p["name"], 0.0)}
            spec["main_codec"], spec["sub_codec"] = CODECS[self.codecs.get(p["name"], "h264")]
            spec["privacy_masks"] = self.masks.get(p["name"]) == "media2"
            if p["mode"] == "clip":
                spec.update(main_clip=str(main_paths[p["scene"] % len(clips.MAIN_SCENES)]),
                            main_size=list(clips.MAIN_SIZE),
                            sub_clip=str(sub_paths[p["name"]]), sub_size=list(clips.SUB_SIZE))
            specs.append(spec)
        return specs

    def _camera(self, p: dict[str, Any], port: int) -> SimCamera:
        base = f"rtsp://{self.host}:{port}"
        main_codec, sub_codec = CODECS[self.codecs.get(p["name"], "h264")]
        return SimCamera(
            name=p["name"], kind=p["kind"], site=p["site"],
            main_url=f"{base}/main", sub_url=f"{base}/sub",
            username=self.username, password=self.password,
            lane=p.get("lane", ""), direction=p.get("direction", ""), position=p.get("position", ""),
            live=p.get("live", False), port=port, mode=p["mode"],
            clock_offset_s=self.clock_offsets_s.get(p["name"], 0.0),
            main_codec=main_codec, sub_codec=sub_codec, masks=self.masks.get(p["name"], ""),
        )

    async def _start_onvif(self) -> None:
        self.onvif = OnvifSimulator(self)
        await self.onvif.start()  # fills each SimCamera.onvif_xaddr

    async def stop(self) -> None:
        """Stop the ONVIF side and the server; safe to call twice and after a failed start."""
        if self.onvif is not None:
            onvif, self.onvif = self.onvif, None
            await onvif.stop()
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()  # end of stdin stops the server
                await asyncio.wait_for(proc.wait(), 3.0)
            except (TimeoutError, ConnectionError):
                proc.kill()
                await proc.wait()
            except BaseException:
                proc.kill()
                await proc.wait()
                raise
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -- control channel ------------------------------------------------------------------

    async def _read_replies(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        while line := await stdout.readline():
            message = json.loads(line)
            if message.get("event") == "ready":
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(message)
                continue
            if message.get("event") == "error":
                if self._ready is not None and not self._ready.done():
                    self._ready.set_exception(CameraError(f"the simulator's RTSP server: {message['error']}"))
                continue
            future = self._pending.pop(message.get("id"), None)
            if future is not None and not future.done():
                future.set_result(message)
        error = CameraError(f"the simulator's RTSP server stopped; see {self.work_dir / 'simulator.log'}")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    async def request(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one control request to the server and return its answer."""
        if self._proc is None or self._proc.stdin is None:
            raise CameraError("the simulation is not running")
        rid = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            self._proc.stdin.write(json.dumps({"id": rid, "op": op, **args}).encode() + b"\n")
            await self._proc.stdin.drain()
            reply = await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        except (ConnectionError, TimeoutError) as exc:
            raise CameraError(f"simulator: {op}: the RTSP server did not answer ({exc!r})") from exc
        finally:
            self._pending.pop(rid, None)
        if not reply.get("ok"):
            raise CameraError(f"simulator: {op} failed: {reply.get('error')}")
        return reply

    # -- the API everyone uses -------------------------------------------------------------

    def camera(self, name: str) -> SimCamera:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise CameraError(f"no simulated camera named {name!r}")

    async def set_off_air(self, name: str, off_air: bool) -> None:
        self.camera(name)
        await self.request("off_air", camera=name, value=bool(off_air))

    async def set_masks(self, name: str, polygons: list[list[list[float]]]) -> None:
        """Paint these privacy masks (normalised 0..1 from the top left) into the camera's streams
        from the next frame on; [] removes them. Cameras given ``masks={name: "media2"}`` only."""
        await self.request("set_masks", camera=name, polygons=polygons)

    async def set_ptz(self, name: str, pan: float, tilt: float, zoom: float) -> None:
        await self.request("set_ptz", camera=name, position=[float(pan), float(tilt), float(zoom)])

    async def get_ptz(self, name: str) -> tuple[float, float, float]:
        pan, tilt, zoom = (await self.request("get_ptz", camera=name))["ptz"]
        return pan, tilt, zoom

    async def move_ptz(self, name: str, vpan: float, vtilt: float, vzoom: float) -> None:
        """Continuous move: the position integrates this velocity until (0, 0, 0)."""
        await self.request("move_ptz", camera=name, velocity=[float(vpan), float(vtilt), float(vzoom)])

    async def status(self) -> list[dict[str, Any]]:
        """Per camera: port, on_air, number of RTSP clients, ``sessions`` (RTSP sessions per
        mount now, e.g. ``{"/main": 1, "/sub": 1}``), ``peak_sessions`` (the most at once per
        mount since the start or the last :meth:`reset_peak_sessions`), PTZ position and velocity."""
        return (await self.request("status"))["cameras"]

    async def sessions(self, name: str) -> tuple[dict[str, int], dict[str, int]]:
        """(RTSP sessions per mount now, the peak per mount) of one camera."""
        status = next(c for c in await self.status() if c["name"] == name)
        return status["sessions"], status["peak_sessions"]

    async def reset_peak_sessions(self, name: str) -> None:
        """Start counting the peak again from the sessions open now."""
        await self.request("reset_peak_sessions", camera=name)

    async def server_status(self) -> dict[str, Any]:
        """``status()`` plus server-wide counters: ``clip_streams`` flowing, ``clip_frames`` sent."""
        return await self.request("status")

    @property
    def server_pid(self) -> int | None:
        """The RTSP server process's id (for benchmarks measuring its CPU and memory)."""
        return self._proc.pid if self._proc is not None else None

    def inventory(self) -> list[dict[str, Any]]:
        return [cam.spec() for cam in self.cameras]

    def passes(self, name: str, from_us: int, to_us: int) -> list[anpr_schedule.Pass]:
        """Ground truth of an ANPR camera: the plates it shows between two times."""
        return anpr_schedule.passes(name, from_us, to_us)

    def describe(self) -> list[dict[str, Any]]:
        """Every camera as a dict without its password (for printing)."""
        out = []
        for cam in self.cameras:
            d = asdict(cam)
            d.pop("password")
            out.append(d)
        return out


__all__ = ["SimCamera", "Simulation", "plan_cameras", "anpr_schedule"]
