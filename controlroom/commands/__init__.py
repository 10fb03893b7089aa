"""Command groups of the CLI. Each module has ``register(subparsers)`` and sets ``func``.

A command's ``func(settings, args)`` may be a coroutine function; ``cli.main`` runs it.
"""

from controlroom.commands import (
    anpr,
    audit,
    db,
    demo,
    duty,
    export,
    faults,
    hotlists,
    incidents,
    inventory,
    masks,
    nodes,
    recordings,
    reports,
    ripa,
    sar,
    serve,
    simulate,
    tokens,
    users,
)
from controlroom.commands import onvif as onvif_commands

# In the order `controlroom --help` lists them: first what a newcomer runs, then daily work.
COMMAND_MODULES = [demo, serve, inventory, onvif_commands, recordings, anpr, hotlists, export, incidents, duty, faults,
                   ripa, sar, masks, reports, users, tokens, audit, nodes, simulate, db]
