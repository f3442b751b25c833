"""Run against run: two stored runs of one project side by side, with their differences.

In a review meeting the question is often not "did PLI beat its control" but
"which of our two edits (or λ, or schedules) did better". These tables take two
runs' ``result.json`` and put their settings, accuracies and per-class figures
next to each other, with ``B − A``.
"""
from __future__ import annotations

import pandas as pd

from plint_core.report.summaries import MODEL_TITLES, MODELS, schedule_summary, spec_summary

METRICS = ("precision", "recall", "f1")


def _flat(result: dict) -> dict[str, str]:
    ft = result.get("finetune", {})
    return {"moves": spec_summary(result.get("spec", {})), "λ": f"{ft.get('lam', '')}",
            "schedule": schedule_summary(ft) if ft else "", "learning rate": f"{ft.get('lr', '')}",
            "batch size": f"{ft.get('batch_size', '')}", "seed": f"{ft.get('seed', '')}",
            "training points": f"{result.get('n_train', '')}", "moved points": f"{result.get('n_moved', '')}",
            "layer": f"{result.get('layer', '')}", "embedding": f"{result.get('embedding_key', '')}",
            "device": f"{result.get('device', '')}", "created": f"{result.get('created', '')}".replace("T", " ")}


def settings_table(a: dict, b: dict) -> pd.DataFrame:
    """One row per setting, the two runs' values, and whether they differ."""
    fa, fb = _flat(a), _flat(b)
    rows = [{"setting": k, "run A": fa[k], "run B": fb[k], "differs": fa[k] != fb[k]} for k in fa]
    return pd.DataFrame(rows).set_index("setting")


def accuracy_table(a: dict, b: dict) -> pd.DataFrame:
    """Test accuracy of before / after PLI / control in each run, and ``B − A``."""
    rows = [{"model": MODEL_TITLES[m], "run A": a["accuracy"][m], "run B": b["accuracy"][m],
             "B − A": b["accuracy"][m] - a["accuracy"][m]} for m in MODELS]
    return pd.DataFrame(rows).set_index("model")


def per_class_versus(a: dict, b: dict, model: str = "after", model_b: str | None = None,
                     names: tuple[str, str] = ("A", "B")) -> pd.DataFrame:
    """Per-class precision, recall and F1 of ``model`` in each run (``model_b`` in ``b``, default the same), and
    ``Δ`` = B − A; ``names`` label the two runs' columns."""
    fa = pd.DataFrame(a["per_class"][model]).set_index("class")
    fb = pd.DataFrame(b["per_class"][model_b or model]).set_index("class")
    table = pd.DataFrame({"support": fa["support"]})
    for metric in METRICS:
        table[f"{metric} {names[0]}"] = fa[metric]
        table[f"{metric} {names[1]}"] = fb[metric]
        table[f"Δ {metric}"] = fb[metric] - fa[metric]
    table.index.name = "class"
    return table


def comparable(a: dict, b: dict) -> str | None:
    """Why two runs cannot be compared figure by figure (``None`` when they can)."""
    if a.get("classes") != b.get("classes"):
        return "the runs have different classes"
    if a.get("n_test") != b.get("n_test"):
        return f"the runs were scored on different test sets ({a.get('n_test')} and {b.get('n_test')} images)"
    return None
