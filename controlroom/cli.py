"""The ``controlroom`` command line. Each command group lives in ``controlroom/commands/``.

Every command takes the global ``--data-dir DIR`` (and ``--config FILE``), so several
instances can run side by side and one instance's CLI can inspect it while it runs.
Exit status: 0 success, 1 failure the user can fix (the message says how), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from controlroom.commands import COMMAND_MODULES
from controlroom.errors import status_for
from controlroom.files import restrict_umask, secure_data_dir
from controlroom.pyfix import serialise_ast_parse
from controlroom.settings import SettingsError, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="controlroom",
        description="A public-space CCTV control room: cameras, recording, ANPR, evidence.",
    )
    parser.add_argument("--data-dir", type=Path, help="data directory (database, key, recordings)")
    parser.add_argument("--config", type=Path, action="append", default=[], help="extra settings TOML file")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    serialise_ast_parse()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic announces its context and every migration at INFO on each command; a command's
    # output is its result (and stderr its errors), so those lines appear only with -v.
    logging.getLogger("alembic").setLevel(logging.NOTSET if args.verbose else logging.WARNING)
    # Before anything is written: files 0640, folders 0750 (controlroom/files.py). Put back on
    # return, so a caller that runs main() in its own process (the tests) keeps its own.
    previous_umask = restrict_umask()
    try:
        settings = load_settings(args.data_dir, args.config)
        secure_data_dir(settings.data_dir)
        result = args.func(settings, args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except SettingsError as exc:
        print(f"controlroom: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if status_for(exc) is None:
            raise
        print(f"controlroom: {exc}", file=sys.stderr)
        return 1
    finally:
        os.umask(previous_umask)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
