"""controlroom users add|list|show|disable|enable|unlock|reset-password|reset-totp

Works on a data directory whether or not the service runs (a running service notices within
``security.auth_cache_s``). Passwords come from a file, never from the command line, where
other users could read them from the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
from pathlib import Path

from controlroom.api.users import user_json
from controlroom.auth import read_password_file
from controlroom.commands.common import open_store, print_json, print_table
from controlroom.settings import Settings
from storage import Invalid, accounts, audit
from storage.db import transaction


def cli_actor() -> str:
    """How the audit trail names a command-line user: ``cli:<os user>``."""
    try:
        return f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
    except KeyError:
        return f"cli:uid{os.getuid()}"


def _ids(text: str | None) -> list[int] | None:
    if text is None:
        return None
    if not text.strip():
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise Invalid(f"{text!r} is not a comma-separated list of ids") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("users", help="accounts: add, list, disable, reset passwords")
    s = p.add_subparsers(dest="users_command", required=True)

    add = s.add_parser("add", help="add a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=accounts.ROLES)
    add.add_argument("--password-file", type=Path, required=True, help="file whose first line is the password")
    add.add_argument("--sites", help="comma-separated site ids the user is narrowed to (default: all)")
    add.add_argument("--cameras", help="comma-separated camera ids the user is narrowed to (default: all)")
    add.add_argument("--must-change-password", action="store_true", help="make them choose their own at first login")
    add.set_defaults(func=cmd_add)

    ls = s.add_parser("list", help="list users")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    for name, helptext, func in (
        ("disable", "disable a user (ends their sessions, revokes their tokens)", cmd_disable),
        ("enable", "enable a disabled user", cmd_enable),
        ("unlock", "unlock a user locked by failed logins", cmd_unlock),
        ("reset-totp", "remove a user's TOTP second factor (they enrol again)", cmd_reset_totp),
    ):
        c = s.add_parser(name, help=helptext)
        c.add_argument("name")
        c.set_defaults(func=func)

    rp = s.add_parser("reset-password", help="set a new password (the user must change it at login)")
    rp.add_argument("name")
    rp.add_argument("--password-file", type=Path, required=True)
    rp.add_argument("--no-change-required", action="store_true", help="do not make them change it")
    rp.set_defaults(func=cmd_reset_password)

    scope = s.add_parser("scope", help="narrow a user to some sites and cameras (empty: all)")
    scope.add_argument("name")
    scope.add_argument("--sites")
    scope.add_argument("--cameras")
    scope.set_defaults(func=cmd_scope)


async def _read_new_password(settings: Settings, path: Path, username: str) -> str:
    password = await asyncio.to_thread(read_password_file, path)
    accounts.check_password_strength(password, username, settings.security.password_min_length)
    return await asyncio.to_thread(accounts.hash_password, password)


async def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    password_hash = await _read_new_password(settings, args.password_file, args.name)
    async with open_store(settings) as store, transaction(store.sessions) as session:
        user = await accounts.create_user(
            session, args.name, args.role, password_hash, must_change_password=args.must_change_password,
            site_ids=_ids(args.sites), camera_ids=_ids(args.cameras),
        )
        await audit.append(session, cli_actor(), "user.add", f"user:{args.name}", role=args.role,
                           site_ids=user.site_ids, camera_ids=user.camera_ids)
    print(f"added user {args.name} ({args.role})")
    return 0


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, store.sessions() as session:
        rows = [user_json(u) for u in await accounts.list_users(session)]
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            r["state"] = "disabled" if r["disabled"] else ("locked" if r["locked_until"] else "active")
            r["totp"] = "yes" if r["totp_enabled"] else "no"
            r["scope"] = ",".join(
                [f"site:{i}" for i in r["site_ids"]] + [f"camera:{i}" for i in r["camera_ids"]]
            ) or "all"
        print_table(rows, ["username", "role", "state", "totp", "scope", "last_login"])
    return 0


async def _change(settings: Settings, name: str, action: str, change) -> None:
    async with open_store(settings) as store, transaction(store.sessions) as session:
        user = await accounts.get_user(session, name)
        details = await change(session, user) or {}
        if user.role == "administrator" or action == "user.disable":
            admins = [u for u in await accounts.list_users(session) if u.role == "administrator" and not u.disabled]
            if not admins:
                raise Invalid("this would leave no enabled administrator")
        await audit.append(session, cli_actor(), action, f"user:{name}", **details)


async def cmd_disable(settings: Settings, args: argparse.Namespace) -> int:
    async def change(session, user):
        await accounts.set_disabled(session, user, True)
        await session.flush()
    await _change(settings, args.name, "user.disable", change)
    print(f"disabled user {args.name}; their sessions ended and tokens were revoked")
    return 0


async def cmd_enable(settings: Settings, args: argparse.Namespace) -> int:
    async def change(session, user):
        await accounts.set_disabled(session, user, False)
    await _change(settings, args.name, "user.enable", change)
    print(f"enabled user {args.name}")
    return 0


async def cmd_unlock(settings: Settings, args: argparse.Namespace) -> int:
    async def change(session, user):
        accounts.unlock(user)
    await _change(settings, args.name, "user.unlock", change)
    print(f"unlocked user {args.name}")
    return 0


async def cmd_reset_totp(settings: Settings, args: argparse.Namespace) -> int:
    async def change(session, user):
        accounts.totp_reset(user)
    await _change(settings, args.name, "user.reset_totp", change)
    print(f"removed the TOTP factor of {args.name}")
    return 0


async def cmd_reset_password(settings: Settings, args: argparse.Namespace) -> int:
    password_hash = await _read_new_password(settings, args.password_file, args.name)

    async def change(session, user):
        await accounts.set_password(session, user, password_hash, must_change=not args.no_change_required)
        return {"must_change": not args.no_change_required}
    await _change(settings, args.name, "user.reset_password", change)
    print(f"set a new password for {args.name}; their sessions ended")
    return 0


async def cmd_scope(settings: Settings, args: argparse.Namespace) -> int:
    async def change(session, user):
        accounts.set_scope(user, _ids(args.sites), _ids(args.cameras))
        return {"site_ids": user.site_ids, "camera_ids": user.camera_ids}
    await _change(settings, args.name, "user.scope", change)
    print(f"changed the scope of {args.name}")
    return 0
