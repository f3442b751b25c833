"""A per-session temporary folder for what a user uploads.

Each :class:`Workspace` is a fresh private folder (``mkdtemp``, mode 0700)
under :data:`SESSIONS_DIR`. Files are written only inside it, under cleaned
names (no folders, no hidden names, no ``..``), and never over an existing
file — so an upload can overwrite neither the demo, nor another session's
files, nor an earlier upload. The folder is removed by :meth:`Workspace.close`
(also as a context manager), when the object is garbage-collected, or at
interpreter exit; :func:`sweep_stale` removes those of crashed processes.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import BinaryIO

from .errors import PlintError
from .safe_zip import ZipLimits, extract_zip

SESSIONS_DIR = Path(tempfile.gettempdir()) / "plint-sessions"
"""Parent folder of all workspaces."""
MAX_UPLOAD_BYTES = 200 * (1 << 20)
"""Largest upload accepted (200 MiB, Streamlit's default ``server.maxUploadSize``)."""
STALE_SECONDS = 24 * 3600
"""Age after which :func:`sweep_stale` removes a workspace left by a crashed process."""
_PREFIX = "session-"
_MARKER = ".plint-workspace"  # only folders holding this file are ever swept
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CHUNK = 1 << 20


def safe_name(name: str, default: str = "upload") -> str:
    """``name`` reduced to a plain file name: last path component, ``[A-Za-z0-9._-]``, no leading dot."""
    base = re.split(r"[/\\]", str(name))[-1]
    cleaned = _UNSAFE.sub("_", base).lstrip("._")
    if not cleaned:
        return default
    stem, dot, suffix = cleaned.rpartition(".")
    if dot and len(suffix) <= 16:
        return f"{stem[:100]}.{suffix}"
    return cleaned[:100]


class Workspace:
    """A private temporary folder for one session's uploads; remove it with :meth:`close`."""

    def __init__(self, parent: str | Path | None = None):
        parent = Path(parent) if parent is not None else SESSIONS_DIR
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=parent))
        (self.root / _MARKER).touch()
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.root), True)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Remove the folder and everything in it (safe to call twice)."""
        self._finalizer()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def new_path(self, name: str) -> Path:
        """A path inside the workspace for ``name`` (cleaned; ``-1``, ``-2``… added if taken). Nothing is created."""
        self._check_open()
        clean = safe_name(name)
        stem, dot, suffix = clean.rpartition(".")
        stem, suffix = (stem, dot + suffix) if dot else (clean, "")
        candidate, n = self.root / clean, 0
        while candidate.exists():
            n += 1
            candidate = self.root / f"{stem}-{n}{suffix}"
        return candidate

    def save_upload(self, name: str, data: bytes | bytearray | memoryview | BinaryIO, *,
                    max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
        """Write an upload (bytes or a readable binary file) to a new file; returns its path.

        Raises :class:`PlintError` (and keeps nothing) if it is over ``max_bytes``.
        """
        size = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else getattr(data, "size", None)
        if size is not None and size > max_bytes:
            raise PlintError(_too_big(name, max_bytes, size))
        while True:
            path = self.new_path(name)
            try:
                handle = open(path, "xb")  # exclusive: never replaces a file, even in a race
            except FileExistsError:
                continue
            break
        try:
            with handle:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    handle.write(data)
                else:
                    written = 0
                    while chunk := data.read(_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise PlintError(_too_big(name, max_bytes))
                        handle.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def extract_zip(self, zip_path: str | Path, limits: ZipLimits = ZipLimits()) -> Path:
        """Unpack ``zip_path`` safely into a new folder of the workspace; returns that folder."""
        return extract_zip(zip_path, self.new_path(Path(zip_path).stem or "zip"), limits)

    def _check_open(self) -> None:
        if self.closed:
            raise PlintError("this session's upload folder was removed: reload the page to start a new session")


def _too_big(name: str, limit: int, size: int | None = None) -> str:
    mib = 1 << 20
    measured = f"{size / mib:.1f} MiB, more than" if size is not None else "larger than"
    return (f"upload {safe_name(name)!r} is {measured} the {limit / mib:.0f} MiB limit: use a smaller file, "
            "or run the command line on the data instead")


def sweep_stale(parent: str | Path | None = None, max_age_s: float = STALE_SECONDS) -> int:
    """Remove workspaces under ``parent`` untouched for ``max_age_s`` seconds; returns how many."""
    parent = Path(parent) if parent is not None else SESSIONS_DIR
    if not parent.is_dir():
        return 0
    removed, now = 0, time.time()
    for d in parent.glob(_PREFIX + "*"):
        try:
            if (d / _MARKER).is_file() and not d.is_symlink() and now - os.stat(d).st_mtime > max_age_s:
                shutil.rmtree(d)
                removed += 1
        except OSError:
            continue
    return removed
