"""Everything the scatter needs from an embedding, computed once per embedding (pure: no Streamlit)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from plint_core.data.dataset import Dataset
from plint_core.intervention import InterventionSpec
from plint_core.pipeline import Embedding
from plint_core.report.style import marker_size, plot_ranges

from .chart_events import TEST, TRAIN
from .editor import TrainIndex
from .scatter import Overlay, PointSet, moves_overlay, preview_overlay


@dataclass(frozen=True)
class ScatterView:
    """Train and test points of one embedding, the train index for the editor, and plot ranges."""

    key: str
    train: PointSet
    test: PointSet
    index: TrainIndex
    ranges: tuple[tuple[float, float], tuple[float, float]]
    scale: float
    """The embedding's RMS radius (embedding units), for sensible step sizes."""

    @classmethod
    def of(cls, data: Dataset, emb: Embedding) -> "ScatterView":
        train = PointSet.of(emb.train_xy, data.train.ids, data.train.labels, emb.train_pred, TRAIN)
        test = PointSet.of(emb.test_xy, data.test.ids, data.test.labels, emb.test_pred, TEST)
        index = TrainIndex(data.train.ids, data.train.labels, np.asarray(emb.train_xy), tuple(data.class_names))
        return cls(emb.key, train, test, index, plot_ranges(emb.train_xy, emb.test_xy, pad=0.08), emb.scale)

    def marker_size(self, show_test: bool) -> float:
        return marker_size(len(self.train) + (len(self.test) if show_test else 0))

    @property
    def test_xy(self) -> np.ndarray:
        """Test coordinates, ``[N, 2]``."""
        return np.column_stack([self.test.x, self.test.y])

    def xy_of(self, ids: np.ndarray) -> np.ndarray:
        """Training coordinates of sample ``ids``."""
        return self.index.xy[self.index.rows_of(ids)]

    def correct_of(self, ids: np.ndarray) -> np.ndarray:
        rows = self.index.rows_of(ids)
        return self.train.labels[rows] == self.train.preds[rows]


def move_target(xy: np.ndarray, translate: tuple[float, float], contract: float) -> np.ndarray:
    """``a·y + (1 − a)·centroid + t`` for one group (the engine's formula, see ``plint_core.intervention``)."""
    xy = np.asarray(xy, dtype=np.float64)
    return contract * xy + (1 - contract) * xy.mean(0) + np.asarray(translate, dtype=np.float64)


def committed_overlay(view: ScatterView, spec: InterventionSpec, size: float,
                      shown: np.ndarray | None = None) -> tuple[Overlay, list[int]]:
    """The spec's moves drawn over the scatter, and each move's number of points; ``shown`` (a mask over the
    training rows, on a thinned map) limits the ghost points to the points drawn, the arrows stay the groups'."""
    if not spec.moves:
        return Overlay.empty(), []
    idx = view.index
    groups = spec.groups(idx.labels, idx.ids, idx.class_names)
    targets, _ = spec.targets(idx.xy, idx.labels, idx.ids, idx.class_names)
    drawn = [rows if shown is None else rows[shown[rows]] for rows in groups]
    overlay = moves_overlay([idx.xy[rows] for rows in groups], [targets[rows] for rows in groups], size,
                            drawn=[targets[rows] for rows in drawn] if shown is not None else None)
    return overlay, [len(rows) for rows in groups]


def pending_overlay(view: ScatterView, ids: np.ndarray, translate: tuple[float, float], contract: float,
                    size: float, shown: np.ndarray | None = None) -> Overlay:
    """The preview of moving ``ids`` (empty when nothing is selected or the move does nothing); ``shown`` (a mask
    over the training rows, on a thinned map) limits the ghost points to the points drawn."""
    if not len(ids) or (translate == (0.0, 0.0) and contract == 1.0):
        return Overlay.empty()
    rows = view.index.rows_of(ids)
    xy = view.index.xy[rows]
    target = move_target(xy, translate, contract)
    return preview_overlay(xy, target, size, drawn=None if shown is None else target[shown[rows]])


def signature(*parts: str) -> str:
    """A short hash naming a combination of ``parts`` (used to tell whether a figure changed)."""
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()


def digest(array: np.ndarray) -> str:
    """A short hash of an array's bytes."""
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()
