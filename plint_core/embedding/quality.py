"""Quality metrics of a 2-D embedding of high-dimensional points.

All metrics are computed on the same seeded subsample of at most
``max_points`` points, so neighbourhoods are those *within the subsample*.
"""

from __future__ import annotations

import numpy as np

__all__ = ["embedding_quality", "knn_accuracy", "knn_recall", "trustworthiness"]

_CHUNK_BYTES = 64 * 2**20  # memory budget of one block of pairwise distances


def _neighbours(X: np.ndarray, k: int) -> np.ndarray:
    """Indices [N, k] of each point's ``k`` nearest other points (self excluded)."""
    n = X.shape[0]
    from sklearn.neighbors import NearestNeighbors  # imported when used

    idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)
    # With duplicate points the query point need not come first: drop it wherever it is.
    not_self = idx != np.arange(n)[:, None]
    keep = not_self & (np.cumsum(not_self, axis=1) <= k)
    return idx[keep].reshape(n, k)


def knn_accuracy(Y: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Leave-one-out ``k``-NN majority-vote label accuracy in ``Y``.

    Each point is classified by the most frequent label among its ``k`` nearest
    other points; ties go to the smallest label.
    """
    labels = np.asarray(labels)
    _, codes = np.unique(labels, return_inverse=True)
    neigh = codes[_neighbours(Y, k)]
    n_classes = codes.max() + 1
    votes = np.zeros((len(codes), n_classes), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(len(codes)), k), neigh.ravel()), 1)
    return float(np.mean(votes.argmax(axis=1) == codes))


def knn_recall(X_high: np.ndarray, Y: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each point's ``k`` nearest neighbours in ``X_high`` that
    are also among its ``k`` nearest neighbours in ``Y`` (1.0 = all preserved)."""
    a = _neighbours(X_high, k)
    b = _neighbours(Y, k)
    hits = (a[:, :, None] == b[:, None, :]).any(axis=2).sum()
    return float(hits / a.size)


def trustworthiness(X_high: np.ndarray, Y: np.ndarray, n_neighbors: int = 5) -> float:
    """Trustworthiness (Venna & Kaski), same definition and value as
    :func:`sklearn.manifold.trustworthiness` with the Euclidean metric.

    Penalises points that are among the ``n_neighbors`` nearest in ``Y`` but far
    in ``X_high``, by their rank in ``X_high``.  Unlike sklearn (which holds
    two N×N arrays, ~1.6 GB at N = 10k), the ranks are found block-wise in
    O(N · block) memory; time is still O(N² · D).
    """
    X = np.asarray(X_high, dtype=np.float64)
    n = X.shape[0]
    k = n_neighbors
    if not 1 <= k < n / 2:
        raise ValueError(f"n_neighbors must be in [1, N/2), got {k} for N={n}")
    emb_nn = _neighbours(np.asarray(Y, dtype=np.float64), k)
    sq = np.einsum("ij,ij->i", X, X)
    block = max(1, _CHUNK_BYTES // (8 * n))
    penalty = 0.0
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        d = sq[rows, None] + sq[None, :] - 2.0 * X[rows] @ X.T
        d[np.arange(len(rows)), rows] = np.inf  # self is never a neighbour
        d_nb = np.take_along_axis(d, emb_nn[rows], axis=1)  # [b, k]
        # 1-based rank of j among i's neighbours in X = 1 + #points strictly closer.
        ranks = 1 + (d[:, None, :] < d_nb[:, :, None]).sum(axis=2)
        penalty += np.clip(ranks - k, 0, None).sum()
    return float(1.0 - penalty * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))


def embedding_quality(
    X_high: np.ndarray,
    Y: np.ndarray,
    labels: np.ndarray,
    *,
    max_points: int = 10_000,
    random_state: int = 0,
) -> dict[str, float]:
    """Neighbourhood-preservation and class-separation scores of an embedding.

    Parameters
    ----------
    X_high : float array [N, D]
        High-dimensional points (e.g. flattened latents).
    Y : float array [N, 2]
        Their embedding.
    labels : array [N]
        Class labels.
    max_points : int, default 10_000
        If ``N`` is larger, all metrics use a subsample of this many points
        drawn with ``random_state``.  Trustworthiness costs O(max_points² · D)
        time (≈ 10 s at 10k points with D = 10 on 2 cores), O(max_points) memory blocks.
    random_state : int, default 0
        Seed of the subsample.

    Returns
    -------
    dict with
        ``knn_acc10``: leave-one-out 10-NN majority-vote label accuracy in ``Y``;
        ``knn_recall10``: mean fraction of the 10 nearest neighbours in ``X_high``
        that are among the 10 nearest in ``Y``;
        ``trustworthiness5``: trustworthiness with 5 neighbours.
    """
    X_high = np.asarray(X_high).reshape(len(X_high), -1)
    Y = np.asarray(Y)
    labels = np.asarray(labels)
    n = len(X_high)
    if not (len(Y) == len(labels) == n):
        raise ValueError(f"X_high, Y and labels must have the same length, got {n}, {len(Y)}, {len(labels)}")
    if n < 12:
        raise ValueError(f"need at least 12 points to compute 10-NN metrics, got {n}")
    if n > max_points:
        sel = np.sort(np.random.default_rng(random_state).choice(n, size=max_points, replace=False))
        X_high, Y, labels = X_high[sel], Y[sel], labels[sel]
    return {
        "knn_acc10": knn_accuracy(Y, labels, 10),
        "knn_recall10": knn_recall(X_high, Y, 10),
        "trustworthiness5": trustworthiness(X_high, Y, 5),
    }
