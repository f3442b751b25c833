"""A training split replicated to any size with jittered copies: large projects from small real data.

Used by the dashboard's ``PLINT_SCALE_POINTS`` (the embedding page at 20,000
or 50,000 points) and by the worker processes that fine-tune on such a
project, which must rebuild exactly the same rows.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .dataset import Dataset, Split
from .images import Images

__all__ = ["JITTER_STD", "JitteredCopies", "replicate_train"]

JITTER_STD = 0.05
"""Standard deviation of the pixel noise added to replicated training images (images are in [0, 1])."""


@dataclass(frozen=True, eq=False)
class JitteredCopies(Images):
    """``n`` images: row ``r`` is ``base`` row ``r % len(base)``; rows past the first ``len(base)`` get
    Gaussian pixel noise (``std``, drawn per row from ``seed`` and ``r``), clipped to ``[0, 1]``.

    Read on demand like any :class:`~plint_core.data.images.Images`: nothing is materialised.
    """

    base: Images | None = None
    n: int = 0
    std: float = JITTER_STD
    seed: int = 0

    @property
    def n_source(self) -> int:
        return self.n

    @property
    def source_shape(self) -> tuple[int, int, int]:
        return tuple(self.base.shape[1:])  # type: ignore[return-value]

    def _read(self, source_rows: np.ndarray) -> torch.Tensor:
        source_rows = np.asarray(source_rows, dtype=np.int64)
        images = self.base[source_rows % len(self.base)]
        for i in np.flatnonzero(source_rows >= len(self.base)):
            noise = np.random.default_rng((self.seed, int(source_rows[i]))).normal(0.0, self.std, images[i].shape)
            images[i] = np.clip(images[i] + noise.astype(np.float32), 0.0, 1.0)
        return torch.from_numpy(images)

    def _hash_source(self, h) -> None:
        self.base.update_hash(h)
        h.update(f"jittered:{self.n}:{self.std}:{self.seed}".encode())


def replicate_train(data: Dataset, n_train: int, seed: int = 0) -> Dataset:
    """``data`` with a training split of ``n_train`` points: the real rows, cycled, copies jittered
    (:class:`JitteredCopies`). Ids are ``0..n_train-1``; the test split is unchanged."""
    train = data.train
    rows = np.arange(n_train) % len(train)
    split = Split(JitteredCopies(base=train.images, n=n_train, seed=seed), train.labels[rows].copy(),
                  np.arange(n_train, dtype=np.int64))
    return replace(data, name=f"{data.name}×{n_train}", train=split)
