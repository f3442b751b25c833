"""Parametric t-SNE: a neural network trained with the t-SNE loss to map points to 2-D.

Network (:class:`_EmbeddingNet`): input standardisation (centre, one global
scale) → fixed radial-basis "landmark" features concatenated to the input →
ReLU MLP → 2-D.  The landmark features (Gaussian bumps around points drawn
from the fitted data) let a small MLP represent the sharply non-linear maps
t-SNE needs: on 10-D CNN logits they raised kNN recall@10 from ~0.18 to ~0.22
at equal cost (on raw 64-D digit pixels they do not help; use
``n_landmarks=0`` there).

Fitting:

1. Input affinities ``P`` on the exact kNN graph (:mod:`plint_core.affinities`).
2. PCA pre-training: the network is regressed onto the top-2 principal
   components of its standardised input (the analogue of t-SNE's PCA
   initialisation).
3. t-SNE optimisation with Adam on mini-batches of points.  A cache holds the
   latest embedding of every point; for each batch point ``i`` the exact
   t-SNE gradient ``4 Σ_j (α p_ij − q_ij) w_ij (y_i − y_j)`` is formed with
   all of ``i``'s kNN neighbours (attraction, exact) and ``n_negatives``
   uniformly drawn points shared by the batch (repulsion and ``Z``,
   estimated), using cached positions for the other points, and is
   back-propagated through the network.  The hidden layers run in bfloat16
   while fitting (``mixed_precision``).  ``α`` is ``early_exaggeration`` for
   the first ``early_exaggeration_iter`` steps, then ``exaggeration``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

if TYPE_CHECKING:  # SciPy (the affinities) is imported by a fit only: loading a fitted map needs none of it
    import scipy.sparse as sp

__all__ = ["ParametricTSNE", "TSNEConfig"]

ProgressFn = Callable[[str, float], None]

_FORMAT_VERSION = 1
_WEIGHTS_FILE = "weights.safetensors"
_META_FILE = "meta.json"
_MIN_POINTS = 5
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "softplus": nn.Softplus, "gelu": nn.GELU}


@dataclass(frozen=True)
class TSNEConfig:
    """Hyper-parameters of :class:`ParametricTSNE`.

    Attributes
    ----------
    perplexity : float, default 15.0
        Effective number of neighbours of the input affinities;
        ``k = min(N − 1, 3 × perplexity)`` exact nearest neighbours are used.
        Clamped to ``(N − 1) / 3`` when N is small.  Lower than t-SNE's usual
        30: on 10k CNN logits it keeps more exact 10-neighbourhoods (kNN
        recall@10 0.338 vs 0.316 at 3,000 steps) with half the attraction
        edges, so each step is cheaper.
    hidden : tuple of int, default (256, 128)
        Widths (units) of the hidden layers of the MLP.
    activation : str, default "relu"
        Hidden-layer non-linearity: "relu", "softplus" or "gelu".
    n_landmarks : int, default 512
        Number of radial-basis landmark features (centres drawn from the fitted
        points; at most N).  0 disables them (plain MLP).
    landmark_min_points : int, default 2000
        Landmark features are used only when at least this many points are
        fitted.  On fewer points a plain MLP already has the capacity, and its
        smoother map lets fine-tuning follow an edit: on the digits (1,437
        points) the PLI run closed 73 % of the distance to its targets without
        landmarks, but only 46–48 % with 512 (at some cost in kNN recall@10:
        0.49 instead of 0.61).
    landmark_width : float, default 1.0
        Width σ of the landmark Gaussians, in units of the median distance from
        a fitted point to its nearest landmark (after standardisation).
    max_fit_points : int, default 10_000
        Fit on at most this many points, drawn with ``random_state``; the rest
        are only embedded by :meth:`ParametricTSNE.transform`.
    n_iter : int, default 2500
        Number of t-SNE optimisation steps (mini-batches), early exaggeration
        included, when all points are fitted; fewer on small data (``max_visits``).
    projected_iter_factor : float, default 1.6
        When the data has more than ``max_fit_points`` points, so that the
        rest are projected, the sample is fitted in ``n_iter`` × this many
        steps (still capped by ``max_visits``): 4,000 by default, the cap at
        10,000 fitted points; the early-exaggeration phase grows in proportion
        (400 steps).  A factor, so that a smaller ``n_iter`` (a quicker first
        fit) stays quicker on large data too.  The map a user sees holds every
        training point, and the projected ones are placed better by a sharper
        map of the sample; openTSNE's time grows with the number of points
        while this fit's does not.  Measured on the all-points protocol of
        ``bench/bench_ptsne.py`` (fit on 10,000 points, the rest projected,
        both maps scored on a shared 10,000-point subsample, 2026-11-28), as
        10-NN accuracy / kNN recall@10 / trustworthiness(5):
        mnist70k's 56,000 training logits, 2,500 steps 0.978 / 0.313 / 0.991,
        4,000 steps 0.978 / 0.357 / 0.993, openTSNE on all 0.981 / 0.394 /
        0.997; Fashion-MNIST's 60,000, 2,500 steps 0.841 / 0.350 / 0.991 (the
        accuracy 0.015 below openTSNE's), 4,000 steps 0.850 / 0.382 / 0.993,
        openTSNE 0.856 / 0.413 / 0.997; fit time 0.60× and 0.66× openTSNE's
        in the same run with one torch thread (2 cores shared with other
        benchmarks); with torch's two threads 1.18–2.52× on MNIST, 0.35–0.48×
        on Fashion-MNIST, the spread set by the load (bench/RESULTS.md).  Fitting all 56,000 points in 2,500 steps
        instead (89 visits per point) gave recall 0.186: visits per point
        matter more than the number of points fitted.  Up to
        ``max_fit_points`` points (the digits demo, a 10,000-point fit)
        nothing changes.  The same defaults on 11 latent spaces
        (``bench_ptsne.py --protocol panel``, 2026-12-04: CNN logits and the
        128-feature hidden layer after 1 and 3 epochs on MNIST and
        Fashion-MNIST, a ResNet-18's 512-feature ``avgpool``, 100,000 points)
        keep 0.89–0.93× openTSNE's kNN recall@10 on every one; 10-NN accuracy
        is 0.011–0.021 below openTSNE's on three Fashion-MNIST spaces, and the
        fit is slower than openTSNE's on the 512-feature space (94 s against
        60 s on 30,000 points).  20,000 fitted points in the same steps (400
        visits each) lowered recall@10 on Fashion-MNIST's 1-epoch hidden layer
        from 0.385 to 0.294; 6,000 steps
        and perplexity 30 did not raise the accuracy (bench/RESULTS.md).
    max_visits : int, default 800
        At most this many steps per fitted point on average: with N points and
        batch size B, ``min(n_iter, ceil(max_visits · N / B))`` steps are run
        and the early-exaggeration phase shrinks in proportion.  Small data
        sets, fitted in full batches, converge in fewer steps (the digits'
        1,437 points reach kNN recall@10 0.61 in 800 steps, 0.62 in 2,500).
    early_exaggeration : float, default 12.0
        Attraction multiplier α during the first ``early_exaggeration_iter`` steps.
    early_exaggeration_iter : int, default 250
        Length of the early-exaggeration phase (steps).
    exaggeration : float, default 1.0
        Attraction multiplier after the early phase (1 = plain t-SNE).
    batch_size : int, default 2000
        Points per optimisation step (all points if N is smaller).
    learning_rate : float, default 0.01
        Adam learning rate of the t-SNE phase.
    momentum : float, default 0.97
        Adam's β1 in the t-SNE phase; a long average damps the noise of the
        sampled repulsion.
    n_negatives : int, default 512
        Points drawn uniformly each step as repulsion partners of every batch
        point (shared by the batch, so the ``batch_size × n_negatives`` pairs
        cost two small matrix products); they also estimate ``Z``.  More
        negatives → less noisy repulsion, better neighbourhoods, slower steps.
    pca_iter : int, default 100
        PCA pre-training steps (mini-batch MSE regression onto the top-2 PCs).
    pca_std : float, default 1.0
        Standard deviation (embedding units) of the first PCA target coordinate.
    pca_learning_rate : float, default 1e-3
        Adam learning rate of the PCA pre-training.
    mixed_precision : bool, default True
        While fitting, run the hidden layers in bfloat16 (``torch.autocast``;
        on CUDA only where bfloat16 is supported).  About 2.5× faster steps on
        CPUs with AVX-512 BF16; features, output layer, gradients of the t-SNE
        loss and ``transform`` stay float32.
    """

    perplexity: float = 15.0
    hidden: tuple[int, ...] = (256, 128)
    activation: str = "relu"
    n_landmarks: int = 512
    landmark_min_points: int = 2000
    landmark_width: float = 1.0
    max_fit_points: int = 10_000
    n_iter: int = 2500
    projected_iter_factor: float = 1.6
    max_visits: int = 800
    early_exaggeration: float = 12.0
    early_exaggeration_iter: int = 250
    exaggeration: float = 1.0
    batch_size: int = 2000
    learning_rate: float = 0.01
    momentum: float = 0.97
    n_negatives: int = 512
    pca_iter: int = 100
    pca_std: float = 1.0
    pca_learning_rate: float = 1e-3
    mixed_precision: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        checks = {
            "perplexity must be > 1": self.perplexity > 1,
            "hidden widths must be positive": all(h > 0 for h in self.hidden),
            f"activation must be one of {sorted(_ACTIVATIONS)}": self.activation in _ACTIVATIONS,
            "n_landmarks and landmark_min_points must be >= 0": self.n_landmarks >= 0 and self.landmark_min_points >= 0,
            "landmark_width must be > 0": self.landmark_width > 0,
            f"max_fit_points must be >= {_MIN_POINTS}": self.max_fit_points >= _MIN_POINTS,
            "n_iter must be >= 0": self.n_iter >= 0,
            "projected_iter_factor must be > 0": self.projected_iter_factor > 0,
            "max_visits must be >= 1": self.max_visits >= 1,
            "early_exaggeration_iter must be >= 0": self.early_exaggeration_iter >= 0,
            "exaggerations must be > 0": self.early_exaggeration > 0 and self.exaggeration > 0,
            "batch_size must be >= 2": self.batch_size >= 2,
            "learning rates must be > 0": self.learning_rate > 0 and self.pca_learning_rate > 0,
            "momentum must be in [0, 1)": 0 <= self.momentum < 1,
            "n_negatives must be >= 1": self.n_negatives >= 1,
            "pca_iter must be >= 0": self.pca_iter >= 0,
            "pca_std must be > 0": self.pca_std > 0,
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(f"TSNEConfig: {message}")

    def to_dict(self) -> dict:
        """JSON-serialisable dict (``hidden`` as a list)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TSNEConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"TSNEConfig: unknown keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str, name: str = "the t-SNE settings") -> "TSNEConfig":
        """The defaults with the fields of the JSON object ``text`` (``""``: the defaults); a
        :class:`~plint_core.errors.PlintError` naming ``name`` (where the text came from) otherwise."""
        from ..errors import PlintError

        if not text.strip():
            return cls()
        try:
            overrides = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlintError(f"{name} is not valid JSON ({exc.msg}): give an object such as {{\"n_iter\": 500}}") from exc
        if not isinstance(overrides, dict):
            raise PlintError(f'{name} must be a JSON object such as {{"n_iter": 500}}')
        try:
            return cls.from_dict({**cls().to_dict(), **overrides})
        except (TypeError, ValueError) as exc:
            raise PlintError(f"{name} is invalid: {exc}") from exc


