"""Runs that differ only in their seed, taken together: the targeted pair's confusions with their intervals.

A run's seed decides its batch order (and the subset of training points); its
test figures move with it. The Fine-tune page can run several seeds of the same
moves and settings; Compare then finds them (:func:`seed_group`) and shows the
pair's confusions and accuracy as the mean over the seeds with a 95 % interval
from a bootstrap over the test images and the seeds
(:class:`plint_core.bootstrap.SeedBootstrap`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from plint_core.bootstrap import Interval, SeedBootstrap, accuracy, pair_confusions
from plint_core.errors import PlintError
from plint_core.report.summaries import MODELS


def _same_but_seed(a: dict, b: dict) -> bool:
    fa, fb = dict(a.get("finetune", {})), dict(b.get("finetune", {}))
    fa.pop("seed", None)
    fb.pop("seed", None)
    return (fa == fb and a.get("spec") == b.get("spec") and a.get("embedding_key") == b.get("embedding_key")
            and a.get("classes") == b.get("classes") and a.get("n_test") == b.get("n_test"))


def seed_group(runs: list[dict], result: dict) -> list[dict]:
    """``result`` and every other run in ``runs`` with the same moves, embedding and settings but another seed,
    one per seed, ordered by seed."""
    by_seed = {result["finetune"]["seed"]: result}
    for r in runs:
        seed = r.get("finetune", {}).get("seed")
        if seed not in by_seed and _same_but_seed(r, result):
            by_seed[seed] = r
    return [by_seed[s] for s in sorted(by_seed)]


def predictions(tables: list[pd.DataFrame]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Test labels and, per model, its predictions ``[seeds, images]`` from the runs' test tables (their
    ``test_embedding.csv``), aligned by image id; ``before`` once (every seed starts from the same model)."""
    if not tables:
        raise PlintError("no runs to take together")
    ordered = [t.sort_values("id", kind="stable").reset_index(drop=True) for t in tables]
    ids = ordered[0]["id"].to_numpy()
    for t in ordered[1:]:
        if len(t) != len(ids) or not np.array_equal(t["id"].to_numpy(), ids):
            raise PlintError("the runs were scored on different test images: they cannot be taken together")
    preds = {"before": ordered[0]["pred_before"].to_numpy()[None]}
    for model in ("after", "control"):
        preds[model] = np.stack([t[f"pred_{model}"].to_numpy() for t in ordered])
    return ordered[0]["label"].to_numpy(), preds


@dataclass(frozen=True)
class PairSummary:
    """The targeted pair's confusions and the accuracy of each model, with intervals, over ``seeds``."""

    pair: tuple[int, int]
    seeds: tuple[int, ...]
    n_test: int
    confusions: dict[str, Interval]
    accuracy: dict[str, Interval]
    ratio: Interval
    """PLI's pair confusions ÷ the control's."""
    accuracy_difference: Interval
    """PLI's accuracy − the control's."""


def pair_summary(boot: SeedBootstrap, pair: tuple[int, int], seeds: tuple[int, ...], n_test: int) -> PairSummary:
    stat = pair_confusions(pair)
    return PairSummary(pair, seeds, n_test, {m: boot.interval(stat, m) for m in MODELS},
                       {m: boot.interval(accuracy, m) for m in MODELS}, boot.ratio(stat, "after", "control"),
                       boot.difference(accuracy, "after", "control"))


def bootstrap_of(tables: list[pd.DataFrame], n_classes: int, random_state: int = 0) -> SeedBootstrap:
    """The seed-and-image bootstrap of the runs whose test tables are ``tables`` (one per seed), with
    :class:`~plint_core.bootstrap.SeedBootstrap`'s default draws and a fixed ``random_state``: the same runs
    always show the same interval."""
    labels, preds = predictions(tables)
    return SeedBootstrap(labels, preds, n_classes, random_state=random_state)
