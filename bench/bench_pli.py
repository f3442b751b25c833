"""The PLI effect against its control on real data, with the path and the follow pick: two edits per data set,
several seeds, a validation-only grid of settings at the first seed, a λ sweep.

For each data set the plint CNN (``plint_core train``, cached in bench/out/) is evaluated on the validation split;
its most-confused class pair gets two edits (``--edits``):

``class``
    the pair pushed apart into the free space at the map's edge (:func:`plint_core.intervention.separate_classes`
    with ``outward=True``, ``--distance`` × the embedding's scale, contraction ``--contract``: the edit
    bench/bench_pli_fashion.py chose on Fashion-MNIST's validation split);
``instance``
    the pair's misclassified training points moved onto their true class (:func:`plint_core.intervention.send_home`,
    contraction ``--home-contract``); left out, with a note, where the pair has none.

Each edit is fine-tuned with the PLI loss and, from the same start with the same batches, with cross-entropy alone
(the control), with the engine's ``FinetuneConfig`` unless an option says otherwise (``--lam``, ``--select``,
``--weighting``, ``--optimizer``, ``--tolerance``, ...; every option is printed in the header line). Both runs
record their path (per evaluation: validation accuracy, the pair's validation confusions, the edit's distance on
the moved validation images through the frozen E; ``result["path"]``) and keep the checkpoint the rule picks.

Per run it prints the picks' steps, whether the PLI run kept its start, the test accuracy of both, the distance to
the edit after ÷ control of the moved training points (``result["target_distance"]``, test-free) and of the test
images the edit moves (the edit applied to the test split where the starting model places them, as the engine
does for validation images), and the validation side from the path: accuracy and the edit's distance at the picks
(PLI ÷ control), the reference accuracy, and whether a checkpoint within the tolerance followed the edit (its
validation distance below the start's) while the run kept its start.

At the first seed, a **grid** (validation only: the figures a default is chosen on): the λ of ``--lams`` (the
calibrated weighting unless ``--weighting``; λ = 0 is the control), ``weighting="paper"`` at ``--paper-lams``,
``optimizer="sgd"`` with ``--sgd-lr`` at ``--sgd-lams``, each re-picked from its path at every tolerance of
``--tolerances`` (:func:`plint_core.pick.pick_steps`). The λ runs are also the sweep of the λ figure.

Goals per data set and edit, over the seeds (issue 19): test images' distance after ÷ control ≤ 0.5 (mean over
seeds); test accuracy after − control ≥ −0.5 pp (mean); no run keeps its starting weights while its path had a
checkpoint within the tolerance that followed the edit.

Data: MNIST (mnist70k.npz) and Fashion-MNIST have no validation split, so ``--val-points`` of the engine's training
split (stratified, seed 0) become one and the classifier is trained on the rest; PneumoniaMNIST keeps MedMNIST's
own; digits gets a plint CNN of its own on its training split less a fifth (the validation points), since the demo
CNN has seen them. Fine-tuning and the embedding use ``--train-points`` training points (seed 0; all if fewer).

Runs are kept in a run store (``--store``, default bench/out/runs; keyed by everything that decides them), so a
run shared by the grid and the seeds, or a rerun, is loaded, not retrained; ``--quick`` uses a fresh one. Where time
is short, ``--max-seeds mnist=2,fashion=2`` runs only the first seeds there; ``--no-repeat`` skips the rerun of the
first seed in a fresh store (the reproducibility check), ``--whole-val`` adds the kept weights' accuracy on the whole
validation split.

Usage::

    python bench/bench_pli.py --data mnist,fashion --seeds 0 --lams 0,0.3,0.5,0.7 --paper-lams 0.1 \\
        --sgd-lams 0.5 --name defaults_grid           # the grid (validation figures)
    python bench/bench_pli.py --data digits,mnist,pneumonia,fashion --seeds 0,1,2,3,4 --lams 0 --paper-lams "" \\
        --name defaults_table                         # the default-run table
    python bench/bench_pli.py --quick                 # digits, tiny: structure and sanity, not the goals
    python bench/bench_pli.py --plot-only bench/out/pli_full.json   # redraw the λ figure

Writes bench/out/pli_{NAME,quick}.json; ``--name full`` also writes docs/figures/pli_lambda.{html,png}, any other
name bench/out/pli_lambda_NAME.html.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import (OUT, QUICK_TSNE, EpochTimer, cached_model, data_source, fresh_store, machine, print_table,
                    save_figure, subset_train, with_val_split, write_json)

from plint_core.data.loading import load_data
from plint_core.embedding.parametric_tsne import TSNEConfig
from plint_core.errors import PlintError
from plint_core.finetune import EMBED_ON, OPTIMIZERS, WEIGHTINGS, FinetuneConfig
from plint_core.intervention import send_home, separate_classes
from plint_core.latents import predict
from plint_core.metrics import evaluate, mean_target_distance, most_confused_pair
from plint_core.models.sources import load_model
from plint_core.models.spec import ModelBundle
from plint_core.path import Checkpoint
from plint_core.pick import PICK_RULES, edit_distance, pick_steps
from plint_core.pipeline import prepare_embedding, run_intervention
from plint_core.store import RunStore

MODELS = ("before", "control", "after")
ACC_GOAL_PP = -0.5
DISTANCE_GOAL = 0.5
# The demo CNN was trained on all of digits' training split, so in --quick it has seen the validation points carved
# out of it: good enough for a smoke run, not for choosing a pair or a setting. For the same reason --quick keeps
# each run's last step: the demo scores 100 % on those points from the start, so follow (within 0.5 pp of it, on 300
# images) and best-val keep the starting weights and the λ sweep would show nothing of the PLI term.
QUICK = {"data": "digits", "seeds": "0,1", "lams": "0,0.1,0.5", "paper_lams": "0.1", "sgd_lams": "",
         "train_points": 600, "val_points": 300, "epochs": 2, "whole_val": True,
         "select": "last"}


def parse_args() -> argparse.Namespace:
    d = FinetuneConfig()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="digits,mnist,pneumonia,fashion",
                    help="comma-separated: digits, mnist, pneumonia, fashion")
    ap.add_argument("--edits", default="class,instance", help="comma-separated: class, instance")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="fine-tuning seeds")
    ap.add_argument("--max-seeds", default="", metavar="DATA=N,...",
                    help="only the first N seeds on these data sets (e.g. mnist=3,fashion=3: where time is short)")
    ap.add_argument("--lam", type=float, default=d.lam, help="λ of the PLI-vs-control comparison (the engine's)")
    ap.add_argument("--select", default=d.select, choices=PICK_RULES, help="checkpoint each run keeps (the engine's)")
    ap.add_argument("--tolerance", type=float, default=d.tolerance, help="follow's accuracy tolerance (the engine's)")
    ap.add_argument("--weighting", default=d.weighting, choices=WEIGHTINGS, help="embedding term's weighting")
    ap.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS)
    ap.add_argument("--embed-on", default=d.embed_on, choices=EMBED_ON,
                    help="rows the embedding term acts on (the engine's: all; moved: only the moved points)")
    ap.add_argument("--moved-per-batch", type=int, default=d.moved_per_batch,
                    help="moved rows every PLI step carries for the embedding term where it acts on the moved rows only")
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--lams", default="0,0.3,0.5,0.7",
                    help="grid and λ sweep at the first seed, with --weighting (0: the control)")
    ap.add_argument("--paper-lams", default="0.1", help="grid: λ with weighting='paper' at the first seed ('' none)")
    ap.add_argument("--sgd-lams", default="", help="grid: λ with optimizer='sgd' at the first seed ('' none)")
    ap.add_argument("--sgd-lr", type=float, default=0.01, help="learning rate of the grid's SGD runs")
    ap.add_argument("--tolerances", default="0.005,0.01", help="grid: follow re-picked from the path at each")
    ap.add_argument("--train-points", type=int, default=4_000, help="training points fine-tuned on and embedded")
    ap.add_argument("--val-points", type=int, default=5_000, help="validation points carved from train where none exists")
    ap.add_argument("--epochs", type=int, default=d.epochs,
                    help="fine-tuning epochs instead of the engine's step budget (default: the engine's steps)")
    ap.add_argument("--steps", type=int, default=d.steps, help="fine-tuning steps (without --epochs)")
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--distance", type=float, default=1.0, help="class edit: how far apart, × embedding scale")
    ap.add_argument("--contract", type=float, default=0.5, help="class edit: contraction of each class")
    ap.add_argument("--home-contract", type=float, default=0.3, help="instance edit: contraction of each group")
    ap.add_argument("--model-epochs", default="digits=20,mnist=3,pneumonia=10,fashion=2",
                    help="classifier training epochs per data set")
    ap.add_argument("--layer", default=None, help="latent layer to embed (default: the engine's, the logits)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--store", type=Path, default=OUT / "runs", help="run store (--quick: a fresh one)")
    ap.add_argument("--whole-val", action="store_true",
                    help="also score the seeds' kept weights on the whole validation split (two passes a run)")
    ap.add_argument("--no-repeat", action="store_true",
                    help="skip rerunning the first seed in a fresh store (the reproducibility check)")
    ap.add_argument("--name", default=None, help="results go to bench/out/pli_NAME.json (default: full or quick); "
                                                  "only 'full' writes docs/figures/")
    ap.add_argument("--quick", action="store_true", help="digits, 2 seeds, 2 epochs, small t-SNE: a smoke run")
    ap.add_argument("--plot-only", type=Path, help="redraw the λ figure from this results JSON and exit")
    ap.add_argument("--combine", type=Path, nargs="+", metavar="JSON",
                    help="print the tables across data sets of these results JSONs (no run) and write pli_NAME.json")
    a = ap.parse_args()
    if a.quick:
        for k, v in QUICK.items():
            setattr(a, k, v)
    return a


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def pair_confusions(confusion, pair: tuple[int, int]) -> int:
    c = np.asarray(confusion)
    return int(c[pair[0], pair[1]] + c[pair[1], pair[0]])


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


class Setup:
    """One data set: its splits, classifier, embedding, pair, edits and the test images' targets per edit."""

    def __init__(self, name: str, a: argparse.Namespace, model_epochs: dict[str, int]):
        full = load_data(data_source(name))
        # digits has 1,437 training images: the full run's 5,000 become a fifth of them (287)
        n_val = a.val_points if a.val_points < len(full.train) // 2 else len(full.train) // 5
        self.name, self.data = name, with_val_split(full, n_val, seed=0)
        tag = "" if full.val is not None else f"-val{n_val}"
        # The demo CNN saw all of digits' training split (validation points included): fine for --quick only.
        model_name = "digits-cnn" if name == "digits" and not a.quick else name
        self.bundle = cached_model(model_name, model_epochs.get(name, 3), data=self.data, tag=tag)
        self.val_eval = evaluate(self.data.val.labels, predict(self.bundle, self.data.val.images), self.data.n_classes)
        self.pair = most_confused_pair(self.val_eval.confusion)
        self.ft = subset_train(self.data, a.train_points, seed=0)
        t = time.perf_counter()
        self.tsne = QUICK_TSNE if a.quick else TSNEConfig()
        self.emb = prepare_embedding(self.ft, self.bundle, layer=a.layer, store=RunStore(OUT / "runs"),
                                     device=a.device, config=self.tsne)
        self.embed_s = time.perf_counter() - t
        self.edits, self.skipped = {}, {}
        xy, labels, p = self.emb.train_xy, self.ft.train.labels, self.pair
        for e in a.edits.split(","):
            if e == "class":
                self.edits[e] = separate_classes(xy, labels, *p, distance=a.distance * self.emb.scale,
                                                 contract=a.contract, outward=True)
            elif e == "instance":
                try:
                    self.edits[e] = send_home(xy, labels, self.emb.train_pred, self.ft.train.ids, *p,
                                              contract=a.home_contract)
                except PlintError as err:
                    self.skipped[e] = str(err)
            else:
                sys.exit(f"unknown edit {e!r}: use class or instance")
        test_labels = np.asarray(self.data.test.labels)
        self.test_targets = {e: spec.targets_for(self.emb.test_xy, test_labels, None, xy, labels, self.ft.train.ids,
                                                 self.data.class_names) for e, spec in self.edits.items()}

    def describe(self) -> str:
        names, d = self.data.class_names, self.data
        return (f"train {len(self.ft.train)} of {len(d.train)} (fine-tuned and embedded), val {len(d.val)}, "
                f"test {len(d.test)}; classifier {self.bundle.source}; most-confused pair on val: "
                f"{names[self.pair[0]]}–{names[self.pair[1]]} "
                f"({pair_confusions(self.val_eval.confusion, self.pair)} confusions, val accuracy "
                f"{self.val_eval.accuracy:.4f}); layer {self.emb.layer}, embedding scale {self.emb.scale:.2f} "
                f"({'cached' if self.emb.cache_hit else f'fitted in {self.embed_s:.1f} s'})")