class _EmbeddingNet(nn.Module):
    """[B, D] -> [B, 2]: standardise, append landmark features, MLP.

    Inputs are centred and divided by one global scale (the RMS distance to
    the mean), not per feature, so the geometry the affinities were computed
    on is kept.  Landmark features are ``exp(−‖x − c_k‖² / 2σ²)``.  Only the
    hidden layers follow an ambient ``torch.autocast`` (used while fitting);
    the features and the output layer always run in float32, since distances
    and embedding coordinates need more than bfloat16's 8 bits.
    """

    def __init__(self, n_features: int, n_landmarks: int, hidden: tuple[int, ...], activation: str) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("inv_scale", torch.ones(()))
        self.register_buffer("landmarks", torch.zeros(n_landmarks, n_features))
        self.register_buffer("landmark_gamma", torch.ones(()))  # 1 / (2σ²)
        layers: list[nn.Module] = []
        width = n_features + n_landmarks
        for h in hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            width = h
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_scale

    def features(self, x: torch.Tensor) -> torch.Tensor:
        z = self.standardise(x)
        if not self.landmarks.shape[0]:
            return z
        # Clamped so that far landmarks give tiny normal floats, not denormals.
        phi = _squared_distances(z, self.landmarks).mul_(-self.landmark_gamma).clamp_min_(-80.0).exp_()
        return torch.cat([z, phi], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            z = self.features(x.float())
        h = self.hidden(z)
        with torch.autocast(x.device.type, enabled=False):
            return self.head(h.float())


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``‖a_i − b_j‖²`` [A, B] as one matrix product (no [A, B, D] tensor), clamped at 0.

    Computed in place on the product's output, which autograd allows: the
    product's backward needs only ``a`` and ``b``, so gradients still reach ``a``.
    """
    return torch.addmm(b.pow(2).sum(1).unsqueeze(0), a, b.T, alpha=-2.0).add_(a.pow(2).sum(1, keepdim=True)).clamp_min_(0.0)


@dataclass(frozen=True)
class _Neighbours:
    """Symmetric affinities in CSR form, as tensors: row ``i``'s neighbours are
    ``col[ptr[i]:ptr[i+1]]`` with joint affinities ``p`` (summing to 1 overall)."""

    ptr: torch.Tensor
    col: torch.Tensor
    p: torch.Tensor

    @classmethod
    def from_scipy(cls, P: sp.csr_matrix, device: torch.device) -> "_Neighbours":
        return cls(
            ptr=torch.as_tensor(P.indptr, dtype=torch.long, device=device),
            col=torch.as_tensor(P.indices, dtype=torch.long, device=device),
            p=torch.as_tensor(P.data, dtype=torch.float32, device=device),
        )

    def edges_of(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(local_row, col, p)`` of all edges leaving ``rows``; ``local_row`` indexes ``rows``."""
        start = self.ptr[rows]
        count = self.ptr[rows + 1] - start
        local = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), count)
        # Edge index = running position + (row start − number of edges before this row).
        shift = torch.repeat_interleave(start - (torch.cumsum(count, 0) - count), count)
        e = torch.arange(local.numel(), device=rows.device) + shift
        return local, self.col[e], self.p[e]


