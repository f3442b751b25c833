"""Scale: memory and speed of ResNet-18 at 224×224 on PneumoniaMNIST as the training split grows.

Per training-split size N (the real training images, shuffled with a seed, cycled to N rows with a
seeded ±2 jitter, stored as they are, uint8 28×28, in an uncompressed ``.npz``;
val and test splits as in the real file; ``real`` or ``0``: the real file as is,
3,166 images) a seeded, untrained ResNet-18 state_dict for two classes is
given to the CLI and to the engine:

* memory: ``python -m plint_core embed`` and then ``run --epochs 1`` (a spec
  moving class 1), each in its own process and sharing one fresh ``--runs-dir``,
  as a user runs them (``run`` reuses the embedding and latents of ``embed``).
  Each child's peak resident memory (its ``ru_maxrss`` from ``os.wait4``, in
  GB of 10⁹ bytes, forked from a fresh interpreter so that this process's own size is not
  counted) and wall seconds. Goal on the real file: ``embed`` ≤ 2.0 GB,
  ``run`` ≤ 2.5 GB; the same limits are judged at every size, and the growth
  of each peak per doubling of N between consecutive sizes (goal ≤ 0.1 GB).
* speed, in this process, against a plain PyTorch loop on the same images,
  model, batch size and threads (the anchor): latents per second (plint's
  ``forward_pass`` over the memory-mapped file vs. a ``no_grad`` loop over the
  same uint8 rows in memory, converted per batch the same way, with a hook on
  ``avgpool``; plint's inference batch size), and seconds per fine-tuning step
  (the PLI run of ``finetune_one``, ``finetune_pair``'s loop, vs. a loop doing the same work per step:
  CE, the frozen embedder on the hooked latents, ``(1-λ)·CE + λ·embed`` with
  λ = 0.1, backward, Adam). Each side runs ``--steps`` timed batches after 2
  warm-up batches, the two sides alternately ``--rounds`` times; a side's time
  is the median batch of its best round (medians and best rounds, so that other
  work on a shared machine counts little). Goal: plint/plain ≤ 1.15 for both. The
  epoch time at N is estimated as steps per epoch × plint's seconds per step
  (``run --epochs 1`` fine-tunes two such epochs: the PLI run and its control).

Usage::

    python bench/bench_scale.py [--sizes real 5000 20000 50000] [--input-size 224] [--threads N] [--steps K]
                                [--rounds R] [--batch-size 32] [--skip-embed-above N] [--skip-run-above N]
                                [--no-speed] [--device auto|cpu|cuda] [--out NAME.json]
    python bench/bench_scale.py --quick    # 200 images at 32 px, short t-SNE, 2 timed steps: structure, not the goals

On a 2-core CPU at 224 px (latents about 60 images/s, a fine-tuning step of 32
images about 1.1 s), ``embed`` takes about 20 s and ``run --epochs 1`` about
1.5 min per 1,000 training images: ``--skip-embed-above`` and ``--skip-run-above``
leave the memory runs of the larger sizes out. Writes bench/out/scale_{full,quick}.json (or ``--out``).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import (  # also puts the repo on sys.path
    QUICK_TSNE,
    REPO,
    data_source,
    machine,
    peak_of,
    print_table,
    write_json,
    write_replicated_pneumonia,
    write_resnet18,
)
from torch import nn

from plint_core.data.dataset import Split
from plint_core.device import autocast_dtype, resolve_device, set_threads
from plint_core.finetune import (
    FinetuneConfig,
    Progress,
    TrainingBatchSource,
    finetune_one,
)
from plint_core.inputs import open_inputs
from plint_core.latents import forward_pass, inference_batch_size, uses_convolutions
from plint_core.models.sources import ModelOptions

LAYER, FEATURES = "avgpool", 512
LAM = 0.1
WARMUP = 2
"""Batches run before the timed ones, on each side."""
EMBED_GB, RUN_GB, RATIO, DOUBLING_GB = 2.0, 2.5, 1.15, 0.1
SPEC = {"moves": [{"select": {"classes": [1]}, "translate": [5.0, 0.0], "contract": 1.0}]}
QUICK = {"sizes": [200], "input_size": 32, "steps": 2, "rounds": 1}
"""--quick: a smoke run of every stage (the test suite runs it): 200 images at 32 px and the short t-SNE preset
(``common.QUICK_TSNE``) for its embed, 93 s at 600 images, 64 px and the default t-SNE on the 2-core machine."""


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", type=lambda s: 0 if s == "real" else int(s), default=[5000, 20000, 50000],
                    help="training-split sizes (real or 0: the real file as is)")
    ap.add_argument("--input-size", type=int, default=224, help="the model's input height = width in pixels")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads here and the CLI's --threads (0: torch's own)")
    ap.add_argument("--steps", type=int, default=30, help="batches timed per side and round, after 2 warm-up batches")
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternating rounds of plint and the plain loop; each side's best counts")
    ap.add_argument("--batch-size", type=int, default=FinetuneConfig.batch_size, help="fine-tuning batch size")
    ap.add_argument("--skip-embed-above", type=int, default=None, metavar="N",
                    help="no embed/run memory runs for sizes above N")
    ap.add_argument("--skip-run-above", type=int, default=None, metavar="N",
                    help="no run memory runs for sizes above N")
    ap.add_argument("--no-speed", action="store_true",
                    help="memory runs only (the speed comparisons take about 4 minutes per size)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--out", default=None,
                    help="JSON file name in bench/out/ (default scale_full.json / scale_quick.json)")
    ap.add_argument("--quick", action="store_true",
                    help="200 images at 32 px, a short t-SNE, 2 timed steps, one round, no real file: a smoke run")
    a = ap.parse_args()
    if a.quick:
        for k, v in QUICK.items():
            setattr(a, k, v)
    a.out = a.out or f"scale_{'quick' if a.quick else 'full'}.json"
    return a


def child(argv: list[str], log: Path) -> dict:
    """Run ``python -m plint_core *argv`` as its own process: ``{"peak_gb", "maxrss_kib", "seconds"}`` (see
    :func:`common.peak_of`: the largest single process, counted from a fresh interpreter); exits if it fails."""
    out = peak_of([sys.executable, "-m", "plint_core", *argv], log)
    if out.pop("returncode") != 0:
        sys.exit(f"plint_core {' '.join(argv)} failed:\n{log.read_text()[-3000:]}")
    return out


def memory(a: argparse.Namespace, size: int, data: Path, model: Path, work: Path) -> dict:
    """Peak RSS and seconds of ``embed`` then ``run --epochs 1`` on ``size`` training images, ``None`` where
    skipped (``run`` only follows its ``embed``)."""
    common = ["--data", str(data), "--model", str(model), "--arch", "resnet18", "--input-size", str(a.input_size),
              "--runs-dir", str(work / "runs"), "--device", a.device, "--threads", str(a.threads)]
    if a.quick:
        common += ["--tsne-config", json.dumps(QUICK_TSNE.to_dict())]
    out: dict = {"embed": None, "run": None}
    if a.skip_embed_above is None or size <= a.skip_embed_above:
        out["embed"] = child(["embed", *common, "--out", str(work / "emb")], work / "embed.log")
        print(f"  embed: {out['embed']['seconds']:.0f} s, {out['embed']['peak_gb']:.2f} GB", flush=True)
        if a.skip_run_above is None or size <= a.skip_run_above:
            (work / "spec.json").write_text(json.dumps(SPEC))
            out["run"] = child(["run", *common, "--spec", str(work / "spec.json"), "--epochs", "1",
                                "--batch-size", str(a.batch_size), "--out", str(work / "run")], work / "run.log")
            out["run"]["reused_embedding"] = "optimisation:" not in (work / "run.log").read_text()  # no t-SNE fit
            print(f"  run --epochs 1: {out['run']['seconds']:.0f} s, {out['run']['peak_gb']:.2f} GB", flush=True)
    return out


def plain_input(batch: np.ndarray, size: int, mean: torch.Tensor, std: torch.Tensor,
                device: torch.device) -> torch.Tensor:
    """A uint8 ``[n, H, W]`` batch → the normalised ``[n, 3, size, size]`` input, as a PyTorch user writes it."""
    x = torch.from_numpy(batch).to(device).float().div(255)[:, None].expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return (x - mean) / std


class PlainModel:
    """The anchor's model: a copy of the bundle's module with a forward hook on :data:`LAYER`, on ``device``,
    with plint's precision and memory format there (autocast and ``channels_last`` on CUDA only)."""

    def __init__(self, bundle, device: torch.device):
        self.module = copy.deepcopy(bundle.module).to(device)
        self.channels_last = device.type == "cuda" and uses_convolutions(self.module)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.dtype = autocast_dtype(device)
        self.device = device
        self.mean = torch.tensor(bundle.spec.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(bundle.spec.std, device=device).view(1, -1, 1, 1)
        self.size = bundle.spec.input_shape[-1]
        self.box: dict[str, torch.Tensor] = {}
        dict(self.module.named_modules())[LAYER].register_forward_hook(
            lambda _m, _i, out: self.box.__setitem__("out", out.flatten(1)))

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        x = plain_input(batch, self.size, self.mean, self.std, self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            return self.module(x)


def per_batch(stamps: list[float]) -> float:
    """Median seconds per batch after :data:`WARMUP` batches, from the time each batch ended (a median, so that
    a burst of other work on a shared machine does not count)."""
    return float(np.median(np.diff(stamps[WARMUP - 1:])))


def compare(plint, plain, rounds: int) -> dict:
    """Seconds per batch of ``plint()`` and ``plain()`` (each returns its batch end times), run alternately
    ``rounds`` times: each side's best round, and all rounds."""
    times: dict[str, list[float]] = {"plint": [], "plain": []}
    for _ in range(rounds):
        times["plint"].append(per_batch(plint()))
        times["plain"].append(per_batch(plain()))
    return {"plint_s": min(times["plint"]), "plain_s": min(times["plain"]), "rounds": times,
            "ratio": min(times["plint"]) / min(times["plain"])}


def latents_speed(bundle, train: Split, stored: np.ndarray, steps: int, rounds: int, device: torch.device) -> dict:
    """Images per second of plint's ``forward_pass`` and of the plain loop, on the same rows, and how far
    their latents differ (relative to the largest)."""
    batch = inference_batch_size(bundle.spec.input_shape, device)
    rows = np.arange((steps + WARMUP) * batch) % len(train)  # cycled where the split is smaller
    images = train.subset(rows).images
    out = {side: np.empty((len(rows), FEATURES), np.float32) for side in ("plint", "plain")}

    def plint() -> list[float]:
        stamps: list[float] = []
        forward_pass(bundle, images, LAYER, device=device, batch_size=batch, out=out["plint"],
                     progress=lambda _f: stamps.append(time.perf_counter()))
        return stamps

    def plain() -> list[float]:
        model, stamps = PlainModel(bundle, device), []
        model.module.eval()
        with torch.no_grad():
            for start in range(0, len(rows), batch):
                model(stored[rows[start:start + batch]])
                out["plain"][start:start + batch] = model.box["out"].float().cpu().numpy()
                stamps.append(time.perf_counter())
        return stamps

    result = compare(plint, plain, rounds)
    gap = float(np.abs(out["plint"] - out["plain"]).max() / max(np.abs(out["plint"]).max(), 1e-12))
    return {"batch": batch, "images_timed": steps * batch, "plint_images_per_s": batch / result["plint_s"],
            "plain_images_per_s": batch / result["plain_s"], "ratio": result["ratio"],
            "seconds_per_batch_rounds": result["rounds"], "max_relative_difference": gap,
            "tolerance": 1e-3 if autocast_dtype(device) is None else 5e-2}  # float32, or bfloat16/float16 autocast


def embedder() -> nn.Module:
    """The frozen E of the fine-tuning comparison: a small seeded MLP from the 512 latents to 2-D."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, 2))


def finetune_speed(bundle, train: Split, stored: np.ndarray, steps: int, batch: int, rounds: int,
                   device: torch.device) -> dict:
    """Seconds per step of plint's PLI run (``finetune_one``, the loop of ``finetune_pair``, with the paper's
    weighting as the plain loop has it) and of the plain loop."""
    rows = np.arange((steps + WARMUP) * batch) % len(train)
    sub = train.subset(rows)
    targets = np.random.default_rng(0).normal(size=(len(rows), 2)).astype(np.float32)
    config = FinetuneConfig(lam=LAM, epochs=1, batch_size=batch, device=device.type, weighting="paper", select="last")

    def plint() -> list[float]:
        stamps: list[float] = []

        def progress(p: Progress) -> None:
            stamps.append(time.perf_counter())

        finetune_one(bundle, LAYER, embedder(), 1.0, TrainingBatchSource(sub.images, sub.labels, targets), config,
                     run="pli", lam=LAM, progress=progress)
        return stamps

    def plain() -> list[float]:
        model, stamps = PlainModel(bundle, device), []
        model.module.train()
        frozen = embedder().to(device).eval().requires_grad_(False)
        opt = torch.optim.Adam(model.module.parameters(), lr=config.lr, fused=device.type == "cuda")
        labels, targets_t = torch.from_numpy(sub.labels), torch.from_numpy(targets)
        for start in range(0, len(rows), batch):
            y = labels[start:start + batch].to(device)
            t = targets_t[start:start + batch].to(device)
            ce = F.cross_entropy(model(stored[rows[start:start + batch]]), y)
            embed = ((frozen(model.box["out"].float()) - t) ** 2).sum(1).mean()
            loss = (1 - LAM) * ce + LAM * embed
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()  # plint reports its losses each step
            stamps.append(time.perf_counter())
        return stamps

    result = compare(plint, plain, rounds)
    return {"batch": batch, "steps_timed": steps, "plint_s_per_step": result["plint_s"],
            "plain_s_per_step": result["plain_s"], "ratio": result["ratio"],
            "seconds_per_step_rounds": result["rounds"]}


def verdicts(checks: list[bool | None], quick: bool) -> str:
    """``PASS / MISS`` per check (``—`` where not measured); nothing is judged in a quick run."""
    if quick:
        return "not judged in a quick run"
    return " / ".join("—" if ok is None else ("PASS" if ok else "MISS") for ok in checks)


def main() -> None:
    started = time.perf_counter()
    a = parse_args()
    threads = set_threads(a.threads)
    device = resolve_device(a.device)
    print(f"{machine()}; {time.strftime('%Y-%m-%d %H:%M')}; ResNet-18 at {a.input_size}×{a.input_size} on {device}, "
          f"sizes {' '.join(str(n or 'real') for n in a.sizes)}, {a.steps} timed steps per round, rounds {a.rounds}, "
          f"fine-tuning batch {a.batch_size}"
          f"{'; QUICK: a smoke run, structure not the goals' if a.quick else ''}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="plint-scale-") as tmp:
        model = Path(tmp) / "resnet18.pt"
        write_resnet18(model)
        for n in a.sizes:
            work = Path(tempfile.mkdtemp(dir=tmp))
            data = Path(data_source("pneumonia")) if n == 0 else work / f"pneumonia_{n}.npz"
            if n:
                write_replicated_pneumonia(data, n)
            inputs = open_inputs(model, data, ModelOptions(arch="resnet18", input_size=(a.input_size, a.input_size)))
            train = inputs.data.train
            label = f"{len(train)} (real file)" if n == 0 else str(n)
            print(f"train images {label}:", flush=True)
            mem = memory(a, len(train), data, model, work)
            lat = ft = None
            if not a.no_speed:
                with np.load(data) as f:
                    stored = f["train_images"]  # the plain loop's copy, in memory
                lat = latents_speed(inputs.bundle, train, stored, a.steps, a.rounds, device)
                ft = finetune_speed(inputs.bundle, train, stored, a.steps, a.batch_size, a.rounds, device)
                ft["steps_per_epoch"] = -(-len(train) // a.batch_size)
                ft["epoch_seconds_est"] = ft["steps_per_epoch"] * ft["plint_s_per_step"]
            results.append({"size": n, "label": label, "train_images": len(train),
                            "data": str(data) if n == 0 else None, "memory": mem, "latents": lat, "finetune": ft})
    mem_rows, speed_rows = [], []
    for r in results:
        e, run = r["memory"]["embed"], r["memory"]["run"]
        skipped = f"not measured (size > {a.skip_embed_above if e is None else a.skip_run_above})"
        limits = verdicts([m and m["peak_gb"] <= gb for m, gb in ((e, EMBED_GB), (run, RUN_GB))], a.quick)
        mem_rows.append({"memory: train images": r["label"], "embed peak GB": e["peak_gb"] if e else skipped,
                         "embed s": e["seconds"] if e else "—",
                         "run --epochs 1 peak GB": run["peak_gb"] if run else skipped,
                         "run s": run["seconds"] if run else "—", f"limits {EMBED_GB} / {RUN_GB} GB": limits})
        lat, ft = r["latents"], r["finetune"]
        if lat is None:
            continue
        speed_rows.append({"speed: train images": r["label"], "latents img/s plint": lat["plint_images_per_s"],
                           "latents img/s plain": lat["plain_images_per_s"], "latents ratio": lat["ratio"],
                           "fine-tune s/step plint": ft["plint_s_per_step"],
                           "fine-tune s/step plain": ft["plain_s_per_step"], "fine-tune ratio": ft["ratio"],
                           "epoch min (est.)": ft["epoch_seconds_est"] / 60,
                           f"ratios ≤ {RATIO}": verdicts([lat["ratio"] <= RATIO, ft["ratio"] <= RATIO], a.quick)})
    growth = doubling(results)
    print()
    print_table(mem_rows)
    if growth:
        print()
        print_table(growth)
    if speed_rows:
        print()
        print_table(speed_rows)
    problems = sanity(results)
    total = time.perf_counter() - started
    out = write_json(a.out, {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "threads": threads,
                             "quick": a.quick, "args": vars(a), "device": str(device), "layer": LAYER, "lam": LAM,
                             "warmup_batches": WARMUP, "limits_gb": {"embed": EMBED_GB, "run": RUN_GB},
                             "goal_ratio": RATIO, "spec": SPEC, "sizes": results, "doubling": growth,
                             "doubling_limit_gb": DOUBLING_GB, "problems": problems,
                             "total_seconds": total})
    batch = f"latents batch {results[0]['latents']['batch']}, " if results[0]["latents"] else ""
    print(f"\n{batch}fine-tuning batch {a.batch_size}; total {total:.0f} s; wrote {out.relative_to(REPO)}")
    if problems:
        sys.exit("SANITY FAILURES:\n  " + "\n  ".join(problems))


def doubling(results: list[dict]) -> list[dict]:
    """Per command and pair of consecutive measured sizes: the peak's growth per doubling of the training split,
    ``(peak(n2) - peak(n1)) / log2(n2 / n1)`` (GB). Goal ≤ 0.1 GB: memory does not grow with the images."""
    rows = []
    for name in ("embed", "run"):
        measured = [(r["train_images"], r["memory"][name]["peak_gb"]) for r in results if r["memory"][name]]
        for (n1, g1), (n2, g2) in zip(measured, measured[1:]):
            per = (g2 - g1) / math.log2(n2 / n1)
            rows.append({"growth: command": name, "from images": n1, "to images": n2, "peak GB from": g1,
                         "peak GB to": g2, "GB per doubling": per,
                         f"≤ {DOUBLING_GB} GB": "PASS" if per <= DOUBLING_GB else "MISS"})
    return rows


def sanity(results: list[dict]) -> list[str]:
    """Checks that must hold in any run, quick or full (not the goals)."""
    problems = []
    for r in results:
        for name, m in r["memory"].items():
            if m is not None and not (0 < m["peak_gb"] < math.inf and m["seconds"] > 0):
                problems.append(f"{r['label']}: {name} peak {m['peak_gb']} GB in {m['seconds']} s")
        if r["memory"]["run"] is not None and not r["memory"]["run"]["reused_embedding"]:
            problems.append(f"{r['label']}: run fitted its own embedding instead of reusing embed's")
        for name in ("latents", "finetune"):
            if r[name] is None:
                continue
            if not 0 < r[name]["ratio"] < math.inf:
                problems.append(f"{r['label']}: {name} ratio {r[name]['ratio']}")
        if r["latents"] and not r["latents"]["max_relative_difference"] <= r["latents"]["tolerance"]:
            problems.append(f"{r['label']}: plint's and the plain loop's latents differ by "
                            f"{r['latents']['max_relative_difference']:.2g} (relative)")
    return problems


if __name__ == "__main__":
    main()