def path_figures(result: dict, tolerance: float) -> dict:
    """Validation figures from ``result["path"]`` with ``follow`` re-picked at ``tolerance`` where the run's rule is
    follow (else the run's own picks): the picks' steps, validation accuracy and edit distance (PLI ÷ control), the
    reference, whether a checkpoint was within it, and whether the PLI run kept its start while a checkpoint within
    the tolerance followed the edit (validation distance below the start's)."""
    path = result["path"]
    pli = [Checkpoint.from_dict(c) for c in path["pli"]]
    ctl = [Checkpoint.from_dict(c) for c in path["control"]]
    rule = result["selection"]["pli"]["rule"]
    picks = pick_steps(rule, pli, ctl, tolerance)
    if rule != "follow" or abs(tolerance - result["finetune"].get("tolerance", tolerance)) < 1e-12:
        picks = dict(picks, pli=result["selection"]["pli"]["step"], control=result["selection"]["control"]["step"])
    p = next(c for c in pli if c.step == picks["pli"])
    c = next(c for c in ctl if c.step == picks["control"])
    start = pli[0]
    ref = picks["reference"]
    followable = [x.step for x in pli[1:] if x.accuracy >= ref - tolerance - 1e-12
                  and edit_distance(x) is not None and edit_distance(start) is not None
                  and edit_distance(x) < edit_distance(start)]
    return {"tolerance": tolerance, "pli_step": p.step, "control_step": c.step, "within": picks["within"],
            "reference": ref, "start_acc": start.accuracy, "pli_acc": p.accuracy, "control_acc": c.accuracy,
            "start_dist": edit_distance(start), "pli_dist": edit_distance(p), "control_dist": edit_distance(c),
            "dist_ratio": ratio(edit_distance(p), edit_distance(c)), "pli_pair": p.pair, "control_pair": c.pair,
            "kept_start": p.step == 0, "followable": followable, "missed": p.step == 0 and bool(followable),
            "n_val_moved": path.get("n_val_moved")}