def _tsne_gradient(
    y: torch.Tensor,
    rows: torch.Tensor,
    cache: torch.Tensor,
    edges: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    negatives: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """Gradient of the KL divergence w.r.t. the batch embedding ``y`` [B, 2].

    Attraction ``4α Σ_j p_ij w_ij (y_i − y_j)`` over all neighbours; repulsion
    ``−(4 / Z) Σ_j w_ij² (y_i − y_j)`` estimated from the points ``negatives``
    [M] (shared by the whole batch; a point is never its own negative), with
    ``Z ≈ N (N − 1) · mean(w)`` over the same pairs.  Other points sit at their
    ``cache`` positions.  Scaled by ``N / B`` to estimate the full sum.
    ``edges`` is ``_Neighbours.edges_of(rows)``.
    """
    n = cache.shape[0]
    local, col, p = edges
    diff = y[local] - cache[col]
    w = torch.reciprocal(1.0 + diff.pow(2).sum(1))
    grad = torch.zeros_like(y).index_add_(0, local, (4.0 * alpha * p * w).unsqueeze(1) * diff)
    c = cache[negatives]
    w = _squared_distances(y, c).add_(1.0).reciprocal_()
    slot = torch.full((n,), -1, dtype=torch.long, device=y.device)
    slot[rows] = torch.arange(len(rows), device=y.device)
    own = slot[negatives]
    hit = torch.nonzero(own >= 0).squeeze(1)
    w[own[hit], hit] = 0.0  # a point is not its own negative
    z = n * (n - 1) * w.sum() / (w.numel() - hit.numel())
    w2 = w.pow_(2)
    repulsion = y * w2.sum(1, keepdim=True) - w2 @ c  # Σ_s w_is² (y_i − c_s)
    grad -= (4.0 * (n - 1) / (negatives.numel() * z)) * repulsion
    return grad * (n / len(rows))


class _EdgeBatches:
    """Shuffled passes over ``n`` points in batches of about ``b``, with each batch's kNN edges.

    The points are partitioned at random into ``ceil(n / b)`` batches whose
    edge lists are gathered once and reused for ``reuse`` passes (each pass
    visits the batches in a new order), then re-partitioned: gathering edges
    costs about as much as the attraction itself.
    """

    def __init__(self, neighbours: _Neighbours, n: int, b: int, gen: torch.Generator, device: torch.device,
                 reuse: int = 10) -> None:
        self.neighbours, self.n, self.gen, self.device, self.reuse = neighbours, n, gen, device, reuse
        self.n_batches = -(-n // min(b, n))

    def __iter__(self):
        while True:
            perm = torch.randperm(self.n, generator=self.gen, device=self.device)
            batches = [(rows, self.neighbours.edges_of(rows)) for rows in torch.tensor_split(perm, self.n_batches)]
            for _ in range(self.reuse):
                for k in torch.randperm(self.n_batches, generator=self.gen).tolist():
                    yield batches[k]


class ParametricTSNE:
    """Parametric t-SNE estimator (sklearn-style ``fit`` / ``transform``).

    Parameters
    ----------
    config : TSNEConfig or None
        Hyper-parameters; ``None`` means ``TSNEConfig()``.
    random_state : int or None
        Seed of the fit subsample, landmarks, weight initialisation, batches and
        negative sampling.  Same ``X``, config and seed on CPU → identical fit, bitwise on the same machine,
        kernels (``ATEN_CPU_CAPABILITY``) and torch thread count; another CPU's kernels give slightly other
        coordinates of the same quality.
    device : str, default "cpu"
        Torch device ("cpu" or "cuda") for fitting and transforming.

    Attributes (after fit)
    ----------------------
    module : torch.nn.Module
        Frozen (eval, ``requires_grad=False``) network mapping a float tensor
        [B, D] on ``device`` to [B, 2], input standardisation included;
        differentiable w.r.t. its input.
    scale_ : float
        RMS distance of the fitted embedding's points from their centroid
        (embedding units).
    fit_seconds_ : float
        Wall-clock seconds spent in :meth:`fit`.
    n_features_in_ : int
        ``D``, the number of input features.
    """

    def __init__(self, config: TSNEConfig | None = None, *, random_state: int | None = None, device: str = "cpu") -> None:
        self.config = config if config is not None else TSNEConfig()
        self.random_state = random_state
        self.device = torch.device(device)
        self.module: _EmbeddingNet | None = None
        self.scale_: float | None = None
        self.fit_seconds_: float | None = None
        self.n_features_in_: int | None = None

    # ------------------------------------------------------------------ fit
    def fit(self, X: np.ndarray, progress: ProgressFn | None = None) -> "ParametricTSNE":
        """Fit the network on ``X`` (float [N, D]; at most ``max_fit_points`` used).

        ``progress(stage, fraction)`` is called with stages "affinities",
        "pca-pretraining" and "optimisation" and fractions in [0, 1].
        """
        t0 = time.perf_counter()
        cfg = self.config
        report = progress if progress is not None else (lambda stage, frac: None)
        X = self._check_array(X, fitting=True)
        seed = self.random_state if self.random_state is not None else int(np.random.default_rng().integers(2**31))
        rng = np.random.default_rng(seed)
        n_total = len(X)
        if len(X) > cfg.max_fit_points:
            X = X[np.sort(rng.choice(len(X), cfg.max_fit_points, replace=False))]

        from .affinities import knn_affinities

        report("affinities", 0.0)
        aff = knn_affinities(X, cfg.perplexity)
        report("affinities", 1.0)

        dev = self.device
        gen = torch.Generator(device=dev).manual_seed(seed)
        Xt = torch.as_tensor(X, dtype=torch.float32, device=dev)
        net = self._build_net(Xt, rng, seed)
        self._pca_pretrain(net, Xt, gen, report)
        self._optimise(net, Xt, _Neighbours.from_scipy(aff.P, dev), gen, report, n_total)

        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.module = net
        self.n_features_in_ = X.shape[1]
        Y = self._forward(Xt, 8192)
        self.scale_ = float((Y - Y.mean(0)).pow(2).sum(1).mean().sqrt())
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _build_net(self, Xt: torch.Tensor, rng: np.random.Generator, seed: int) -> _EmbeddingNet:
        cfg = self.config
        n, d = Xt.shape
        k = min(cfg.n_landmarks, n) if n >= cfg.landmark_min_points else 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _EmbeddingNet(d, k, cfg.hidden, cfg.activation)
        net = net.to(Xt.device)
        with torch.no_grad():
            mean = Xt.mean(0)
            rms = float((Xt - mean).pow(2).sum(1).mean().sqrt())
            net.mean.copy_(mean)
            net.inv_scale.fill_(1.0 / rms if rms > 0 else 1.0)
            if k:
                Z = net.standardise(Xt)
                centres = Z[torch.as_tensor(np.sort(rng.choice(n, k, replace=False)), device=Xt.device)]
                net.landmarks.copy_(centres)
                nearest = torch.cat([torch.cdist(Z[i : i + 4096], centres).min(1).values for i in range(0, n, 4096)])
                sigma = cfg.landmark_width * max(float(nearest.median()), 1e-6)
                net.landmark_gamma.fill_(1.0 / (2.0 * sigma**2))
        return net

    def _autocast(self):
        """bfloat16 autocast for the hidden layers while fitting, if configured and supported."""
        dev = self.device.type
        ok = self.config.mixed_precision and (dev == "cpu" or (dev == "cuda" and torch.cuda.is_bf16_supported()))
        return torch.autocast(dev, dtype=torch.bfloat16, enabled=ok)

    def _batches(self, n: int, gen: torch.Generator, dev: torch.device):
        """Endless stream of index batches: shuffled passes over ``range(n)``."""
        b = min(self.config.batch_size, n)
        while True:
            perm = torch.randperm(n, generator=gen, device=dev)
            for s in range(0, n - b + 1, b):
                yield perm[s : s + b]

    def _pca_pretrain(self, net: _EmbeddingNet, Xt: torch.Tensor, gen: torch.Generator, report: ProgressFn) -> None:
        cfg = self.config
        report("pca-pretraining", 0.0)
        if cfg.pca_iter:
            Z = net.standardise(Xt).double()
            _, _, V = torch.linalg.svd(Z, full_matrices=False)
            V = V[:2].T
            # Fix the sign of each component so the result is deterministic.
            V = V * torch.sign(V[torch.argmax(V.abs(), dim=0), torch.arange(V.shape[1], device=V.device)])
            target = (Z @ V).float()
            target *= cfg.pca_std / target[:, 0].std().clamp_min(1e-12)
            if target.shape[1] < 2:  # D == 1
                target = torch.cat([target, torch.zeros_like(target)], 1)
            opt = torch.optim.Adam(net.parameters(), lr=cfg.pca_learning_rate)
            batches = self._batches(len(Xt), gen, Xt.device)
            for it in range(cfg.pca_iter):
                rows = next(batches)
                with self._autocast():
                    loss = (net(Xt[rows]) - target[rows]).pow(2).sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if (it + 1) % 25 == 0 and it + 1 < cfg.pca_iter:
                    report("pca-pretraining", (it + 1) / cfg.pca_iter)
        report("pca-pretraining", 1.0)

    def _optimise(self, net: _EmbeddingNet, Xt: torch.Tensor, neighbours: _Neighbours, gen: torch.Generator,
                  report: ProgressFn, n_total: int | None = None) -> None:
        cfg = self.config
        n = Xt.shape[0]
        dev = Xt.device
        report("optimisation", 0.0)
        with torch.no_grad():
            cache = torch.cat([net(Xt[i : i + 8192]) for i in range(0, n, 8192)])
        opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, betas=(cfg.momentum, 0.999),
                               fused=dev.type in ("cpu", "cuda"))
        batches = iter(_EdgeBatches(neighbours, n, cfg.batch_size, gen, dev))
        steps, early = self.schedule(n, n_total)
        for it in range(steps):
            alpha = cfg.early_exaggeration if it < early else cfg.exaggeration
            rows, edges = next(batches)
            with self._autocast():
                y = net(Xt[rows])
            negatives = torch.randint(0, n, (cfg.n_negatives,), generator=gen, device=dev)
            with torch.no_grad():
                grad = _tsne_gradient(y.detach(), rows, cache, edges, negatives, alpha)
                cache[rows] = y.detach()
            opt.zero_grad(set_to_none=True)
            y.backward(grad)
            opt.step()
            if (it + 1) % 50 == 0 and it + 1 < steps:
                report("optimisation", (it + 1) / steps)
        report("optimisation", 1.0)

    def schedule(self, n: int, n_total: int | None = None) -> tuple[int, int]:
        """``(steps, early-exaggeration steps)`` of the t-SNE phase for ``n`` fitted points out of
        ``n_total`` (``None``: ``n``; more than ``n``: the rest are projected, ``n_iter × projected_iter_factor``
        steps)."""
        cfg = self.config
        n_iter = round(cfg.n_iter * cfg.projected_iter_factor) if n_total is not None and n_total > n else cfg.n_iter
        steps = min(n_iter, -(-cfg.max_visits * n // min(cfg.batch_size, n)))
        if steps == cfg.n_iter or cfg.n_iter == 0:
            return steps, cfg.early_exaggeration_iter if steps == cfg.n_iter else 0
        return steps, round(cfg.early_exaggeration_iter * steps / cfg.n_iter)

    # ------------------------------------------------------------ transform
    def transform(self, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Embed ``X`` (float [N, D]) with the fitted network; float32 [N, 2]."""
        if self.module is None:
            raise ValueError("ParametricTSNE is not fitted yet: call fit() or load() first")
        X = self._check_array(X, fitting=False)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return self._forward(torch.as_tensor(X), batch_size).cpu().numpy()

    def fit_transform(self, X: np.ndarray, progress: ProgressFn | None = None) -> np.ndarray:
        """``fit(X, progress)`` then ``transform(X)``."""
        return self.fit(X, progress).transform(X)

    def _forward(self, Xt: torch.Tensor, batch_size: int) -> torch.Tensor:
        with torch.no_grad():
            parts = [self.module(Xt[i : i + batch_size].to(self.device)) for i in range(0, len(Xt), batch_size)]
        return torch.cat(parts) if parts else torch.zeros((0, 2), device=self.device)

    def _check_array(self, X: np.ndarray, *, fitting: bool) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim < 2:
            raise ValueError(f"X must be 2-D [N, D] (or [N, ...], flattened), got shape {X.shape}")
        X = X.reshape(len(X), -1)
        if X.dtype == bool or not (np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating)):
            raise ValueError(f"X must be real-valued, got dtype {X.dtype}")
        X = np.ascontiguousarray(X, dtype=np.float32)
        if not X.flags.writeable:  # a read-only memory map of cached latents: torch wants its own copy
            X = X.copy()
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values")
        if fitting:
            if len(X) < _MIN_POINTS:
                raise ValueError(f"need at least {_MIN_POINTS} points to fit, got {len(X)}")
            if X.shape[1] < 1:
                raise ValueError("X has no features")
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but ParametricTSNE was fitted with {self.n_features_in_}")
        return X

    # ---------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> None:
        """Write weights (safetensors) and config/metadata (JSON) to ``directory``.

        Everything is written into a temporary sibling directory that is then
        renamed into place (replacing an existing directory of that name).
        """
        if self.module is None:
            raise ValueError("ParametricTSNE is not fitted yet: nothing to save")
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
            save_file(state, str(tmp / _WEIGHTS_FILE))
            meta = {
                "format_version": _FORMAT_VERSION,
                "config": self.config.to_dict(),
                "random_state": self.random_state,
                "n_features_in": self.n_features_in_,
                "n_landmarks": int(self.module.landmarks.shape[0]),
                "scale": self.scale_,
                "fit_seconds": self.fit_seconds_,
            }
            (tmp / _META_FILE).write_text(json.dumps(meta, indent=2))
            if directory.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
                os.replace(directory, trash / "old")
                os.replace(tmp, directory)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> "ParametricTSNE":
        """Load an estimator written by :meth:`save`."""
        directory = Path(directory)
        meta = json.loads((directory / _META_FILE).read_text())
        if meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported ParametricTSNE format version {meta.get('format_version')!r}")
        est = cls(TSNEConfig.from_dict(meta["config"]), random_state=meta["random_state"], device=device)
        cfg = est.config
        net = _EmbeddingNet(int(meta["n_features_in"]), int(meta["n_landmarks"]), cfg.hidden, cfg.activation)
        net.load_state_dict(load_file(str(directory / _WEIGHTS_FILE)))
        net = net.to(est.device).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        est.module = net
        est.n_features_in_ = int(meta["n_features_in"])
        est.scale_ = float(meta["scale"])
        est.fit_seconds_ = float(meta["fit_seconds"])
        return est
