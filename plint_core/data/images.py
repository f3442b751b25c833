"""Images as they are stored, read on demand: :class:`Images` and its sources.

A split's images are never held whole at the model's resolution. An
:class:`Images` object knows where its pixels live and reads only the rows it
is asked for:

* :class:`ArrayImages` — an array as stored (``uint8`` or float, any of the
  layouts ``[N, H, W]``, ``[N, H, W, C]``, ``[N, C, H, W]``), usually a
  memory-mapped ``.npz`` member (:mod:`plint_core.data.npz`);
* :class:`FileImages` — image files (an ImageFolder, or a zip unpacked to a
  temporary folder), decoded when a row is read.

Each object is a view: ``rows`` (an index into the source, so a split of a
shared array costs no copy) and an optional ``target`` shape (channels,
height, width), the model's input, which the rows are converted to as they are
read (:func:`plint_core.data.transforms.to_unit`). Reading comes in two forms:

* :meth:`Images.stored` — a batch in its stored dtype and size (cheap to move
  between processes and to a GPU, where :class:`~plint_core.data.transforms.ModelInput`
  converts it);
* ``images[rows]`` — float32 ``[n, C, H, W]`` in ``[0, 1]`` at the target
  shape, for small selections (thumbnails, tests).

Content fingerprints (:meth:`Images.update_hash`) are computed chunk by chunk,
without copying the data.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import PlintError
from .decode import read_image
from .transforms import convert_channels, resize, to_unit

HASH_CHUNK_BYTES = 64 << 20
"""Bytes of an array hashed at a time."""


@dataclass(frozen=True, eq=False)
class Images:
    """Base class: a view (``rows``, ``target``) of a source of ``n_source`` images.

    Subclasses implement :meth:`_read` (rows of the source → stored-form
    tensor), :attr:`n_source`, :attr:`source_shape` and :meth:`_hash_source`.
    """

    rows: np.ndarray | None = field(default=None, kw_only=True)
    """Rows of the source in this view (``None``: all, in order)."""
    target: tuple[int, int, int] | None = field(default=None, kw_only=True)
    """Shape ``(C, H, W)`` rows are converted to when read (``None``: as stored)."""

    # ------------------------------------------------------------------ the source
    divisor: float = 1.0
    """Stored values divided by this lie in ``[0, 1]`` (255 for ``uint8`` pixels)."""

    @property
    def n_source(self) -> int:
        raise NotImplementedError

    @property
    def source_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image as stored (after decoding)."""
        raise NotImplementedError

    def _read(self, source_rows: np.ndarray) -> torch.Tensor:
        """Rows of the source as a ``[n, C, H, W]`` tensor in the stored dtype."""
        raise NotImplementedError

    def _hash_source(self, h: Any) -> None:
        raise NotImplementedError

    @property
    def source_token(self) -> object:
        """An object shared by all views of one source (views of one array hash its content once)."""
        return self

    # ------------------------------------------------------------------ the view
    def __len__(self) -> int:
        return self.n_source if self.rows is None else int(len(self.rows))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(N, C, H, W)`` as read through ``images[rows]``."""
        return (len(self), *(self.target or self.source_shape))

    @property
    def dtype(self) -> np.dtype:
        """The dtype of ``images[rows]`` (float32); :meth:`stored` keeps the stored one."""
        return np.dtype(np.float32)

    def source_rows(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Source rows of this view's ``rows`` (all rows if ``None``)."""
        base = np.arange(self.n_source) if self.rows is None else self.rows
        return base if rows is None else base[rows]

    def subset(self, rows: np.ndarray) -> "Images":
        """A view of ``rows`` of this view (no pixels are read)."""
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        return replace(self, rows=self.source_rows(rows))

    def with_target(self, shape: tuple[int, int, int] | None) -> "Images":
        """This view, converted to ``shape`` = (C, H, W) when read; ``self`` if that is the stored shape."""
        shape = None if shape is None or tuple(shape) == self.source_shape else tuple(int(s) for s in shape)
        return self if shape == self.target else replace(self, target=shape)

    def stored(self, rows: np.ndarray | slice) -> torch.Tensor:
        """This view's ``rows`` in the stored dtype and size, ``[n, C, H, W]`` (see :meth:`to_unit`)."""
        return self._read(self.source_rows(rows))

    def to_unit(self, batch: torch.Tensor) -> torch.Tensor:
        """A :meth:`stored` batch as float32 in ``[0, 1]`` at :attr:`shape` (on the batch's device)."""
        return to_unit(batch, self.divisor, self.target)

    def __getitem__(self, rows: np.ndarray | slice | int) -> np.ndarray:
        """float32 ``[n, C, H, W]`` in ``[0, 1]`` of ``rows`` (an int gives ``[C, H, W]``; a tuple indexes
        the rows read, as numpy would)."""
        if isinstance(rows, tuple):
            head, rest = rows[0], rows[1:]
            picked = self[head]
            return picked[rest] if isinstance(head, (int, np.integer)) else picked[(slice(None), *rest)]
        if isinstance(rows, (int, np.integer)):
            return self[np.array([rows])][0]
        return self.to_unit(self.stored(rows)).numpy()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)

    def native(self, rows: np.ndarray) -> np.ndarray:
        """float32 ``[n, C, H, W]`` in ``[0, 1]`` of ``rows`` as stored, not converted (for thumbnails)."""
        return replace(self, target=None)[rows]

    def source_digest(self) -> str:
        """SHA-256 of the source's content (all of its rows, as stored), hashed chunk by chunk."""
        h = content_hash()
        self._hash_source(h)
        return h.hexdigest()

    def update_view_hash(self, h: Any) -> None:
        """Feed this view's selection (rows, target shape) to hash ``h``."""
        h.update(b"rows:" + (b"all" if self.rows is None else np.ascontiguousarray(self.rows, np.int64).tobytes()))
        h.update(f"target:{self.target}".encode())

    def update_hash(self, h: Any) -> None:
        """Feed this view's content identity (source digest, rows, target) to hash ``h``."""
        h.update(self.source_digest().encode())
        self.update_view_hash(h)


