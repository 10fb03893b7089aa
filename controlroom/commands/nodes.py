"""controlroom nodes list|forget; controlroom cameras move CAM --to NODE (docs/design/cluster.md)."""

from __future__ import annotations

import argparse

from controlroom.commands.common import open_store, print_json, print_table
from controlroom.settings import Settings
from controlroom.timefmt import local_iso
from storage import audit, inventory, nodes
from storage.db import transaction

CLI_ACTOR = "cli"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nodes", help="the nodes of a cluster: roles, cameras, last heartbeat")
    s = p.add_subparsers(dest="nodes_command", required=True)
    ls = s.add_parser("list", help="list the nodes with their roles, cameras and last heartbeat")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    fg = s.add_parser("forget", help="remove a node that is gone for good (refused while it runs)")
    fg.add_argument("node", help="the node id (see: controlroom nodes list)")
    fg.set_defaults(func=cmd_forget)


def register_move(cameras: argparse._SubParsersAction) -> None:
    """``cameras move``, added to the cameras group (controlroom.commands.inventory)."""
    mv = cameras.add_parser("move", help="record a camera on another node of the cluster")
    mv.add_argument("camera", help="id or name")
    mv.add_argument("--to", required=True, metavar="NODE", help="the node id (see: controlroom nodes list)")
    mv.add_argument("--role", choices=nodes.LEASED_ROLES, default="recorder",
                    help="move its recording (default) or its plate reading (anpr)")
    mv.set_defaults(func=cmd_move)


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, store.sessions() as session:
        found = await nodes.list_nodes(session, settings.cluster.lease_ttl_s)
        now = await nodes.db_now_us(session)
    rows = [{"id": n.id, "roles": ",".join(n.roles), "state": n.state, "cameras": n.cameras, "capacity": n.capacity,
             "anpr_cameras": n.anpr_cameras, "anpr_capacity": n.anpr_capacity,
             "host": n.host, "pid": n.pid, "heartbeat_s_ago": round((now - n.heartbeat_us) / 1e6, 1),
             "last_heartbeat": local_iso(n.heartbeat_us)} for n in found]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["id", "roles", "state", "cameras", "capacity", "anpr_cameras", "last_heartbeat",
                           "heartbeat_s_ago", "host"])
    return 0


async def cmd_forget(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, transaction(store.sessions) as session:
        leases, given_back = await nodes.forget(session, args.node, settings.cluster.lease_ttl_s)
        await audit.append(session, CLI_ACTOR, "node.forget", f"node:{args.node}", leases=leases, jobs=given_back)
    print(f"node {args.node} forgotten: {leases} camera leases removed (the other nodes claim those cameras), "
          f"{len(given_back)} jobs queued again")
    return 0


async def cmd_move(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, transaction(store.sessions) as session:
        cam = await inventory.get_camera(session, args.camera)
        outcome = await nodes.move(session, cam.id, args.to, settings.cluster.lease_ttl_s, args.role)
        await audit.append(session, CLI_ACTOR, "camera.move", f"camera:{cam.id}", to_node=args.to, outcome=outcome,
                           role=args.role)
    if outcome == "asked":
        print(f"camera {cam.id} ({cam.name}): its node hands it to {args.to} once its segment is finalised "
              f"(within {settings.cluster.heartbeat_s:g} s)")
    else:
        print(f"camera {cam.id} ({cam.name}): now leased to {args.to}")
    return 0
