"""controlroom tokens create|list|revoke: API tokens for machine clients.

``create`` prints the token once; only its SHA-256 is stored. A token acts as its user, limited
to its scopes (permission names) and its expiry. Rights are not transferable: whoever runs the
CLI (the host's operator) must give the user's own password (``--password-file``), and the
scopes must be within the user's role, as through the API (docs/design/security-model.md).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from controlroom.api.users import check_scopes, check_scopes_held, token_json
from controlroom.auth import read_password_file
from controlroom.commands.common import open_store, print_json, print_table
from controlroom.commands.users import cli_actor
from controlroom.permissions import Permission, role_permissions
from controlroom.settings import Settings
from storage import Invalid, accounts, audit
from storage.db import now_us, transaction


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokens", help="API tokens for machine clients")
    s = p.add_subparsers(dest="tokens_command", required=True)

    c = s.add_parser("create", help="create a token and print it once")
    c.add_argument("name")
    c.add_argument("--user", required=True, help="the user the token acts as")
    c.add_argument("--scope", nargs="+", required=True, metavar="SCOPE",
                   help="permission names: " + ", ".join(p.value for p in Permission if p is not Permission.PUBLIC))
    c.add_argument("--expires", required=True, help="lifetime: 90m, 12h, 30d, 2w")
    c.add_argument("--password-file", type=Path, required=True,
                   help="file whose first line is the user's own password: a token acts as its user, "
                        "so only that user can create it")
    c.set_defaults(func=cmd_create)

    ls = s.add_parser("list", help="list tokens (never the token itself)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    r = s.add_parser("revoke", help="revoke a token")
    r.add_argument("name")
    r.set_defaults(func=cmd_revoke)


async def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    scopes = check_scopes(args.scope)
    expires_us = now_us() + accounts.parse_duration_s(args.expires) * 1_000_000
    password = await asyncio.to_thread(read_password_file, args.password_file)
    async with open_store(settings) as store:
        async with store.sessions() as session:
            user = await accounts.get_user(session, args.user)
            password_hash = user.password_hash
        ok = await asyncio.to_thread(accounts.verify_password, password_hash, password)
        async with transaction(store.sessions) as session:
            user = await accounts.get_user(session, args.user)
            refusal = ("wrong password" if not ok else "account disabled" if user.disabled
                       else "account locked" if accounts.locked(user, now_us())
                       else "password change required" if user.must_change_password else "")
            if refusal:
                await audit.append(session, cli_actor(), "token.create_refused", f"token:{args.name}",
                                   user=args.user, reason=refusal)
        if refusal:  # raised after the refusal's entry committed
            raise Invalid(f"token not created for {args.user}: {refusal} (a token acts as its user, so "
                          "it needs that user's own password and an account in good standing)")
        check_scopes_held(scopes, role_permissions(user.role))
        async with transaction(store.sessions) as session:
            user = await accounts.get_user(session, args.user)
            token, _ = await accounts.create_token(session, args.name, user, scopes, expires_us, cli_actor())
            await audit.append(session, cli_actor(), "token.create", f"token:{args.name}", user=args.user,
                               scopes=scopes, expires_us=expires_us, authorised_by="user's password")
    print(token)
    return 0


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, store.sessions() as session:
        rows = [token_json(t, u) for t, u in await accounts.list_tokens(session)]
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            r["scopes"] = ",".join(r["scopes"])
            r["state"] = "revoked" if r["revoked"] else "active"
        print_table(rows, ["name", "user", "scopes", "state", "expires", "last_used"])
    return 0


async def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings) as store, transaction(store.sessions) as session:
        await accounts.revoke_token(session, args.name)
        await audit.append(session, cli_actor(), "token.revoke", f"token:{args.name}")
    print(f"revoked token {args.name}")
    return 0
