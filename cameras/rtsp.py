"""RTSP URLs with credentials, built only in memory, and scrubbing them out of any text we keep.

Stored URLs never carry credentials (storage.inventory refuses them); the username and the
decrypted password are put in only when a process is started, and every line of ffmpeg output
we keep or log goes through :func:`scrub` first.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit, urlunsplit

# user:password@ in any URL-looking text, also when percent-encoded.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def credentialed_url(url: str, username: str, password: str) -> str:
    """``url`` with ``username:password@`` inserted (percent-encoded). Never log the result."""
    if not username:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def scrub(text: str, *secrets: str) -> str:
    """Remove credentials from URLs in ``text``, and any of ``secrets`` wherever they appear."""
    text = _CREDENTIALS.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text
