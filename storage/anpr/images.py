"""A read's pictures: the plate patch and overview JPEG files under the ANPR image root.

Each read's files are under the root (by default ``<data_dir>/anpr``), in
``YYYY/MM/DD/<camera id>/`` by the read's UTC date; the row holds paths relative to that root.
Files are written (and fsynced) before the row is inserted, so every row's files exist; a crash
in between leaves orphan files, which the day-folder sweep of
:func:`storage.anpr.retention.run_anpr_retention` removes. :func:`resolve_image` never returns
a path outside the root. Blocking file I/O: call these off the event loop.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from storage import NotFound


def image_dir(read_us: int, camera_id: int | None) -> str:
    """Relative folder for a read's images: ``YYYY/MM/DD/<camera>`` by UTC date."""
    day = datetime.fromtimestamp(read_us / 1e6, UTC)
    return f"{day:%Y/%m/%d}/{camera_id if camera_id is not None else 'none'}"


def write_image(root: Path, rel_dir: str, name: str, data: bytes) -> str:
    """Write one JPEG durably; return its path relative to ``root``. Blocking: call off the loop."""
    folder = root / rel_dir
    folder.mkdir(parents=True, exist_ok=True)
    rel = f"{rel_dir}/{name}"
    tmp = folder / f".{name}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / rel)
    return rel


def save_read_images(root: Path, read_us: int, camera_id: int | None, plate_jpeg: bytes | None,
                     overview_jpeg: bytes | None) -> tuple[str, str]:
    """Write a read's plate patch and overview; returns their relative paths ('' when absent)."""
    rel_dir = image_dir(read_us, camera_id)
    stem = f"{read_us}-{uuid.uuid4().hex[:8]}"
    plate = write_image(root, rel_dir, f"{stem}-plate.jpg", plate_jpeg) if plate_jpeg else ""
    overview = write_image(root, rel_dir, f"{stem}-overview.jpg", overview_jpeg) if overview_jpeg else ""
    return plate, overview


def resolve_image(root: Path, rel: str) -> Path:
    """The file for a stored relative path; NotFound if absent or if it would leave ``root``."""
    if not rel:
        raise NotFound("this read has no such image")
    base = root.resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base) or path == base:
        raise NotFound("no such image")
    if not path.is_file():
        raise NotFound("the image file is missing")
    return path
