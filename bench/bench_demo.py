"""The digits demo end to end on the CPU: ``plint_core embed`` + ``run`` with their defaults, timed by stage.

What is timed is what a user runs first::

    python -m plint_core embed --data digits --model demo --out out/emb
    python -m plint_core run   --data digits --model demo --spec spec.json --out out/run

(the spec in docs/cli.md: class 1 moved left, class 8 right and contracted), in a fresh run store,
with the commands called in this process through ``plint_core.cli.main``. Stages are cut at the
commands' own progress lines (timestamped as they are logged); the import of torch and
plint_core is timed once and counted twice in the total, as two commands pay it twice.
Times are wall-clock seconds. Goal: total ≤ 30 s.

Usage::

    python bench/bench_demo.py [--threads N]    # full: default TSNEConfig, default 40 epochs
    python bench/bench_demo.py --quick          # small t-SNE, 2 epochs: structure, not speed

Writes bench/out/demo_{full,quick}.json.
"""
from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from common import QUICK_TSNE, machine, print_table, write_json  # noqa: E402 (imports torch)

from plint_core import cli  # noqa: E402
from plint_core.embedding.parametric_tsne import TSNEConfig  # noqa: E402

IMPORT_S = time.perf_counter() - T0
GOAL_S = 30.0
SPEC = {"moves": [{"select": {"classes": [1]}, "translate": [-8.0, 0.0], "contract": 1.0},
                  {"select": {"classes": [8]}, "translate": [8.0, 0.0], "contract": 0.8}]}
END = None
EMBED_STAGES = [("load data + model", r"^latents: 0%"), ("latents", r"^latents: 100%"),
                ("affinities (kNN, P)", r"^affinities: 100%"), ("PCA pre-training", r"^pca-pretraining: 100%"),
                ("t-SNE optimisation", r"^optimisation: 100%"), ("transform + quality", r"^quality: 100%"),
                ("write embedding.csv, latents.npy", END)]
RUN_STAGES = [("load data + model + stored embedding", r"^pli epoch 1/\d+ step 1/"), ("PLI fine-tuning", r"^pli epoch"),
              ("control fine-tuning", r"^control epoch"), ("evaluate + store the run", END)]


def timed_command(argv: list[str], stages: list[tuple[str, str | None]]) -> tuple[list[dict], float]:
    """Run one CLI command in this process; ``([{stage, seconds}], total seconds)``.

    A stage ends at the last log line matching its pattern (``END``: when the command returns).
    """
    events: list[tuple[float, str]] = []
    original = cli._log

    def log(msg: str) -> None:
        events.append((time.perf_counter(), msg))
        original(msg)

    cli._log = log
    try:
        start = time.perf_counter()
        code = cli.main(argv)
        end = time.perf_counter()
    finally:
        cli._log = original
    if code != 0:
        sys.exit(f"{' '.join(argv)} exited with {code}")
    rows, prev = [], start
    for name, pattern in stages:
        hits = [t for t, m in events if t >= prev and pattern and re.search(pattern, m)]
        t = end if pattern is END else (hits[-1] if hits else prev)
        rows.append({"stage": name, "seconds": t - prev})
        prev = t
    return rows, end - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="the commands' --threads (0: automatic, as for a user)")
    ap.add_argument("--quick", action="store_true", help="small t-SNE config and 2 epochs: a smoke run")
    a = ap.parse_args()
    print(f"{machine()}; digits demo, {'QUICK: small t-SNE, 2 epochs' if a.quick else 'engine defaults'}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        common = ["--data", "digits", "--model", "demo", "--device", "cpu", "--runs-dir", f"{d}/runs",
                  "--threads", str(a.threads), *(["--tsne-config", json.dumps(QUICK_TSNE.to_dict())] if a.quick else [])]
        spec = Path(d) / "spec.json"
        spec.write_text(json.dumps(SPEC))
        embed_rows, embed_s = timed_command(["embed", *common, "--out", f"{d}/emb"], EMBED_STAGES)
        extra = ["--epochs", "2"] if a.quick else []
        run_rows, run_s = timed_command(["run", *common, "--spec", str(spec), "--out", f"{d}/run", *extra], RUN_STAGES)
        result = json.loads((Path(d) / "run" / "result.json").read_text())
    total = 2 * IMPORT_S + embed_s + run_s
    rows = ([{"command": "(each)", "stage": "import torch + plint_core", "seconds": IMPORT_S}]
            + [{"command": "embed", **r} for r in embed_rows] + [{"command": "run", **r} for r in run_rows])
    for r in rows:
        r["share of total"] = f"{100 * r['seconds'] * (2 if r['command'] == '(each)' else 1) / total:.0f} %"
    print()
    print_table(rows)
    verdict = "PASS" if total <= GOAL_S else f"MISS by {total - GOAL_S:.1f} s"
    if a.quick:
        verdict = "not judged in a quick run"
    print(f"\nembed {embed_s:.1f} s, run {run_s:.1f} s, imports 2 × {IMPORT_S:.1f} s: total {total:.1f} s "
          f"(goal ≤ {GOAL_S:.0f} s: {verdict}); accuracy before {result['accuracy']['before']:.4f} "
          f"after {result['accuracy']['after']:.4f} control {result['accuracy']['control']:.4f}")
    problems = [f"stage {r['stage']} took {r['seconds']} s" for r in rows if not r["seconds"] >= 0]
    if sum(r["seconds"] for r in embed_rows) - embed_s > 1e-6 or sum(r["seconds"] for r in run_rows) - run_s > 1e-6:
        problems.append("stages do not add up to the command times")
    if result["cache_hit"] or not all(v >= 0 for v in result["target_distance"].values()):
        problems.append(f"unexpected run result: cache_hit {result['cache_hit']}, distance {result['target_distance']}")
    out = write_json(f"demo_{'quick' if a.quick else 'full'}.json", {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "quick": a.quick, "stages": rows,
        "import_seconds": IMPORT_S, "embed_seconds": embed_s, "run_seconds": run_s, "total_seconds": total,
        "goal_seconds": GOAL_S, "result": verdict, "tsne": (QUICK_TSNE if a.quick else TSNEConfig()).to_dict(),
        "finetune": result["finetune"], "accuracy": result["accuracy"],
        "target_distance": result["target_distance"], "problems": problems})
    print(f"wrote {out}")
    if problems:
        sys.exit("SANITY FAILURES:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    main()