def summarise(s: Setup, edit: str, r, tolerances: list[float], val_full: bool = True) -> dict:
    """The figures of one stored run this benchmark reports."""
    res = r.result
    tab = r.test_embedding
    targets, moved = s.test_targets[edit]
    test_dist = {m: mean_target_distance(np.c_[tab[f"x_{m}"], tab[f"y_{m}"]][moved], targets[moved])
                 for m in MODELS} if moved.any() else {m: None for m in MODELS}
    sel = {m: res["selection"][run] for m, run in (("after", "pli"), ("control", "control"))}
    out = {"run_id": r.run_id, "cache_hit": r.cache_hit, "accuracy": res["accuracy"],
           "target_distance": res["target_distance"], "test_distance": test_dist, "n_test_moved": int(moved.sum()),
           "pair_confusions": {k: pair_confusions(res["confusion"][k], s.pair) for k in MODELS},
           "per_class": res["per_class"], "confusion": res["confusion"], "n_moved": res["n_moved"],
           "seconds": res.get("compute_seconds", res["seconds"]),
           "selection": {m: {"rule": v["rule"], "step": v["step"], "steps_run": v["steps_run"], "score": v["score"],
                             "pick": v.get("pick"), "multiplier": (v.get("calibration") or {}).get("used")}
                         for m, v in sel.items()},
           "path": {f"{t:g}": path_figures(res, t) for t in tolerances}, "finetune": res["finetune"]}
    if val_full:
        out["val_full"] = val_accuracies(s, r.directory)
    return out


