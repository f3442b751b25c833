"""Parametric t-SNE vs openTSNE on the latents of plint's CNN, in two protocols.

**All points** (the map a user sees, issue 11): the plint CNN trained 3 epochs on the data set's
training split (cached in bench/out/), latents of layer ``logits`` for the *whole* training split
(MNIST: mnist70k's 56,000; Fashion-MNIST: 60,000); plint's ``ParametricTSNE`` with its default config
and ``openTSNE.TSNE(perplexity=30, n_jobs=2)`` are fitted on the same points in the same run, and both
maps are scored (:func:`plint_core.embedding.quality.embedding_quality`) on one shared random
10,000-point subsample (drawn with ``--seed``), with fit times and the load average at each fit.

**Fitted points** (the earlier protocol, second table): 10,000 MNIST test-split latents, both
methods fitted on exactly those and scored on all of them; ``transform`` of all 70,000 is timed.

Goals, per data set and protocol, against openTSNE in the same run: 10-NN accuracy ≥ openTSNE − 0.01,
trustworthiness(5) ≥ openTSNE − 0.01, kNN recall@10 ≥ 0.8 × openTSNE (all points; 0.6 × on the
fitted points, the earlier goal), fit seconds ≤ openTSNE's.

Cached in bench/out/ (so that iterating on the plint side is cheap): the CNNs, the latents
(``ptsne_latents_*.npz``) and, with ``--reuse-opentsne``, openTSNE's maps (``ptsne_opentsne_*.npz``:
map, fit seconds and load; a figure for RESULTS.md refits openTSNE in the same run, the default).

**Panel** (``--protocol panel``, issue 21): the all-points protocol on every latent space of
:mod:`latent_panel` (the plint CNN's logits and 128-feature hidden layer after 1 and 3 epochs on MNIST and
Fashion-MNIST, the 1-epoch seed-5 MNIST CNN's logits, a torchvision ResNet-18's 512-feature ``avgpool`` on a made RGB
set, and MNIST replicated to 100,000 points), one default configuration for all, openTSNE refitted on each in the
same run; a summary table prints one row per space with the four goals.

``--quick``: a smoke run on scikit-learn's digits (the bundled demo CNN), small configs; checks
structure and sanity, not speed or the goals.

Usage::

    python bench/bench_ptsne.py                    # both protocols, MNIST and Fashion-MNIST (~10 min, 2 cores)
    python bench/bench_ptsne.py --protocol all --data mnist --points 20000 --reuse-opentsne \\
        --config '{"max_fit_points": 20000}'      # a cheaper proxy while exploring
    python bench/bench_ptsne.py --protocol panel   # the panel of 11 latent spaces (~30 min, 2 cores; builds them once)
    python bench/bench_ptsne.py --quick            # < 1 minute
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch  # noqa: E402
from common import OUT, QUICK_TSNE, cached_model, data_source, machine, print_table  # also puts the repo on sys.path

from plint_core.data.loading import load_data  # noqa: E402
from plint_core.embedding.parametric_tsne import ParametricTSNE, TSNEConfig  # noqa: E402
from plint_core.embedding.quality import embedding_quality  # noqa: E402
from plint_core.latents import extract_latents  # noqa: E402

LAYER = "logits"
METRICS = ("knn_acc10", "knn_recall10", "trustworthiness5")
EPOCHS = 3
SCORE_POINTS = 10_000


def goals(p: dict, o: dict, recall_factor: float) -> list[dict]:
    """The four goals: (name, plint value, openTSNE value, target, PASS/MISS)."""
    rows = [
        ("10-NN accuracy ≥ openTSNE − 0.01", p["knn_acc10"], o["knn_acc10"], o["knn_acc10"] - 0.01, p["knn_acc10"] >= o["knn_acc10"] - 0.01),
        ("trustworthiness(5) ≥ openTSNE − 0.01", p["trustworthiness5"], o["trustworthiness5"], o["trustworthiness5"] - 0.01,
         p["trustworthiness5"] >= o["trustworthiness5"] - 0.01),
        (f"kNN recall@10 ≥ {recall_factor:g} × openTSNE", p["knn_recall10"], o["knn_recall10"], recall_factor * o["knn_recall10"],
         p["knn_recall10"] >= recall_factor * o["knn_recall10"]),
        ("fit seconds ≤ openTSNE", p["fit_seconds"], o["fit_seconds"], o["fit_seconds"], p["fit_seconds"] <= o["fit_seconds"]),
    ]
    return [{"goal": g, "plint": pv, "openTSNE": ov, "target": t, "result": "PASS" if ok else "MISS"} for g, pv, ov, t, ok in rows]


def load() -> float:
    """The 1-minute load average (what ``uptime`` prints first)."""
    return float(os.getloadavg()[0])


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


# ------------------------------------------------------------------ latents
def train_latents(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(latents, labels)`` of the whole training split of ``name``, cached in bench/out/."""
    path = OUT / f"ptsne_latents_{name}_{LAYER}_e{EPOCHS}_s{seed}.npz"
    if name != "digits" and path.exists():
        with np.load(path) as f:
            return f["X"], f["labels"]
    data = load_data(data_source(name))
    bundle = cached_model(name, epochs=EPOCHS, seed=seed)  # the same cached CNN as bench_finetune.py
    X = extract_latents(bundle, data.train.images, LAYER)
    labels = np.asarray(data.train.labels)
    if name != "digits":
        OUT.mkdir(parents=True, exist_ok=True)
        np.savez(path, X=X, labels=labels)
    return X, labels


