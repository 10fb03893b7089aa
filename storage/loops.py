"""Background loops: run a step every N seconds, log a failure with its context and go on, stop
when cancelled. The one implementation for every package (cameras/ and anpr/ may import only
storage/, hence here; see docs/design/README.md).

A failing step is logged at ERROR with the loop's name, the error and how many times in a row it
has failed. The traceback is logged on the first failure and whenever the error changes; a
repeat of the same error is one line with the count (a database that is down for an hour would
otherwise print 360 identical tracebacks from a 10 s loop). The first success after failures
is logged too. What a loop must make visible beyond the log (a camera's state, a note for
``/healthz``, an alert) its ``on_error`` callback does.

Cancellation is never caught: ``task.cancel()`` stops the loop at its next await (the step's or
the wait's) and the task ends cancelled.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Every", "describe_error", "run_every"]


def describe_error(exc: BaseException) -> str:
    """One line for the operator: what failed, without a traceback or a statement's parameters."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


OnError = Callable[[Exception, int], Awaitable[None] | None]
"""Called after a failure is logged with the error and the count of failures in a row (1 for
the first): make the failing state visible (a camera's state, a health note, an alert)."""


class Every:
    """A step run every ``interval_s`` seconds by :meth:`run`; :meth:`tick` is one step, for tests.

    ``retry_s``: the wait after a failure, when shorter than the interval (default: the
    interval). ``wait_first``: wait one interval before the first step (loops whose first step
    was done at start-up). ``until_success``: stop after the first step that does not raise (a
    guard that restarts a long-running step when it fails). ``wait``: how to wait (default
    ``asyncio.sleep``), for loops that can also be woken early.
    """

    def __init__(
        self,
        interval_s: float,
        step: Callable[[], Awaitable[Any]],
        *,
        name: str,
        log: logging.Logger,
        retry_s: float | None = None,
        wait_first: bool = False,
        until_success: bool = False,
        on_error: OnError | None = None,
        wait: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.interval_s, self.step, self.name, self.log = interval_s, step, name, log
        self.retry_s = retry_s
        self.wait_first, self.until_success = wait_first, until_success
        self.on_error, self.wait = on_error, wait
        self.failures = 0  # in a row; 0 after a success
        self.last_error = ""  # describe_error of the last failure
        self._failing_since: float | None = None

    def delay_s(self) -> float:
        """The wait before the next step: the interval, or the retry wait after a failure."""
        if self.failures and self.retry_s is not None:
            return min(self.interval_s, self.retry_s)
        return self.interval_s

    async def tick(self) -> bool:
        """Run the step once; log a failure (and call ``on_error``). True if it succeeded."""
        try:
            await self.step()
        except Exception as exc:  # noqa: BLE001 - logged with context, made visible, retried
            await self._failed(exc)
            return False
        if self.failures:
            self.log.warning("%s: works again after %d failure%s in %.0f s (last: %s)", self.name, self.failures,
                             "" if self.failures == 1 else "s",
                             time.monotonic() - (self._failing_since or time.monotonic()), self.last_error)
        self.failures, self.last_error, self._failing_since = 0, "", None
        return True

    async def run(self) -> None:
        """Step, wait, step...; returns only with ``until_success``, after a success."""
        if self.wait_first:
            await self.wait(self.interval_s)
        while True:
            if await self.tick() and self.until_success:
                return
            await self.wait(self.delay_s())

    async def _failed(self, exc: Exception) -> None:
        error = describe_error(exc)
        self.failures += 1
        if self.failures == 1:
            self._failing_since = time.monotonic()
        next_s = self.delay_s()
        if self.failures == 1 or error != self.last_error:
            self.log.error("%s failed: %s; next try in %g s", self.name, error, next_s, exc_info=exc)
        else:
            self.log.error("%s failed again (%d in a row): %s; next try in %g s",
                           self.name, self.failures, error, next_s)
        self.last_error = error
        if self.on_error is None:
            return
        try:
            result = self.on_error(exc, self.failures)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.log.exception("%s: could not report its failure (%s) either", self.name, error)


async def run_every(interval_s: float, step: Callable[[], Awaitable[Any]], **options: Any) -> None:
    """Run ``step`` every ``interval_s`` seconds until cancelled: a failure is logged with the
    loop's ``name`` and the error, and the loop goes on. ``options`` are :class:`Every`'s
    (``name`` and ``log`` are required)."""
    await Every(interval_s, step, **options).run()