def val_accuracies(s: Setup, directory: Path) -> dict:
    """Accuracy on the whole validation split before fine-tuning and of the weights each run kept."""
    out = {"before": s.val_eval.accuracy}
    for model, weights in (("after", "finetuned"), ("control", "control")):
        kept = load_model(directory / f"{weights}.safetensors").module
        out[model] = evaluate(s.data.val.labels, predict(ModelBundle(kept, s.bundle.spec, ""), s.data.val.images),
                              s.data.n_classes).accuracy
    return out


def identical(r1: dict, r2: dict) -> bool:
    keys = ("accuracy", "confusion", "per_class", "target_distance")
    return all(json.dumps(r1[k], sort_keys=True) == json.dumps(r2[k], sort_keys=True) for k in keys)


def mean_range(values: list[float]) -> dict:
    v = [x for x in values if x is not None]
    if not v:
        return {"mean": None, "min": None, "max": None, "n": 0}
    return {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)), "n": len(v)}


def aggregate(runs: list[dict], tol: str) -> dict:
    """Means over seeds of the test figures, the per-seed ratios and gaps (mean and range), the kept starts."""
    out: dict = {k: {m: float(np.mean([r[k][m] for r in runs])) for m in MODELS}
                 for k in ("accuracy", "target_distance", "pair_confusions")}
    out["test_distance"] = {m: None if runs[0]["test_distance"][m] is None
                            else float(np.mean([r["test_distance"][m] for r in runs])) for m in MODELS}
    out["per_class"] = {m: [{"class": c["class"], "support": c["support"],
                             **{f: float(np.mean([r["per_class"][m][i][f] for r in runs]))
                                for f in ("precision", "recall", "f1")}}
                            for i, c in enumerate(runs[0]["per_class"][m])] for m in MODELS}
    out["test_ratio"] = mean_range([ratio(r["test_distance"]["after"], r["test_distance"]["control"]) for r in runs])
    out["train_ratio"] = mean_range([ratio(r["target_distance"]["after"], r["target_distance"]["control"])
                                     for r in runs])
    out["acc_gap_pp"] = mean_range([100 * (r["accuracy"]["after"] - r["accuracy"]["control"]) for r in runs])
    out["val_ratio"] = mean_range([r["path"][tol]["dist_ratio"] for r in runs])
    out["val_gap_pp"] = mean_range([100 * (r["path"][tol]["pli_acc"] - r["path"][tol]["control_acc"]) for r in runs])
    out["kept_start"] = sum(r["path"][tol]["kept_start"] for r in runs)
    out["missed"] = sum(r["path"][tol]["missed"] for r in runs)
    out["n"] = len(runs)
    return out


def fmt_range(m: dict, f: str = "{:.3f}") -> str:
    if m["mean"] is None:
        return "–"
    return (f + " [" + f + ", " + f + "]").format(m["mean"], m["min"], m["max"])


def goals(agg: dict) -> list[dict]:
    tr, gap, trn = agg["test_ratio"], agg["acc_gap_pp"], agg["train_ratio"]
    return [
        {"goal": f"distance to the edit, test images it moves: after ≤ {DISTANCE_GOAL} × control (mean over seeds)",
         "value": f"{fmt_range(tr)} × control" if tr["mean"] is not None else "no test image moved",
         "result": "n/a" if tr["mean"] is None else ("PASS" if tr["mean"] <= DISTANCE_GOAL else "MISS")},
        {"goal": f"distance to the edit, moved training points: after ≤ {DISTANCE_GOAL} × control (mean over seeds)",
         "value": f"{fmt_range(trn)} × control", "result": "PASS" if trn["mean"] <= DISTANCE_GOAL else "MISS"},
        {"goal": f"test accuracy: after − control ≥ {ACC_GOAL_PP} pp (mean over seeds)",
         "value": f"{fmt_range(gap, '{:+.2f}')} pp", "result": "PASS" if gap["mean"] >= ACC_GOAL_PP else "MISS"},
        {"goal": "runs that kept their start while a checkpoint within the tolerance followed the edit: none",
         "value": f"{agg['missed']} of {agg['n']} (kept the start: {agg['kept_start']})",
         "result": "PASS" if agg["missed"] == 0 else "MISS"},
    ]


def grid_label(cfg: FinetuneConfig) -> str:
    extra = "" if cfg.optimizer == "adam" else f", {cfg.optimizer} lr {cfg.lr:g}"
    return f"λ {cfg.lam:g} {cfg.weighting}{extra}"


