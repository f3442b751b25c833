"""Issue 19 part 4, the paper's regime on public data: a rare class lost in a confused pair, a briefly trained
classifier, and PLI against its CE control and a practitioner's first try, CE with inverse-frequency class weights.

Set-up: ``../shared/data/fashionmnist.npz`` (no val split of its own): 5,000 training images (stratified, seed 0)
become a balanced validation split, as in bench_pli_fashion.py; of the rest, one class (the *minority*) keeps
``--keep`` (10 %) of its training images (drawn with seed 0), the other nine all of theirs. The plint CNN is trained
on that imbalanced split for ``--epochs`` (1) with plint's own training code (``plint_core.models.training``, as
``plint_core train``; cached in bench/out/). Fine-tuning and the map use 20,000 of its training images: every
minority image and a stratified sample of the others (seed 0); the map is the default ``TSNEConfig``'s parametric
t-SNE of the logits (``pipeline.prepare_embedding``). The test split (10,000, balanced) is never used for a choice.

1. **Minority, validation split only.** For each candidate (minority, partner) of the two confused pairs
   (Coat/Pullover, Pullover/Coat, Shirt/T-shirt, T-shirt/Shirt) a CNN is trained on that candidate's imbalanced
   split; the candidate kept is the one whose minority has the lowest validation recall among those whose
   validation images of the minority go most often to the partner (the pair is truly confused); if none, the
   lowest recall overall.
2. **Edit, validation split only** (seed 0). Class-level: the minority contracted ``--contract`` (0.5) towards its
   centroid and moved away from the partner, halfway towards the map's edge
   (``intervention.move_class_away``, outward), by each of ``--distances`` × the map's scale with the default λ;
   then each of ``--lams`` (0.2) at the best distance, and the embedding term on the moved points only
   (``--embed-on moved``: the others left to cross-entropy, not pinned where the weak start put them). A candidate's score is its PLI checkpoint's minority recall on
   all 5,000 validation images; the one kept has the highest among those whose validation accuracy is at least
   the control's − 0.5 pp (if none: the highest validation accuracy). Every run: the engine's ``FinetuneConfig``
   defaults (1,000 steps, Adam 1e-3, batch 32, calibrated weighting, the ``follow`` pick within 0.5 pp on 1,000
   validation images) but for the λ chosen; ``--optimizer sgd --lr 0.01`` gives the paper's optimiser.
3. **Seeds** ``--seeds`` (0..4): PLI with the chosen edit and its control (``pipeline.run_intervention``) and the
   class-weighted baseline (``pipeline.run_baseline``, ``Baseline("classweight")``: weights ∝ 1 / count in the
   fine-tuning rows, mean 1), all with the same seed, steps and validation images.

Reported on the test split: the minority's recall (and the partner's), accuracy, minority → partner confusions;
differences PLI − control and PLI − class-weighted with 95 % intervals from the engine's joint bootstrap over test
images and seeds (``plint_core.bootstrap.SeedBootstrap``, ``--boot`` draws, seed ``--boot-seed``); the moved points'
distance to their targets in the frozen map, PLI ÷ control (its interval resamples seeds only). Goals (PASS/MISS):
minority recall PLI ≥ control + 5 pp with the difference's interval above 0; minority recall PLI ≥ class-weighted
with the difference's interval above 0; accuracy PLI ≥ control − 0.5 pp.

Resumable (runs kept in bench/out/runs, keyed by all that decides them). Writes bench/results/pli_regime[_NAME].json
and .log (``--quick``: bench/out/pli_regime_quick.json and .log).

Usage::

    OMP_NUM_THREADS=1 python bench/bench_pli_regime.py     # full (4 CNNs, a map, ~21 runs of 1,000 steps)
    python bench/bench_pli_regime.py --quick               # digits, tiny runs, fresh store: a smoke run (< 60 s)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import numpy as np
from common import (OUT, QUICK_TSNE, REPO, cached_model, data_source, floats, fresh_store, machine, print_table,
                    with_val_split)

import torch

from plint_core.baselines import Baseline
from plint_core.bootstrap import SeedBootstrap, accuracy, class_recall
from plint_core.data.dataset import Dataset
from plint_core.data.loading import load_data
from plint_core.embedding.parametric_tsne import TSNEConfig
from plint_core.finetune import FinetuneConfig
from plint_core.intervention import InterventionSpec, move_class_away
from plint_core.latents import predict
from plint_core.metrics import evaluate
from plint_core.models.sources import load_model
from plint_core.models.spec import ModelBundle
from plint_core.models.training import TrainConfig, train_classifier
from plint_core.pipeline import prepare_embedding, run_baseline, run_intervention
from plint_core.store import RunStore

RESULTS = REPO / "bench" / "results"
METHODS = ("pli", "control", "classweight")
LABEL = {"before": "before (no fine-tuning)", "pli": "PLI", "control": "control (CE)",
         "classweight": "class-weighted (1/frequency)"}
ACCURACY_SLACK_PP = 0.5
RECALL_GAIN_PP = 5.0
CANDIDATES = {"full": ((4, 2), (2, 4), (6, 0), (0, 6)), "quick": ((8, 3), (3, 8))}
QUICK = {"seeds": "0,1", "distances": "0.5,1", "lams": "", "embed_on": "", "boot": 200, "epochs": 10}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3,4", help="fine-tuning seeds of the comparison")
    ap.add_argument("--keep", type=float, default=0.1, help="share of the minority's training images kept")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of the CNN's training on the imbalanced split")
    ap.add_argument("--minority", default=None, metavar="K,P",
                    help="the minority class and its partner (default: chosen on the validation split)")
    ap.add_argument("--distances", default="0.5,1,2", help="edit distances tried (× the map's scale), default λ")
    ap.add_argument("--lams", default="0.2", help="other λ tried at the best distance")
    ap.add_argument("--embed-on", default="moved", dest="embed_on",
                    help="other FinetuneConfig.embed_on tried at the best distance with the default λ ('' for none)")
    ap.add_argument("--contract", type=float, default=0.5, help="the minority's contraction in the edit")
    ap.add_argument("--optimizer", default=FinetuneConfig.optimizer, choices=("adam", "sgd"))
    ap.add_argument("--class-weight", default=FinetuneConfig.class_weight, choices=("none", "inverse"),
                    dest="class_weight", help="FinetuneConfig.class_weight of the PLI pair (inverse: PLI and its "
                                              "control both class-weighted, the control then the baseline's loss)")
    ap.add_argument("--moved-per-batch", type=int, default=FinetuneConfig.moved_per_batch,
                    help="moved rows every PLI step carries for the embedding term (FinetuneConfig.moved_per_batch)")
    ap.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    ap.add_argument("--steps", type=int, default=FinetuneConfig.steps)
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap replicates")
    ap.add_argument("--boot-seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="write bench/results/pli_regime_NAME.json/.log")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--quick", action="store_true", help="digits, tiny runs: a smoke run")
    a = ap.parse_args()
    if a.quick:
        for k, v in QUICK.items():
            setattr(a, k, v)
    return a


class Tee:
    """Print to the terminal and to a log file at once."""

    def __init__(self, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file, self.stdout = open(path, "w", encoding="utf-8"), sys.stdout

    def write(self, text: str) -> None:
        self.stdout.write(text)
        self.file.write(text)

    def flush(self) -> None:
        self.stdout.flush()
        self.file.flush()


def imbalanced(data: Dataset, minority: int, keep: float, seed: int = 0) -> Dataset:
    """``data`` with its training split's ``minority`` class cut to ``keep`` of its images (drawn with ``seed``;
    ids keep the engine's row numbers), every other class whole."""
    labels = np.asarray(data.train.labels)
    mine = np.flatnonzero(labels == minority)
    kept = np.random.default_rng(seed).choice(mine, size=max(1, int(round(keep * len(mine)))), replace=False)
    rows = np.sort(np.concatenate([np.flatnonzero(labels != minority), kept]))
    return replace(data, train=data.train.subset(rows))


