"""Reading ``.npz`` files without loading their large arrays: members are memory-mapped.

An ``.npz`` is a zip of ``.npy`` files. A member stored uncompressed
(``np.savez``) is mapped straight from the file; a compressed one
(``np.savez_compressed``) is inflated once into an anonymous temporary file
on disk (:func:`plint_core.scratch.scratch_dir`; deleted as soon as it is
created, so nothing is left behind) and mapped from there. Either way its pages are read from disk when they are used, so a split
of any size costs almost no resident memory. Small members (labels, class
names) are simply read. Object arrays are refused: they would need pickle.
"""
from __future__ import annotations

import errno
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import PlintError
from ..scratch import scratch_dir, scratch_full

MAP_FROM_BYTES = 8 << 20
"""Members larger than this (8 MiB) are memory-mapped; smaller ones are read into memory."""
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # the zip format's local file header (30 bytes)
_COPY_CHUNK = 16 << 20


def open_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array in the ``.npz`` at ``path`` by name; large ones as read-only ``np.memmap``.

    Raises :class:`PlintError` if the file is not a readable ``.npz`` or holds
    object arrays.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf, path.open("rb") as raw:
            return {info.filename[:-4]: _member(zf, raw, info, path.name)
                    for info in zf.infolist() if info.filename.endswith(".npy")}
    except PlintError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, struct.error) as exc:
        raise PlintError(f"cannot read {path.name!r} as an .npz file ({exc}): is it complete and uncorrupted?") from exc


def _member(zf: zipfile.ZipFile, raw, info: zipfile.ZipInfo, shown: str) -> np.ndarray:
    if info.file_size <= MAP_FROM_BYTES:
        with zf.open(info) as f:
            _npy_header(f, info.filename, shown)  # refuses object arrays with the message below
        with zf.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    if info.compress_type == zipfile.ZIP_STORED:
        raw.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
        if fields[0] != b"PK\x03\x04":
            raise ValueError(f"member {info.filename!r} has no local header")
        raw.seek(info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1])
        shape, fortran, dtype = _npy_header(raw, info.filename, shown)
        return np.memmap(raw.name, dtype=dtype, mode="r", offset=raw.tell(), shape=shape,
                         order="F" if fortran else "C")
    with zf.open(info) as f:
        shape, fortran, dtype = _npy_header(f, info.filename, shown)
        where = scratch_dir()
        spill = tempfile.TemporaryFile(prefix="plint-npz-", dir=where)  # unlinked at once; the map keeps it
        try:
            shutil.copyfileobj(f, spill, _COPY_CHUNK)
            spill.flush()
        except OSError as exc:
            spill.close()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise scratch_full(exc, f"{shown}'s compressed {info.filename[:-4]!r}", where) from exc
            raise
    if not shape or int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(spill, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C")


def _npy_header(f, member: str, shown: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = reader(f)
    if dtype.hasobject:
        raise PlintError(f"{shown!r}: array {member[:-4]!r} holds Python objects, which plint does not unpickle: "
                         "save numeric arrays only")
    return shape, fortran, dtype
