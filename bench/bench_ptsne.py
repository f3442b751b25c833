"""Parametric t-SNE vs openTSNE on the latents of plint's CNN.

Full run (default): the plint CNN trained on mnist70k (cached in bench/out/),
10,000 test-split latents of layer ``logits``; plint's ``ParametricTSNE`` with
its default config and ``openTSNE.TSNE(n_jobs=2)`` with openTSNE's defaults
are fitted on the same latents in the same process; quality metrics
(:func:`plint_core.quality.embedding_quality`) and fit times are compared
with the goals below, and ``transform`` of all 70,000 images' latents is timed.

``--quick``: a smoke run on scikit-learn's digits (the bundled demo CNN),
small configs; checks structure and sanity, not speed or the goals.

Usage::

    python bench/bench_ptsne.py            # full, a few minutes on 2 cores
    python bench/bench_ptsne.py --quick    # < 1 minute
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch  # noqa: E402
from common import OUT, cached_model, data_source, machine, print_table  # also puts the repo on sys.path

from plint_core.data.loading import load_data  # noqa: E402
from plint_core.embedding.parametric_tsne import ParametricTSNE, TSNEConfig  # noqa: E402
from plint_core.embedding.quality import embedding_quality  # noqa: E402
from plint_core.latents import extract_latents  # noqa: E402

LAYER = "logits"
METRICS = ("knn_acc10", "knn_recall10", "trustworthiness5")


def goals(p: dict, o: dict) -> list[dict]:
    """The four goals: (name, plint value, openTSNE value, target, PASS/MISS)."""
    rows = [
        ("10-NN accuracy ≥ openTSNE − 0.01", p["knn_acc10"], o["knn_acc10"], o["knn_acc10"] - 0.01, p["knn_acc10"] >= o["knn_acc10"] - 0.01),
        ("trustworthiness(5) ≥ openTSNE − 0.01", p["trustworthiness5"], o["trustworthiness5"], o["trustworthiness5"] - 0.01,
         p["trustworthiness5"] >= o["trustworthiness5"] - 0.01),
        ("kNN recall@10 ≥ 0.6 × openTSNE", p["knn_recall10"], o["knn_recall10"], 0.6 * o["knn_recall10"],
         p["knn_recall10"] >= 0.6 * o["knn_recall10"]),
        ("fit seconds ≤ openTSNE", p["fit_seconds"], o["fit_seconds"], o["fit_seconds"], p["fit_seconds"] <= o["fit_seconds"]),
    ]
    return [{"goal": g, "plint": pv, "openTSNE": ov, "target": t, "result": "PASS" if ok else "MISS"} for g, pv, ov, t, ok in rows]


def latents(quick: bool, n_points: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fit latents, their labels, latents of every image)``."""
    name = "digits" if quick else "mnist"
    data = load_data(data_source(name))
    bundle = cached_model(name, epochs=3, seed=seed)  # the same cached CNN as bench_finetune.py
    test = data.test
    rows = np.sort(np.random.default_rng(seed).choice(len(test), size=min(n_points, len(test)), replace=False))
    X = extract_latents(bundle, test.images[rows], LAYER)
    everything = np.concatenate([extract_latents(bundle, s.images, LAYER) for s in (data.train, data.test)])
    return X, test.labels[rows], everything


