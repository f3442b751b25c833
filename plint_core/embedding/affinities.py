"""Sparse t-SNE input affinities from a k-nearest-neighbour graph.

The conditional affinities ``p_{j|i}`` are Gaussian kernels over the ``k``
nearest neighbours of each point, with the bandwidth of point ``i`` found by a
(vectorised) binary search so that the entropy of row ``i`` equals
``log(perplexity)`` (natural log).  The joint affinities are the symmetrised,
normalised ``P = (P_cond + P_condᵀ) / (2N)``, which sums to 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = [
    "KNNAffinities",
    "calibrate_conditional",
    "knn_affinities",
    "neighbours_for_perplexity",
]


@dataclass(frozen=True)
class KNNAffinities:
    """Joint input affinities of ``n_points`` points.

    Attributes
    ----------
    P : scipy.sparse.csr_matrix, float64 [N, N]
        Symmetric joint affinities, non-negative, summing to 1, zero diagonal.
    perplexity : float
        The perplexity actually used (after clamping to what ``N`` allows).
    n_neighbors : int
        Neighbours per point used for the conditional affinities.
    """

    P: sp.csr_matrix
    perplexity: float
    n_neighbors: int

    @property
    def n_points(self) -> int:
        return self.P.shape[0]


def neighbours_for_perplexity(perplexity: float, n_points: int) -> tuple[float, int]:
    """Return ``(perplexity, k)`` usable for ``n_points`` points.

    ``k = min(N - 1, floor(3 * perplexity))``.  A perplexity larger than
    ``(N - 1) / 3`` is clamped to ``(N - 1) / 3`` (openTSNE does the same), so
    that each row has enough neighbours to reach the target entropy.
    """
    if n_points < 2:
        raise ValueError(f"need at least 2 points for affinities, got {n_points}")
    if not np.isfinite(perplexity) or perplexity <= 1.0:
        raise ValueError(f"perplexity must be a finite number > 1, got {perplexity}")
    perplexity = float(min(perplexity, (n_points - 1) / 3.0))
    k = int(min(n_points - 1, max(1, np.floor(3.0 * perplexity))))
    return perplexity, k


def calibrate_conditional(
    sq_distances: np.ndarray,
    perplexity: float,
    *,
    tol: float = 1e-5,
    max_iter: int = 200,
) -> np.ndarray:
    """Gaussian conditional affinities with per-row perplexity calibration.

    Parameters
    ----------
    sq_distances : float array [N, k]
        Squared distances from each point to its ``k`` nearest neighbours
        (the point itself excluded).
    perplexity : float
        Target perplexity; each row's entropy is matched to ``log(perplexity)``
        (nats) to within ``tol``.
    tol : float, default 1e-5
        Absolute entropy tolerance (nats).
    max_iter : int, default 200
        Maximum bisection steps (all rows are searched simultaneously).

    Returns
    -------
    float64 array [N, k] whose rows sum to 1.
    """
    d = np.asarray(sq_distances, dtype=np.float64)
    # Shifting by the nearest distance leaves p unchanged but avoids underflow.
    d = d - d[:, :1]
    target = np.log(perplexity)
    n = d.shape[0]
    beta = np.ones(n)
    lo = np.full(n, 0.0)
    hi = np.full(n, np.inf)
    active = np.ones(n, dtype=bool)
    for _ in range(max_iter):
        w = np.exp(-d[active] * beta[active, None])
        s = w.sum(axis=1)
        entropy = np.log(s) + beta[active] * (d[active] * w).sum(axis=1) / s
        diff = entropy - target
        done = np.abs(diff) < tol
        b = beta[active]
        # Entropy too high -> kernel too wide -> increase beta (precision).
        too_high = diff > 0
        lo_a, hi_a = lo[active], hi[active]
        lo_a = np.where(too_high, b, lo_a)
        hi_a = np.where(too_high, hi_a, b)
        b_new = np.where(np.isinf(hi_a), b * 2.0, (lo_a + hi_a) / 2.0)
        b_new = np.where(done, b, b_new)
        lo[active], hi[active], beta[active] = lo_a, hi_a, b_new
        idx = np.flatnonzero(active)
        active[idx[done]] = False
        if not active.any():
            break
    w = np.exp(-d * beta[:, None])
    return w / w.sum(axis=1, keepdims=True)


def knn_affinities(X: np.ndarray, perplexity: float = 30.0, *, n_jobs: int | None = None) -> KNNAffinities:
    """Symmetric joint t-SNE affinities on the exact kNN graph of ``X``.

    Parameters
    ----------
    X : float array [N, D]
        Input points (Euclidean distances are used).
    perplexity : float, default 30.0
        Effective number of neighbours; clamped to ``(N - 1) / 3`` if larger.
        ``k = min(N - 1, 3 * perplexity)`` neighbours are computed exactly with
        :class:`sklearn.neighbors.NearestNeighbors` (fine for N ≤ ~10k, D ≤ ~512).
    n_jobs : int or None
        Passed to ``NearestNeighbors``.

    Returns
    -------
    KNNAffinities
    """
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    perplexity, k = neighbours_for_perplexity(perplexity, n)
    from sklearn.neighbors import NearestNeighbors  # imported when used: a run that loads E never needs it

    nn = NearestNeighbors(n_neighbors=k + 1, n_jobs=n_jobs).fit(X)
    dist, idx = nn.kneighbors(X)
    # Drop self; if duplicates exist the point itself may not be in column 0.
    not_self = idx != np.arange(n)[:, None]
    keep = np.cumsum(not_self, axis=1) <= k
    mask = not_self & keep
    dist = dist[mask].reshape(n, k)
    idx = idx[mask].reshape(n, k)
    p_cond = calibrate_conditional(dist.astype(np.float64) ** 2, perplexity)
    rows = np.repeat(np.arange(n), k)
    P = sp.csr_matrix((p_cond.ravel(), (rows, idx.ravel())), shape=(n, n))
    P = (P + P.T).tocsr()
    P.sum_duplicates()
    P.data /= 2.0 * n
    P.eliminate_zeros()
    return KNNAffinities(P=P, perplexity=perplexity, n_neighbors=k)