def test_latents(quick: bool, n_points: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fit latents, their labels, latents of every image)`` of the fitted-points protocol."""
    name = "digits" if quick else "mnist"
    data = load_data(data_source(name))
    bundle = cached_model(name, epochs=EPOCHS, seed=seed)
    test = data.test
    rows = np.sort(np.random.default_rng(seed).choice(len(test), size=min(n_points, len(test)), replace=False))
    X = extract_latents(bundle, test.images[rows], LAYER)
    everything = np.concatenate([extract_latents(bundle, s.images, LAYER) for s in (data.train, data.test)])
    return X, test.labels[rows], everything


# ------------------------------------------------------------------ fits
def fit_plint(X: np.ndarray, config: TSNEConfig, seed: int, stages: list[str] | None = None) -> tuple[ParametricTSNE, np.ndarray, dict]:
    before = load()
    est = ParametricTSNE(config, random_state=seed)
    est.fit(X, progress=(lambda stage, frac: stages.append(stage)) if stages is not None else None)
    Y = est.transform(X)
    return est, Y, {"fit_seconds": est.fit_seconds_, "load_before": before, "load_after": load()}


def fit_opentsne(X: np.ndarray, seed: int, quick: bool) -> tuple[np.ndarray, dict]:
    from openTSNE import TSNE

    kwargs = {"early_exaggeration_iter": 50, "n_iter": 100} if quick else {}
    before = load()
    t = time.perf_counter()
    Y = np.asarray(TSNE(perplexity=30, n_jobs=2, random_state=seed, **kwargs).fit(X))
    return Y, {"fit_seconds": time.perf_counter() - t, "load_before": before, "load_after": load()}


def opentsne_cached(X: np.ndarray, key: str, seed: int, quick: bool, reuse: bool) -> tuple[np.ndarray, dict]:
    """openTSNE's map of ``X``; with ``reuse`` from bench/out/ if it was fitted before (then not timed in this run)."""
    path = OUT / f"ptsne_opentsne_{key}_s{seed}.npz"
    if reuse and not quick and path.exists():
        with np.load(path) as f:
            return f["Y"], json.loads(str(f["meta"])) | {"cached": True}
    Y, meta = fit_opentsne(X, seed, quick)
    if not quick:
        OUT.mkdir(parents=True, exist_ok=True)
        np.savez(path, Y=Y, meta=json.dumps(meta))
    return Y, meta | {"cached": False}


