"""Atomic file writes: write to a temporary file beside the target, then rename.

A reader never sees a half-written file: either the old content or the new.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; published files are ordinary files
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False)
    return write_atomic(path, lambda p: p.write_text(text + "\n", encoding="utf-8"))


def publish_dir(tmp_dir: Path, final_dir: Path) -> Path:
    """Rename a fully written ``tmp_dir`` to ``final_dir`` (replacing an old one).

    ``tmp_dir`` must be on the same file system; the rename is the commit point.
    An existing ``final_dir`` is first renamed to a unique ``.trash-*`` name and
    removed; when several writers publish the same folder at once (threads of
    one server, or processes), each retries until its rename lands, and the
    last one stays.
    """
    while True:
        try:
            os.rename(tmp_dir, final_dir)  # fails while a non-empty final_dir exists
            return final_dir
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        trash = final_dir.with_name(f".trash-{final_dir.name}-{os.getpid()}-{uuid.uuid4().hex[:12]}")
        try:
            os.rename(final_dir, trash)
        except FileNotFoundError:  # another writer moved it away first
            continue
        shutil.rmtree(trash, ignore_errors=True)


def staging_dir(final_dir: Path) -> Path:
    """A fresh hidden temporary folder beside ``final_dir`` for :func:`publish_dir`."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{final_dir.name}-", dir=final_dir.parent))