def fine_tuning_rows(data: Dataset, minority: int, n: int, seed: int = 0) -> Dataset:
    """``data`` with its training split cut to ``n`` rows: every ``minority`` image and a stratified sample of the
    others (seed ``seed``)."""
    labels = np.asarray(data.train.labels)
    if n >= len(labels):
        return data
    from sklearn.model_selection import train_test_split

    mine, others = np.flatnonzero(labels == minority), np.flatnonzero(labels != minority)
    picked, _ = train_test_split(others, train_size=n - len(mine), random_state=seed, stratify=labels[others])
    return replace(data, train=data.train.subset(np.sort(np.concatenate([mine, picked]))))


def val_figures(data: Dataset, module, spec, minority: int, partner: int) -> dict:
    """Validation (all of it) accuracy, the minority's recall, where its images go."""
    e = evaluate(data.val.labels, predict(ModelBundle(module, spec, ""), data.val.images), data.n_classes)
    row = np.asarray(e.confusion)[minority]
    others = [(int(row[j]), j) for j in range(len(row)) if j != minority]
    return {"accuracy": float(e.accuracy), "recall": float(row[minority] / max(row.sum(), 1)),
            "to_partner": int(row[partner]), "top_confuser": int(max(others)[1])}


def classifier(a: argparse.Namespace, data: Dataset, minority: int):
    if a.quick:
        return train_classifier(data, TrainConfig(epochs=a.epochs, seed=0, device=a.device))
    return cached_model("fashion", a.epochs, data=data, tag=f"-val5000-c{minority}keep{a.keep:g}")


