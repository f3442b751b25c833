"""Metrics: accuracy, confusion orientation, standard F1, most-confused pair, target distance."""
from __future__ import annotations

import numpy as np
import pytest

from plint_core.metrics import evaluate, mean_target_distance, most_confused_pair


def test_confusion_rows_are_true_classes_and_f1_is_harmonic():
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 1, 1])
    ev = evaluate(labels, preds, 3)
    assert ev.accuracy == pytest.approx(4 / 6)
    np.testing.assert_array_equal(ev.confusion, [[2, 1, 0], [0, 2, 0], [0, 1, 0]])
    p, r = 2 / 4, 2 / 2  # class 1
    assert ev.f1[1] == pytest.approx(2 * p * r / (p + r))
    rows = ev.per_class(["a", "b", "c"])
    assert rows[2] == {"class": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_most_confused_pair_counts_both_directions():
    confusion = np.array([[50, 3, 0], [2, 40, 4], [0, 0, 30]])
    assert most_confused_pair(confusion) == (0, 1)


def test_mean_target_distance():
    assert mean_target_distance(np.array([[0, 0], [1, 1]]), np.array([[3, 4], [1, 1]])) == pytest.approx(2.5)
    assert mean_target_distance(np.zeros((0, 2)), np.zeros((0, 2))) == 0.0
