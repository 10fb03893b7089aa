"""controlroom discover, controlroom ptz, controlroom clock, and controlroom cameras adopt."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from controlroom import onvif_actions
from controlroom.commands.common import open_store, print_json, print_table
from controlroom.settings import Settings
from storage import Invalid, inventory


def _cli_actor() -> str:
    from controlroom.commands.users import cli_actor

    return cli_actor()


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("discover", help="find ONVIF cameras (WS-Discovery)",
                       description="Multicast a WS-Discovery Probe out of each named --interface (none by "
                                   "default) and send a directed Probe to each --target.")
    d.add_argument("--interface", action="append", default=[],
                   help="multicast out of this interface (repeatable; default: cameras.discovery_interfaces)")
    d.add_argument("--target", action="append", default=[], help="HOST[:PORT] for a directed probe (repeatable)")
    d.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for answers (default 3)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_discover)

    p = sub.add_parser("ptz", help="steer a PTZ camera")
    p.add_argument("camera", help="id or name")
    s = p.add_subparsers(dest="ptz_command", required=True)
    mv = s.add_parser("move", help="continuous move at velocities in [-1, 1]")
    mv.add_argument("--pan", type=float, default=0.0)
    mv.add_argument("--tilt", type=float, default=0.0)
    mv.add_argument("--zoom", type=float, default=0.0)
    mv.add_argument("--timeout", type=float, default=1.0, help="the camera stops after this many seconds")
    s.add_parser("stop", help="stop moving")
    s.add_parser("status", help="position and whether it moves")
    s.add_parser("presets", help="list presets")
    s.add_parser("home", help="go to the home position")
    g = s.add_parser("goto", help="go to a preset (token or name)")
    g.add_argument("preset")
    sp = s.add_parser("set-preset", help="save the current position as a preset")
    sp.add_argument("name")
    p.set_defaults(func=cmd_ptz)

    c = sub.add_parser("clock", help="camera clocks: check the offset, or set the camera's clock")
    cs = c.add_subparsers(dest="clock_command", required=True)
    chk = cs.add_parser("check", help="measure a camera's clock offset now and store it")
    chk.add_argument("camera", help="id or name")
    st = cs.add_parser("set", help="set the camera's clock to this machine's (UTC)")
    st.add_argument("camera", help="id or name")
    c.set_defaults(func=cmd_clock)


def register_adopt(cameras_sub: argparse._SubParsersAction) -> None:
    """``controlroom cameras adopt``: added to the ``cameras`` group by commands/inventory.py."""
    a = cameras_sub.add_parser("adopt", help="adopt an ONVIF camera by its device address")
    a.add_argument("xaddr", help="device service address, e.g. http://10.0.0.5/onvif/device_service")
    a.add_argument("--username", required=True)
    a.add_argument("--password-file", type=Path, required=True, help="file whose first line is the password")
    a.add_argument("--site")
    a.add_argument("--name", help="default: the name the camera announces")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_adopt)


def _password(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError as exc:
        raise Invalid(f"cannot read password file {path}: {exc.strerror}") from None
    return text.splitlines()[0] if text else ""


async def cmd_discover(settings: Settings, args: argparse.Namespace) -> int:
    interfaces = args.interface or list(settings.cameras.discovery_interfaces)
    if not args.target and not interfaces:
        raise Invalid("name an --interface to multicast on (or set cameras.discovery_interfaces), or a --target "
                      "HOST[:PORT] for a directed probe: nothing is multicast unless an interface is named")
    async with open_store(settings) as store:
        devices = await onvif_actions.discover_devices(store.sessions, targets=args.target, interfaces=interfaces,
                                                       timeout_s=args.timeout)
    if args.json:
        print_json(devices)
        return 0
    rows = [{**d, "xaddrs": " ".join(d["xaddrs"]), "adopted": f"yes ({d['camera']})" if d["adopted"] else "no"}
            for d in devices]
    print_table(rows, ["name", "hardware", "location", "xaddrs", "adopted", "endpoint"])
    print(f"{len(devices)} device(s)")
    return 0


async def cmd_adopt(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store:
        cam, facts = await onvif_actions.adopt_camera(
            store.sessions, store.keys, None, settings, _cli_actor(), xaddr=args.xaddr, username=args.username,
            password=_password(args.password_file), name=args.name, site=args.site,
        )
        async with store.sessions() as session:
            sites = await inventory.site_names(session)
    if args.json:
        from controlroom.views import camera_json

        print_json({"camera": camera_json(cam, sites), "onvif": onvif_actions.facts_json(facts)})
        return 0
    offset = f"{cam.clock_offset_s:+.2f} s" if cam.clock_offset_s is not None else "unknown"
    print(f"adopted camera {cam.id} {cam.name}: {facts.manufacturer} {facts.model}, main {facts.main_url}, "
          f"sub {facts.sub_url}, PTZ {'yes' if facts.ptz else 'no'}, clock {offset}"
          f"{' (FLAGGED)' if cam.clock_flag else ''}")
    print("the running service starts recording it at its next inventory reload")
    return 0


async def cmd_ptz(settings: Settings, args: argparse.Namespace) -> int:
    action = args.ptz_command.replace("-", "_")
    params: dict[str, Any] = {}
    if action == "move":
        params = {"pan": args.pan, "tilt": args.tilt, "zoom": args.zoom, "timeout_s": args.timeout}
    elif action == "goto":
        params = {"preset": args.preset}
    elif action == "set_preset":
        params = {"name": args.name}
    async with open_store(settings) as store:
        result = await onvif_actions.ptz_call(store.sessions, store.keys, None, _cli_actor(), args.camera, action,
                                              request_timeout_s=settings.cameras.onvif_timeout_s, **params)
    if action == "presets":
        print_table(result, ["token", "name", "pan", "tilt", "zoom"])
    else:
        print(json.dumps(result))
    return 0


async def cmd_clock(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store:
        if args.clock_command == "check":
            result = await onvif_actions.check_clock(store.sessions, store.keys, None, settings, args.camera)
        else:
            result = await onvif_actions.set_clock(store.sessions, store.keys, None, settings, _cli_actor(),
                                                   args.camera)
    print(json.dumps(result))
    return 0


