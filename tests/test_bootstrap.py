"""Intervals over test images and seeds (plint_core.bootstrap), the targeted pair, and the app's seed groups."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from plint_app.seeds import pair_summary, predictions, seed_group
from plint_core.bootstrap import SeedBootstrap, accuracy, class_f1, class_precision, class_recall, pair_confusions
from plint_core.errors import PlintError
from plint_core.metrics import targeted_pair

K, N = 4, 2000


def noisy(labels: np.ndarray, rate: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = labels.copy()
    flip = rng.random(len(labels)) < rate
    out[flip] = rng.integers(0, K, flip.sum())
    return out


@pytest.fixture(scope="module")
def labels():
    return np.random.default_rng(0).integers(0, K, N)


def test_observed_figures_are_scikit_learns_averaged_over_seeds(labels):
    runs = np.stack([noisy(labels, r, s) for s, r in enumerate((0.2, 0.3, 0.25))])
    boot = SeedBootstrap(labels, {"after": runs}, K, n_resamples=50)
    pair = pair_confusions((1, 2))
    per_seed = [confusion_matrix(labels, p, labels=range(K)) for p in runs]
    assert boot.interval(pair, "after").estimate == pytest.approx(np.mean([c[1, 2] + c[2, 1] for c in per_seed]))
    mean_accuracy = np.mean([accuracy_score(labels, p) for p in runs])
    assert boot.interval(accuracy, "after").estimate == pytest.approx(mean_accuracy)
    # per-class figures of one seed equal scikit-learn's
    one = SeedBootstrap(labels, {"m": runs[0]}, K, n_resamples=10)
    for k in range(K):
        for stat, ref in ((class_precision, precision_score), (class_recall, recall_score), (class_f1, f1_score)):
            expected = ref(labels, runs[0], labels=[k], average=None)[0]
            assert one.interval(stat(k), "m").estimate == pytest.approx(expected)


def test_same_random_state_same_intervals(labels):
    preds = {"after": noisy(labels, 0.3, 1), "control": noisy(labels, 0.3, 2)}
    a, b = (SeedBootstrap(labels, preds, K, n_resamples=300, random_state=7) for _ in range(2))
    c = SeedBootstrap(labels, preds, K, n_resamples=300, random_state=8)
    assert a.interval(accuracy, "after") == b.interval(accuracy, "after")
    assert a.interval(accuracy, "after") != c.interval(accuracy, "after")


def test_models_are_compared_on_the_same_images_and_seeds(labels):
    runs = np.stack([noisy(labels, 0.3, s) for s in range(5)])
    boot = SeedBootstrap(labels, {"after": runs, "control": runs.copy()}, K, n_resamples=400)
    pair = pair_confusions((0, 3))
    assert (boot.ratio(pair, "after", "control").low, boot.ratio(pair, "after", "control").high) == (1.0, 1.0)
    diff = boot.difference(accuracy, "after", "control")
    assert (diff.low, diff.high) == (0.0, 0.0)
    # while each model's own interval is not degenerate
    own = boot.interval(accuracy, "after")
    assert own.high - own.low > 0.01


def test_one_seed_resamples_images_only_and_matches_the_normal_approximation(labels):
    preds = noisy(labels, 0.4, 3)
    boot = SeedBootstrap(labels, {"m": preds}, K, n_resamples=2000)
    iv = boot.interval(accuracy, "m")
    p = accuracy_score(labels, preds)
    normal = 2 * 1.96 * np.sqrt(p * (1 - p) / N)
    assert iv.low < p < iv.high
    assert (iv.high - iv.low) == pytest.approx(normal, rel=0.15)


def test_seeds_are_resampled(labels):
    right, wrong = labels.copy(), (labels + 1) % K
    two_seeds = SeedBootstrap(labels, {"m": np.stack([right, wrong])}, K, n_resamples=400).interval(accuracy, "m")
    assert two_seeds.estimate == pytest.approx(0.5)
    assert two_seeds.low == 0.0 and two_seeds.high == 1.0, "a draw may pick either seed twice"
    assert two_seeds.excludes(1.2) and not two_seeds.excludes(0.5)


def test_bad_input_is_one_clear_message(labels):
    with pytest.raises(PlintError, match="one row per seed of 2000 test images"):
        SeedBootstrap(labels, {"m": labels[:10]}, K)
    with pytest.raises(PlintError, match="outside 0..3"):
        SeedBootstrap(labels, {"m": labels + 1}, K)
    with pytest.raises(PlintError, match="confidence is 95"):
        SeedBootstrap(labels, {"m": labels}, K, confidence=95)


def test_targeted_pair():
    conf = np.array([[50, 1, 9], [2, 40, 0], [7, 3, 30]])
    assert targeted_pair(np.array([2, 2, 1, 1, 1, 0]), conf) == (1, 2), "the two classes with most moved points"
    assert targeted_pair(np.array([2, 2]), conf) == (0, 2), "one class: with the class it is most confused with"
    assert targeted_pair(np.array([], int), conf) == (0, 2), "nothing moved: the most confused pair"


def result(seed: int, **change) -> dict:
    r = {"run_id": f"r{seed}", "spec": {"moves": [1]}, "embedding_key": "e", "classes": ["a", "b"], "n_test": 3,
         "finetune": {"seed": seed, "lam": 0.1, "steps": 100}}
    r.update(change)
    return r


def test_a_seed_group_is_the_same_run_with_other_seeds():
    runs = [result(2), result(0), result(1, finetune={"seed": 1, "lam": 0.5, "steps": 100}),
            result(3, spec={"moves": [2]}), result(4), result(2)]
    assert [r["run_id"] for r in seed_group(runs, result(0))] == ["r0", "r2", "r4"]


def test_predictions_are_aligned_by_image_id():
    t1 = pd.DataFrame({"id": [0, 1, 2], "label": [0, 1, 1], "pred_before": [0, 0, 1], "pred_after": [0, 1, 1],
                       "pred_control": [1, 1, 1]})
    t2 = t1.iloc[[2, 0, 1]].assign(pred_after=[0, 0, 0])
    y, preds = predictions([t1, t2])
    assert y.tolist() == [0, 1, 1] and preds["before"].shape == (1, 3)
    assert preds["after"].tolist() == [[0, 1, 1], [0, 0, 0]]
    with pytest.raises(PlintError, match="different test images"):
        predictions([t1, t1.assign(id=[0, 1, 5])])
    s = pair_summary(SeedBootstrap(y, preds, 2, n_resamples=100), (0, 1), (0, 1), 3)
    assert s.confusions["after"].estimate == 1.0 and s.confusions["control"].estimate == 1.0
