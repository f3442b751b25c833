"""Evaluation on the test split: accuracy, confusion matrix and per-class precision/recall/F1.

F1 is the standard harmonic mean 2PR/(P+R). (The paper's Table 1 "F1" column
equals sqrt(P*R), the geometric mean; we report the standard one.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one model on one split. Confusion rows are true classes, columns predictions."""

    accuracy: float
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray

    def per_class(self, class_names: Sequence[str]) -> list[dict]:
        """One dict per class: ``class``, ``precision``, ``recall``, ``f1``, ``support``."""
        return [{"class": str(name), "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                for name, p, r, f, s in zip(class_names, self.precision, self.recall, self.f1, self.support)]


def evaluate(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> Evaluation:
    """Metrics of ``predictions`` against true ``labels`` (both int ``[N]``) for classes ``0..n_classes-1``."""
    classes = np.arange(n_classes)
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # imported when used

    p, r, f, s = precision_recall_fscore_support(labels, predictions, labels=classes, zero_division=0)
    return Evaluation(float(np.mean(labels == predictions)), confusion_matrix(labels, predictions, labels=classes),
                      p, r, f, s)


def confusion_counts(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """The confusion matrix (rows: true class, columns: predicted), as scikit-learn's ``confusion_matrix`` with
    ``labels=range(n_classes)`` gives it, in NumPy: no scikit-learn import (a second or more) where only the counts
    are needed, e.g. on the first page a visitor opens."""
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    keep = (labels >= 0) & (labels < n_classes) & (predictions >= 0) & (predictions < n_classes)
    flat = labels[keep] * n_classes + predictions[keep]
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def most_confused_pair(confusion: np.ndarray) -> tuple[int, int]:
    """The class pair ``(i, j)``, ``i < j``, with most confusions in either direction."""
    sym = confusion + confusion.T
    np.fill_diagonal(sym, -1)
    i, j = np.unravel_index(int(np.argmax(sym)), sym.shape)
    return (int(min(i, j)), int(max(i, j)))


def targeted_pair(moved_labels: np.ndarray, confusion: np.ndarray) -> tuple[int, int]:
    """The class pair an edit is about, ``(i, j)`` with ``i < j``: the two classes with the most moved points;
    a single moved class with the class it is most confused with in ``confusion`` (before fine-tuning); with
    nothing moved, :func:`most_confused_pair`."""
    confusion = np.asarray(confusion)
    counts = np.bincount(np.asarray(moved_labels, dtype=np.int64), minlength=len(confusion))
    moved = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    if len(moved) >= 2:
        return (min(moved[:2]), max(moved[:2]))
    if len(moved) == 1 and len(confusion) > 1:
        c = moved[0]
        sym = (confusion[c] + confusion[:, c]).astype(np.float64)
        sym[c] = -1
        other = int(np.argmax(sym))
        return (min(c, other), max(c, other))
    return most_confused_pair(confusion)


def mean_target_distance(y: np.ndarray, target: np.ndarray) -> float:
    """Mean Euclidean distance (embedding units) between points and their targets."""
    if len(y) == 0:
        return 0.0
    return float(np.linalg.norm(np.asarray(y, np.float64) - target, axis=1).mean())
