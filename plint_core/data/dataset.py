"""The containers: a :class:`Dataset` of :class:`Split` s (images, labels, ids) and its checks.

Each sample's ``id`` is its row number within its split; it is stable because
splits are made with the fixed :data:`SPLIT_SEED`, which no ``--seed`` changes,
so a model trained by ``plint_core train`` never saw the test rows of a later run.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..errors import PlintError

SPLIT_SEED = 2006_12902
"""Seed of the stratified train/test split (the paper's arXiv number); never changes."""

TEST_FRACTION = 0.2
"""Share of samples put in the test split when the source has no split of its own."""



@dataclass(frozen=True)
class Split:
    """One split: images in ``[0, 1]`` (float32 ``[N, C, H, W]``), int64 labels and ids."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])



@dataclass(frozen=True)
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
        """``(C, H, W)`` of one image."""
        return tuple(int(s) for s in self.train.images.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> Split:
        """The split called ``name`` (``train``, ``test`` or ``val``)."""
        found = {"train": self.train, "test": self.test, "val": self.val}.get(name)
        if found is None:
            raise PlintError(f"data set {self.name!r} has no {name!r} split")
        return found

    def fingerprint(self) -> str:
        """SHA-256 of the content (images, labels, class names) of all splits."""
        h = hashlib.sha256()
        h.update("\x1f".join(self.class_names).encode())
        for split in (self.train, self.test, self.val):
            if split is not None:
                h.update(np.ascontiguousarray(split.images).tobytes())
                h.update(np.ascontiguousarray(split.labels).tobytes())
        return h.hexdigest()



def _check_classes(ds: Dataset) -> None:
    for split in ("train", "test"):
        counts = np.bincount(ds.split(split).labels, minlength=ds.n_classes)
        empty = [ds.class_names[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise PlintError(f"{ds.name!r}: class(es) {empty} have no samples in the {split} split; every class needs some")
