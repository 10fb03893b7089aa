"""controlroom masks show|set|clear CAMERA: a camera's privacy masks from the command line.

``set`` takes the polygons as JSON (``[[[x, y], ...], ...]``, fractions 0..1 of the picture from
its top left) from ``--polygons`` or a file (``--file``). Every change is audited as
``cli:<os user>`` with its reason (storage.masks); a running service notices within seconds and
ends the streams opened under the old masks (controlroom.masking). An ONVIF camera is then given
the new set to paint itself, or its masks are taken back (controlroom.onvif_actions.push_masks);
the command says who paints the set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from controlroom.api.masks import masks_json
from controlroom.commands.common import open_store, print_json
from controlroom.commands.users import cli_actor
from controlroom.onvif_actions import push_masks
from controlroom.settings import Settings
from storage import Invalid, inventory, masks
from storage.db import transaction


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("masks", help="privacy masks: the areas of a camera's picture no one without unmask sees")
    ss = p.add_subparsers(dest="masks_command", required=True)
    show = ss.add_parser("show", help="a camera's masks (JSON)")
    show.add_argument("camera", help="id or name")
    show.set_defaults(func=cmd_show)
    put = ss.add_parser("set", help="replace a camera's masks")
    put.add_argument("camera", help="id or name")
    given = put.add_mutually_exclusive_group(required=True)
    given.add_argument("--polygons", help='JSON: [[[x, y], ...], ...], fractions of the picture')
    given.add_argument("--file", type=Path, help="a file holding that JSON")
    put.add_argument("--reason", required=True)
    put.set_defaults(func=cmd_set)
    clear = ss.add_parser("clear", help="remove a camera's masks")
    clear.add_argument("camera", help="id or name")
    clear.add_argument("--reason", required=True)
    clear.set_defaults(func=cmd_clear)


def _polygons(args: argparse.Namespace) -> object:
    text = args.file.read_text() if args.file else args.polygons
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Invalid(f"polygons: not JSON ({exc})") from None


async def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, st.sessions() as session:
        cam = await inventory.get_camera(session, args.camera)
        print_json(masks_json(cam.id, await masks.get(session, cam.id)))
    return 0


async def cmd_set(settings: Settings, args: argparse.Namespace) -> int:
    polygons = _polygons(args)
    async with open_store(settings) as st, transaction(st.sessions) as session:
        cam = await inventory.get_camera(session, args.camera)
        row = await masks.set_masks(session, cam, polygons, reason=args.reason, by=cli_actor())
        print(f"camera {cam.name!r}: {len(row.polygons)} privacy mask(s) set (version {row.version})")
    async with open_store(settings) as st:
        painter = await push_masks(st.sessions, st.keys, None, cam.id, timeout_s=settings.cameras.onvif_timeout_s)
        async with st.sessions() as session:
            row = await masks.get(session, cam.id)
    print(f"camera {cam.name!r}: painted by the {painter or masks.SERVICE}"
          + (f" ({row.camera_state})" if row is not None and row.camera_state else ""))
    return 0


async def cmd_clear(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        cam = await inventory.get_camera(session, args.camera)
        await masks.clear(session, cam, reason=args.reason, by=cli_actor())
        print(f"camera {cam.name!r}: privacy masks cleared")
    async with open_store(settings) as st:  # an ONVIF camera stops painting them
        await push_masks(st.sessions, st.keys, None, cam.id, timeout_s=settings.cameras.onvif_timeout_s, clear=True)
    return 0