def bench_edit(s: Setup, edit: str, a: argparse.Namespace, store: RunStore, tolerances: list[float]) -> dict:
    spec = s.edits[edit]
    tol = f"{a.tolerance:g}"

    def config(seed: int, **kw) -> FinetuneConfig:
        base = FinetuneConfig(lam=a.lam, epochs=a.epochs, steps=a.steps, lr=a.lr, batch_size=a.batch_size, seed=seed,
                              device=a.device, select=a.select, tolerance=a.tolerance, weighting=a.weighting,
                              optimizer=a.optimizer, embed_on=a.embed_on, moved_per_batch=a.moved_per_batch)
        return replace(base, **kw)

    seeds = data_seeds(a, s.name)
    runs, timer = [], EpochTimer()
    for seed in seeds:
        timer.start()
        r = run_intervention(s.ft, s.bundle, s.emb, spec, config(seed), store=store, progress=timer)
        row = {"seed": seed, **summarise(s, edit, r, tolerances, val_full=a.whole_val)}
        row["pli_s_per_epoch"], row["control_s_per_epoch"] = timer.mean() if not r.cache_hit else (None, None)
        runs.append(row)
        print_run(f"seed {seed}", row, tol)
    grid = []
    first = runs[0]
    plan = [config(seeds[0], lam=lam) for lam in floats(a.lams) if lam > 0]
    plan += [config(seeds[0], lam=lam, weighting="paper") for lam in floats(a.paper_lams)]
    plan += [config(seeds[0], lam=lam, optimizer="sgd", lr=a.sgd_lr) for lam in floats(a.sgd_lams)]
    for cfg in plan:
        if cfg == config(seeds[0]):
            row = first
        else:
            row = summarise(s, edit, run_intervention(s.ft, s.bundle, s.emb, spec, cfg, store=store), tolerances,
                            val_full=False)
            print_run(grid_label(cfg), row, tol)
        grid.append({"label": grid_label(cfg), "lam": cfg.lam, "weighting": cfg.weighting, "optimizer": cfg.optimizer,
                     "lr": cfg.lr, **row})
    sweep = []
    for lam in floats(a.lams):
        if lam == 0.0:
            sweep.append(sweep_row(0.0, first, "control"))
        else:
            g = next(g for g in grid if g["lam"] == lam and g["weighting"] == a.weighting and g["optimizer"] == a.optimizer)
            sweep.append(sweep_row(lam, g))
    agg = aggregate(runs, tol)
    return {"edit": edit, "spec": spec.to_dict(), "n_moved": first["n_moved"], "n_test_moved": first["n_test_moved"],
            "n_val_moved": first["path"][tol]["n_val_moved"], "runs": runs, "aggregate": agg, "goals": goals(agg),
            "grid": grid, "sweep": sweep}


def data_seeds(a: argparse.Namespace, name: str) -> list[int]:
    """``--seeds``, cut to ``--max-seeds``' number for ``name``."""
    seeds = [int(x) for x in a.seeds.split(",")]
    limits = {k: int(v) for k, v in (kv.split("=") for kv in a.max_seeds.split(",") if kv.strip())}
    return seeds[:limits.get(name, len(seeds))]


def sweep_row(lam: float, summary: dict, model: str = "after") -> dict:
    return {"lam": lam, **{k: summary[k][model] for k in ("target_distance", "accuracy", "pair_confusions",
                                                          "test_distance")}}


def print_run(label: str, row: dict, tol: str) -> None:
    p, acc, d = row["path"][tol], row["accuracy"], row["target_distance"]
    td = row["test_distance"]
    test = "–" if td["after"] is None else f"{td['after'] / td['control']:.3f}"
    val = "–" if p["dist_ratio"] is None else f"{p['dist_ratio']:.3f}"
    took = "cached" if row["cache_hit"] else f"{row['seconds']:.0f} s"
    print(f"{label}: PLI pick step {p['pli_step']} ({'KEPT THE START' if p['kept_start'] else 'moved on'}"
          f"{', none within' if p['within'] is False else ''}), control step {p['control_step']}; test accuracy "
          f"after {acc['after']:.4f} / control {acc['control']:.4f} ({100 * (acc['after'] - acc['control']):+.2f} pp); "
          f"distance after ÷ control: training points {d['after'] / d['control']:.3f}, test images {test}; "
          f"val (path): distance ratio {val}, accuracy PLI {p['pli_acc']:.4f} / control {p['control_acc']:.4f} "
          f"(reference {p['reference']:.4f}); {took}", flush=True)


def bench_dataset(name: str, a: argparse.Namespace, model_epochs: dict[str, int], store: RunStore) -> dict:
    started = time.perf_counter()
    s = Setup(name, a, model_epochs)
    print(f"\n## {name}: {s.describe()}", flush=True)
    for e, why in s.skipped.items():
        print(f"edit {e} left out: {why}", flush=True)
    tolerances = sorted(set(floats(a.tolerances)) | {a.tolerance})
    edits = []
    for e in s.edits:
        print(f"\n### {name}, {e} edit: {len(s.edits[e].moves)} moves", flush=True)
        edits.append(bench_edit(s, e, a, store, tolerances))
    reproducible = None
    if not a.no_repeat and edits:
        with fresh_store() as st:  # the first seed again, from scratch: must give the same metrics
            cfg_store = edits[0]["runs"][0]
            again = run_intervention(s.ft, s.bundle, s.emb, s.edits[edits[0]["edit"]],
                                     FinetuneConfig(**{k: v for k, v in cfg_store["finetune"].items()},
                                                    device=a.device), store=st).result
        reproducible = identical(cfg_store, again)
    names = s.data.class_names
    return {"data": name, "lam": a.lam, "classes": list(names), "n_train": len(s.ft.train),
            "n_train_all": len(s.data.train), "n_val": len(s.data.val), "n_test": len(s.data.test),
            "model": s.bundle.source, "model_epochs": model_epochs.get(name), "pair": list(s.pair),
            "pair_names": [names[s.pair[0]], names[s.pair[1]]],
            "val_pair_confusions": pair_confusions(s.val_eval.confusion, s.pair), "val_accuracy": s.val_eval.accuracy,
            "embedding": {"layer": s.emb.layer, "scale": s.emb.scale, "quality": s.emb.quality,
                          "cache_hit": s.emb.cache_hit, "seconds": s.embed_s, "tsne": s.tsne.to_dict()},
            "edits": edits, "skipped": s.skipped, "tolerances": tolerances, "reproducible": reproducible,
            "seconds": time.perf_counter() - started}


