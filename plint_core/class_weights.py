"""Class weights for a class-weighted cross-entropy: each class weighted by the inverse of its frequency.

Used by the ``classweight`` baseline (:mod:`plint_core.baselines`) and by a fine-tuning pair with
``FinetuneConfig(class_weight="inverse")`` (:mod:`plint_core.finetune`), where both runs, PLI and its control,
weight their cross-entropy so.
"""
from __future__ import annotations

import numpy as np

from .errors import PlintError


def inverse_frequency_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """float32 ``[n_classes]``: class ``k``'s weight ``∝ 1 / n_k``, ``n_k`` its count in ``labels``, normalised so
    that the classes present average 1 (with equal counts every weight is 1). A class absent from ``labels`` gets
    0: no row carries it, so its weight never enters the loss."""
    labels = np.asarray(labels)
    if not len(labels):
        raise PlintError("class weighting needs training rows to count the classes in")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise PlintError(f"a training label lies outside the model's classes 0..{n_classes - 1}")
    counts = np.bincount(labels.astype(np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes, dtype=np.float64)
    w[present] = 1.0 / counts[present]
    w[present] /= w[present].mean()
    return w.astype(np.float32)
