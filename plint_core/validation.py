"""Which weights a fine-tuning run keeps: the checkpoint with the best validation accuracy, never the test split.

Both the PLI run and its CE-only control are scored on the same validation
images at the same steps, and each keeps its best checkpoint by the same rule
(:class:`Selector`), so the comparison stays fair. The weights before any
fine-tuning are a candidate too (step 0): a run whose every checkpoint scores
below them keeps them, so a run never ends with a lower validation accuracy
than the model it started from. Among checkpoints with the same, best score
the latest is kept: it is as accurate and has followed the edit longer (a
model that scores 100 % on its validation images from the start, as the demo
on its held-out slice, would otherwise never change). A run stops early once
its score has stayed below the best for ``patience`` evaluations in a row.

The validation images are the data set's own ``val`` split, or, where it has
none, a fixed stratified slice of the training split (:func:`held_out_slice`:
the same for every run and seed; moved points in it are scored, not trained on),
which is then left out of fine-tuning, and out of training by ``plint_core
train`` (a model trained elsewhere on the whole split has seen it: its scores
there are optimistic). At most ``val_points`` of them are used, in a fixed stratified
sample, to bound the time an evaluation takes. The test split is only ever
used after fine-tuning, to report.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["SLICE_FRACTION", "SLICE_SEED", "Selection", "Selector", "eval_steps", "held_out_slice", "validation_rows"]

SLICE_FRACTION = 0.1
"""Share of the training split held out for validation when a data set has no ``val`` split."""
SLICE_SEED = 0
"""Seed of the held-out slice and of the validation sample: fixed, so every run and seed is scored alike."""


def stratified_sample(labels: np.ndarray, candidates: np.ndarray, n: int, seed: int = SLICE_SEED) -> np.ndarray:
    """``n`` of the positions ``candidates`` (all of them if fewer), stratified by ``labels``, sorted."""
    candidates = np.asarray(candidates, dtype=np.int64)
    if n >= len(candidates):
        return np.sort(candidates)
    from sklearn.model_selection import train_test_split

    try:
        picked, _ = train_test_split(candidates, train_size=n, random_state=seed, stratify=labels[candidates])
    except ValueError:  # a class too rare to stratify: a plain seeded sample
        picked = np.random.default_rng(seed).choice(candidates, n, replace=False)
    return np.sort(picked)


def held_out_slice(labels: np.ndarray) -> np.ndarray:
    """The fixed validation slice of a training split without a ``val`` split: a stratified
    :data:`SLICE_FRACTION` of its rows, drawn with :data:`SLICE_SEED`. ``plint_core train`` leaves it out
    of training, so a model it trained has never seen the images its fine-tuning runs are scored on."""
    n = int(round(SLICE_FRACTION * len(labels)))
    if n < 1 or n >= len(labels):
        return np.zeros(0, dtype=np.int64)
    return stratified_sample(labels, np.arange(len(labels)), n)


def validation_rows(labels: np.ndarray, val_points: int) -> np.ndarray:
    """The training rows a run is scored on when there is no ``val`` split: :func:`held_out_slice`, at most
    ``val_points`` of it (a fixed stratified sample). Moved points in the slice are scored, not trained on:
    a class moved as a whole must still be in the validation images, or a run that wrecks it would pass."""
    rows = held_out_slice(labels)
    return stratified_sample(labels, rows, val_points) if len(rows) else rows


MIN_STEPS_BETWEEN = 20
"""Fewest training steps between two evaluations: a short run (an epoch of a few hundred images at 224 px is
16 steps) is not scored after nearly every step, which would cost more than its training."""


def eval_steps(total: int, evaluations: int) -> list[int]:
    """The steps (1..``total``) after which a run is scored: ``evaluations`` of them, evenly spread and at least
    :data:`MIN_STEPS_BETWEEN` apart (fewer in a short run), the last step always among them."""
    if evaluations < 1 or total < 1:
        return []
    evaluations = max(1, min(evaluations, total // MIN_STEPS_BETWEEN))
    return sorted({int(s) for s in np.linspace(total / evaluations, total, evaluations).round()} - {0})


@dataclass
class Selection:
    """What a run's selection found: its validation curve, and the step it keeps."""

    rule: str
    """``best-val`` or ``last``."""
    curve: list[tuple[int, float]] = field(default_factory=list)
    """``(step, validation accuracy)``, step 0 being the weights before fine-tuning."""
    step: int = 0
    """The step whose weights the run keeps (0: the weights it started from)."""
    epoch: int = 0
    """The epoch that step fell in (0 for step 0)."""
    score: float | None = None
    """Its validation accuracy (``None`` for ``last`` without validation)."""
    steps_run: int = 0
    """Steps trained before the run ended (fewer than planned after an early stop)."""
    stopped_early: bool = False
    confirm: dict | None = None
    """With ``FinetuneConfig.confirm``: ``n`` (the whole validation set's size), ``start`` and ``kept`` (their
    accuracies on it), ``kept_step`` (the checkpoint the sample chose) and ``reverted`` (it scored below the
    start there, so the run kept its start); ``None`` when not checked (step 0 kept, or no larger set)."""
    calibration: dict | None = None
    """With the calibrated weighting (:func:`plint_core.finetune.calibrate`): the gradient norms and the multiplier."""
    embed_on: str | None = None
    """The rows the embedding term acted on (``all``, ``moved`` or ``balanced``; ``FinetuneConfig.embed_on="auto"``
    resolved, :func:`plint_core.finetune.resolve_embed_on`); ``None`` without an embedding term."""
    pick: dict | None = None
    """With a recorded path: the pick's ``rule``, ``reference``, ``tolerance`` and ``within`` (:mod:`plint_core.pick`)."""
    recorder: object = field(default=None, repr=False, compare=False)
    """The run's :class:`~plint_core.path.PathRecorder` (not in :meth:`to_dict`)."""
    kept: dict = field(default_factory=dict, repr=False, compare=False)
    """Checkpoint weights kept, by step (CPU state dicts; not in :meth:`to_dict`)."""

    def to_dict(self) -> dict:
        return {"rule": self.rule, "step": self.step, "epoch": self.epoch, "score": self.score,
                "steps_run": self.steps_run, "stopped_early": self.stopped_early,
                "curve": [[int(s), float(a)] for s, a in self.curve], "confirm": self.confirm,
                "calibration": self.calibration, "embed_on": self.embed_on, "pick": self.pick}


