"""The containers: a :class:`Dataset` of :class:`Split` s (images, labels, ids) and its checks.

A split's images are an :class:`~plint_core.data.images.Images` view, read on
demand in the form they are stored; labels and ids are small arrays in memory.

Each sample's ``id`` is its row number within its split; it is stable because
splits are made with the fixed :data:`SPLIT_SEED`, which no ``--seed`` changes,
so a model trained by ``plint_core train`` never saw the test rows of a later run.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from ..errors import PlintError
from .images import Images, content_hash

SPLIT_SEED = 2006_12902
"""Seed of the stratified train/test split (the paper's arXiv number); never changes."""
TEST_FRACTION = 0.2
"""Share of samples put in the test split when the source has no split of its own."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split: images (read on demand, ``[N, C, H, W]`` in ``[0, 1]`` when read), int64 labels and ids."""

    images: Images
    labels: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def with_images(self, images: Images) -> "Split":
        return replace(self, images=images)

    def subset(self, rows: np.ndarray) -> "Split":
        """The samples at ``rows`` (positions in this split), ids kept; no pixels are read."""
        rows = np.asarray(rows, dtype=np.int64)
        return Split(self.images.subset(rows), self.labels[rows], self.ids[rows])


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image data set with its splits and class names."""

    name: str
    class_names: tuple[str, ...]
    train: Split
    test: Split
    val: Split | None = None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image as read."""
        return tuple(int(s) for s in self.train.images.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> Split:
        """The split called ``name`` (``train``, ``test`` or ``val``)."""
        found = {"train": self.train, "test": self.test, "val": self.val}.get(name)
        if found is None:
            raise PlintError(f"data set {self.name!r} has no {name!r} split")
        return found

    def with_splits(self, **splits: Split | None) -> "Dataset":
        """This data set with some splits replaced (``train=``, ``test=``, ``val=``)."""
        return replace(self, **splits)

    def fingerprint(self) -> str:
        """SHA-256 of the content of all splits (stored pixels, rows, conversion, labels) and the class names.

        Computed once per object, chunk by chunk, without copying the images.
        """
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        h = content_hash()
        h.update("\x1f".join(self.class_names).encode())
        digests: dict[int, str] = {}
        for split in (self.train, self.test, self.val):
            if split is None:
                continue
            source = id(split.images.source_token)
            if source not in digests:  # splits of one array share it: hash its content once
                digests[source] = split.images.source_digest()
            h.update(digests[source].encode())
            split.images.update_view_hash(h)
            h.update(np.ascontiguousarray(split.labels, np.int64).tobytes())
        return h.hexdigest()


def _check_classes(ds: Dataset) -> None:
    for split in ("train", "test"):
        counts = np.bincount(ds.split(split).labels, minlength=ds.n_classes)
        empty = [ds.class_names[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise PlintError(f"{ds.name!r}: class(es) {empty} have no samples in the {split} split; every class needs some")