def report(r: dict, tol: str) -> None:
    """Print one data set's tables (Markdown)."""
    for e in r["edits"]:
        print(f"\n### {r['data']}, {e['edit']} edit ({e['n_moved']} training points moved, {e['n_val_moved']} "
              f"validation images, {e['n_test_moved']} test images)\n")
        rows = []
        agg = e["aggregate"]
        for run in e["runs"] + [None]:
            src = run or agg
            row = {"seed": run["seed"] if run else "mean"}
            row |= {f"accuracy {m}": src["accuracy"][m] for m in MODELS}
            row |= {f"pair confusions {m}": float(src["pair_confusions"][m]) for m in MODELS}
            row |= {f"distance {m}": src["target_distance"][m] for m in MODELS}
            rows.append(row)
        print_table(rows)
        print()
        print_table([pick_row(f"seed {run['seed']}", run, tol) for run in e["runs"]])
        print()
        print_table(e["goals"])
        print()
        pc = agg["per_class"]
        print_table([{"class": c["class"], "support": c["support"],
                      **{f"{f[0].upper()} {m}": pc[m][i][f] for m in MODELS for f in ("precision", "recall", "f1")}}
                     for i, c in enumerate(pc["before"])])
        print()
        print_table([{"λ": sw["lam"], "distance to target": sw["target_distance"], "accuracy": sw["accuracy"],
                      "pair confusions": sw["pair_confusions"],
                      "test images' distance": "–" if sw["test_distance"] is None else sw["test_distance"]}
                     for sw in e["sweep"]])
        if e["grid"]:
            print()
            print_table(grid_rows(e, r["tolerances"]))
    pli = [x["pli_s_per_epoch"] for e in r["edits"] for x in e["runs"] if x["pli_s_per_epoch"]]
    ctl = [x["control_s_per_epoch"] for e in r["edits"] for x in e["runs"] if x["control_s_per_epoch"]]
    timing = (f"seconds per epoch ({r['n_train']} points), means over the runs computed here: PLI {np.mean(pli):.2f}, "
              f"control {np.mean(ctl):.2f}, ratio {np.mean(pli) / np.mean(ctl):.3f}" if pli and ctl
              else "every run loaded from the store")
    repro = {None: "not rerun", True: "identical metrics", False: "METRICS DIFFER"}[r["reproducible"]]
    print(f"\n{timing}; same spec and seed again in a fresh store: {repro}; {r['seconds']:.0f} s for this data set")


def pick_row(label: str, run: dict, tol: str) -> dict:
    p, acc, d, td = run["path"][tol], run["accuracy"], run["target_distance"], run["test_distance"]
    return {"run": label, "PLI step": p["pli_step"], "kept start": "yes" if p["kept_start"] else "no",
            "control step": p["control_step"], "test acc after": acc["after"], "test acc control": acc["control"],
            "gap (pp)": round(100 * (acc["after"] - acc["control"]), 2),
            "train dist ÷ control": d["after"] / d["control"],
            "test dist ÷ control": "–" if td["after"] is None else td["after"] / td["control"],
            "val dist ÷ control": "–" if p["dist_ratio"] is None else p["dist_ratio"],
            "val acc PLI": p["pli_acc"], "val acc control": p["control_acc"], "reference": p["reference"],
            "followable, start kept": "MISSED" if p["missed"] else "–",
            "whole val: PLI − start (pp)": round(100 * (run["val_full"]["after"] - run["val_full"]["before"]), 2)
            if run.get("val_full") else "–"}


def grid_rows(e: dict, tolerances: list[float]) -> list[dict]:
    """The grid at the first seed (validation figures), one row per setting and tolerance."""
    rows = []
    for g in e["grid"]:
        for t in tolerances:
            p = g["path"][f"{t:g}"]
            rows.append({"setting": g["label"], "tolerance (pp)": 100 * t, "PLI step": p["pli_step"],
                         "val dist ÷ control": "–" if p["dist_ratio"] is None else p["dist_ratio"],
                         "val acc PLI": p["pli_acc"], "val acc control": p["control_acc"],
                         "val acc gap (pp)": round(100 * (p["pli_acc"] - p["control_acc"]), 2),
                         "reference": p["reference"], "within": p["within"],
                         "multiplier": g["selection"]["after"]["multiplier"] or "–"})
    return rows


