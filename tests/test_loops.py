"""storage.loops: the one background-loop helper (issue 12)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from storage.loops import Every, run_every

log = logging.getLogger("test.loops")


class Steps:
    """A step that fails with the errors it is given, then succeeds; counts its calls."""

    def __init__(self, *errors: Exception | None) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.called = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        self.called.set()
        if self.errors and (error := self.errors.pop(0)) is not None:
            raise error


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "test.loops"]


async def test_runs_the_step_every_interval_and_goes_on_after_an_error(caplog) -> None:
    step = Steps(RuntimeError("boom"), None, None)
    with caplog.at_level(logging.WARNING, logger="test.loops"):
        task = asyncio.create_task(run_every(0.01, step, name="test loop", log=log))
        while step.calls < 4:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    first, recovered = records(caplog)[:2]
    assert first.levelno == logging.ERROR and first.exc_info
    assert first.getMessage() == "test loop failed: RuntimeError: boom; next try in 0.01 s"
    assert recovered.getMessage().startswith("test loop: works again after 1 failure in ")


async def test_a_repeated_failure_logs_its_traceback_once_then_a_line_with_the_count(caplog) -> None:
    down = ConnectionError("database is down")
    seen: list[int] = []

    async def on_error(exc: Exception, failures: int) -> None:
        seen.append(failures)

    every = Every(10, Steps(down, down, down, KeyError("x"), None), name="inventory reload", log=log,
                  on_error=on_error)
    with caplog.at_level(logging.WARNING, logger="test.loops"):
        assert [await every.tick() for _ in range(5)] == [False, False, False, False, True]
    lines = [(r.getMessage(), bool(r.exc_info)) for r in records(caplog)]
    assert lines[:4] == [
        ("inventory reload failed: ConnectionError: database is down; next try in 10 s", True),
        ("inventory reload failed again (2 in a row): ConnectionError: database is down; next try in 10 s", False),
        ("inventory reload failed again (3 in a row): ConnectionError: database is down; next try in 10 s", False),
        ("inventory reload failed: KeyError: 'x'; next try in 10 s", True),  # a new error: its traceback
    ]
    assert lines[4][0].startswith("inventory reload: works again after 4 failures in ")
    assert seen == [1, 2, 3, 4] and every.failures == 0


async def test_stops_on_cancel_and_never_runs_the_step_again() -> None:
    step = Steps()
    task = asyncio.create_task(run_every(3600, step, name="test loop", log=log))
    await asyncio.wait_for(step.called.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled() and step.calls == 1


async def test_cancel_during_the_step_is_not_taken_for_a_failure(caplog) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(3600)

    with caplog.at_level(logging.DEBUG, logger="test.loops"):
        task = asyncio.create_task(run_every(1, slow, name="test loop", log=log))
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert records(caplog) == []


async def test_retry_wait_wait_first_and_until_success() -> None:
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    step = Steps(OSError("no"), OSError("no"), None)
    await run_every(30, step, name="guard", log=log, retry_s=5, wait_first=True, until_success=True, wait=wait)
    assert step.calls == 3 and waits == [30, 5, 5]  # returned after the first success


async def test_a_failing_on_error_is_logged_and_the_loop_goes_on(caplog) -> None:
    def on_error(exc: Exception, failures: int) -> None:
        raise RuntimeError("alerts unavailable")

    every = Every(1, Steps(ValueError("bad"), None), name="anchor", log=log, on_error=on_error)
    with caplog.at_level(logging.ERROR, logger="test.loops"):
        assert not await every.tick()
        assert await every.tick()
    messages = [r.getMessage() for r in records(caplog)]
    assert "anchor: could not report its failure (ValueError: bad) either" in messages