# ------------------------------------------------------------------ protocols
def all_points(name: str, config: TSNEConfig, seed: int, n_points: int, quick: bool, reuse: bool,
               plint_first: bool = True, space: str = "") -> dict:
    """The all-points protocol on data set ``name``, or on the panel's latent space ``space``
    (:mod:`latent_panel`); ``n_points`` < all: a seeded subset, a cheaper proxy."""
    if space:
        from latent_panel import panel_latents

        X, labels = panel_latents(space, seed)
        name, what, key = space, f"latents of panel space {space!r}", f"panel_{space}"
    else:
        X, labels = train_latents(name, seed)
        what, key = f"training latents of layer {LAYER!r}", f"{name}_{LAYER}_e{EPOCHS}"
    if n_points < len(X):
        sub = np.sort(np.random.default_rng(seed).choice(len(X), size=n_points, replace=False))
        X, labels = X[sub], labels[sub]
    print(f"\n## all points: {name}, {len(X)} {what} ({X.shape[1]} features); {uptime()}", flush=True)
    key = f"{key}_n{len(X)}"
    if plint_first:
        est, Y_p, t_p = fit_plint(X, config, seed)
        print(f"plint ParametricTSNE: {t_p['fit_seconds']:.1f} s (load {t_p['load_before']:.2f})", flush=True)
    Y_o, t_o = opentsne_cached(X, key, seed, quick, reuse)
    print(f"openTSNE: {t_o['fit_seconds']:.1f} s (load {t_o['load_before']:.2f}"
          f"{', cached from an earlier run' if t_o['cached'] else ''})", flush=True)
    if not plint_first:
        est, Y_p, t_p = fit_plint(X, config, seed)
        print(f"plint ParametricTSNE: {t_p['fit_seconds']:.1f} s (load {t_p['load_before']:.2f})", flush=True)
    score = min(SCORE_POINTS, len(X))
    # The same seed and N draw the same subsample for both maps.
    q_p = embedding_quality(X, Y_p, labels, max_points=score, random_state=seed) | t_p
    q_o = embedding_quality(X, Y_o, labels, max_points=score, random_state=seed) | t_o
    n_fit = min(len(X), config.max_fit_points)
    rows = [{"method": "plint ParametricTSNE", "fitted on": f"{n_fit} ({len(X) - n_fit} projected)", **_cells(q_p)},
            {"method": f"openTSNE {_opentsne_version()}", "fitted on": f"all {len(X)}", **_cells(q_o)}]
    print_table(rows)
    print()
    table = goals(q_p, q_o, 0.8)
    print_table(table)
    print(f"fit time plint ÷ openTSNE: {q_p['fit_seconds'] / q_o['fit_seconds']:.2f}"
          f"{' (openTSNE cached: not the same run)' if t_o['cached'] else ' (same run)'}; {uptime()}", flush=True)
    return {"data": name, "n_points": len(X), "n_features": int(X.shape[1]), "n_scored": score, "n_fitted": n_fit, "plint": q_p, "opentsne": q_o,
            "goals": table, "scale": est.scale_, "steps": list(est.schedule(n_fit, len(X))), "problems":
            _sanity(est, X, Y_p, Y_p, q_p, None, len(X))}


def fitted_points(config: TSNEConfig, seed: int, n_points: int, quick: bool) -> dict:
    """The fitted-points protocol: both methods fitted on 10,000 MNIST test latents and scored on them."""
    X, labels, everything = test_latents(quick, n_points, seed)
    print(f"\n## fitted points: {len(X)} test latents of layer {LAYER!r}, {X.shape[1]} features; "
          f"{len(everything)} to transform; {uptime()}", flush=True)
    stages: list[str] = []
    est, Y_p, t_p = fit_plint(X, config, seed, stages)
    q_p = embedding_quality(X, Y_p, labels) | t_p
    print(f"plint ParametricTSNE: {est.fit_seconds_:.1f} s", flush=True)
    Y_o, t_o = fit_opentsne(X, seed, quick)
    q_o = embedding_quality(X, Y_o, labels) | t_o
    print(f"openTSNE: {t_o['fit_seconds']:.1f} s", flush=True)
    t = time.perf_counter()
    Y_all = est.transform(everything)
    t_transform = time.perf_counter() - t
    print_table([{"method": "plint ParametricTSNE", **_cells(q_p)}, {"method": f"openTSNE {_opentsne_version()}", **_cells(q_o)}])
    print()
    table = goals(q_p, q_o, 0.6)
    print_table(table)
    print(f"fit time plint ÷ openTSNE: {q_p['fit_seconds'] / q_o['fit_seconds']:.2f} (same run); {uptime()}")
    print(f"transform of {len(everything)} points: {t_transform:.2f} s; scale_ = {est.scale_:.2f}")
    return {"n_points": len(X), "plint": q_p, "opentsne": q_o, "goals": table, "transform_points": len(everything),
            "transform_seconds": t_transform, "problems": _sanity(est, X, Y_p, Y_all, q_p, stages, len(everything))}


def _panel_summary(rows: list[dict]) -> None:
    """One line per latent space: plint and openTSNE's figures, the recall ratio and fit ratio, and the goals."""
    print("\n## panel summary (all points; both maps scored on one shared subsample per space)")
    table = []
    for r in rows:
        p, o = r["plint"], r["opentsne"]
        table.append({"latent space": r["data"], "N": r["n_points"], "D": r["n_features"],
                      "plint acc / T(5) / recall": f"{p['knn_acc10']:.3f} / {p['trustworthiness5']:.3f} / {p['knn_recall10']:.3f}",
                      "openTSNE": f"{o['knn_acc10']:.3f} / {o['trustworthiness5']:.3f} / {o['knn_recall10']:.3f}",
                      "recall ratio": f"{p['knn_recall10'] / o['knn_recall10']:.2f}",
                      "fit s plint / openTSNE": f"{p['fit_seconds']:.0f} / {o['fit_seconds']:.0f}",
                      "goals": " ".join(g["result"] for g in r["goals"])})
    print_table(table)