class Setup:
    def __init__(self, a: argparse.Namespace, store: RunStore):
        self.quick, self.store, self.a = a.quick, store, a
        if a.quick:
            self.base = with_val_split(load_data("digits"), 300, seed=0)
            self.config = FinetuneConfig(steps=40, evaluations=2, lr=3e-3, device=a.device)
            self.tsne, n_ft = QUICK_TSNE, 10 ** 9
        else:
            self.base = with_val_split(load_data(data_source("fashion")), 5000, seed=0)
            self.config = FinetuneConfig(device=a.device, optimizer=a.optimizer, lr=a.lr, steps=a.steps,
                                         class_weight=a.class_weight, moved_per_batch=a.moved_per_batch)
            if a.class_weight == "inverse":
                LABEL.update(pli="PLI + class weights", control="control (class-weighted CE, the pair's)")
            self.tsne, n_ft = TSNEConfig(), 20000
        self.names = list(self.base.class_names)
        self.candidates = []
        if a.minority:
            pairs = [tuple(int(x) for x in a.minority.split(","))]
        else:
            pairs = CANDIDATES["quick" if a.quick else "full"]
        for minority, partner in pairs:
            t = time.perf_counter()
            data = imbalanced(self.base, minority, a.keep, seed=0)
            bundle = classifier(a, data, minority)
            v = val_figures(data, bundle.module, bundle.spec, minority, partner)
            self.candidates.append({"minority": minority, "partner": partner, "data": data, "bundle": bundle,
                                    "n_minority": int((data.train.labels == minority).sum()), "val": v,
                                    "seconds": time.perf_counter() - t})
            print(f"candidate {self.names[minority]} (partner {self.names[partner]}): val recall {v['recall']:.3f}, "
                  f"to partner {v['to_partner']}, top confuser {self.names[v['top_confuser']]}, "
                  f"accuracy {v['accuracy']:.4f} ({time.perf_counter() - t:.0f} s)", flush=True)
        confused = [i for i, c in enumerate(self.candidates) if c["val"]["top_confuser"] == c["partner"]]
        self.chosen = min(confused or range(len(self.candidates)), key=lambda i: self.candidates[i]["val"]["recall"])
        c = self.candidates[self.chosen]
        self.minority, self.partner, self.data, self.bundle = c["minority"], c["partner"], c["data"], c["bundle"]
        self.ft = fine_tuning_rows(self.data, self.minority, n_ft, seed=0)
        t = time.perf_counter()
        self.emb = prepare_embedding(self.ft, self.bundle, store=store, device=a.device, config=self.tsne)
        self.embed_seconds = time.perf_counter() - t
        self.test_labels = np.asarray(self.data.test.labels)

    def cfg(self, seed: int, lam: float | None = None, embed_on: str | None = None) -> FinetuneConfig:
        return replace(self.config, seed=seed, lam=self.config.lam if lam is None else lam,
                       embed_on=embed_on or self.config.embed_on)

    def val(self, module) -> dict:
        return val_figures(self.data, module, self.bundle.spec, self.minority, self.partner)


