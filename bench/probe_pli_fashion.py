"""Why did class-level PLI leave more T-shirt ↔ Shirt confusions than its CE control? A probe, not a goal check.

Fashion-MNIST (``../shared/data/fashionmnist.npz``): 5,000 training images become the validation split
(stratified, seed 0), the plint CNN is trained 2 epochs on the rest (cached in bench/out/), and fine-tuning
uses 20,000 of its training images (seed 0), embedded with the default t-SNE. The pair is T-shirt/top (0)
and Shirt (6). Reported on the full test split: the pair's confusions (both directions) and accuracy of
the PLI run and of the control, and which step each kept.

Part 1 (``--part edits``, seed 0, 1,500 steps, best validation checkpoint) compares edits: the pair pushed
apart by one embedding scale (``separate_classes``), the same with contraction 0.5, and instance-level (the
pair's misclassified training points moved onto their true class's centroid, contraction 0.3), each with
the embedding term on every training point (the method) or on the moved points only (``embed_on="moved"``:
does holding the unedited points in place cost the pair its gains?).

Part 2 (``--part seeds``) repeats the class-level edit over fine-tuning seeds 0, 1, 2 with two schedules:
2 epochs keeping the last step (as the probe in the brief), and 1,500 steps keeping the best validation
checkpoint (the engine's rule; seed 0 is part 1's first row).

Usage::

    python bench/probe_pli_fashion.py --part edits
    python bench/probe_pli_fashion.py --part seeds

Prints one JSON line per run. About 2 minutes per PLI + control pair on 2 busy CPU cores.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from common import OUT, SHARED, cached_model, subset_train, with_val_split  # also puts the repo on sys.path

from plint_core.data.loading import load_data
from plint_core.finetune import FinetuneConfig
from plint_core.intervention import InterventionSpec, Move, Selection, separate_classes
from plint_core.latents import predict
from plint_core.metrics import evaluate
from plint_core.pipeline import prepare_embedding, run_intervention
from plint_core.store import RunStore

A, B = 0, 6


def pair_confusions(confusion) -> int:
    c = np.asarray(confusion)
    return int(c[A, B] + c[B, A])


def row(label: str, result: dict, **extra) -> dict:
    return {"case": label, **extra,
            "test_pair": {m: pair_confusions(result["confusion"][m]) for m in ("before", "after", "control")},
            "accuracy": {m: round(result["accuracy"][m], 4) for m in ("before", "after", "control")},
            "distance": {m: round(result["target_distance"][m], 3) for m in ("before", "after", "control")},
            "kept": {m: result["selection"][m]["step"] for m in ("pli", "control")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("edits", "seeds"), required=True)
    a = ap.parse_args()
    data = with_val_split(load_data(str(SHARED / "fashionmnist.npz")), 5000, seed=0)
    bundle = cached_model("fashion", 2, data=data, tag="-val5000")
    ft = subset_train(data, 20000, seed=0)
    store = RunStore(OUT / "runs")
    emb = prepare_embedding(ft, bundle, store=store, device="cpu")
    base = evaluate(ft.val.labels, predict(bundle, ft.val.images), ft.n_classes)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}; val accuracy {base.accuracy:.4f}, val pair confusions "
          f"{pair_confusions(base.confusion)}; embedding scale {emb.scale:.2f}, quality {emb.quality}", flush=True)
    labels, xy = ft.train.labels, emb.train_xy
    cls = separate_classes(xy, labels, A, B, distance=emb.scale)
    if a.part == "seeds":
        for label, kw, seeds in (("class, last step of 2 epochs", {"epochs": 2, "select": "last"}, (0, 1, 2)),
                                 ("class, best of 1,500 steps", {"steps": 1500}, (1, 2))):
            for seed in seeds:
                result = run_intervention(ft, bundle, emb, cls, FinetuneConfig(seed=seed, device="cpu", **kw),
                                          store=store).result
                print(json.dumps(row(label, result, seed=seed)), flush=True)
        return
    centroid = {k: xy[labels == k].mean(0) for k in (A, B)}
    wrong = {k: np.flatnonzero((labels == k) & (emb.train_pred == (B if k == A else A))) for k in (A, B)}
    instance = InterventionSpec(tuple(
        Move(Selection(ids=tuple(int(i) for i in ft.train.ids[wrong[k]])),
             tuple(float(v) for v in centroid[k] - xy[wrong[k]].mean(0)), 0.3) for k in (A, B)))
    contracted = separate_classes(xy, labels, A, B, distance=emb.scale, contract=0.5)
    for label, spec in (("class", cls), ("class contract 0.5", contracted), ("instance", instance)):
        for embed_on in ("all", "moved"):
            result = run_intervention(ft, bundle, emb, spec, FinetuneConfig(steps=1500, device="cpu",
                                                                             embed_on=embed_on), store=store).result
            print(json.dumps(row(label, result, embed_on=embed_on, seed=0)), flush=True)


if __name__ == "__main__":
    main()