def fit_opentsne(X: np.ndarray, seed: int, quick: bool) -> tuple[np.ndarray, float]:
    from openTSNE import TSNE

    kwargs = {"early_exaggeration_iter": 50, "n_iter": 100} if quick else {}
    t = time.perf_counter()
    Y = np.asarray(TSNE(n_jobs=2, random_state=seed, **kwargs).fit(X))
    return Y, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run on digits (structure, not speed)")
    ap.add_argument("--points", type=int, default=10_000, help="latents to fit on (default 10000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t_start = time.perf_counter()
    print(machine(), flush=True)

    X, labels, everything = latents(args.quick, args.points, args.seed)
    print(f"{len(X)} latents of layer {LAYER!r}, {X.shape[1]} features; {len(everything)} to transform", flush=True)

    config = TSNEConfig(n_iter=200, early_exaggeration_iter=50, pca_iter=25) if args.quick else TSNEConfig()
    est = ParametricTSNE(config, random_state=args.seed)
    stages: list[str] = []
    Y_p = est.fit(X, progress=lambda stage, frac: stages.append(stage)).transform(X)
    q_p = embedding_quality(X, Y_p, labels) | {"fit_seconds": est.fit_seconds_}
    print(f"plint ParametricTSNE: {est.fit_seconds_:.1f} s", flush=True)

    Y_o, t_o = fit_opentsne(X, args.seed, args.quick)
    q_o = embedding_quality(X, Y_o, labels) | {"fit_seconds": t_o}
    print(f"openTSNE: {t_o:.1f} s", flush=True)

    t = time.perf_counter()
    Y_all = est.transform(everything)
    t_transform = time.perf_counter() - t

    print()
    print_table([{"method": "plint ParametricTSNE", **q_p}, {"method": f"openTSNE {_opentsne_version()}", **q_o}])
    print()
    table = goals(q_p, q_o)
    print_table(table)
    if args.quick:
        print("(quick run: tiny data and configs, so the goal rows only show the report works; they say nothing)")
    print(f"\ntransform of {len(everything)} points: {t_transform:.2f} s; scale_ = {est.scale_:.2f}")

    problems = _sanity(est, X, Y_p, Y_all, q_p, stages, len(everything))
    result = {
        "quick": args.quick, "machine": machine(), "torch_threads": torch.get_num_threads(), "n_points": len(X),
        "n_features": X.shape[1], "config": config.to_dict(), "plint": q_p, "opentsne": q_o, "goals": table,
        "transform_points": len(everything), "transform_seconds": t_transform,
        "total_seconds": time.perf_counter() - t_start, "problems": problems,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"ptsne_{'quick' if args.quick else 'full'}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"total {result['total_seconds']:.1f} s; wrote {out.relative_to(OUT.parent.parent)}")
    if problems:
        sys.exit("SANITY FAILURES:\n  " + "\n  ".join(problems))


def _sanity(est: ParametricTSNE, X, Y_p, Y_all, q_p: dict, stages: list[str], n_all: int) -> list[str]:
    """Checks that must hold in any run, quick or full (not the quality goals)."""
    problems = []
    if Y_p.shape != (len(X), 2) or Y_p.dtype != np.float32 or not np.isfinite(Y_p).all():
        problems.append(f"transform output {Y_p.shape} {Y_p.dtype} is not finite float32 [N, 2]")
    if Y_all.shape != (n_all, 2) or not np.isfinite(Y_all).all():
        problems.append("transform of all latents is not finite [N, 2]")
    if not {"affinities", "pca-pretraining", "optimisation"} <= set(stages):
        problems.append(f"progress stages seen: {sorted(set(stages))}")
    if not (est.scale_ and math.isfinite(est.scale_) and est.scale_ > 0):
        problems.append(f"scale_ = {est.scale_}")
    for k in METRICS:
        if not 0.0 <= q_p[k] <= 1.0:
            problems.append(f"{k} = {q_p[k]} outside [0, 1]")
    if q_p["knn_acc10"] < 0.5:
        problems.append(f"knn_acc10 = {q_p['knn_acc10']:.3f}: the embedding does not separate the classes")
    with torch.enable_grad():
        x = torch.as_tensor(X[:8], dtype=torch.float32).requires_grad_(True)
        est.module(x).sum().backward()
        if x.grad is None or not torch.isfinite(x.grad).all() or float(x.grad.abs().sum()) == 0.0:
            problems.append("no finite, non-zero gradient from module output to its input")
    return problems


def _opentsne_version() -> str:
    import openTSNE

    return getattr(openTSNE, "__version__", "")


if __name__ == "__main__":
    main()
