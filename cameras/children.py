"""Child processes bound to what they serve: none outlives the service, even on ``kill -9``.

Every ffmpeg the service starts (recorders, live upstreams, snapshots, playback remuxes,
evidence working copies) and the simulator's RTSP server is started with :func:`bind_to_parent`
as its ``preexec_fn``:

- ``prctl(PR_SET_PDEATHSIG, sig)``: the kernel sends ``sig`` to the child when the service
  dies, however it dies (SIGKILL included). Recorders ask for SIGTERM, on which ffmpeg finalises
  its segment; the others for SIGKILL (nothing to save). The signal is tied to the *thread*
  that started the child: asyncio starts children from the event loop's thread (the main
  thread); ``subprocess.Popen`` from a worker thread of an executor, which lives as long as the
  executor.
- the parent's pid is checked after the ``prctl``: a parent that died before it would leave
  the child unbound, so the child exits at once instead.
- ``os.setpgrp()`` (``own_group``): a terminal's Ctrl-C reaches only the service, which stops
  its children in its own order (recorders first, so segments are finalised).

Each owner ends its children itself (see docs/design/recording-store.md, "Processes and
stopping"); :func:`end_descendants` is the last resort of a forced stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# Loaded once in the parent: a child between fork and exec must not load libraries.
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def bind_to_parent(sig: signal.Signals = signal.SIGKILL, *, own_group: bool = True) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get ``sig`` when this process dies."""
    parent = os.getpid()

    def preexec() -> None:  # pragma: no cover - runs in the child, between fork and exec
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
        if own_group:
            os.setpgrp()

    return preexec


async def spawn(*args: str, deathsig: signal.Signals = signal.SIGKILL, own_group: bool = True,
                **kwargs) -> asyncio.subprocess.Process:
    """``asyncio.create_subprocess_exec`` for a child bound to this process (see the module)."""
    return await asyncio.create_subprocess_exec(*args, preexec_fn=bind_to_parent(deathsig, own_group=own_group),
                                                **kwargs)


async def end(proc: asyncio.subprocess.Process) -> None:
    """Kill a child that serves nothing any more and reap it (no zombie), even if the caller
    is being cancelled meanwhile.

    What is left in its output pipes is read and dropped: asyncio's ``wait()`` returns only once
    every pipe has closed, and a pipe whose reader stopped reading (its buffer full: a playback
    remux whose player left while the stream waited on back-pressure) never closes. Without
    this, the caller hung for good, holding the files it had open."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.shield(_drained_and_reaped(proc))


async def _drained_and_reaped(proc: asyncio.subprocess.Process) -> None:
    for stream in (proc.stdout, proc.stderr):
        if stream is None:
            continue
        try:
            while await stream.read(1 << 16):
                pass
        except (RuntimeError, OSError):  # another reader has it (and reads it to its end), or it broke
            pass
    await proc.wait()


def descendants(root: int | None = None) -> dict[int, str]:
    """Every live process below ``root`` (default: this one), with its command name."""
    root = os.getpid() if root is None else root
    parents: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        close = raw.rindex(")")
        state, ppid = raw[close + 2:].split()[:2]
        if state == "Z":
            continue
        names[int(entry)] = raw[raw.index("(") + 1:close]
        parents.setdefault(int(ppid), []).append(int(entry))
    out: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out[child] = names[child]
            todo.append(child)
    return out


def end_descendants(grace_s: float) -> dict[int, str]:
    """A forced stop's last step: SIGTERM to every descendant (ffmpeg finalises its file on
    it), SIGKILL to any still there after ``grace_s``. Returns those that needed SIGKILL."""
    left = descendants()
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {pid: name for pid, name in left.items() if pid in descendants()}
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left
