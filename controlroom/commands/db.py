"""controlroom db upgrade|current"""

from __future__ import annotations

import argparse

from controlroom.settings import Settings
from storage.db import make_engine
from storage.migrate import current_revision, head_revision, upgrade


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database schema migrations")
    s = p.add_subparsers(dest="db_command", required=True)
    s.add_parser("upgrade", help="migrate the database to the newest schema").set_defaults(func=cmd_upgrade)
    s.add_parser("current", help="show the schema revision").set_defaults(func=cmd_current)


async def cmd_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    try:
        await upgrade(engine)
        print(f"database at revision {await current_revision(engine)}")
    finally:
        await engine.dispose()
    return 0


async def cmd_current(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.db_url)
    try:
        print(f"current {await current_revision(engine)}, newest {head_revision()}")
    finally:
        await engine.dispose()
    return 0
