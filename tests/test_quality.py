"""Embedding quality metrics: known cases and agreement with scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.manifold import trustworthiness as sk_trustworthiness

from plint_core.embedding.quality import embedding_quality, knn_accuracy, knn_recall, trustworthiness


def _blobs(n_per: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    X = np.concatenate([c + rng.normal(size=(n_per, 2)) for c in centres])
    return X, np.repeat(np.arange(3), n_per)


def test_identity_embedding_is_perfect():
    X, labels = _blobs()
    q = embedding_quality(X, X.copy(), labels)
    assert q == {"knn_acc10": 1.0, "knn_recall10": 1.0, "trustworthiness5": 1.0}


def test_random_embedding_scores_low():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 10))
    labels = (X[:, 0] > 0).astype(int)  # learnable from X, not from a random Y
    q = embedding_quality(X, rng.normal(size=(500, 2)), labels)
    assert q["knn_recall10"] < 0.1
    assert 0.4 < q["trustworthiness5"] < 0.65
    assert q["knn_acc10"] < 0.65


def test_trustworthiness_matches_sklearn():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 8))
    Y = X[:, :2] + 0.3 * rng.normal(size=(300, 2))  # partly faithful
    for k in (1, 5, 12):
        assert trustworthiness(X, Y, k) == pytest.approx(sk_trustworthiness(X, Y, n_neighbors=k), abs=1e-12)


def test_trustworthiness_is_blockwise_exact(monkeypatch):
    from plint_core.embedding import quality

    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(200, 5)), rng.normal(size=(200, 2))
    whole = trustworthiness(X, Y, 5)
    monkeypatch.setattr(quality, "_CHUNK_BYTES", 8 * 200 * 7)  # blocks of 7 rows
    assert trustworthiness(X, Y, 5) == pytest.approx(whole, abs=1e-12)


def test_knn_accuracy_separated_and_shuffled_labels():
    X, labels = _blobs()
    assert knn_accuracy(X, labels) == 1.0
    shuffled = np.random.default_rng(4).permutation(labels)
    assert knn_accuracy(X, shuffled) < 0.5


def test_knn_recall_excludes_self_with_duplicates():
    X, _ = _blobs(n_per=30)
    X = np.concatenate([X, X])  # every point has an exact duplicate
    assert knn_recall(X, X, 10) == 1.0


def test_subsample_is_seeded_and_bounded():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 6))
    Y = X[:, :2] + 0.1 * rng.normal(size=(400, 2))
    labels = (X[:, 0] > 0).astype(int)
    a = embedding_quality(X, Y, labels, max_points=150, random_state=7)
    b = embedding_quality(X, Y, labels, max_points=150, random_state=7)
    c = embedding_quality(X, Y, labels, max_points=150, random_state=8)
    assert a == b and a != c
    sel = np.sort(np.random.default_rng(7).choice(400, size=150, replace=False))
    assert a == embedding_quality(X[sel], Y[sel], labels[sel])


def test_bad_inputs_raise():
    X, labels = _blobs(n_per=10)
    with pytest.raises(ValueError, match="same length"):
        embedding_quality(X, X[:-1], labels)
    with pytest.raises(ValueError, match="at least 12"):
        embedding_quality(X[:8], X[:8], labels[:8])
