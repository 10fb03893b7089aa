"""One work-around for the Python we run on, installed once per process.

CPython 3.11 keeps ``ast.parse``'s recursion counter in state shared by every thread
(python/cpython#106905). When two threads build an AST at once, one of them fails with
``SystemError: AST constructor recursion depth mismatch``. Formatting a traceback parses source
(``traceback`` marks the failing expression with carets; pytest reports a failure from source), so
two threads logging or reporting an error at the same moment lose one of the two: a log line
dropped with "--- Logging error ---", or pytest's INTERNALERROR that ends a whole test run. One
lock around ``ast.parse`` makes those parses take turns; they are rare and short.
"""

from __future__ import annotations

import ast
import threading

_LOCK = threading.RLock()  # re-entrant: a finaliser run by the collector mid-parse may parse too


def serialise_ast_parse() -> None:
    """Make ``ast.parse`` take a process-wide lock (idempotent)."""
    if getattr(ast.parse, "__wrapped__", None) is not None:
        return
    unlocked = ast.parse

    def parse(*args, **kwargs):
        with _LOCK:
            return unlocked(*args, **kwargs)

    parse.__wrapped__ = unlocked
    parse.__doc__ = unlocked.__doc__
    ast.parse = parse
