"""The PLI effect against its control on real data: MNIST and PneumoniaMNIST, several seeds, a λ sweep.

For each data set: the plint CNN (``plint_core train``, cached in bench/out/) is evaluated on the
validation split, its most-confused class pair is pushed apart in the embedding
(:func:`plint_core.intervention.separate_classes`, each class moved ``distance / 2`` × the
embedding's scale away from the other) and the model is fine-tuned with the PLI loss and, from
the same start with the same batches, with cross-entropy alone (the control). Reported on the
full test split, per fine-tuning seed and as means: accuracy, confusions of the targeted pair,
mean distance of the moved training points to their targets (embedding units), per-class
precision / recall / F1 (the standard F1, 2PR/(P+R)); then a λ sweep at the first seed, the
seconds per epoch of both runs, and whether the first seed repeated in a fresh store gives
identical metrics.

Choices (all options below, printed in the header line): MNIST (mnist70k.npz) has no validation
split, so ``--val-points`` of the engine's training split (stratified, seed 0) become one and the
classifier is trained on the rest; PneumoniaMNIST keeps MedMNIST's own. Fine-tuning uses
``--train-points`` training points drawn with seed 0 (all if fewer) with the engine's default
``FinetuneConfig`` (λ 0.1, its step budget, Adam lr 1e-3, batch 32, the best validation checkpoint),
and the embedding is fitted on the same points (default ``TSNEConfig``); the embedding and classifier
are the same for every seed, only the fine-tuning seed (batch order) changes. λ = 0 in the sweep is
the control: PLI with λ = 0 trains the same weights bit for bit (tests/test_finetune.py). Digits
(``--data digits``) gets a plint CNN of its own, trained on its training split less the validation
points (a fifth of it), since the demo CNN has seen them.

Every run's validation accuracy is printed before fine-tuning and for the weights it kept, on the
selection rule's validation images and on the whole validation split (issue 10: no default run may
end below its start; the run fails its sanity check if one ends below on the rule's images).

Usage::

    python bench/bench_pli.py                  # full: MNIST and PneumoniaMNIST (~20 min on 1 CPU thread)
    python bench/bench_pli.py --data digits,mnist,pneumonia,fashion   # all four data sets
    python bench/bench_pli.py --quick          # digits, tiny: structure and sanity, not the goals
    python bench/bench_pli.py --plot-only bench/out/pli_full.json   # redraw the figure

Writes bench/out/pli_{full,quick}.json; the full run also writes docs/figures/pli_lambda.{html,png}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import (OUT, QUICK_TSNE, EpochTimer, cached_model, data_source, fresh_store, machine, print_table,
                    save_figure, subset_train, with_val_split, write_json)

from plint_core.data.loading import load_data
from plint_core.embedding.parametric_tsne import TSNEConfig
from plint_core.finetune import FinetuneConfig
from plint_core.intervention import separate_classes
from plint_core.latents import predict
from plint_core.metrics import evaluate, most_confused_pair
from plint_core.models.sources import load_model
from plint_core.models.spec import ModelBundle
from plint_core.pipeline import prepare_embedding, run_intervention
from plint_core.store import RunStore

MODELS = ("before", "control", "after")
# The demo CNN was trained on all of digits' training split, so in --quick it has seen the validation
# points carved out of it: good enough for a smoke run, not for choosing a pair.
# For the same reason --quick keeps each run's last step: the demo scores 100 % on those points from the start, so
# the best-validation rule would keep the starting weights and the λ sweep would show nothing of the PLI term.
QUICK = {"data": "digits", "seeds": "0,1", "lams": "0,0.1,0.5", "train_points": 600, "val_points": 300, "epochs": 2,
         "select": "last"}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="mnist,pneumonia", help="comma-separated: mnist, pneumonia, fashion, digits")
    ap.add_argument("--seeds", default="0,1,2", help="fine-tuning seeds")
    ap.add_argument("--lam", type=float, default=0.1, help="λ of the PLI-vs-control comparison (the paper's)")
    ap.add_argument("--lams", default="0,0.05,0.1,0.3,0.5", help="λ sweep, at the first seed")
    ap.add_argument("--train-points", type=int, default=4_000, help="training points fine-tuned on and embedded")
    ap.add_argument("--val-points", type=int, default=5_000, help="validation points carved from train where none exists")
    ap.add_argument("--epochs", type=int, default=FinetuneConfig.epochs,
                    help="fine-tuning epochs instead of the engine's step budget (default: the engine's steps)")
    ap.add_argument("--select", default=FinetuneConfig.select, choices=("best-val", "last"),
                    help="weights each run keeps (default: the engine's, the best validation checkpoint)")
    ap.add_argument("--batch-size", type=int, default=FinetuneConfig.batch_size)
    ap.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    ap.add_argument("--distance", type=float, default=1.0, help="how far the pair is pushed apart, × embedding scale")
    ap.add_argument("--contract", type=float, default=1.0, help="contraction a of each class of the pair (1 = none)")
    ap.add_argument("--model-epochs", default="digits=20,mnist=3,pneumonia=10,fashion=2",
                    help="classifier training epochs per data set")
    ap.add_argument("--steps", type=int, default=FinetuneConfig.steps, help="fine-tuning steps (without --epochs)")
    ap.add_argument("--embed-on", default=FinetuneConfig.embed_on, choices=("all", "moved"),
                    help="rows the embedding term acts on (the engine's default: all)")
    ap.add_argument("--layer", default=None, help="latent layer to embed (default: the engine's, the logits)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--name", default=None, help="results go to bench/out/pli_NAME.json (default: full or quick); "
                                                  "only 'full' writes docs/figures/")
    ap.add_argument("--quick", action="store_true", help="digits, 2 seeds, 2 epochs, small t-SNE: a smoke run")
    ap.add_argument("--plot-only", type=Path, help="redraw the λ figure from this results JSON and exit")
    a = ap.parse_args()
    if a.quick:
        for k, v in QUICK.items():
            setattr(a, k, v)
    return a


def pair_confusions(confusion: list[list[int]], pair: tuple[int, int]) -> int:
    i, j = pair
    return int(confusion[i][j] + confusion[j][i])


def summarise(result: dict, pair: tuple[int, int], val_full: dict | None = None) -> dict:
    """The figures of one run's ``result.json`` this benchmark reports; ``val_full``: accuracy on the whole
    validation split of each model (:func:`val_accuracies`)."""
    return {"accuracy": result["accuracy"], "target_distance": result["target_distance"],
            "pair_confusions": {k: pair_confusions(result["confusion"][k], pair) for k in MODELS},
            "per_class": result["per_class"], "confusion": result["confusion"], "n_moved": result["n_moved"],
            "seconds": result["seconds"], "selection": selection_summary(result), "val_full": val_full}


def selection_summary(result: dict) -> dict:
    """Per run (PLI ``after``, ``control``): validation accuracy of the starting weights and of the kept checkpoint
    on the engine's validation images (the selection rule's), the kept step and the steps run."""
    out = {}
    for name, model in (("pli", "after"), ("control", "control")):
        sel = result["selection"][name]
        out[model] = {"start": sel["curve"][0][1] if sel["curve"] else None, "kept": sel["score"], "step": sel["step"],
                      "steps_run": sel["steps_run"], "stopped_early": sel["stopped_early"],
                      "confirm": sel.get("confirm")}
    return out


def val_accuracies(data, bundle, directory: Path, start: float) -> dict:
    """Accuracy on the whole validation split of the model before fine-tuning (``start``) and of the weights a
    stored run kept (``after``, ``control``)."""
    out = {"before": start}
    for model, weights in (("after", "finetuned"), ("control", "control")):
        kept = load_model(directory / f"{weights}.safetensors").module
        out[model] = evaluate(data.val.labels, predict(ModelBundle(kept, bundle.spec, ""), data.val.images),
                              data.n_classes).accuracy
    return out


def sweep_row(lam: float, summary: dict, model: str = "after") -> dict:
    return {"lam": lam, **{k: summary[k][model] for k in ("target_distance", "accuracy", "pair_confusions")},
            "selection": summary["selection"][model], "val_full": summary["val_full"][model]}


def identical(r1: dict, r2: dict) -> bool:
    keys = ("accuracy", "confusion", "per_class", "target_distance")
    return all(json.dumps(r1[k], sort_keys=True) == json.dumps(r2[k], sort_keys=True) for k in keys)


def mean_sd(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def aggregate(runs: list[dict]) -> dict:
    """Means (and sample SDs) over seeds of every reported figure; per-class figures as means."""
    out: dict = {k: {m: mean_sd([r[k][m] for r in runs]) for m in MODELS}
                 for k in ("accuracy", "target_distance", "pair_confusions")}
    out["per_class"] = {m: [{"class": c["class"], "support": c["support"],
                             **{f: float(np.mean([r["per_class"][m][i][f] for r in runs])) for f in ("precision", "recall", "f1")}}
                            for i, c in enumerate(runs[0]["per_class"][m])] for m in MODELS}
    return out


def goals(agg: dict) -> list[dict]:
    d, acc, pc = agg["target_distance"], agg["accuracy"], agg["pair_confusions"]
    ratio = d["after"]["mean"] / d["control"]["mean"]
    gap_pp = 100 * (acc["after"]["mean"] - acc["control"]["mean"])
    return [
        {"goal": "distance to target: after ≤ 0.5 × control", "value": f"{ratio:.3f} × control",
         "result": "PASS" if ratio <= 0.5 else "MISS"},
        {"goal": "accuracy: after within 0.5 pp of control", "value": f"{gap_pp:+.2f} pp",
         "result": "PASS" if abs(gap_pp) <= 0.5 else "MISS"},
        {"goal": "targeted-pair confusions: after < control (mean)",
         "value": f"{pc['after']['mean']:.1f} vs {pc['control']['mean']:.1f}",
         "result": "PASS" if pc["after"]["mean"] < pc["control"]["mean"] else "MISS"},
    ]


def bench_dataset(name: str, a: argparse.Namespace, model_epochs: dict[str, int]) -> dict:
    started = time.perf_counter()
    full = load_data(data_source(name))
    # digits has 1,437 training images: the full run's 5,000 become a fifth of them (287)
    n_val = a.val_points if a.val_points < len(full.train) // 2 else len(full.train) // 5
    data = with_val_split(full, n_val, seed=0)
    tag = "" if full.val is not None else f"-val{n_val}"
    # The demo CNN saw all of digits' training split (validation points included): fine for --quick, not for
    # judging validation accuracy, so the full run trains a plint CNN of its own on the rest.
    model_name = "digits-cnn" if name == "digits" and not a.quick else name
    bundle = cached_model(model_name, model_epochs.get(name, 3), data=data, tag=tag)
    val_eval = evaluate(data.val.labels, predict(bundle, data.val.images), data.n_classes)
    pair = most_confused_pair(val_eval.confusion)
    ft = subset_train(data, a.train_points, seed=0)
    t = time.perf_counter()
    tsne = QUICK_TSNE if a.quick else TSNEConfig()
    emb = prepare_embedding(ft, bundle, layer=a.layer, store=RunStore(OUT / "runs"), device=a.device, config=tsne)
    embed_s = time.perf_counter() - t
    spec = separate_classes(emb.train_xy, ft.train.labels, *pair, distance=a.distance * emb.scale,
                            contract=a.contract)
    names = data.class_names
    print(f"\n## {name}: train {len(ft.train)} of {len(data.train)} (fine-tuned and embedded), val {len(data.val)}, "
          f"test {len(data.test)}; classifier {bundle.source}; most-confused pair on val: {names[pair[0]]}–{names[pair[1]]} "
          f"({pair_confusions(val_eval.confusion.tolist(), pair)} confusions, val accuracy {val_eval.accuracy:.4f}); "
          f"layer {emb.layer}, embedding scale {emb.scale:.2f} ({'cached' if emb.cache_hit else f'fitted in {embed_s:.1f} s'})", flush=True)

    def config(seed: int, lam: float) -> FinetuneConfig:
        return FinetuneConfig(lam=lam, epochs=a.epochs, steps=a.steps, lr=a.lr, batch_size=a.batch_size, seed=seed,
                              device=a.device, select=a.select, embed_on=a.embed_on)

    seeds = [int(s) for s in a.seeds.split(",")]
    runs, timer = [], EpochTimer()
    with fresh_store() as store:
        for seed in seeds:
            timer.start()
            r = run_intervention(ft, bundle, emb, spec, config(seed, a.lam), store=store, progress=timer)
            res = r.result
            pli_s, ctl_s = timer.mean()
            runs.append({"seed": seed, **summarise(res, pair, val_accuracies(data, bundle, r.directory, val_eval.accuracy)),
                         "pli_s_per_epoch": pli_s, "control_s_per_epoch": ctl_s})
            print(f"seed {seed}: {res['seconds']:.1f} s", flush=True)
        sweep = []
        for lam in (float(x) for x in a.lams.split(",")):
            if lam == 0.0:
                sweep.append(sweep_row(lam, runs[0], "control"))
            elif lam == a.lam:
                sweep.append(sweep_row(lam, runs[0]))
            else:
                r = run_intervention(ft, bundle, emb, spec, config(seeds[0], lam), store=store)
                summary = summarise(r.result, pair, val_accuracies(data, bundle, r.directory, val_eval.accuracy))
                sweep.append(sweep_row(lam, summary))
            print(f"λ = {lam}: done", flush=True)
    with fresh_store() as store:  # the first seed again, from scratch: must give the same metrics
        again = run_intervention(ft, bundle, emb, spec, config(seeds[0], a.lam), store=store).result
    agg = aggregate(runs)
    return {"data": name, "lam": a.lam, "classes": list(names), "n_train": len(ft.train), "n_train_all": len(data.train),
            "n_val": len(data.val), "n_test": len(data.test), "model": bundle.source, "model_epochs": model_epochs.get(name),
            "pair": list(pair), "pair_names": [names[pair[0]], names[pair[1]]],
            "val_pair_confusions": pair_confusions(val_eval.confusion.tolist(), pair), "val_accuracy": val_eval.accuracy,
            "embedding": {"layer": emb.layer, "scale": emb.scale, "quality": emb.quality, "cache_hit": emb.cache_hit, "seconds": embed_s,
                          "tsne": tsne.to_dict()},
            "spec": spec.to_dict(), "runs": runs, "aggregate": agg, "goals": goals(agg), "sweep": sweep,
            "reproducible": identical(runs[0], summarise(again, pair)), "seconds": time.perf_counter() - started}


def report(r: dict) -> None:
    """Print one data set's tables (Markdown)."""
    rows = []
    for run in r["runs"] + [None]:
        src = run or {k: {m: v["mean"] for m, v in r["aggregate"][k].items()} for k in ("accuracy", "target_distance", "pair_confusions")}
        row = {"seed": run["seed"] if run else "mean"}
        row |= {f"accuracy {m}": src["accuracy"][m] for m in MODELS}
        row |= {f"pair confusions {m}": float(src["pair_confusions"][m]) for m in MODELS}
        row |= {f"distance {m}": src["target_distance"][m] for m in MODELS}
        rows.append(row)
    print_table(rows)
    print()
    print_table(r["goals"])
    print()
    pc = r["aggregate"]["per_class"]
    print_table([{"class": c["class"], "support": c["support"],
                  **{f"{f[0].upper()} {m}": pc[m][i][f] for m in MODELS for f in ("precision", "recall", "f1")}}
                 for i, c in enumerate(pc["before"])])
    print()
    print_table([{"λ": s["lam"], "distance to target": s["target_distance"], "accuracy": s["accuracy"],
                  "pair confusions": s["pair_confusions"]} for s in r["sweep"]])
    print()
    print_table(validation_rows(r))
    pli = [x["pli_s_per_epoch"] for x in r["runs"]]
    ctl = [x["control_s_per_epoch"] for x in r["runs"]]
    print(f"\nseconds per epoch ({r['n_train']} points), means over seeds: PLI {np.mean(pli):.2f}, control {np.mean(ctl):.2f}, "
          f"ratio {np.mean(pli) / np.mean(ctl):.3f}; same spec and seed again in a fresh store: "
          f"{'identical metrics' if r['reproducible'] else 'METRICS DIFFER'}; {r['seconds']:.0f} s for this data set")


