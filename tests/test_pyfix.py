"""Threads that parse source at once (two tracebacks formatted together) no longer break each other.

Without controlroom.pyfix, CPython 3.11 fails this with ``SystemError: AST constructor recursion
depth mismatch`` (python/cpython#106905): it ended a CI run with pytest's INTERNALERROR. Each
thread parses at its own stack depth while a finaliser, run by the collector in the middle of a
parse, lets the other threads in.
"""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

from controlroom.pyfix import serialise_ast_parse

SOURCE = (Path(__file__).resolve().parent.parent / "controlroom" / "cli.py").read_text()


class _Yields:
    def __del__(self):
        time.sleep(0)  # gives up the GIL from inside whatever allocation ran the collector


def _at_depth(n: int, fn) -> None:
    return fn() if n == 0 else _at_depth(n - 1, fn)


def test_parses_in_many_threads_at_once_all_succeed():
    serialise_ast_parse()  # conftest already did; this test must hold without depending on it
    errors: list[str] = []

    def parse_once():
        for _ in range(30):  # cyclic garbage with a finaliser, for the collector to meet mid-parse
            cycle = _Yields()
            cycle.me = cycle
        ast.parse(SOURCE)

    def work(depth: int):
        for _ in range(150):
            try:
                _at_depth(depth, parse_once)
            except SystemError as exc:
                errors.append(str(exc))
                return

    threads = [threading.Thread(target=work, args=(depth,)) for depth in (1, 20, 40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
