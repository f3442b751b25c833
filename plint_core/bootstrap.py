"""Intervals over test images and seeds: how sure a comparison of fine-tuned models is.

A run's test figures depend on which test images there happen to be and on the
fine-tuning seed (batch order). :class:`SeedBootstrap` resamples both at once:
each of ``n_resamples`` draws picks the seeds with replacement and the test images
with replacement (the same images for every model and seed, so that models are
compared on the same draw), and averages each model's confusion matrix over the
drawn seeds. Every figure that follows from a confusion matrix — the confusions of
a class pair, accuracy, per-class precision, recall and F1 — then gets a percentile
interval, and so do differences and ratios between two models, from the same draws.

With one seed only the test images are resampled: the interval then says nothing of
how another seed would do.

Example::

    boot = SeedBootstrap(labels, {"after": preds_pli, "control": preds_ce}, n_classes=10, random_state=0)
    boot.interval(pair_confusions((0, 6)), "after")          # Interval(estimate, low, high)
    boot.ratio(pair_confusions((0, 6)), "after", "control")  # PLI / control, same draws
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from .errors import PlintError

__all__ = ["Interval", "SeedBootstrap", "accuracy", "class_f1", "class_precision", "class_recall", "pair_confusions"]

Statistic = Callable[[np.ndarray], np.ndarray]
"""Maps confusion matrices ``[..., K, K]`` (rows: true class) to one figure each ``[...]``."""


@dataclass(frozen=True)
class Interval:
    """A figure on the observed data (``estimate``: the mean over seeds) and its interval ``[low, high]``."""

    estimate: float
    low: float
    high: float
    confidence: float = 0.95

    def format(self, spec: str = ".1f") -> str:
        """``12.3 [10.1, 14.0]``."""
        return f"{self.estimate:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def excludes(self, value: float) -> bool:
        """Whether ``value`` lies outside the interval."""
        return value < self.low or value > self.high


def pair_confusions(pair: tuple[int, int]) -> Statistic:
    """Test images of class ``a`` predicted as ``b`` plus those of ``b`` predicted as ``a``."""
    a, b = pair
    return lambda c: c[..., a, b] + c[..., b, a]


def accuracy(c: np.ndarray) -> np.ndarray:
    """Share of test images on the diagonal."""
    return np.trace(c, axis1=-2, axis2=-1) / np.maximum(c.sum(axis=(-2, -1)), 1e-12)


def class_precision(k: int) -> Statistic:
    """Precision of class ``k`` (0 where nothing is predicted as ``k``, as scikit-learn's ``zero_division=0``)."""
    return lambda c: _ratio(c[..., k, k], c[..., :, k].sum(-1))


def class_recall(k: int) -> Statistic:
    """Recall of class ``k``."""
    return lambda c: _ratio(c[..., k, k], c[..., k, :].sum(-1))


def class_f1(k: int) -> Statistic:
    """F1 of class ``k``: ``2 tp / (2 tp + fp + fn)``."""
    return lambda c: _ratio(2 * c[..., k, k], c[..., :, k].sum(-1) + c[..., k, :].sum(-1))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


class SeedBootstrap:
    """Confusion matrices of several models, each fine-tuned with several seeds, resampled over seeds and images.

    Parameters
    ----------
    labels: the true class of each of the ``N`` test images.
    predictions: per model, its predictions ``[S, N]`` (one row per seed; ``[N]`` for a single one). A draw
        picks the test images once for all models, and the seeds once for all models with the same number of
        them: row ``s`` of each is taken to be the same seed (a PLI run and its control share their batches),
        so they are compared seed by seed. Models may have other numbers of seeds (``before`` fine-tuning
        has one).
    n_classes: ``K``.
    n_resamples: bootstrap draws (default 2,000).
    confidence: of the percentile intervals (default 0.95).
    random_state: seeds the draws; the same inputs and seed give the same intervals.
    """

    def __init__(self, labels: np.ndarray, predictions: Mapping[str, np.ndarray], n_classes: int, *,
                 n_resamples: int = 2000, confidence: float = 0.95, random_state: int = 0, chunk: int = 250):
        labels = np.asarray(labels, dtype=np.int64)
        if labels.ndim != 1 or len(labels) == 0:
            raise PlintError("the bootstrap needs the labels of at least one test image")
        if not 0 < confidence < 1:
            raise PlintError(f"confidence is {confidence}: give a share between 0 and 1, such as 0.95")
        if n_resamples < 1:
            raise PlintError(f"n_resamples is {n_resamples}: give 1 or more")
        preds = {}
        for name, p in predictions.items():
            p = np.atleast_2d(np.asarray(p, dtype=np.int64))
            if p.shape[1] != len(labels) or len(p) == 0:
                raise PlintError(f"the predictions of {name!r} are {p.shape}: one row per seed of "
                                 f"{len(labels)} test images is needed")
            if p.min() < 0 or p.max() >= n_classes or labels.max() >= n_classes:
                raise PlintError(f"classes of {name!r} outside 0..{n_classes - 1}")
            preds[name] = p
        self.n_classes, self.confidence, self.n_resamples = n_classes, confidence, n_resamples
        self.seeds = {name: len(p) for name, p in preds.items()}
        k2 = n_classes * n_classes
        codes = {name: labels[None, :] * n_classes + p for name, p in preds.items()}
        self.observed = {name: np.stack([np.bincount(c, minlength=k2) for c in code]).mean(0).reshape(n_classes,
                                                                                                      n_classes)
                         for name, code in codes.items()}
        """Per model, its confusion matrix averaged over its seeds."""
        rng = np.random.default_rng(random_state)
        n = len(labels)
        draws = {name: np.empty((n_resamples, k2)) for name in preds}
        onehot = {name: [np.eye(k2, dtype=np.float32)[c] for c in code] for name, code in codes.items()}
        for start in range(0, n_resamples, chunk):
            r = min(chunk, n_resamples - start)
            weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(r)]).astype(np.float32)
            picks = {s: rng.integers(0, s, size=(r, s)) for s in sorted(set(self.seeds.values()))}
            for name, hots in onehot.items():
                per_seed = np.stack([weights @ h for h in hots], axis=1)  # [r, S, K²]
                picked = picks[len(hots)]
                draws[name][start:start + r] = np.take_along_axis(per_seed, picked[:, :, None], axis=1).mean(1)
        self.draws = {name: d.reshape(n_resamples, n_classes, n_classes) for name, d in draws.items()}
        """Per model, ``[n_resamples, K, K]``: its seed-averaged confusion matrix in each draw."""

    def _interval(self, observed: float, draws: np.ndarray) -> Interval:
        tail = (1 - self.confidence) / 2 * 100
        finite = draws[np.isfinite(draws)]
        low, high = (np.percentile(finite, [tail, 100 - tail]) if len(finite) else (np.nan, np.nan))
        return Interval(float(observed), float(low), float(high), self.confidence)

    def interval(self, statistic: Statistic, model: str) -> Interval:
        """``statistic`` of ``model``: the mean over its seeds, and its interval."""
        return self._interval(statistic(self.observed[model]), statistic(self.draws[model]))

    def difference(self, statistic: Statistic, a: str, b: str) -> Interval:
        """``statistic`` of ``a`` minus that of ``b``, with its interval from the same draws."""
        return self._interval(statistic(self.observed[a]) - statistic(self.observed[b]),
                              statistic(self.draws[a]) - statistic(self.draws[b]))

    def ratio(self, statistic: Statistic, a: str, b: str) -> Interval:
        """``statistic`` of ``a`` divided by that of ``b`` (``nan`` where ``b``'s is 0), from the same draws."""
        with np.errstate(divide="ignore", invalid="ignore"):
            observed = statistic(self.observed[a]) / statistic(self.observed[b])
            draws = statistic(self.draws[a]) / statistic(self.draws[b])
        return self._interval(observed, draws)
