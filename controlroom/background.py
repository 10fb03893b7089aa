"""The service's background loops, watched: a loop whose step fails is a note in ``/healthz``
(503, ``{"component": ..., "reason": ...}``) and in ``/metrics`` (``controlroom_component_failing``)
until its next step succeeds. Every periodic loop of the service is made here, so none can fail
only in the log (docs/design/recording-store.md, Health); storage.loops does the running, the
logging and the retry.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from controlroom.context import HEALTH_NOTES
from storage.loops import Every, describe_error

__all__ = ["RETRY_S", "watched"]

# After a failure, the next try comes this soon (unless the loop says otherwise): a note must not
# outlive its cause (a database restart, say) by a whole interval of an hourly sweep.
RETRY_S = 10.0


def watched(app: web.Application, component: str, interval_s: float, step: Callable[[], Awaitable[Any]], *,
            what: str, log: logging.Logger, **options: Any) -> Every:
    """``step`` every ``interval_s`` (``options`` as :class:`storage.loops.Every`'s). A failure
    sets the note ``component`` to "``what`` failed: error"; the next success removes it. The
    retry after a failure comes after at most ``RETRY_S`` unless ``retry_s`` is given."""
    notes = app[HEALTH_NOTES]
    options.setdefault("retry_s", RETRY_S)
    on_error = options.pop("on_error", None)

    async def run() -> None:
        await step()
        notes.pop(component, None)

    async def failed(exc: Exception, failures: int) -> None:
        notes[component] = f"{what} failed: {describe_error(exc)}"
        if on_error is not None:
            result = on_error(exc, failures)
            if result is not None:
                await result

    return Every(interval_s, run, name=what, log=log, on_error=failed, **options)
