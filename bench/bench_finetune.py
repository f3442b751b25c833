"""Fine-tuning cost: seconds per epoch of the PLI run vs its CE-only control, in one run.

    python bench/bench_finetune.py [--data digits|mnist|pneumonia] [--train-points N] [--epochs N]
                                   [--batch-size N] [--device auto|cpu|cuda] [--quick]

The PLI epoch does the same forward/backward through C as the control plus a
forward/backward through the frozen embedder E; the ratio shows that overhead.
``--train-points`` fine-tunes on a seeded subset of the training split (seconds
per epoch scale with it; the ratio does not). Times are wall-clock seconds, each run timed from
its own first step (:class:`common.EpochTimer`), so one-off set-up counts for neither.
"""
from __future__ import annotations

import argparse

from common import (OUT, QUICK_TSNE, EpochTimer, cached_model, data_source, fresh_store, machine, print_table,
                    subset_train)

from plint_core.data.loading import load_data
from plint_core.finetune import FinetuneConfig
from plint_core.intervention import separate_classes
from plint_core.metrics import evaluate, most_confused_pair
from plint_core.pipeline import prepare_embedding, run_intervention
from plint_core.store import RunStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--train-points", type=int, default=0, help="fine-tune on this many training points (0: all)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model-epochs", type=int, default=3, help="epochs of the classifier trained for mnist/pneumonia")
    ap.add_argument("--quick", action="store_true", help="digits, 2 epochs, small t-SNE: a smoke run")
    a = ap.parse_args()
    if a.quick:
        a.data, a.epochs = "digits", 2
    print(machine(), flush=True)
    bundle = cached_model(a.data, a.model_epochs)
    data = load_data(data_source(a.data))
    if a.train_points:
        data = subset_train(data, a.train_points)
    emb = prepare_embedding(data, bundle, store=RunStore(OUT / "runs"), device=a.device,
                            config=QUICK_TSNE if a.quick else None)
    pair = most_confused_pair(evaluate(data.test.labels, emb.test_pred, data.n_classes).confusion)
    spec = separate_classes(emb.train_xy, data.train.labels, *pair, distance=emb.scale)
    timer = EpochTimer()
    config = FinetuneConfig(epochs=a.epochs, batch_size=a.batch_size, device=a.device)
    with fresh_store() as store:
        timer.start()
        run = run_intervention(data, bundle, emb, spec, config, store=store, progress=timer)
    pli_s, ctl_s = timer.mean()
    print_table([{"data": a.data, "train points": len(data.train), "device": run.result["device"],
                  "batch": a.batch_size, "PLI s/epoch": pli_s, "control s/epoch": ctl_s, "ratio PLI/control": pli_s / ctl_s}])
    assert len(timer.seconds()["pli"]) == len(timer.seconds()["control"]) == a.epochs


if __name__ == "__main__":
    main()
