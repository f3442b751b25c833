"""Which checkpoint of a run is shown and kept: the rules, and a user's pick, on validation figures only.

Every run records its path (:mod:`plint_core.path`): at each evaluation its
validation accuracy and how far the edit is from done. A *pick* is one
checkpoint of the PLI path; the control keeps its best validation checkpoint
(the starting weights included), as a practitioner training with cross-entropy
alone would.

Rules for the default pick (``FinetuneConfig.select``):

``follow`` (default)
    The PLI checkpoint that follows the edit most (smallest validation distance; the training points'
    distance where no validation image is moved) among those whose validation accuracy is within
    ``tolerance`` (default :data:`TOLERANCE`, 0.5 pp) of the reference: the best validation accuracy that the
    start or the control reached. The edit takes where it is cheap, and never at more than ``tolerance`` of
    accuracy. If no checkpoint is within it (the control kept improving a model still in training, or the best of
    its ten noisy scores ran high), the same choice within ``tolerance`` of the PLI run's own best validation
    accuracy: the edit is not dropped for a gap that no checkpoint could close (before, the fallback was the best
    validation checkpoint itself, which could be the start: bench/RESULTS.md, "Engine note").
``best-val``
    The checkpoint with the best validation accuracy, the start included (ties: the later step).
``last``
    The last step.

The test split never enters a pick: test figures are only shown for the checkpoint picked.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .path import Checkpoint

__all__ = ["PICK_RULES", "TOLERANCE", "best_val", "candidates", "edit_distance", "follow", "pick_steps",
           "reference_accuracy"]

PICK_RULES = ("follow", "best-val", "last")
TOLERANCE = 0.005
"""``follow``'s accuracy tolerance (0.5 pp). With 1,000 validation images one image is 0.1 pp; at 0.5 pp a pick
may give up 5 of them to the edit, and no more."""


def edit_distance(cp: Checkpoint) -> float | None:
    """The distance ``follow`` minimises: the validation images' (``distance``), else the training points'."""
    return cp.distance if cp.distance is not None else cp.train_distance


def best_val(path: Sequence[Checkpoint]) -> int:
    """The step with the best validation accuracy (ties: the later step)."""
    best = max(range(len(path)), key=lambda i: (path[i].accuracy, i))
    return path[best].step


def reference_accuracy(start: Checkpoint, control: Sequence[Checkpoint]) -> float:
    """The best validation accuracy that the start or the control reached."""
    return max([start.accuracy, *(c.accuracy for c in control)])


def follow(path: Sequence[Checkpoint], reference: float, tolerance: float = TOLERANCE) -> tuple[int, bool]:
    """``(step, within)``: the checkpoint of ``path`` with the smallest edit distance among those within
    ``tolerance`` of ``reference`` (ties: the earlier step, nearer the start), and whether one was; where none
    is, the same among those within ``tolerance`` of the path's own best validation accuracy (``within`` False);
    where no checkpoint has a distance, :func:`best_val`."""
    def nearest(level: float) -> int | None:
        ok = [i for i, c in enumerate(path) if c.accuracy >= level - tolerance - 1e-12
              and edit_distance(c) is not None]
        return min(ok, key=lambda i: (edit_distance(path[i]), i)) if ok else None

    i = nearest(reference)
    if i is not None:
        return path[i].step, True
    i = nearest(max(c.accuracy for c in path))
    return (path[i].step if i is not None else best_val(path)), False


def pick_steps(rule: str, pli: Sequence[Checkpoint], control: Sequence[Checkpoint],
               tolerance: float = TOLERANCE) -> dict:
    """The default picks: ``{"rule", "pli", "control", "reference", "tolerance", "within"}`` (steps); ``follow``
    with no checkpoint within the tolerance adds ``"fallback": "own-best"`` (:func:`follow`; a run stored before
    that rule has no such key: its fallback was the best validation checkpoint)."""
    ref = reference_accuracy(pli[0], control)
    if rule == "last":
        return {"rule": rule, "pli": pli[-1].step, "control": control[-1].step, "reference": ref,
                "tolerance": tolerance, "within": None}
    if rule == "best-val":
        return {"rule": rule, "pli": best_val(pli), "control": best_val(control), "reference": ref,
                "tolerance": tolerance, "within": None}
    step, within = follow(pli, ref, tolerance)
    picks = {"rule": rule, "pli": step, "control": best_val(control), "reference": ref, "tolerance": tolerance,
             "within": within}
    if not within:
        picks["fallback"] = "own-best"
    return picks


def candidates(path: Sequence[Checkpoint], reference: float | None, tolerance: float = TOLERANCE) -> set[int]:
    """Steps any rule could still pick once more checkpoints follow: the current best validation, ``follow``'s
    current pick (when ``reference`` is known) and the last. A run that cannot keep every checkpoint's weights
    keeps these."""
    steps = {path[-1].step, best_val(path)}
    if reference is not None:
        steps.add(follow(path, reference, tolerance)[0])
    return steps


def picked_view(result: dict, table, arrays: dict | None, step: int) -> tuple[dict, object]:
    """``result`` and the test table (``RunResult.test_embedding``) as they are with the PLI checkpoint ``step``
    picked: ``after``'s accuracy, confusion matrix, per-class figures, moved points' distance, the test
    predictions and coordinates from the path (``arrays``: :func:`plint_core.pipeline.load_path`), and the PLI
    selection's step and score. The run's own pick, or a run without a path, returns both unchanged."""
    from .metrics import evaluate

    sel = (result.get("selection") or {}).get("pli") or {}
    if arrays is None or step == sel.get("step") or "pli_steps" not in arrays:
        return result, table
    steps = [int(s) for s in arrays["pli_steps"]]
    if step not in steps:
        raise ValueError(f"step {step} is not a checkpoint of this run (its checkpoints: {steps})")
    k = steps.index(step)
    cp = next(c for c in result["path"]["pli"] if c["step"] == step)
    pred = np.asarray(arrays["pli_test_pred"][k], dtype=np.int64)
    ev = evaluate(table["label"].to_numpy(), pred, len(result["classes"]))
    view = dict(result)
    view["accuracy"] = dict(result["accuracy"], after=ev.accuracy)
    view["confusion"] = dict(result["confusion"], after=ev.confusion.tolist())
    view["per_class"] = dict(result["per_class"], after=ev.per_class(result["classes"]))
    if cp.get("train_distance") is not None:
        view["target_distance"] = dict(result["target_distance"], after=cp["train_distance"])
    view["selection"] = dict(result["selection"], pli=dict(sel, step=step, epoch=cp["epoch"], score=cp["accuracy"],
                                                           picked_by="user", rule_step=sel.get("step")))
    table = table.copy()
    table["pred_after"] = pred
    table["x_after"], table["y_after"] = arrays["pli_test_xy"][k][:, 0], arrays["pli_test_xy"][k][:, 1]
    return view, table
