"""PLI against a baseline run: a stored baseline of the same project beside the PLI run shown on Compare.

A baseline run (:mod:`plint_core.baselines`) is one fine-tuned model, not a PLI pair: a practitioner's first try
(the classweight, upweight and oversample baselines, from the command line) or a run with the review's flags (the
relabelled run and the run without the flagged images, from the Embedding page's flags panel). These tables put
its test figures next to the PLI run's, with ``baseline − PLI``.
"""
from __future__ import annotations

import pandas as pd

from plint_core.report.summaries import MODEL_TITLES, MODELS

from .project import Project
from .run_versus import per_class_versus


def project_baselines(proj: Project, kinds: tuple[str, ...] | None = None) -> list[dict]:
    """The ``result.json`` of this project's stored baseline runs (the same data and model), newest first; with
    ``kinds``, only those kinds."""
    fps = (proj.data.fingerprint(), proj.bundle.fingerprint)
    return [r for r in proj.store.list_baselines()
            if (kinds is None or (r.get("baseline") or {}).get("kind") in kinds)
            and (r.get("data_fingerprint"), r.get("model_fingerprint")) == fps]


def baseline_label(result: dict) -> str:
    """``name · created · run id`` for a list of baseline runs."""
    created = str(result.get("created", "")).replace("T", " ")[:16]
    return f"{result['baseline']['name']} · {created} · {result['run_id']}"


def accuracy_versus(pli: dict, baseline: dict) -> pd.DataFrame:
    """Test accuracy of the PLI run's three models and of the baseline, each with its difference to the
    baseline (``baseline − it``)."""
    b = baseline["accuracy"]["baseline"]
    rows = [{"model": MODEL_TITLES[m], "test accuracy": pli["accuracy"][m], "baseline − it": b - pli["accuracy"][m]}
            for m in MODELS]
    rows.append({"model": f"Baseline: {baseline['baseline']['name']}", "test accuracy": b, "baseline − it": 0.0})
    return pd.DataFrame(rows).set_index("model")


def per_class_against(pli: dict, baseline: dict) -> pd.DataFrame:
    """Per-class precision, recall and F1 after PLI fine-tuning and of the baseline, and ``Δ`` = baseline − PLI."""
    return per_class_versus(pli, baseline, "after", "baseline", names=("PLI", "baseline"))
