"""Constants and helpers shared by the dashboard tests (fixtures are in :mod:`app_fixtures`)."""
from __future__ import annotations

import json
from contextlib import contextmanager
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


PAGE_TEXT_JS = """() => { const m = document.querySelector('[data-testid="stMain"]') || document.body;
  const plot = document.querySelector('.js-plotly-plot');
  let webgl = false;
  try { webgl = !!document.createElement('canvas').getContext('webgl'); } catch (e) {}
  return `[running: ${!!document.querySelector('[data-testid="stStatusWidget"]')}; map traces: ${
    plot && plot._fullData ? plot._fullData.length : 'none'}; drag layer: ${
    !!(plot && plot.querySelector('.nsewdrag'))}; WebGL: ${webgl}] ` + m.innerText.replace(/\\s+/g, ' ').slice(0, 400); }"""
"""What a page shows, for a failure's report: whether a script run is going, the map's trace count, whether its drag
layer is drawn, whether the page can still get a WebGL context (the map's traces are ``scattergl``: a browser short
of WebGL contexts draws no map), and the start of the main area's text."""


@contextmanager
def browser_evidence(browser, server, folder: Path, name: str = "failure"):
    """On a failure inside: a full-page screenshot of every page ``browser`` holds, in ``folder``, and the
    failure raised again as an :class:`AssertionError` with their paths and the last 3,000 characters of the
    ``server``'s log (:class:`plint_app.serve.Server`), so that a browser test's report says what each page showed
    and what the server said."""
    try:
        yield
    except Exception as exc:
        shots = []
        for i, context in enumerate(browser.contexts):
            for j, page in enumerate(context.pages):
                path = folder / f"{name}_{i}_{j}.png"
                try:
                    page.screenshot(path=str(path), full_page=True)
                    shown = page.evaluate(PAGE_TEXT_JS)
                except Exception as shot_error:  # a page that crashed or closed: say so, keep the first failure
                    shots.append(f"{path.name}: no screenshot ({type(shot_error).__name__})")
                else:
                    shots.append(f"{path} ({page.url}) shows: {shown!r}")
        raise AssertionError(f"{exc}\nscreenshots:\n  " + ("\n  ".join(shots) or "none (no page open)") +
                             f"\nserver log:\n{server.log.read_text()[-3000:]}") from exc


def assert_no_traceback(*logs: Path) -> None:
    """Each server log holds no ``Traceback``: the app raised nothing it did not show as a message."""
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text, f"{log}:\n{text}"
