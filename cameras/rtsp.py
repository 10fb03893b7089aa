"""RTSP URLs with credentials, built only in memory, and scrubbing them out of any text we keep.

Stored URLs never carry credentials (storage.inventory refuses them); the username and the
decrypted password are put in only when a process is started, and every line of ffmpeg output
we keep or log goes through :func:`scrub` first. The URL with credentials is built by
:func:`storage.inventory.credentialed_url`.
"""

from __future__ import annotations

import re
from urllib.parse import quote

# user:password@ in any URL-looking text, also when percent-encoded.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def scrub(text: str, *secrets: str) -> str:
    """Remove credentials from URLs in ``text``, and any of ``secrets`` wherever they appear."""
    text = _CREDENTIALS.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text
