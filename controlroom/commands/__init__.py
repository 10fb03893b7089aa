"""Command groups of the CLI. Each module has ``register(subparsers)`` and sets ``func``.

A command's ``func(settings, args)`` may be a coroutine function; ``cli.main`` runs it.
"""

from controlroom.commands import db, inventory, recordings, serve

COMMAND_MODULES = [db, serve, inventory, recordings]