class Selector:
    """Keeps the best-scoring weights of a run (ties go to the later step) and says when to stop.

    ``before`` is the validation accuracy of the starting weights (step 0);
    ``patience`` evaluations in a row below the best score end the run
    (``None``: never early).
    """

    def __init__(self, before: float, patience: int | None):
        self.selection = Selection("best-val", [(0, float(before))], 0, 0, float(before))
        self.patience = patience
        self._best_state: dict[str, torch.Tensor] | None = None
        self._below = 0

    def offer(self, step: int, epoch: int, score: float, model: nn.Module, keep: bool = True) -> bool:
        """Record ``model``'s ``score`` after ``step``; keep a copy of its weights if it scores at least as well
        as the best so far (``keep=False``: the caller keeps weights itself). Returns whether the run should stop
        (patience used up)."""
        s = self.selection
        s.curve.append((int(step), float(score)))
        s.steps_run = int(step)
        if score >= s.score:
            s.step, s.epoch, s.score = int(step), int(epoch), float(score)
            if keep:
                self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            self._below = 0
            return False
        self._below += 1
        if self.patience is not None and self._below >= self.patience:
            s.stopped_early = True
            return True
        return False

    def restore(self, model: nn.Module, start: nn.Module) -> nn.Module:
        """``model`` with the kept weights: the best checkpoint's, or ``start``'s if step 0 was best."""
        model.load_state_dict(self._best_state if self._best_state is not None else start.state_dict())
        return model