def _cells(q: dict) -> dict:
    return {k: q[k] for k in (*METRICS, "fit_seconds")} | {"load": q["load_before"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run on digits (structure, not speed)")
    ap.add_argument("--protocol", choices=("all", "fitted", "both", "panel"), default="both",
                    help="panel: the all-points protocol on every latent space of bench/latent_panel.py (issue 21)")
    ap.add_argument("--spaces", default="", help="panel: a comma-separated subset of latent_panel.SPACES")
    ap.add_argument("--data", default="mnist,fashion", help="data sets of the all-points protocol (default mnist,fashion)")
    ap.add_argument("--points", type=int, default=0,
                    help="all points: a seeded subset of this many training latents (0: all); fitted points: 10000")
    ap.add_argument("--config", default="", help="JSON overrides of plint's TSNEConfig (default: its defaults)")
    ap.add_argument("--reuse-opentsne", action="store_true",
                    help="all points: openTSNE's map from bench/out/ if fitted before (fit time then from that run)")
    ap.add_argument("--opentsne-first", action="store_true", help="all points: fit openTSNE before plint")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads of the plint fit (0: torch's choice). Under load one thread can be much faster: "
                         "two threads wait for each other whenever a core is taken by other work")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="", help="suffix of the result file name")
    args = ap.parse_args()
    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{'QUICK ' if args.quick else ''}{machine()}; {uptime()}", flush=True)
    config = TSNEConfig.from_json(args.config) if args.config else (QUICK_TSNE if args.quick else TSNEConfig())
    result: dict = {"quick": args.quick, "machine": machine(), "torch_threads": torch.get_num_threads(),
                    "config": config.to_dict(), "uptime_start": uptime()}
    problems: list[str] = []
    if args.protocol == "panel":
        from latent_panel import QUICK_SPACES, SPACES

        spaces = ([s.strip() for s in args.spaces.split(",") if s.strip()] if args.spaces
                  else list(QUICK_SPACES if args.quick else SPACES))
        result["panel"] = [all_points("", config, args.seed, args.points or 10**9, args.quick, args.reuse_opentsne,
                                      not args.opentsne_first, space=s) for s in spaces]
        problems += [p for r in result["panel"] for p in r["problems"]]
        _panel_summary(result["panel"])
    if args.protocol in ("all", "both"):
        names = ["digits"] if args.quick else [s.strip() for s in args.data.split(",") if s.strip()]
        result["all_points"] = [all_points(n, config, args.seed, args.points or 10**9, args.quick, args.reuse_opentsne,
                                           not args.opentsne_first) for n in names]
        problems += [p for r in result["all_points"] for p in r["problems"]]
    if args.protocol in ("fitted", "both"):
        result["fitted_points"] = fitted_points(config, args.seed, args.points or 10_000, args.quick)
        problems += result["fitted_points"]["problems"]
    if args.quick:
        print("(quick run: tiny data and configs, so the goal rows only show the report works; they say nothing)")
    result |= {"uptime_end": uptime(), "total_seconds": time.perf_counter() - t_start, "problems": problems}
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"ptsne_{'quick' if args.quick else 'full'}{args.tag}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"total {result['total_seconds']:.1f} s; {result['uptime_end']}; wrote {out.relative_to(OUT.parent.parent)}")
    if problems:
        sys.exit("SANITY FAILURES:\n  " + "\n  ".join(problems))


def _sanity(est: ParametricTSNE, X, Y_p, Y_all, q_p: dict, stages: list[str] | None, n_all: int) -> list[str]:
    """Checks that must hold in any run, quick or full (not the quality goals)."""
    problems = []
    if Y_p.shape != (len(X), 2) or Y_p.dtype != np.float32 or not np.isfinite(Y_p).all():
        problems.append(f"transform output {Y_p.shape} {Y_p.dtype} is not finite float32 [N, 2]")
    if Y_all.shape != (n_all, 2) or not np.isfinite(Y_all).all():
        problems.append("transform of all latents is not finite [N, 2]")
    if stages is not None and not {"affinities", "pca-pretraining", "optimisation"} <= set(stages):
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
