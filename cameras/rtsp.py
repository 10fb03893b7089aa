"""RTSP URLs with credentials, built only in memory, and scrubbing them out of any text we keep.

Stored URLs never carry credentials (storage.inventory refuses them); the username and the
decrypted password are put in only when a process is started, and every line of ffmpeg output
we keep or log goes through :func:`scrub` first. The URL with credentials is built by
:func:`storage.inventory.credentialed_url`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

# user:password@ in any URL-looking text, also when percent-encoded.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def scrub(text: str, *secrets: str) -> str:
    """Remove credentials from URLs in ``text``, and any of ``secrets`` wherever they appear."""
    text = _CREDENTIALS.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text


# ---------------------------------------------------------------------------------------------
# Keeping credentials out of the process list
# ---------------------------------------------------------------------------------------------
#
# ffmpeg takes its input URL on the command line, which every local user can read
# (/proc/<pid>/cmdline, ps). ffmpeg 5.1's RTSP demuxer has no option for a username or password
# apart from the URL, and no way to read the URL from a file or the environment, except through
# the concat demuxer: a list file naming the URL as its one entry, with the RTSP options as
# "option" lines. Measured against the simulator: the same first-fragment time (0.54 s direct,
# 0.60 s through the list), the same packets and warnings, and the same "401 Unauthorized" line
# on wrong credentials (classify_failure still sees it). The list lives in a private folder
# (0700, the file 0600) and is removed as soon as ffmpeg has opened the stream, or when it ends.

# http: a cluster node reads a camera it does not record from the recording node's live relay
# (controlroom.relay), with the relay's credential in the URL.
PROTOCOLS = "file,rtsp,rtsps,rtp,srtp,tcp,udp,tls,http"
_PREFIX = "controlroom-input-"
STALE_INPUT_LIST_S = 60.0


class InputList:
    """A URL with credentials, handed to ffmpeg in a private ffconcat file, not in its argv.

    ``args`` are ffmpeg's input arguments (``-f concat ... -i <file>``); :meth:`remove` deletes
    the file (idempotent): call it once ffmpeg has opened the stream, and when it ends.
    """

    def __init__(self, url: str, options: dict[str, object] | None = None) -> None:
        sweep_stale_input_lists()
        self._dir = Path(tempfile.mkdtemp(prefix=_PREFIX))  # 0700
        self._removed = False
        self.path = self._dir / "input.ffconcat"
        lines = ["ffconcat version 1.0", "file '" + url.replace("'", "'\\''") + "'"]
        lines += [f"option {key} {value}" for key, value in (options or {}).items()]
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        self.args = ["-f", "concat", "-safe", "0", "-protocol_whitelist", PROTOCOLS, "-i", str(self.path)]

    def remove(self) -> None:
        if not self._removed:
            self._removed = True
            shutil.rmtree(self._dir, ignore_errors=True)


def sweep_stale_input_lists(older_than_s: float = STALE_INPUT_LIST_S) -> None:
    """Remove list files left by a service killed before its ffmpeg opened the stream (ours
    only: same owner). ffmpeg opens its list within its connect timeout (10 s), so a list
    older than a minute serves nobody."""
    root = Path(tempfile.gettempdir())
    cutoff = time.time() - older_than_s
    try:
        entries = [p for p in root.iterdir() if p.name.startswith(_PREFIX)]
    except OSError:
        return
    for path in entries:
        try:
            st = path.lstat()
            if st.st_uid == os.getuid() and st.st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue  # removed meanwhile by another instance


def has_credentials(url: str) -> bool:
    return "@" in (urlsplit(url).netloc or "")
