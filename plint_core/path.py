"""A run's checkpoint path: what the PLI run and its control record at every evaluation.

At step 0 and after each evaluation step (:func:`plint_core.validation.eval_steps`) a run scores its current
weights on the validation images (never the test split) and records a :class:`Checkpoint`:

- ``accuracy``: the validation accuracy;
- ``pair``: the targeted pair's validation confusions (images of either class predicted as the other);
- ``distance``: how far the edit is from done: the moved validation images' mean distance from their targets
  through the frozen embedding E (``None`` when the edit moves none of them);
- ``train_distance``: the same for the moved training points (at most :data:`MAX_TRACKED` of them, a fixed
  sample), the points the run is trained to move.

These figures are all a pick is made on (:mod:`plint_core.pick`). So that what is
shown can follow a pick, a run also keeps, per checkpoint, the test split's
predictions and coordinates through E and the tracked moved training points'
coordinates (:meth:`PathRecorder.arrays`): the run's test matrices, per-class
figures and map for any checkpoint, and the map's motion while the model trains.

Recording costs one forward pass over the validation images, the test split and
the tracked points per evaluation (10 per run by default).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .data.images import Images
from .data.loader import batch_loader, iterate
from .intervention import pair_errors
from .latents import as_images, capture, inference_batch_size, model_input
from .models.spec import ModelBundle

__all__ = ["MAX_TRACKED", "Checkpoint", "EditProbe", "PathRecorder", "RUNS", "tracked_rows"]

MAX_TRACKED = 2000
"""Moved training points whose coordinates a path keeps (a fixed sample when more are moved)."""
RUNS = ("pli", "control")


@dataclass(frozen=True)
class Checkpoint:
    """One evaluation of a run: its step (0 = the starting weights), epoch and validation figures."""

    step: int
    epoch: int
    accuracy: float
    pair: int
    distance: float | None
    train_distance: float | None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Checkpoint":
        return cls(int(d["step"]), int(d["epoch"]), float(d["accuracy"]), int(d["pair"]),
                   None if d.get("distance") is None else float(d["distance"]),
                   None if d.get("train_distance") is None else float(d["train_distance"]))


@dataclass
class EditProbe:
    """The images a path is recorded on, and what the edit asks of them (one per PLI/control pair).

    ``val_targets``/``val_moved`` are the edit applied to the validation images where the starting model
    places them (:meth:`plint_core.intervention.InterventionSpec.targets_for`); ``pair`` is the targeted pair
    (:func:`plint_core.metrics.targeted_pair` on the validation confusions before fine-tuning);
    ``moved_rows`` are the tracked moved training rows (positions in the training split) with their targets.
    """

    val_images: Images
    val_labels: np.ndarray
    val_targets: np.ndarray
    val_moved: np.ndarray
    pair: tuple[int, int]
    test_images: Images
    moved_images: Images
    moved_targets: np.ndarray
    moved_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def to_dict(self) -> dict:
        """What ``result.json`` records of the probe."""
        return {"pair": [int(self.pair[0]), int(self.pair[1])], "n_val": int(len(self.val_labels)),
                "n_val_moved": int(self.val_moved.sum()), "n_tracked": int(len(self.moved_rows))}


def tracked_rows(moved: np.ndarray, limit: int = MAX_TRACKED, seed: int = 0) -> np.ndarray:
    """The moved rows a path tracks: all of them, or a fixed sample of ``limit`` (sorted)."""
    rows = np.flatnonzero(np.asarray(moved, dtype=bool))
    if len(rows) <= limit:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))


class PathRecorder:
    """Records one run's checkpoints (:meth:`record`) on an :class:`EditProbe`, on the training device, in the
    training's precision, without moving the model off its device."""

    def __init__(self, probe: EditProbe, bundle: ModelBundle, layer: str, device: torch.device,
                 dtype: torch.dtype | None, workers: int | None = None):
        self.probe, self.bundle, self.layer = probe, bundle, layer
        self.device, self.dtype, self.workers = device, dtype, workers
        self.checkpoints: list[Checkpoint] = []
        self._test_pred: list[np.ndarray] = []
        self._test_xy: list[np.ndarray] = []
        self._moved_xy: list[np.ndarray] = []
        self._passes: dict[str, tuple] = {}

    def record(self, model: nn.Module, embedder: nn.Module, step: int, epoch: int) -> Checkpoint:
        """Score ``model`` (E: ``embedder``, frozen, on the device) after ``step`` and keep what it shows."""
        p = self.probe
        val_pred, val_xy = self._pass("val", p.val_images, model, embedder)
        test_pred, test_xy = self._pass("test", p.test_images, model, embedder)
        _, moved_xy = self._pass("moved", p.moved_images, model, embedder) if len(p.moved_images) else \
            (None, np.zeros((0, 2), np.float32))
        labels = p.val_labels
        cp = Checkpoint(int(step), int(epoch), float((val_pred == labels).mean()) if len(labels) else 0.0,
                        int(pair_errors(labels, val_pred, *p.pair).sum()),
                        _distance(val_xy[p.val_moved], p.val_targets[p.val_moved]),
                        _distance(moved_xy, p.moved_targets))
        self.checkpoints.append(cp)
        self._test_pred.append(test_pred.astype(np.int16))
        self._test_xy.append(test_xy)
        self._moved_xy.append(moved_xy)
        return cp

    def adopt_start(self, other: "PathRecorder") -> Checkpoint:
        """Take ``other``'s step-0 record (the same starting weights), instead of scoring them again."""
        self.checkpoints.append(other.checkpoints[0])
        self._test_pred.append(other._test_pred[0])
        self._test_xy.append(other._test_xy[0])
        self._moved_xy.append(other._moved_xy[0])
        return other.checkpoints[0]

    def latest(self, limit: int | None = None) -> dict:
        """The newest checkpoint's coordinates (test points, the first ``limit`` of them, and the tracked moved
        points), for a live view while the run trains."""
        if not self.checkpoints:
            return {}
        test = self._test_xy[-1] if limit is None else self._test_xy[-1][:limit]
        return {"step": self.checkpoints[-1].step, "test_xy": test, "moved_xy": self._moved_xy[-1]}

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The path's arrays for ``path.npz``: ``{prefix}_steps`` [K], ``{prefix}_test_pred`` [K, n_test] (int16),
        ``{prefix}_test_xy`` [K, n_test, 2] and ``{prefix}_moved_xy`` [K, n_tracked, 2] (float32)."""
        k = len(self.checkpoints)
        n_test, n_moved = len(self.probe.test_images), len(self.probe.moved_rows)
        return {f"{prefix}_steps": np.array([c.step for c in self.checkpoints], np.int64),
                f"{prefix}_test_pred": np.stack(self._test_pred) if k else np.zeros((0, n_test), np.int16),
                f"{prefix}_test_xy": np.stack(self._test_xy) if k else np.zeros((0, n_test, 2), np.float32),
                f"{prefix}_moved_xy": np.stack(self._moved_xy) if k else np.zeros((0, n_moved, 2), np.float32)}

    def _pass(self, name: str, images: Images, model: nn.Module, embedder: nn.Module
              ) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._passes:
            images = as_images(images)
            self._passes[name] = (images, model_input(self.bundle, images, self.device, model),
                                  batch_loader(images, inference_batch_size(images.shape[1:], self.device),
                                               self.device, workers=self.workers))
        images, convert, loader = self._passes[name]
        n = len(images)
        preds, xy = np.empty(n, np.int64), np.empty((n, 2), np.float32)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), capture(model, self.layer) as box:
                for batch in iterate(loader):
                    rows = batch["index"].numpy()
                    with torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None \
                            else nullcontext():
                        logits = model(convert(batch["images"]))
                    preds[rows] = logits.argmax(1).cpu().numpy()
                    xy[rows] = embedder(box["out"].float()).float().cpu().numpy()
        finally:
            model.train(was_training)
        return preds, xy


def _distance(xy: np.ndarray, targets: np.ndarray) -> float | None:
    if len(xy) == 0:
        return None
    return float(np.linalg.norm(np.asarray(xy, np.float64) - targets, axis=1).mean())
