"""controlroom: the service, its HTTP API, web UI, CLI and wiring. Nothing imports it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("controlroom")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"
