"""The modes of what the service writes: files 0640, folders 0750, keys 0600.

The database, recordings, evidence packages, ANPR images and audit digests are personal data;
they were created 0644 (readable by every local user; issue 11, found 14). One mechanism covers
every writer, including ffmpeg and SQLite, which create their own files: the process umask,
set once at start-up of every command (``serve``, ``demo`` and the CLI), which the children it
starts inherit. The group keeps read access (a backup or log-shipping account put in the
service's group); others get nothing. Files that must be private to the owner (the key file,
the demo's password file) are created 0600 explicitly, whatever the umask.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

UMASK = 0o027  # -> files 0640, folders 0750
FOLDER_MODE = 0o750


def restrict_umask() -> int:
    """Set the process umask to :data:`UMASK`; the previous one."""
    return os.umask(UMASK)


def secure_data_dir(path: Path) -> None:
    """Take others' access off an existing data folder (so files an older version created 0644
    under it are out of other users' reach too). A new one is made by the command that needs
    it, 0750 under :data:`UMASK`; commands that need none (``verify``) create nothing."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o007:
        try:
            path.chmod(mode & ~0o007)
        except OSError as exc:
            log.warning("data folder %s is open to other users (mode %o) and could not be closed: %s",
                        path, mode, exc.strerror)
        else:
            log.warning("data folder %s was open to other users (mode %o): now %o", path, mode, mode & ~0o007)
