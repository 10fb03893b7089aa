"""What commands share: opening the database of a data directory, printing JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlroom.settings import Settings
from storage.db import make_engine, make_sessionmaker
from storage.keys import Keys, load_or_create_keys
from storage.migrate import upgrade


@dataclass
class Store:
    sessions: async_sessionmaker[AsyncSession]
    keys: Keys


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """The data directory's database (migrated to head) and key file, for a CLI command."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    keys = await asyncio.to_thread(load_or_create_keys, settings.key_file)
    engine = make_engine(settings.db_url)
    try:
        await upgrade(engine)
        yield Store(make_sessionmaker(engine, audit_key=keys.audit_mac_key), keys)
    finally:
        await engine.dispose()


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "") if r.get(c) is not None else "").ljust(widths[c]) for c in columns))