def grid_summary(results: list[dict]) -> list[dict]:
    """Across data sets and edits: per setting and tolerance, the mean (and worst) validation distance ratio and
    validation accuracy gap of the picks; validation only."""
    cells: dict = {}
    for r in results:
        for e in r["edits"]:
            for g in e["grid"]:
                for t in r["tolerances"]:
                    p = g["path"][f"{t:g}"]
                    c = cells.setdefault((g["label"], t), {"ratio": [], "gap": [], "kept": 0, "n": 0})
                    if p["dist_ratio"] is not None:
                        c["ratio"].append(p["dist_ratio"])
                    c["gap"].append(100 * (p["pli_acc"] - p["control_acc"]))
                    c["kept"] += p["kept_start"]
                    c["n"] += 1
    return [{"setting": k[0], "tolerance (pp)": 100 * k[1], "cases": c["n"],
             "val dist ÷ control: mean": float(np.mean(c["ratio"])) if c["ratio"] else "–",
             "worst": float(np.max(c["ratio"])) if c["ratio"] else "–",
             "val acc gap (pp): mean": round(float(np.mean(c["gap"])), 2), "worst ": round(float(np.min(c["gap"])), 2),
             "kept start": c["kept"]} for k, c in cells.items()]


def table_rows(results: list[dict]) -> list[dict]:
    """The default-run table: per data set and edit, over seeds."""
    rows = []
    for r in results:
        for e in r["edits"]:
            agg = e["aggregate"]
            verdicts = [x["result"] for x in e["goals"] if x["result"] != "n/a"]
            rows.append({"data": r["data"], "edit": e["edit"], "seeds": agg["n"],
                         "test dist ÷ control": fmt_range(agg["test_ratio"]),
                         "train dist ÷ control": fmt_range(agg["train_ratio"]),
                         "test acc gap (pp)": fmt_range(agg["acc_gap_pp"], "{:+.2f}"),
                         "val dist ÷ control": fmt_range(agg["val_ratio"]),
                         "kept start / followable": f"{agg['kept_start']} / {agg['missed']}",
                         "verdicts": " ".join(x["result"] for x in e["goals"]),
                         "all": "PASS" if all(v == "PASS" for v in verdicts) else "MISS"})
    return rows


def grid_pivot(results: list[dict]) -> list[dict]:
    """The grid, one row per setting and tolerance, one column per data set and edit: validation distance ratio
    (PLI pick ÷ control pick) / validation accuracy gap (pp) of the picks, the PLI pick's step."""
    cases = [(r["data"], e["edit"]) for r in results for e in r["edits"] if e["grid"]]
    rows: dict = {}
    for r in results:
        for e in r["edits"]:
            for g in e["grid"]:
                for t in r["tolerances"]:
                    p = g["path"][f"{t:g}"]
                    row = rows.setdefault((g["label"], t), {"setting": g["label"], "tolerance (pp)": 100 * t,
                                                            **{f"{d} {x}": "–" for d, x in cases}})
                    ratio_ = "–" if p["dist_ratio"] is None else f"{p['dist_ratio']:.3f}"
                    row[f"{r['data']} {e['edit']}"] = (f"{ratio_} / {100 * (p['pli_acc'] - p['control_acc']):+.1f}"
                                                       f" (step {p['pli_step']})")
    return sorted(rows.values(), key=lambda x: (x["setting"], x["tolerance (pp)"]))


