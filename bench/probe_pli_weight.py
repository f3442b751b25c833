"""Issue 10, a probe: how hard must the embedding term pull for the embedding to follow the edit?

The engine's loss divides the embedding term by the embedding's scale squared (``s``, RMS radius)::

    L = (1 - λ) CE + λ ||E(C_l(x)) - y'||² / s²

while the brief's (and the paper's) formula has no ``/ s²``. With Fashion-MNIST's default t-SNE of the logits
(s ≈ 24.7, s² ≈ 611) the paper's λ 0.1 weighs the embedding term against CE ≈ 611 × more than the engine's λ 0.1.
Because Adam is invariant to the overall scale of the loss, the paper's weighting λ_p is the engine's

    λ = λ_p s² / (λ_p s² + 1 - λ_p)          (λ_p 0.1 → λ ≈ 0.986 at s 24.7)

``--targets`` prints, without training, where each edit's targets land in the map: the class of their 15 nearest
training points, and how many lie more than 3 units from every point of another class (free space).

Otherwise this probe runs the bench_pli_fashion set-up (its Setup, edits and run store) on seed 0, the validation split only,
for a few λ (including those paper-equivalent ones) and step budgets, and prints each PLI run's validation pair
confusions, validation accuracy and distance after ÷ control. Nothing here looks at the test split.

Usage::

    python bench/probe_pli_weight.py --lams 0.1,0.5,0.9,paper0.1 --steps 1000
    python bench/probe_pli_weight.py --targets
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
from bench_pli_fashion import Setup, edits, pli
from common import OUT, machine

from plint_core.intervention import separate_classes
from plint_core.store import RunStore


def lam_value(text: str, scale: float) -> float:
    """``0.5`` as given; ``paper0.1``: the engine's λ equal to the paper's λ 0.1 (no ``/ s²``) at this scale."""
    if text.startswith("paper"):
        p, s2 = float(text[5:]), scale ** 2
        return p * s2 / (p * s2 + 1 - p)
    return float(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lams", default="0.1,0.5,0.9,paper0.1")
    ap.add_argument("--steps", default="1000", help="step budgets, comma separated")
    ap.add_argument("--edits", default="0,3", help="indices into bench_pli_fashion.edits (0: apart 1×, 1: 2×, "
                                                   "2: 1× contract 0.5, 3: 2× contract 0.5, 4: apart and outward 1× "
                                                   "contract 0.5, 5: 2× contract 0.5, 6: instance-level), then "
                                                   "apart and outward without contraction (7: 1×, 8: 2×)")
    ap.add_argument("--lrs", default="0.001", help="Adam learning rates, comma separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--targets", action="store_true", help="where the edits' targets land; no training")
    a = ap.parse_args()
    a.quick, a.pair = False, None
    print(machine(), time.strftime("%Y-%m-%d %H:%M:%S %Z"), flush=True)
    s = Setup(a, RunStore(OUT / "runs"))
    print(f"pair {s.pair}, scale {s.emb.scale:.2f}, val before: accuracy {s.val_before.accuracy:.4f}", flush=True)
    all_edits = edits(s, True)
    a_, b_ = s.pair
    all_edits += [(f"class: apart and outward {d:g} × scale, contract {c:g}",
                   separate_classes(s.emb.train_xy, s.ft.train.labels, a_, b_, d * s.emb.scale, c, outward=True))
                  for d, c in ((1.0, 1.0), (2.0, 1.0))]
    if a.targets:
        return landing(s, all_edits)
    base = s.config
    print("| edit | steps | lr | λ | val pair PLI | control | val accuracy PLI | control | distance ÷ control "
          "| kept PLI | control | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for steps, lr in ((int(x), float(y)) for x in a.steps.split(",") for y in a.lrs.split(",")):
        s.config = replace(base, steps=steps, lr=lr)
        for lam_text in a.lams.split(","):
            lam = lam_value(lam_text, s.emb.scale)
            for i in (int(x) for x in a.edits.split(",")):
                label, spec = all_edits[i]
                r = pli(s, spec, a.seed, lam, val=True)
                v, d = r["val"], r["distance"]
                print(f"| {label} | {steps} | {lr:g} | {lam_text} ({lam:.4f}) | {v['pli']['pair']} | {v['control']['pair']} "
                      f"| {v['pli']['accuracy']:.4f} | {v['control']['accuracy']:.4f} "
                      f"| {d['pli'] / d['control']:.3f} | {r['kept']['pli']} | {r['kept']['control']} "
                      f"| {'cached' if r['cache_hit'] else round(r['seconds'])} |", flush=True)
                curves = {k: [round(v, 3) for _, v in s.store.load_run(r['run_id'])['selection'][k]['curve']] for k in ("pli", "control")}
                print(f"<!-- val curves (every {steps // base.evaluations} steps): {curves} -->", flush=True)


def landing(s, all_edits) -> None:
    """For each edit: the share of moved points whose target's 15 nearest training points are mostly of their own
    class, of the pair's other class or of a third class, and the share more than 3 units from any point of
    another class than their own."""
    from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

    xy, labels, ids, names = s.emb.train_xy, s.ft.train.labels, s.ft.train.ids, s.data.class_names
    knn = KNeighborsClassifier(15).fit(xy, labels)
    others = {k: NearestNeighbors(n_neighbors=1).fit(xy[labels != k]) for k in range(s.data.n_classes)}
    print("| edit | moved | own class | the pair's other | a third class | free space (> 3 units) | mean move |")
    print("|---|---|---|---|---|---|---|")
    for label, spec in all_edits:
        target, moved = spec.targets(xy, labels, ids, names)
        near, own = knn.predict(target[moved]), labels[moved]
        pair_other = np.isin(near, s.pair) & (near != own)
        gap = np.empty(int(moved.sum()))
        for k in np.unique(own):
            gap[own == k] = others[int(k)].kneighbors(target[moved][own == k])[0][:, 0]
        move = np.linalg.norm(target[moved] - xy[moved], axis=1).mean()
        print(f"| {label} | {int(moved.sum()):,} | {np.mean(near == own):.3f} | {pair_other.mean():.3f} "
              f"| {1 - np.mean(near == own) - pair_other.mean():.3f} | {np.mean(gap > 3):.3f} | {move:.1f} |")


if __name__ == "__main__":
    main()