def pli(s: Setup, spec: InterventionSpec, seed: int, lam: float, val: bool = False, embed_on: str | None = None
        ) -> dict:
    r = run_intervention(s.ft, s.bundle, s.emb, spec, s.cfg(seed, lam, embed_on), store=s.store)
    res, table = r.result, r.test_embedding
    out = {"run_id": r.run_id, "cache_hit": r.cache_hit, "seconds": res.get("compute_seconds", res["seconds"]),
           "n_moved": res["n_moved"],
           "pred": {"pli": table["pred_after"].to_numpy(), "control": table["pred_control"].to_numpy(),
                    "before": table["pred_before"].to_numpy()},
           "distance": {"pli": res["target_distance"]["after"], "control": res["target_distance"]["control"],
                        "before": res["target_distance"]["before"]},
           "kept": {"pli": res["selection"]["pli"]["step"], "control": res["selection"]["control"]["step"]},
           "within": (res["selection"]["pli"].get("pick") or {}).get("within"),
           "embed_on_used": res["selection"]["pli"].get("embed_on")}
    if val:
        out["val"] = {name: s.val(load_model(r.directory / f"{w}.safetensors").module)
                      for name, w in (("pli", "finetuned"), ("control", "control"))}
    return out


def classweight(s: Setup, spec: InterventionSpec, seed: int, val: bool = False) -> dict:
    res, pred, hit = run_baseline(s.ft, s.bundle, s.emb, spec, s.cfg(seed), Baseline("classweight"), store=s.store)
    out = {"run_id": res["run_id"], "cache_hit": hit, "seconds": res["seconds"], "pred": pred,
           "distance": res["target_distance"]["baseline"], "kept": res["selection"]["classweight"]["step"],
           "class_weight": res["class_weight"]}
    if val:
        out["val"] = s.val(load_model(s.store.baseline_dir(res["run_id"]) / "baseline.safetensors").module)
    return out


def took(r: dict) -> str:
    return "cached" if r["cache_hit"] else f"{r['seconds']:.0f} s"


def choose(rows: list[dict], control_val: dict) -> int:
    """The row with the highest validation minority recall among those within the accuracy slack of the control's
    validation accuracy (ties: higher accuracy, then the first); if none, the highest validation accuracy."""
    floor = control_val["accuracy"] - ACCURACY_SLACK_PP / 100
    ok = [i for i, r in enumerate(rows) if r["accuracy"] >= floor - 1e-12]
    if not ok:
        return max(range(len(rows)), key=lambda i: (rows[i]["accuracy"], -i))
    return max(ok, key=lambda i: (rows[i]["recall"], rows[i]["accuracy"], -i))


def iv(i, scale: float = 1.0) -> dict:
    return {"mean": scale * i.estimate, "ci95": [scale * i.low, scale * i.high]}


def cell(stat: dict, fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(stat['mean'])} [{fmt.format(stat['ci95'][0])}, {fmt.format(stat['ci95'][1])}]"


def statistics(labels, preds: dict, dist: dict, minority: int, partner: int, k: int, boot: int, seed: int) -> dict:
    bs = SeedBootstrap(labels, preds, k, n_resamples=boot, random_state=seed)
    to_partner = lambda c: c[..., minority, partner]  # noqa: E731
    out: dict = {}
    for m in preds:
        out[m] = {"recall": iv(bs.interval(class_recall(minority), m), 100.0),
                  "partner_recall": iv(bs.interval(class_recall(partner), m), 100.0),
                  "accuracy": iv(bs.interval(accuracy, m), 100.0),
                  "to_partner": iv(bs.interval(to_partner, m))}
    n = len(dist["pli"])
    picks = np.random.default_rng(seed).integers(0, n, size=(boot, n))
    for m, d in dist.items():
        out[m]["distance"] = {"mean": float(d.mean()), "ci95": np.percentile(d[picks].mean(1), [2.5, 97.5]).tolist()}
    for m in ("control", "classweight"):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = dist["pli"][picks].mean(1) / dist[m][picks].mean(1)
        finite = ratios[np.isfinite(ratios)]
        out[f"pli-{m}"] = {
            "recall_pp": iv(bs.difference(class_recall(minority), "pli", m), 100.0),
            "partner_recall_pp": iv(bs.difference(class_recall(partner), "pli", m), 100.0),
            "accuracy_pp": iv(bs.difference(accuracy, "pli", m), 100.0),
            "distance_ratio": {"mean": float(dist["pli"].mean() / dist[m].mean()) if dist[m].mean() > 0 else np.nan,
                               "ci95": np.percentile(finite, [2.5, 97.5]).tolist() if len(finite) else [np.nan] * 2}}
    return out