def _nchw(batch: np.ndarray, layout: str) -> np.ndarray:
    if layout == "NHW":
        return batch.reshape(batch.shape[0], 1, *batch.shape[1:])  # standard strides, unlike [:, None]
    if layout == "NHWC":
        return batch.transpose(0, 3, 1, 2)
    return batch


@dataclass(frozen=True, eq=False)
class ArrayImages(Images):
    """Images in an array as stored: ``uint8`` (``divisor`` 255) or floats in ``[0, 1]`` (``divisor`` 1).

    ``layout`` is ``NHW`` (grayscale), ``NHWC`` or ``NCHW``. The array may be a
    ``np.memmap``; rows are read from it in ascending order.
    """

    array: np.ndarray | None = None
    layout: str = "NCHW"

    @property
    def n_source(self) -> int:
        return int(self.array.shape[0])

    @property
    def source_token(self) -> object:
        return self.array

    @property
    def source_shape(self) -> tuple[int, int, int]:
        s = tuple(int(v) for v in self.array.shape)
        if self.layout == "NHW":
            return (1, s[1], s[2])
        return (s[3], s[1], s[2]) if self.layout == "NHWC" else s[1:4]

    def _read(self, source_rows: np.ndarray) -> torch.Tensor:
        source_rows = np.asarray(source_rows, dtype=np.int64)
        if source_rows.size > 1 and np.all(source_rows[1:] > source_rows[:-1]):
            picked = self.array[source_rows]  # already ascending: one pass over the file
        else:
            order = np.argsort(source_rows, kind="stable")
            picked = np.empty((len(source_rows), *self.array.shape[1:]), self.array.dtype)
            picked[order] = self.array[source_rows[order]]
        return torch.from_numpy(np.ascontiguousarray(_nchw(picked, self.layout)))

    def _hash_source(self, h: Any) -> None:
        a = self.array
        h.update(f"array:{a.dtype.str}:{a.shape}:{self.layout}:{self.divisor}".encode())
        flat = a.reshape(len(a), -1) if a.flags.c_contiguous else None
        per_row = max(1, int(np.prod(a.shape[1:])) * a.dtype.itemsize)
        step = max(1, HASH_CHUNK_BYTES // per_row)
        for start in range(0, len(a), step):
            chunk = flat[start:start + step] if flat is not None else np.ascontiguousarray(a[start:start + step])
            h.update(memoryview(chunk).cast("B"))


def array_images(array: np.ndarray, what: str) -> ArrayImages:
    """Wrap an array of images as stored, checking dtype, layout and (for floats) range, chunk by chunk.

    Raises :class:`PlintError` naming ``what`` for an empty array, another
    dtype than ``uint8`` or float, floats outside ``[0, 1]`` or not finite, or
    a shape that is not ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]`` with C = 1 or 3.
    """
    if array.ndim == 0 or array.shape[0] == 0:
        raise PlintError(f"{what} is empty: the data set needs images")
    if array.ndim == 3:
        layout = "NHW"
    elif array.ndim == 4 and array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        layout = "NHWC"
    elif array.ndim == 4 and array.shape[1] in (1, 3):
        layout = "NCHW"
    else:
        raise PlintError(f"{what} has shape {array.shape}: expected [N, H, W], [N, H, W, C] or [N, C, H, W] "
                         "with C = 1 or 3")
    if array.dtype == np.uint8:
        return ArrayImages(255.0, array=array, layout=layout)
    if not np.issubdtype(array.dtype, np.floating):
        raise PlintError(f"{what} has dtype {array.dtype}: expected uint8 pixels or floats in [0, 1]")
    # Kept in their own float dtype (a memory map stays one): batches become float32 as they are read.
    lo, hi = np.inf, -np.inf
    step = max(1, HASH_CHUNK_BYTES // max(1, int(np.prod(array.shape[1:])) * array.dtype.itemsize))
    for start in range(0, len(array), step):
        chunk = array[start:start + step]
        if not np.isfinite(chunk).all():
            raise PlintError(f"{what} contains NaN or infinite values: clean the images first")
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    if lo < 0.0 or hi > 1.0:
        raise PlintError(f"{what} are floats outside [0, 1] (range {lo:.3g}..{hi:.3g}): give uint8 pixels or floats "
                         "scaled to [0, 1]")
    return ArrayImages(1.0, array=array, layout=layout)


@dataclass(frozen=True, eq=False)
class FileImages(Images):
    """Image files decoded when read; each is converted to ``channels`` and resized to ``size`` if it differs.

    ``shown`` names each file for messages (its path relative to the data
    folder). ``keep`` holds whatever must live as long as the files are read
    (the temporary folder a zip was unpacked into).
    """

    paths: tuple[Path, ...] = ()
    shown: tuple[str, ...] = ()
    channels: int = 1
    size: tuple[int, int] = (1, 1)
    keep: Any = None

    @property
    def n_source(self) -> int:
        return len(self.paths)

    @property
    def source_token(self) -> object:
        return self.paths

    @property
    def source_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    def _read(self, source_rows: np.ndarray) -> torch.Tensor:
        out = torch.empty((len(source_rows), self.channels, *self.size), dtype=torch.float32)
        for i, r in enumerate(np.asarray(source_rows, dtype=np.int64)):
            img = convert_channels(torch.from_numpy(read_image(self.paths[r], self.shown[r]))[None], self.channels)
            out[i] = resize(img, self.size)[0]
        return out

    def _hash_source(self, h: Any) -> None:
        h.update(f"files:{self.channels}:{self.size}".encode())
        for path, shown in zip(self.paths, self.shown):
            h.update(shown.encode() + b"\x1f")
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)


def content_hash() -> Any:
    """The hash object used for data fingerprints (SHA-256)."""
    return hashlib.sha256()
