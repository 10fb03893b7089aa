"""controlroom cameras add|list|show|update|remove|import|export, and controlroom sites."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

from controlroom.commands import nodes
from controlroom.commands.common import open_store, print_json, print_table
from controlroom.settings import Settings
from controlroom.views import camera_json
from storage import Invalid, audit, inventory
from storage.db import transaction

CLI_ACTOR = "cli"

# CameraSpec fields settable from the command line, with their types.
_FIELDS: dict[str, Any] = {
    "site": str, "position": str, "kind": str, "main_url": str, "sub_url": str, "snapshot_url": str,
    "onvif_xaddr": str, "username": str, "retention_days": int, "notes": str, "lane": str, "direction": str,
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cameras", help="the camera inventory")
    s = p.add_subparsers(dest="cameras_command", required=True)

    add = s.add_parser("add", help="add a camera")
    add.add_argument("name")
    _field_args(add)
    add.set_defaults(func=cmd_add)

    ls = s.add_parser("list", help="list cameras with their state")
    ls.add_argument("--site")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    show = s.add_parser("show", help="show one camera")
    show.add_argument("camera", help="id or name")
    show.set_defaults(func=cmd_show)

    upd = s.add_parser("update", help="change a camera")
    upd.add_argument("camera", help="id or name")
    upd.add_argument("--name", dest="new_name")
    _field_args(upd)
    upd.add_argument("--enable", dest="enabled", action="store_true", default=None)
    upd.add_argument("--disable", dest="enabled", action="store_false")
    upd.add_argument("--recording", dest="recording", choices=["on", "off"])
    upd.set_defaults(func=cmd_update)

    rm = s.add_parser("remove", help="remove a camera that has no recordings")
    rm.add_argument("camera", help="id or name")
    rm.set_defaults(func=cmd_remove)

    imp = s.add_parser("import", help="add sites and cameras from a TOML inventory file")
    imp.add_argument("file", type=Path)
    imp.set_defaults(func=cmd_import)

    exp = s.add_parser("export", help="write the inventory as TOML (without passwords)")
    exp.set_defaults(func=cmd_export)

    nodes.register_move(s)  # cameras move CAM --to NODE (a cluster's recorder nodes)

    from controlroom.commands import onvif as onvif_commands  # ONVIF adoption lives with ONVIF

    onvif_commands.register_adopt(s)


def _field_args(p: argparse.ArgumentParser) -> None:
    for name, typ in _FIELDS.items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=typ)
    p.add_argument("--password-file", type=Path, help="file whose first line is the camera password")


def _read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text().splitlines()[0] if path.read_text() else ""
    except OSError as exc:
        raise Invalid(f"cannot read password file {path}: {exc.strerror}") from None


def _given(args: argparse.Namespace) -> dict[str, Any]:
    data = {k: getattr(args, k) for k in _FIELDS if getattr(args, k, None) is not None}
    password = _read_password(getattr(args, "password_file", None))
    if password is not None:
        data["password"] = password
    return data


async def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    spec = inventory.parse_spec(inventory.CameraSpec, {"name": args.name, **_given(args)})
    async with open_store(settings) as store, transaction(store.sessions) as session:
        cam = await inventory.add_camera(session, spec, store.keys)
        await audit.append(session, CLI_ACTOR, "camera.add", f"camera:{cam.id}", name=cam.name)
    print(f"added camera {cam.id} {cam.name}")
    return 0


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, store.sessions() as session:
        sites = await inventory.site_names(session)
        cams = [camera_json(c, sites) for c in await inventory.list_cameras(session, args.site)]
    if args.json:
        print_json(cams)
    else:
        print_table(cams, ["id", "name", "site", "kind", "state", "last_segment", "state_reason"])
    return 0


async def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, store.sessions() as session:
        cam = await inventory.get_camera(session, args.camera)
        print_json(camera_json(cam, await inventory.site_names(session)))
    return 0


async def cmd_update(settings: Settings, args: argparse.Namespace) -> int:
    data = _given(args)
    if args.new_name:
        data["name"] = args.new_name
    if args.enabled is not None:
        data["enabled"] = args.enabled
    if args.recording:
        data["recording"] = args.recording == "on"
    if not data:
        raise Invalid("nothing to change: give at least one option")
    update = inventory.parse_spec(inventory.CameraUpdate, data)
    async with open_store(settings) as store, transaction(store.sessions) as session:
        cam = await inventory.update_camera(session, args.camera, update, store.keys)
        await audit.append(session, CLI_ACTOR, "camera.update", f"camera:{cam.id}", fields=sorted(data))
    print(f"updated camera {cam.id} {cam.name}")
    return 0


async def cmd_remove(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, transaction(store.sessions) as session:
        cam = await inventory.remove_camera(session, args.camera)
        await audit.append(session, CLI_ACTOR, "camera.remove", f"camera:{cam.id}", name=cam.name)
    print(f"removed camera {cam.id} {cam.name}")
    return 0


def load_inventory_file(path: Path) -> tuple[list[inventory.SiteSpec], list[inventory.CameraSpec]]:
    """Parse and validate a TOML inventory; errors name the file, the entry and the field."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise Invalid(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise Invalid(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"sites", "cameras"}
    if unknown:
        raise Invalid(f"{path}: unknown top-level keys {sorted(unknown)}; expected [[sites]] and [[cameras]]")
    sites = [inventory.parse_spec(inventory.SiteSpec, s, f"{path}: sites[{i}]") for i, s in enumerate(data.get("sites", []))]
    cameras = []
    for i, raw in enumerate(data.get("cameras", [])):
        where = f"{path}: cameras[{i}]" + (f" ({raw.get('name')})" if isinstance(raw, dict) and raw.get("name") else "")
        if isinstance(raw, dict) and "password_file" in raw:
            raw = dict(raw)
            raw["password"] = _read_password(path.parent / raw.pop("password_file")) or ""
        cameras.append(inventory.parse_spec(inventory.CameraSpec, raw, where))
    return sites, cameras


async def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    sites, cameras = load_inventory_file(args.file)
    async with open_store(settings) as store, transaction(store.sessions) as session:
        for site in sites:
            await inventory.add_site(session, site)
        for spec in cameras:
            await inventory.add_camera(session, spec, store.keys)
        await audit.append(session, CLI_ACTOR, "inventory.import", str(args.file.name),
                           sites=len(sites), cameras=len(cameras))
    print(f"imported {len(sites)} sites and {len(cameras)} cameras from {args.file}")
    return 0


async def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, store.sessions() as session:
        sites = await inventory.list_sites(session)
        names = {s.id: s.name for s in sites}
        cams = await inventory.list_cameras(session)
    out = sys.stdout
    for s in sites:
        out.write(f"[[sites]]\nname = {_q(s.name)}\nlocation = {_q(s.location)}\n\n")
    keep = ["position", "kind", "main_url", "sub_url", "snapshot_url", "onvif_xaddr", "username", "notes", "lane", "direction"]
    for c in cams:
        out.write(f"[[cameras]]\nname = {_q(c.name)}\n")
        if c.site_id:
            out.write(f"site = {_q(names[c.site_id])}\n")
        for k in keep:
            if getattr(c, k):
                out.write(f"{k} = {_q(getattr(c, k))}\n")
        if c.retention_days:
            out.write(f"retention_days = {c.retention_days}\n")
        out.write(f"enabled = {str(c.enabled).lower()}\nrecording = {str(c.recording).lower()}\n\n")
    return 0


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
