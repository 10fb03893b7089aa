"""controlroom tokens create|list|revoke: API tokens for machine clients.

``create`` prints the token once; only its SHA-256 is stored. A token acts as its user, limited
to its scopes (permission names) and its expiry.
"""

from __future__ import annotations

import argparse

from controlroom.api.users import check_scopes, token_json
from controlroom.commands.common import open_store, print_json, print_table
from controlroom.commands.users import cli_actor
from controlroom.permissions import Permission
from controlroom.settings import Settings
from storage import accounts, audit
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
    async with open_store(settings) as store, transaction(store.sessions) as session:
        user = await accounts.get_user(session, args.user)
        token, _ = await accounts.create_token(session, args.name, user, scopes, expires_us, cli_actor())
        await audit.append(session, cli_actor(), "token.create", f"token:{args.name}", user=args.user,
                           scopes=scopes, expires_us=expires_us)
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
