"""Tables and one-line summaries of a finished run (its ``result.json`` content).

Shared by the app's pages, the run history and the HTML report
(:mod:`plint_core.report.html`), so that a run reads the same everywhere.
"""
from __future__ import annotations

import pandas as pd

MODELS = ("before", "after", "control")
MODEL_TITLES = {"before": "Before fine-tuning", "after": "After PLI fine-tuning", "control": "Control (CE only)"}
METRICS = ("precision", "recall", "f1")


def per_class_table(result: dict) -> pd.DataFrame:
    """Precision/recall/F1 per class for before, after and control, plus after−before deltas."""
    frames = {m: pd.DataFrame(result["per_class"][m]).set_index("class") for m in MODELS}
    table = pd.DataFrame({"support": frames["before"]["support"]})
    for metric in METRICS:
        for m in MODELS:
            table[f"{metric} {m}"] = frames[m][metric]
        table[f"Δ {metric}"] = frames["after"][metric] - frames["before"][metric]
        table[f"Δ {metric} vs control"] = frames["after"][metric] - frames["control"][metric]
    table.index.name = "class"
    return table


def delta_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith("Δ")]


def metrics_csv(result: dict) -> str:
    """:func:`per_class_table` plus an overall accuracy row, as CSV text."""
    table = per_class_table(result).reset_index()
    acc = {"class": "accuracy (all)", "support": result["n_test"],
           **{f"precision {m}": result["accuracy"][m] for m in MODELS}}
    return pd.concat([table, pd.DataFrame([acc])], ignore_index=True).to_csv(index=False)


def spec_summary(spec: dict) -> str:
    """A short human description of a spec dict, e.g. ``class 3 → (−5.0, 0.0); 40 points → (0.0, 4.0) ×0.5``."""
    parts = []
    for move in spec.get("moves", []):
        sel = move["select"]
        what = ("class " + ", ".join(map(str, sel["classes"]))) if "classes" in sel else f"{len(sel['ids'])} points"
        dx, dy = move.get("translate", (0.0, 0.0))
        a = move.get("contract", 1.0)
        parts.append(f"{what} → ({dx:+.1f}, {dy:+.1f})" + (f" ×{a:g}" if a != 1.0 else ""))
    return "; ".join(parts) or "(no moves)"


def schedule_summary(finetune: dict) -> str:
    """``1,000 steps`` or ``40 epochs``: what a run's ``finetune`` settings planned."""
    if finetune.get("epochs") is not None:
        return f"{finetune['epochs']} epochs"
    return f"{finetune.get('steps', 0):,} steps"


def confirmed(sel: dict) -> str:
    """``; on all 5,000 validation images 0.9790 vs 0.9776 at the start`` (or that the run went back to its start
    because its checkpoint scored lower there); ``""`` when not checked."""
    c = sel.get("confirm")
    if not c:
        return ""
    if c["reverted"]:
        return (f"; step {c['kept_step']:,} scored {c['kept']:.4f} on all {c['n']:,} validation images, below the "
                f"start's {c['start']:.4f}, so the run kept its start")
    return f"; on all {c['n']:,} validation images {c['kept']:.4f} vs {c['start']:.4f} at the start"


def selection_summary(result: dict) -> str:
    """Which step each run kept, and by which rule (``""`` for runs that predate the selection rule)."""
    selection, validation = result.get("selection"), result.get("validation")
    if not selection:
        return ""
    parts = []
    for name, title in (("pli", "PLI"), ("control", "control")):
        sel = selection.get(name, {})
        pick = sel.get("pick") or {}
        if sel.get("picked_by") == "user":
            parts.append(f"{title}: step {sel['step']:,} picked (validation accuracy {sel['score']:.4f}; the rule "
                         f"kept step {sel['rule_step']:,})")
        elif sel.get("rule") == "follow" and name == "pli":
            step = "the weights before fine-tuning" if sel["step"] == 0 else f"step {sel['step']:,}"
            how = (f"the checkpoint nearest the edit within {pick.get('tolerance', 0) * 100:.1f} pp of the best "
                   f"validation accuracy of the start and the control ({pick.get('reference', 0):.4f})"
                   if pick.get("within", True) else
                   "no checkpoint within the tolerance: the one nearest the edit within it of the run's own best"
                   if pick.get("fallback") == "own-best" else
                   "no checkpoint within the tolerance: its best validation one")
            parts.append(f"{title} kept {step}, {how} (validation accuracy {sel['score']:.4f})")
        elif sel.get("rule") in ("best-val", "follow"):
            step = "the weights before fine-tuning" if sel["step"] == 0 else f"step {sel['step']:,}"
            early = f", stopped early after {sel['steps_run']:,}" if sel.get("stopped_early") else ""
            parts.append(f"{title} kept {step} (validation accuracy {sel['score']:.4f}{early}{confirmed(sel)})")
        else:
            parts.append(f"{title} kept its last step ({sel.get('step', 0):,})")
    if validation:
        parts.append(f"validation: {validation['n']:,} images of the {validation['source']}, "
                     f"{validation['before']:.4f} before fine-tuning")
    return " · ".join(parts)