def goals(stats: dict) -> list[dict]:
    c, w = stats["pli-control"], stats["pli-classweight"]
    return [
        {"goal": f"minority recall: PLI ≥ control + {RECALL_GAIN_PP:g} pp, interval above 0",
         "value [95% interval]": cell(c["recall_pp"], "{:+.2f}") + " pp",
         "result": "PASS" if c["recall_pp"]["mean"] >= RECALL_GAIN_PP and c["recall_pp"]["ci95"][0] > 0 else "MISS"},
        {"goal": "minority recall: PLI ≥ class-weighted, interval above 0",
         "value [95% interval]": cell(w["recall_pp"], "{:+.2f}") + " pp",
         "result": "PASS" if w["recall_pp"]["mean"] >= 0 and w["recall_pp"]["ci95"][0] > 0 else "MISS"},
        {"goal": f"accuracy: PLI ≥ control − {ACCURACY_SLACK_PP:g} pp",
         "value [95% interval]": cell(c["accuracy_pp"], "{:+.2f}") + " pp",
         "result": "PASS" if c["accuracy_pp"]["mean"] >= -ACCURACY_SLACK_PP else "MISS"},
    ]


def main() -> None:
    a = parse_args()
    torch.set_num_threads(a.threads)
    stem = "pli_regime_" + (a.name or ("quick" if a.quick else "")) if (a.name or a.quick) else "pli_regime"
    folder = OUT if a.quick else RESULTS
    sys.stdout = Tee(folder / f"{stem}.log")
    started, began = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = os.getloadavg()
    header = (f"{machine()}; seeds {a.seeds}; keep {a.keep:g}; CNN epochs {a.epochs}; distances {a.distances}; "
              f"λ tried {a.lams or '-'}; embed_on tried {a.embed_on or '-'}; contract {a.contract:g}; optimizer {a.optimizer} lr {a.lr:g}; class weight {a.class_weight}; moved per batch {a.moved_per_batch}; "
              f"bootstrap {a.boot} (seed {a.boot_seed}); device {a.device}; load {load_start[0]:.2f}"
              f"{'; QUICK' if a.quick else ''}")
    print(header, flush=True)
    if a.quick:
        with fresh_store() as store:
            run(a, Setup(a, store), header, began, started, folder, stem, load_start)
    else:
        run(a, Setup(a, RunStore(OUT / "runs")), header, began, started, folder, stem, load_start)


