"""storage: database models and queries, the segment catalogue, retention, holds, the audit chain.

Imports nothing else of ours.
"""


class StorageError(Exception):
    """Root of the errors this package raises."""


class NotFound(StorageError):
    """The thing asked for does not exist."""


class Invalid(StorageError):
    """Bad input: the caller should fix the request."""


class Conflict(StorageError):
    """The thing is in a state that refuses this (a closed incident, signing on while on duty)."""
