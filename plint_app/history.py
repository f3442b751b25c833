"""The run history table: one row per finished run in the store (``RunStore.list_runs()``)."""
from __future__ import annotations

import pandas as pd

from plint_core.report.summaries import schedule_summary, spec_summary

COLUMNS = ["time", "moves", "λ", "schedule", "lr", "seed", "accuracy before", "accuracy after", "accuracy control",
           "device", "data", "layer", "run id"]


def history_table(runs: list[dict]) -> pd.DataFrame:
    """Rows for ``runs`` (``result.json`` dicts, newest first), skipping any that lack the basic fields."""
    rows = []
    for r in runs:
        try:
            ft, acc = r["finetune"], r["accuracy"]
            rows.append({"time": r.get("created", "").replace("T", " "), "moves": spec_summary(r.get("spec", {})),
                         "λ": ft["lam"], "schedule": schedule_summary(ft), "lr": ft["lr"], "seed": ft["seed"],
                         "accuracy before": acc["before"], "accuracy after": acc["after"],
                         "accuracy control": acc["control"], "device": r.get("device", ""), "data": r.get("data", ""),
                         "layer": r.get("layer", ""), "run id": r["run_id"]})
        except (KeyError, TypeError):
            continue
    return pd.DataFrame(rows, columns=COLUMNS)


def run_label(row: pd.Series) -> str:
    """A one-line label for a run picker."""
    return (f"{row['time']} · {row['moves']} · λ={row['λ']:g}, {row['schedule']} · "
            f"after {row['accuracy after']:.3f} / control {row['accuracy control']:.3f}")
