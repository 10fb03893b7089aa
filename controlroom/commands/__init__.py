"""Command groups of the CLI. Each module has ``register(subparsers)`` and sets ``func``.

A command's ``func(settings, args)`` may be a coroutine function; ``cli.main`` runs it.
"""

from controlroom.commands import (
    anpr,
    audit,
    db,
    demo,
    export,
    hotlists,
    inventory,
    recordings,
    serve,
    simulate,
    tokens,
    users,
)
from controlroom.commands import onvif as onvif_commands

COMMAND_MODULES = [onvif_commands, db, serve, demo, inventory, recordings, users, tokens, audit, export, hotlists, simulate, anpr]