def validation_rows(r: dict) -> list[dict]:
    """Every run of a data set (the seeds' PLI runs and controls, the sweep's other λ): validation accuracy before
    fine-tuning and of the weights kept, on the selection rule's validation images and on the whole validation
    split (issue 10: no default run may end below its start)."""
    rows = []
    for run in r["runs"]:
        for model, label in (("after", f"PLI λ {r['lam']:g}"), ("control", "control")):
            rows.append(validation_row(f"seed {run['seed']}", label, run["selection"][model],
                                       run["val_full"]["before"], run["val_full"][model]))
    for sw in r["sweep"]:
        if sw["lam"] not in (0.0, r["lam"]):
            rows.append(validation_row(f"seed {r['runs'][0]['seed']}", f"PLI λ {sw['lam']:g}", sw["selection"],
                                       r["runs"][0]["val_full"]["before"], sw["val_full"]))
    return rows


def validation_row(seed: str, run: str, sel: dict, full_before: float, full_kept: float) -> dict:
    c = sel.get("confirm")
    check = "–" if c is None else f"step {c['kept_step']}: {c['kept']:.4f}, " + ("start kept" if c["reverted"] else "kept")
    return {"seed": seed, "run": run, "rule's val: start": sel["start"], "kept": sel["kept"],
            "kept step": sel["step"], "steps run": sel["steps_run"], "check on the whole val set": check,
            "whole val split: start": full_before,
            "kept ": full_kept, "kept − start (pp)": round(100 * (full_kept - full_before), 2)}


