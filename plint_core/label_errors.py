"""Likely label errors: training images ranked by the model's confidence in their given label.

The idea of confident learning (Northcutt, Jiang, Chuang, JAIR 2021): an image whose given label ``y`` gets a low
softmax probability ``p_y`` (its *self-confidence*) is a candidate for a wrong label, and it is a *likely* error
where the model is confident in another class ``j``: ``p_j`` at least class ``j``'s threshold ``t_j``, the mean
self-confidence of the images labelled ``j``, and ``j`` the most probable of the classes that pass their
threshold (the off-diagonal of the confident joint). That class is the suggestion.

A few lines of numpy on the model's outputs; no cleanlab (AGPL-3.0). The outputs are the logits of the
project's model on its training images (from the latent cache, :func:`plint_core.latent_cache.cached_latents`
of the output layer). They are in-sample: a model that has memorised a wrong label is confident in it, so the
ranking finds the images the model still disagrees with, a list of candidates for people to look at, not a
verdict.

Examples
--------
>>> ranking = rank_label_errors(logits, labels, ids)              # doctest: +SKIP
>>> ranking.table(class_names).head()                             # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import PlintError

if TYPE_CHECKING:
    import pandas as pd


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``logits`` ``[N, K]`` (float64, numerically stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def self_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``p(given label)`` per image."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.asarray(probs)[np.arange(len(labels)), labels]


def class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class ``j``: the mean of ``p_j`` over the images labelled ``j`` (confident learning's ``t_j``); a class
    without images gets 1 (nothing passes it but certainty)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    k = probs.shape[1]
    sums = np.bincount(labels, weights=self_confidence(probs, labels), minlength=k)
    counts = np.bincount(labels, minlength=k)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)


@dataclass(frozen=True)
class LabelErrorRanking:
    """Training images ordered from the least to the most confident in their given label.

    Attributes
    ----------
    ids: ndarray of int
        The sample ids, least self-confident first.
    labels: ndarray of int
        Their given labels.
    suggested: ndarray of int
        The class confident learning would give each (the most probable class passing its threshold; the most
        probable class where none does).
    confidence: ndarray of float
        Their self-confidence ``p(given label)``.
    likely: ndarray of bool
        Whether each is a likely label error (confident in a class other than its label).
    thresholds: ndarray of float
        Each class's threshold ``t_j``.
    """

    ids: np.ndarray
    labels: np.ndarray
    suggested: np.ndarray
    confidence: np.ndarray
    likely: np.ndarray
    thresholds: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.size)

    @property
    def likely_ids(self) -> np.ndarray:
        """The ids of the likely errors, least self-confident first."""
        return self.ids[self.likely]

    def table(self, class_names: Sequence[str], *, only_likely: bool = False, limit: int | None = None
              ) -> "pd.DataFrame":
        """``id, given_label, suggested_label, confidence, likely``, least confident first: every image (or only the
        likely errors), the first ``limit``."""
        import pandas as pd

        keep = self.likely if only_likely else np.ones(len(self), dtype=bool)
        names = np.asarray(class_names, dtype=object)
        frame = pd.DataFrame({"id": self.ids[keep], "given_label": names[self.labels[keep]],
                              "suggested_label": names[self.suggested[keep]],
                              "confidence": np.round(self.confidence[keep], 4), "likely": self.likely[keep]})
        return frame if limit is None else frame.head(limit)


def rank_label_errors(logits: np.ndarray, labels: np.ndarray, ids: np.ndarray | None = None, *,
                      probabilities: bool = False) -> LabelErrorRanking:
    """Rank images by the model's confidence in their given ``labels`` (lowest first) and mark likely errors.

    Parameters
    ----------
    logits: ndarray of shape (N, K)
        The model's outputs per image (softmax is applied), or probabilities with ``probabilities=True``.
    labels: ndarray of shape (N,)
        The given labels, ``0..K-1``.
    ids: ndarray of shape (N,), optional
        The images' sample ids (default: ``0..N-1``).
    probabilities: bool
        ``logits`` are probabilities already (rows summing to 1).

    Returns
    -------
    LabelErrorRanking
        Ties in self-confidence keep the images' order (a stable sort): the same input, the same ranking.
    """
    scores = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or scores.shape[0] != len(labels):
        raise PlintError(f"the model's outputs have shape {scores.shape} for {len(labels)} labels: rank label errors "
                         "on the output layer's [images × classes] scores")
    if scores.shape[1] < 2:
        raise PlintError("ranking label errors needs a model with at least 2 outputs (one per class)")
    if not len(labels):
        raise PlintError("there are no training images to rank")
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise PlintError(f"a label lies outside the model's classes 0..{scores.shape[1] - 1}")
    if not np.isfinite(scores).all():
        raise PlintError("the model's outputs contain NaN or infinite values: the ranking needs finite scores")
    ids = np.arange(len(labels), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    probs = scores if probabilities else softmax(scores)
    thresholds = class_thresholds(probs, labels)
    conf = self_confidence(probs, labels)
    passing = probs >= thresholds[None, :]
    confident = np.where(passing, probs, -np.inf).argmax(axis=1)
    suggested = np.where(passing.any(axis=1), confident, probs.argmax(axis=1))
    likely = passing.any(axis=1) & (confident != labels)
    order = np.argsort(conf, kind="stable")
    return LabelErrorRanking(ids[order], labels[order], suggested[order], conf[order], likely[order], thresholds)


def output_layer(layers: Sequence) -> str:
    """The layer whose output is the model's scores per class: the last layer the forward pass completes
    (``layers`` as :func:`plint_core.latents.list_layers` lists them)."""
    return layers[-1].name


def rank_training_labels(data, bundle, store, *, layers: Sequence | None = None, device: str = "cpu"
                         ) -> LabelErrorRanking:
    """:func:`rank_label_errors` of ``data``'s training split under ``bundle``: the output layer's scores from
    ``store``'s latent cache (computed once per data, model and layer, and shared with an embedding of that
    layer)."""
    from .latent_cache import cached_latents
    from .latents import list_layers

    layer = output_layer(layers if layers is not None else list_layers(bundle))
    lat = cached_latents(data, bundle, layer, store, device=device)
    scores = np.asarray(lat.latents("train"))
    if scores.shape[1] != data.n_classes:
        raise PlintError(f"the model's last layer {layer!r} has {scores.shape[1]} outputs for {data.n_classes} "
                         "classes: ranking label errors needs one score per class")
    return rank_label_errors(scores, data.train.labels, data.train.ids)
