"""The HTTP access log, with secrets taken out of it.

A one-time download link carries its token in the path (``/api/v1/evidence/download/{token}``)
and a client may send ``?token=`` or ``?password=`` in a query; aiohttp's access log would write
them to disk for anyone who can read the logs (issue 11, found 9). One rule, applied to every
field of every line (the request line, and headers such as Referer that may quote a URL): the
value of any path parameter, and of any query parameter, whose name looks like a secret (token,
password, secret, key, signature, auth, credential) becomes ``[redacted]``. The path parameters
are read from the app's own routes, so a new route with a ``{token}`` is covered without being
listed here.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable

from aiohttp import web
from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

REDACTED = "[redacted]"
_SECRET_WORDS = r"token|passw|secret|key|sig|auth|credential"
SECRET_NAME = re.compile(_SECRET_WORDS, re.IGNORECASE)
# name=value in a query string; the name is kept, the value goes.
_QUERY_SECRET = re.compile(
    rf"(?P<name>[?&;][^=&;#\s\"]*?(?:{_SECRET_WORDS})[^=&;#\s\"]*=)(?P<value>[^&;#\s\"]*)", re.IGNORECASE
)
_PARAM = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::[^{}]*)?\}")
_SEGMENT = r"[^/?#\s\"]+"


def secret_path_patterns(router: web.UrlDispatcher) -> list[re.Pattern[str]]:
    """For each route path parameter named like a secret: a pattern whose group 1 is the URL up
    to that parameter and group 2 its value (other parameters match any one segment)."""
    patterns = []
    for resource in router.resources():
        canonical = resource.canonical
        params = list(_PARAM.finditer(canonical))
        for secret in (m for m in params if SECRET_NAME.search(m["name"])):
            prefix, at = "", 0
            for m in params:
                if m.start() >= secret.start():
                    break
                prefix += re.escape(canonical[at:m.start()]) + _SEGMENT
                at = m.end()
            prefix += re.escape(canonical[at:secret.start()])
            patterns.append(re.compile(f"({prefix})({_SEGMENT})"))
    return patterns


def redact(text: str, path_patterns: Iterable[re.Pattern[str]] = ()) -> str:
    """``text`` with secret path-parameter values and secret-named query values redacted."""
    for pattern in path_patterns:
        text = pattern.sub(lambda m: m[1] + REDACTED, text)
    return _QUERY_SECRET.sub(lambda m: m["name"] + REDACTED, text)


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access logger (same format, same ``aiohttp.access`` logger), every field redacted."""

    _patterns: list[re.Pattern[str]] | None = None

    def _format_line(self, request: BaseRequest, response: StreamResponse, time: float):
        if self._patterns is None:  # the router is frozen once the app serves: read it once
            app = None
            # A request the parser refused never reached the router: it has no app (aiohttp
            # asserts), and must not fix the patterns to none for every later line.
            with contextlib.suppress(AttributeError, AssertionError):
                app = request.app
            if app is not None:
                self._patterns = secret_path_patterns(app.router)
        return [(key, redact(value, self._patterns or ()) if isinstance(value, str) else value)
                for key, value in super()._format_line(request, response, time)]


def loggable_path(request: web.Request) -> str:
    """The request's path and query as any log line may show them (secrets redacted)."""
    return redact(request.path_qs, secret_path_patterns(request.app.router))
