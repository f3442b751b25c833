"""Constants and helpers shared by the dashboard tests (fixtures are in :mod:`app_fixtures`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
TEST_TSNE = {"hidden": [64, 64], "n_iter": 200, "early_exaggeration_iter": 50, "pca_iter": 30, "n_negatives": 16,
             "learning_rate": 3e-3}
"""A small t-SNE preset: seconds instead of the default's minute, still a readable map of the digits."""
TEST_EPOCHS = 2
RUN_CLASS, RUN_TRANSLATE = 3, (0.5, 0.0)


def app_env(runs: Path | str) -> dict[str, str]:
    """Environment variables that point the app at ``runs`` with the small t-SNE preset."""
    return {"PLINT_RUNS_DIR": str(runs), "PLINT_TSNE_CONFIG": json.dumps(TEST_TSNE), "PLINT_DEVICE": "cpu"}


def plotly_selection(points: list[dict]) -> "object":
    """A ``PlotlyState`` as the browser sends it for ``points`` (dicts with x, y and optional customdata)."""
    from streamlit.typing import PlotlyState

    return PlotlyState({"selection": {"points": points, "point_indices": list(range(len(points))), "box": [],
                                      "lasso": []}})


def browser_points(ids: np.ndarray, xy: np.ndarray, labels: np.ndarray, split: int = 0) -> list[dict]:
    """Selected points the way the browser reports them: customdata as an index-keyed object."""
    return [{"curve_number": 0, "point_number": k, "point_index": k, "x": float(x), "y": float(y),
             "customdata": {"0": int(i), "1": int(lab), "2": int(lab), "3": split}}
            for k, (i, (x, y), lab) in enumerate(zip(ids, xy, labels))]
