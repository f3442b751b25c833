"""Where large temporary files go: inflated ``.npz`` members and unpacked zips of images.

They can be as large as a data set, so they belong on a disk. The default is
Python's temporary folder (``$TMPDIR``, else ``/tmp``), unless that is a
``tmpfs``: files there live in memory and count against the container's limit
(on a 2.7 GB Streamlit Community Cloud app, a few thousand 224-pixel images
would take it all), so ``/var/tmp`` is used instead when it is a disk folder
that can be written. ``$PLINT_TMPDIR`` chooses the folder outright.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import PlintError

__all__ = ["SCRATCH_ENV", "mount_type", "scratch_dir", "scratch_full"]

SCRATCH_ENV = "PLINT_TMPDIR"
"""Environment variable: the folder for large temporary files."""
_MEMORY_FILESYSTEMS = {"tmpfs", "ramfs"}


def mount_type(path: Path, mounts: str | None = None) -> str | None:
    """The file-system type of the mount holding ``path`` (from ``/proc/mounts``), or ``None`` if unknown."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    path = str(Path(path).resolve())
    best, kind = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def scratch_dir(mounts: str | None = None) -> Path:
    """The folder for large temporary files (see the module's description); it exists."""
    chosen = os.environ.get(SCRATCH_ENV, "").strip()
    if chosen:
        path = Path(chosen)
        if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
            raise PlintError(f"{SCRATCH_ENV}={chosen!r} is not a folder this process can write: "
                             "create it, or unset it to use the system's temporary folder")
        return path
    default = Path(tempfile.gettempdir())
    if mount_type(default, mounts) in _MEMORY_FILESYSTEMS:
        disk = Path("/var/tmp")
        if disk.is_dir() and os.access(disk, os.W_OK | os.X_OK) and mount_type(disk, mounts) not in _MEMORY_FILESYSTEMS:
            return disk
    return default


def scratch_full(exc: OSError, what: str, where: Path) -> PlintError:
    """The message for running out of room in ``where`` while writing ``what``."""
    return PlintError(f"no room left in {where} to unpack {what} ({exc.strerror or exc}): free some disk space, "
                      f"point {SCRATCH_ENV} at a folder on a larger disk, or store the data uncompressed "
                      "(np.savez rather than np.savez_compressed; a folder rather than a zip)")