def run(a, s: Setup, header: str, began: str, started: float, folder, stem: str, load_start) -> None:
    names, k, p = s.names, s.minority, s.partner
    print("\n### Minority candidates (validation split, all of it)\n")
    print_table([{"candidate": f"{names[c['minority']]} (partner {names[c['partner']]})",
                  "minority training images": c["n_minority"], "val recall": round(c["val"]["recall"], 4),
                  "val to partner": c["val"]["to_partner"], "top confuser": names[c["val"]["top_confuser"]],
                  "val accuracy": round(c["val"]["accuracy"], 4), "chosen": "◀" if i == s.chosen else ""}
                 for i, c in enumerate(s.candidates)])
    print(f"\nminority {k} {names[k]} ({int((s.ft.train.labels == k).sum())} of {len(s.ft.train)} fine-tuning "
          f"images), partner {p} {names[p]}; val {len(s.data.val)}, test {len(s.data.test)}; layer {s.emb.layer}, "
          f"scale {s.emb.scale:.2f}, embedding {s.embed_seconds:.0f} s; fine-tuning {s.config.describe()}", flush=True)

    # 2. edit and λ on the validation split, seed 0
    seeds = [int(x) for x in a.seeds.split(",")]
    xy, labels, scale = s.emb.train_xy, s.ft.train.labels, s.emb.scale

    def edit(d: float) -> InterventionSpec:
        return move_class_away(xy, labels, k, p, distance=d * scale, contract=a.contract, outward=True)

    search = []

    def attempt(d: float, lam: float, embed_on: str | None = None) -> None:
        embed_on = embed_on or s.config.embed_on  # the engine's default unless a --embed-on candidate
        r = pli(s, edit(d), seeds[0], lam, val=True, embed_on=embed_on)
        search.append({**r, "edit_scales": d, "lam": lam, "embed_on": embed_on, "spec": edit(d).to_dict()})
        print(f"edit {d:g} × scale, λ {lam:g}, embed_on {embed_on} ({r['embed_on_used']}): val recall PLI {r['val']['pli']['recall']:.4f} (control "
              f"{r['val']['control']['recall']:.4f}), accuracy {r['val']['pli']['accuracy']:.4f} (control "
              f"{r['val']['control']['accuracy']:.4f}), {took(r)}", flush=True)

    for d in floats(a.distances):
        attempt(d, s.config.lam)
    control_val = search[0]["val"]["control"]
    best_d = search[choose([r["val"]["pli"] for r in search], control_val)]["edit_scales"]
    for lam in floats(a.lams):
        if lam != s.config.lam:
            attempt(best_d, lam)
    for embed_on in [e.strip() for e in a.embed_on.split(",") if e.strip()]:
        if embed_on != s.config.embed_on:
            attempt(best_d, s.config.lam, embed_on)
    best = choose([r["val"]["pli"] for r in search], control_val)
    spec, lam = InterventionSpec.from_dict(search[best]["spec"]), search[best]["lam"]
    embed_on = search[best]["embed_on"]
    cw_val = classweight(s, spec, seeds[0], val=True)
    print(f"class-weighted: val recall {cw_val['val']['recall']:.4f}, accuracy {cw_val['val']['accuracy']:.4f}, "
          f"{took(cw_val)}; weights {[round(w, 3) for w in cw_val['class_weight']]}", flush=True)
    print("\n### Edit search (validation split, all of it, seed 0)\n")
    rows = [{"edit": f"{names[k]} contract {a.contract:g}, away from {names[p]} and outward "
                     f"{r['edit_scales']:g} × scale",
             "λ": r["lam"], "embed_on": r["embed_on"], "moved": r["n_moved"], "val recall PLI": round(r["val"]["pli"]["recall"], 4),
             "val accuracy PLI": round(r["val"]["pli"]["accuracy"], 4),
             "val recall control": round(r["val"]["control"]["recall"], 4),
             "val accuracy control": round(r["val"]["control"]["accuracy"], 4),
             "kept step PLI": r["kept"]["pli"], "within": r["within"], "chosen": "◀" if i == best else ""}
            for i, r in enumerate(search)]
    rows.append({"edit": "class-weighted (1/frequency)", "λ": "–", "embed_on": "–", "moved": "–",
                 "val recall PLI": round(cw_val["val"]["recall"], 4),
                 "val accuracy PLI": round(cw_val["val"]["accuracy"], 4), "val recall control": "",
                 "val accuracy control": "", "kept step PLI": cw_val["kept"], "within": "", "chosen": ""})
    print_table(rows)
    problems = [f"control of grid run {i} differs on validation from the first's" for i, r in enumerate(search)
                if abs(r["val"]["control"]["accuracy"] - control_val["accuracy"]) > 1e-12]

    # 3. seeds
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    before_pred, before_dist = None, None
    for seed in seeds:
        t = time.perf_counter()
        r = pli(s, spec, seed, lam, embed_on=embed_on)
        before_pred, before_dist = r["pred"]["before"], r["distance"]["before"]
        for m in ("pli", "control"):
            runs[m].append({"seed": seed, "pred": r["pred"][m], "distance": r["distance"][m], "kept": r["kept"][m],
                            "seconds": r["seconds"], "cache_hit": r["cache_hit"], "within": r["within"]})
        b = classweight(s, spec, seed)
        runs["classweight"].append({"seed": seed, "pred": b["pred"], "distance": b["distance"], "kept": b["kept"],
                                    "seconds": b["seconds"], "cache_hit": b["cache_hit"]})
        print(f"seed {seed}: PLI + control {took(r)}, class-weighted {took(b)} ({time.perf_counter() - t:.0f} s)",
              flush=True)

    n_classes = s.data.n_classes
    preds = {m: np.stack([r["pred"] for r in runs[m]]) for m in METHODS}
    preds["before"] = before_pred
    dist = {m: np.array([r["distance"] for r in runs[m]]) for m in METHODS}
    dist["before"] = np.full(len(seeds), before_dist)
    t = time.perf_counter()
    stats = statistics(s.test_labels, preds, dist, k, p, n_classes, a.boot, a.boot_seed)
    boot_seconds = time.perf_counter() - t
    for m in METHODS:
        for r in runs[m]:
            e = evaluate(s.test_labels, r["pred"], n_classes)
            conf = np.asarray(e.confusion)
            r.update(accuracy=float(e.accuracy), recall=float(conf[k, k] / conf[k].sum()),
                     partner_recall=float(conf[p, p] / conf[p].sum()), to_partner=int(conf[k, p]))
        if len(runs[m]) != len(seeds) or any(len(r["pred"]) != len(s.test_labels) for r in runs[m]):
            problems.append(f"{m}: runs or predictions missing")
        for name in ("recall", "accuracy"):  # both share their denominator across seeds: the means agree
            if abs(100 * np.mean([r[name] for r in runs[m]]) - stats[m][name]["mean"]) > 1e-9:
                problems.append(f"{m}: the bootstrap's {name} differs from scikit-learn's")
        if not all(np.isfinite(r["distance"]) and r["distance"] >= 0 for r in runs[m]):
            problems.append(f"{m}: a distance is not finite")

    print(f"\n### Test split, {len(seeds)} seeds: mean [95% bootstrap interval over test images and seeds]; "
          f"minority {names[k]}, partner {names[p]}\n")
    print_table([{"method": LABEL[m], f"{names[k]} recall %": cell(stats[m]["recall"]),
                  f"{names[p]} recall %": cell(stats[m]["partner_recall"]),
                  f"{names[k]}→{names[p]}": cell(stats[m]["to_partner"]),
                  "accuracy %": cell(stats[m]["accuracy"], "{:.2f}"),
                  "distance to targets": cell(stats[m]["distance"], "{:.2f}")} for m in ("before",) + METHODS])
    print("\n### Differences (test): PLI − control and PLI − class-weighted\n")
    print_table([{"PLI against": LABEL[m], f"{names[k]} recall pp": cell(stats[f"pli-{m}"]["recall_pp"], "{:+.2f}"),
                  f"{names[p]} recall pp": cell(stats[f"pli-{m}"]["partner_recall_pp"], "{:+.2f}"),
                  "accuracy pp": cell(stats[f"pli-{m}"]["accuracy_pp"], "{:+.2f}"),
                  "distance PLI ÷ it": cell(stats[f"pli-{m}"]["distance_ratio"], "{:.3f}")}
                 for m in ("control", "classweight")])
    print("\n### Per seed (test)\n")
    print_table([{"seed": seed, **{f"recall {m}": round(runs[m][i]["recall"], 4) for m in METHODS},
                  **{f"acc {m}": round(runs[m][i]["accuracy"], 4) for m in METHODS},
                  **{f"kept {m}": runs[m][i]["kept"] for m in METHODS},
                  "PLI within": runs["pli"][i]["within"]} for i, seed in enumerate(seeds)])
    print("\n### Goals\n")
    goal_rows = goals(stats)
    print_table(goal_rows)
    ended = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_end = os.getloadavg()
    out = folder / f"{stem}.json"
    import json

    out.write_text(json.dumps({
        "began": began, "ended": ended, "machine": machine(), "load_start": load_start, "load_end": load_end,
        "header": header, "args": {k_: str(v) for k_, v in vars(a).items()},
        "candidates": [{k_: v for k_, v in c.items() if k_ not in ("data", "bundle")} for c in s.candidates],
        "minority": k, "partner": p, "classes": names, "n_train": len(s.data.train), "n_finetune": len(s.ft.train),
        "n_val": len(s.data.val), "n_test": len(s.data.test),
        "embedding": {"key": s.emb.key, "layer": s.emb.layer, "scale": s.emb.scale, "quality": s.emb.quality,
                      "seconds": s.embed_seconds},
        "finetune": s.config.key_dict(), "chosen_lam": lam, "chosen_embed_on": embed_on, "chosen_edit_scales": search[best]["edit_scales"],
        "chosen_spec": spec.to_dict(),
        "search": [{k_: v for k_, v in r.items() if k_ != "pred"} for r in search],
        "classweight_val": {k_: v for k_, v in cw_val.items() if k_ != "pred"},
        "seeds": seeds, "runs": {m: [{k_: v for k_, v in r.items() if k_ != "pred"} for r in runs[m]]
                                 for m in METHODS},
        "statistics": stats, "goals": goal_rows, "problems": problems, "bootstrap_seconds": boot_seconds,
        "total_seconds": time.perf_counter() - started}, indent=2, default=float))
    print(f"\n{began} – {ended}; total {time.perf_counter() - started:.0f} s; load {load_start[0]:.2f} → "
          f"{load_end[0]:.2f}; wrote {out.relative_to(REPO)} and .log", flush=True)
    if problems:
        sys.exit("SANITY FAILURES:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    main()