def figure(results: list[dict]):
    """The λ trade-off (calibrated λ): distance to target ÷ before, accuracy − control (pp), pair confusions ÷
    control, per data set and edit (first seed; λ = 0 is the control)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08, subplot_titles=(
        "moved training points' distance to target (÷ before)", "test accuracy − control (pp)",
        "targeted-pair test confusions (÷ control)"))
    for k, r in enumerate(results):
        for j, e in enumerate(r.get("edits", [])):
            first, lams = e["runs"][0], [s["lam"] for s in e["sweep"]]
            label = f"{r['data']} ({r['pair_names'][0]}–{r['pair_names'][1]}), {e['edit']} edit"
            ys = ([s["target_distance"] / first["target_distance"]["before"] for s in e["sweep"]],
                  [100 * (s["accuracy"] - first["accuracy"]["control"]) for s in e["sweep"]],
                  [s["pair_confusions"] / max(first["pair_confusions"]["control"], 1) for s in e["sweep"]])
            for col, y in enumerate(ys, start=1):
                fig.add_trace(go.Scatter(x=lams, y=y, mode="lines+markers", name=label, legendgroup=label,
                                         showlegend=col == 1,
                                         line={"color": ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")[k % 4],
                                               "dash": ("solid", "dot")[j % 2]}), row=1, col=col)
    for col in (1, 2, 3):
        fig.update_xaxes(title_text="λ (calibrated: the embedding term's gradient share)", row=1, col=col)
    fig.update_annotations(font_size=13)
    fig.update_layout(template="plotly_white", width=1100, height=460, margin={"t": 80, "b": 50, "l": 50, "r": 20},
                      legend={"orientation": "h", "y": -0.25}, font={"size": 12},
                      title={"text": "PLI λ trade-off (first seed, the follow pick; λ = 0 is the CE-only control)",
                             "x": 0.5, "y": 0.96})
    return fig


def sanity(r: dict, n_seeds: int, n_lams: int, tol: str) -> list[str]:
    """Checks that must hold in any run, quick or full (not the goals)."""
    problems = []
    for e in r["edits"]:
        where = f"{r['data']} {e['edit']}"
        for run in e["runs"] + [g for g in e["grid"]]:
            label = f"{where} {run.get('label', 'seed ' + str(run.get('seed')))}"
            for m in MODELS:
                if not 0.0 <= run["accuracy"][m] <= 1.0:
                    problems.append(f"{label}: accuracy {m} = {run['accuracy'][m]}")
                if sum(map(sum, run["confusion"][m])) != r["n_test"]:
                    problems.append(f"{label}: confusion {m} does not sum to {r['n_test']}")
                if not np.isfinite(run["target_distance"][m]) or run["target_distance"][m] < 0:
                    problems.append(f"{label}: distance {m} = {run['target_distance'][m]}")
                if len(run["per_class"][m]) != len(r["classes"]):
                    problems.append(f"{label}: per-class table of {m} has {len(run['per_class'][m])} rows")
            p, rule = run["path"][tol], run["selection"]["after"]["rule"]
            if rule != "last" and p["control_acc"] < p["start_acc"]:
                problems.append(f"{label}: the control kept a checkpoint below its start on validation")
            if rule == "follow" and p["within"] and p["pli_acc"] < p["reference"] - p["tolerance"] - 1e-9:
                problems.append(f"{label}: follow picked a checkpoint outside its tolerance")
        if len(e["runs"]) != n_seeds or len(e["sweep"]) != n_lams:
            problems.append(f"{where}: {len(e['runs'])} seeds, {len(e['sweep'])} λ values")
        if e["runs"][0]["target_distance"]["before"] <= 0:
            problems.append(f"{where}: the edit moves nothing")
    if r["reproducible"] is False:
        problems.append(f"{r['data']}: the same spec and seed gave different metrics")
    return problems


def main() -> None:
    a = parse_args()
    if a.plot_only:
        results = json.loads(a.plot_only.read_text())["datasets"]
        print("\n".join(str(p) for p in save_figure(figure(results), "pli_lambda")))
        return
    if a.combine:
        results = [r for f in a.combine for r in json.loads(f.read_text())["datasets"]]
        print(f"combined {', '.join(str(f) for f in a.combine)}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
        print_table(table_rows(results))
        pivot = grid_pivot(results)
        if pivot:
            print("\nvalidation distance ÷ control / accuracy gap (pp) at the picks (step of the PLI pick)\n")
            print_table(pivot)
        out = write_json(f"pli_{a.name or 'combined'}.json", {
            "date": time.strftime("%Y-%m-%d"), "sources": [str(f) for f in a.combine], "datasets": results,
            "table": table_rows(results), "grid": pivot})
        print(f"\nwrote {out.relative_to(OUT.parent.parent)}")
        return
    torch.set_num_threads(a.threads)
    model_epochs = {k: int(v) for k, v in (kv.split("=") for kv in a.model_epochs.split(","))}
    started = time.perf_counter()
    tol = f"{a.tolerance:g}"
    limits = f" (at most {a.max_seeds})" if a.max_seeds else ""
    header = (f"{machine()}; data {a.data}; edits {a.edits}; seeds {a.seeds}{limits}; λ {a.lam} {a.weighting}; select "
              f"{a.select} (tolerance {100 * a.tolerance:g} pp); optimizer {a.optimizer} lr {a.lr}; embed on {a.embed_on}; moved per batch {a.moved_per_batch}; grid λ {a.lams}, "
              f"paper λ {a.paper_lams or '–'}, sgd λ {a.sgd_lams or '–'} (lr {a.sgd_lr}), tolerances {a.tolerances}; "
              f"train points {a.train_points}; val points {a.val_points} (where no val split); epochs {a.epochs}; "
              f"steps {a.steps}; batch {a.batch_size}; class edit: apart and outward {a.distance} × scale, contract "
              f"{a.contract}; instance edit: contract {a.home_contract}; classifier epochs {a.model_epochs}; layer "
              f"{a.layer or 'default'}; device {a.device}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; "
              f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
              f"{'; QUICK' if a.quick else ''}")
    print(header, flush=True)
    results = []
    with (fresh_store() if a.quick else nullcontext(RunStore(a.store))) as store:
        for name in a.data.split(","):
            results.append(bench_dataset(name, a, model_epochs, store))
            report(results[-1], tol)
    problems = [p for r in results for p in sanity(r, len(data_seeds(a, r["data"])), len(floats(a.lams)), tol)]
    print("\n## Across data sets\n")
    print_table(table_rows(results))
    print()
    summary = grid_summary(results)
    if summary:
        print_table(summary)
        print("\nvalidation distance ÷ control / accuracy gap (pp) at the picks (step of the PLI pick)\n")
        print_table(grid_pivot(results))
    name = a.name or ("quick" if a.quick else "full")
    out = write_json(f"pli_{name}.json", {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "header": header,
        "args": {k: str(v) for k, v in vars(a).items()}, "datasets": results, "table": table_rows(results),
        "grid_summary": summary, "problems": problems, "total_seconds": time.perf_counter() - started})
    figs = (save_figure(figure(results), "pli_lambda") if name == "full"
            else save_figure(figure(results), f"pli_lambda_{name}", folder=OUT, png=False))
    print(f"\n{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; total {time.perf_counter() - started:.0f} s; "
          f"wrote {out.relative_to(OUT.parent.parent)}, " + ", ".join(str(p.relative_to(OUT.parent.parent)) for p in figs))
    if problems:
        sys.exit("SANITY FAILURES:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    main()