def figure(results: list[dict]):
    """The λ trade-off: distance to target ÷ before, accuracy change vs control (pp), pair confusions ÷ control."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08, subplot_titles=(
        "moved training points' distance to target (÷ before)", "test accuracy − control (pp)",
        "targeted-pair test confusions (÷ control)"))
    for k, r in enumerate(results):
        first, lams = r["runs"][0], [s["lam"] for s in r["sweep"]]
        label = f"{r['data']} ({r['pair_names'][0]}–{r['pair_names'][1]})"
        ys = ([s["target_distance"] / first["target_distance"]["before"] for s in r["sweep"]],
              [100 * (s["accuracy"] - first["accuracy"]["control"]) for s in r["sweep"]],
              [s["pair_confusions"] / max(first["pair_confusions"]["control"], 1) for s in r["sweep"]])
        for col, y in enumerate(ys, start=1):
            fig.add_trace(go.Scatter(x=lams, y=y, mode="lines+markers", name=label, legendgroup=label, showlegend=col == 1,
                                     line={"color": ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")[k % 4]}), row=1, col=col)
    for col in (1, 2, 3):
        fig.update_xaxes(title_text="λ", row=1, col=col)
    fig.update_annotations(font_size=13)
    fig.update_layout(template="plotly_white", width=1100, height=420, margin={"t": 80, "b": 50, "l": 50, "r": 20},
                      legend={"orientation": "h", "y": -0.2}, font={"size": 12},
                      title={"text": "PLI λ trade-off (first seed; λ = 0 is the CE-only control)",
                             "x": 0.5, "y": 0.96})
    return fig


def sanity(r: dict, n_seeds: int, n_lams: int) -> list[str]:
    """Checks that must hold in any run, quick or full (not the goals)."""
    problems = []
    for run in r["runs"]:
        for m in MODELS:
            if not 0.0 <= run["accuracy"][m] <= 1.0:
                problems.append(f"{r['data']} seed {run['seed']}: accuracy {m} = {run['accuracy'][m]}")
            if sum(map(sum, run["confusion"][m])) != r["n_test"]:
                problems.append(f"{r['data']} seed {run['seed']}: confusion {m} does not sum to {r['n_test']}")
            if not np.isfinite(run["target_distance"][m]) or run["target_distance"][m] < 0:
                problems.append(f"{r['data']} seed {run['seed']}: distance {m} = {run['target_distance'][m]}")
            if len(run["per_class"][m]) != len(r["classes"]):
                problems.append(f"{r['data']}: per-class table of {m} has {len(run['per_class'][m])} rows")
        if not (run["pli_s_per_epoch"] > 0 and run["control_s_per_epoch"] > 0):
            problems.append(f"{r['data']} seed {run['seed']}: epoch times not positive")
    if len(r["runs"]) != n_seeds or len(r["sweep"]) != n_lams:
        problems.append(f"{r['data']}: {len(r['runs'])} seeds, {len(r['sweep'])} λ values")
    if r["runs"][0]["target_distance"]["before"] <= 0:
        problems.append(f"{r['data']}: the edit moves nothing")
    for row in validation_rows(r):
        if row["kept"] is not None and row["kept"] < row["rule's val: start"]:
            problems.append(f"{r['data']} {row['seed']} {row['run']}: kept a checkpoint below its start on the "
                            "selection rule's validation images")
    if not r["reproducible"]:
        problems.append(f"{r['data']}: the same spec and seed gave different metrics")
    return problems


def main() -> None:
    a = parse_args()
    if a.plot_only:
        results = json.loads(a.plot_only.read_text())["datasets"]
        print("\n".join(str(p) for p in save_figure(figure(results), "pli_lambda")))
        return
    model_epochs = {k: int(v) for k, v in (kv.split("=") for kv in a.model_epochs.split(","))}
    started = time.perf_counter()
    header = (f"{machine()}; data {a.data}; seeds {a.seeds}; λ {a.lam}; sweep λ {a.lams}; train points {a.train_points}; "
              f"val points {a.val_points} (where no val split); epochs {a.epochs}; batch {a.batch_size}; lr {a.lr}; "
              f"distance {a.distance} × scale; contract {a.contract}; classifier epochs {a.model_epochs}; layer {a.layer or 'default'}; "
              f"device {a.device}"
              f"{'; QUICK' if a.quick else ''}")
    print(header, flush=True)
    results = []
    for name in a.data.split(","):
        results.append(bench_dataset(name, a, model_epochs))
        report(results[-1])
    n_seeds, n_lams = len(a.seeds.split(",")), len(a.lams.split(","))
    problems = [p for r in results for p in sanity(r, n_seeds, n_lams)]
    name = a.name or ("quick" if a.quick else "full")
    out = write_json(f"pli_{name}.json", {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "header": header, "args": {k: str(v) for k, v in vars(a).items()},
        "datasets": results, "problems": problems, "total_seconds": time.perf_counter() - started})
    figs = (save_figure(figure(results), "pli_lambda") if name == "full"
            else save_figure(figure(results), f"pli_lambda_{name}", folder=OUT, png=False))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; wrote {out.relative_to(OUT.parent.parent)}, "
          + ", ".join(str(p.relative_to(OUT.parent.parent)) for p in figs))
    if problems:
        sys.exit("SANITY FAILURES:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    main()
