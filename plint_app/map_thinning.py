"""Thinning a large map: a fixed random sample of its points, drawn over a density map of all of them (pure: no
Streamlit).

Up to ``max_points`` (``PLINT_MAP_MAX_POINTS``, default :data:`DEFAULT_MAX_POINTS`) the map draws every point, as
it always did (:func:`sample_map` returns ``thinned=False`` and nothing else changes). Above it:

* the scatter draws ``max_points`` of them, a uniform random sample without replacement, the same one on every
  run (each point has a fixed rank in one random permutation of the split, seed 0);
* under the sample, a heatmap counts *every* point per cell (``numpy.histogram2d`` → ``go.Heatmap``, log scale,
  grey), so regions and outliers the sample misses still show;
* a *window* (axis ranges, from *Show every point here*) draws the points inside it instead: the lowest-ranked
  ``max_points`` of them, so a region holding fewer than ``max_points`` is drawn in full, and the points drawn
  for the whole map are among those drawn for any window;
* a box or lasso on such a map selects every point inside it, drawn or not, resolved on the server from the
  box's or lasso's geometry (:mod:`plint_app.selection_geometry`), not from the points the browser reports.

Test points (when shown) share the budget in proportion to their number.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plint_core.report.style import marker_size

DEFAULT_MAX_POINTS = 30_000
"""The most points the map draws. The browser redraws the drawn points after each selection: at 250,000 points a
box selection's round trip took 0.44-0.46 s with 60,000 drawn and 0.29-0.31 s with 30,000, in the same run on the
shared 2-core machine (bench/RESULTS.md, "The map at 250,000 and 1,000,000 points")."""
DENSITY_BINS = 180
"""Heatmap cells along the wider axis of the map's range."""
DENSITY_COLORS = [[0.0, "#f1f1f1"], [1.0, "#8c8c8c"]]

Ranges = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class MapSample:
    """Which rows of the training (and test) points the map draws."""

    train_rows: np.ndarray
    """Rows of the training points drawn, ascending (every row when not thinned)."""
    test_rows: np.ndarray
    """Rows of the test points drawn (empty when test points are hidden)."""
    n_train: int
    n_test: int
    """How many points the map stands for (test: 0 when hidden)."""
    thinned: bool
    """Whether the map has more points than it may draw: then it is sampled, shaded and selected by geometry."""
    window: Ranges | None = None
    """The ranges the sample was taken in (*Show every point here*), or ``None`` for the whole map."""

    @property
    def n_drawn(self) -> int:
        return int(self.train_rows.size + self.test_rows.size)

    @property
    def n_total(self) -> int:
        return self.n_train + self.n_test

    def marker_size(self) -> float:
        """The markers' size for the points drawn (a thinned map draws fewer, larger ones)."""
        return marker_size(self.n_drawn)

    def only_drawn(self, xy: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``xy`` (aligned with the training ``rows``) limited to the rows drawn: all of them unless thinned."""
        return xy[self.drawn_mask()[rows]] if self.thinned else xy

    def drawn_mask(self) -> np.ndarray:
        """A boolean mask over the training rows: ``True`` where the point is drawn."""
        mask = np.zeros(self.n_train, dtype=bool)
        mask[self.train_rows] = True
        return mask

    def caption(self) -> str:
        """What the map shows, in words (only for a thinned map)."""
        where = "inside the zoomed region" if self.window is not None else "a random sample"
        return (f"Showing {self.n_drawn:,} of {self.n_total:,} points ({where}; the grey shading counts all of them). "
                "A box or lasso selects every point inside it, drawn or not. Select a region and press *Show every "
                "point here* to draw the points in it.")


def ranks(n: int, seed: int = 0) -> np.ndarray:
    """Each of ``n`` rows' place in one random permutation (row ``r`` is drawn before row ``s`` if its rank is
    lower)."""
    order = np.random.default_rng(seed).permutation(n)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


def _pick(rank: np.ndarray, inside: np.ndarray | None, budget: int) -> np.ndarray:
    rows = np.arange(rank.size) if inside is None else np.flatnonzero(inside)
    if rows.size > budget:
        rows = rows[np.argpartition(rank[rows], budget - 1)[:budget]]
    return np.sort(rows)


def in_window(x: np.ndarray, y: np.ndarray, window: Ranges) -> np.ndarray:
    (x0, x1), (y0, y1) = window
    return (x >= min(x0, x1)) & (x <= max(x0, x1)) & (y >= min(y0, y1)) & (y <= max(y0, y1))


def sample_map(train_xy: np.ndarray, test_xy: np.ndarray | None, max_points: int,
               window: Ranges | None = None, seed: int = 0) -> MapSample:
    """The rows the map draws: all of them up to ``max_points`` in all, else a sample (see the module's docstring).
    ``test_xy`` is ``None`` when test points are hidden."""
    n_train = len(train_xy)
    n_test = 0 if test_xy is None else len(test_xy)
    if n_train + n_test <= max_points:
        return MapSample(np.arange(n_train), np.arange(n_test), n_train, n_test, False)
    test_budget = int(round(max_points * n_test / (n_train + n_test)))
    parts = []
    for xy, budget, salt in ((train_xy, max_points - test_budget, 0), (test_xy, test_budget, 1)):
        if xy is None or not len(xy):
            parts.append(np.zeros(0, dtype=np.int64))
            continue
        xy = np.asarray(xy)
        inside = None if window is None else in_window(xy[:, 0], xy[:, 1], window)
        parts.append(_pick(ranks(len(xy), seed + salt), inside, budget))
    return MapSample(parts[0], parts[1], n_train, n_test, True, window)


def density_trace(xy: np.ndarray, ranges: Ranges, bins: int = DENSITY_BINS):
    """A grey ``go.Heatmap`` of how many of the points ``xy`` fall in each cell of ``ranges`` (log scale, empty
    cells transparent; no hover, not selectable)."""
    import plotly.graph_objects as go

    (x0, x1), (y0, y1) = ranges
    wide = max(x1 - x0, y1 - y0) or 1.0
    nx, ny = max(int(bins * (x1 - x0) / wide), 8), max(int(bins * (y1 - y0) / wide), 8)
    counts, xe, ye = np.histogram2d(xy[:, 0], xy[:, 1], bins=(nx, ny), range=((x0, x1), (y0, y1)))
    z = np.where(counts > 0, np.log10(np.maximum(counts, 1)) + 1, np.nan).T.astype(np.float32)
    return go.Heatmap(x=((xe[:-1] + xe[1:]) / 2).astype(np.float32), y=((ye[:-1] + ye[1:]) / 2).astype(np.float32),
                      z=z, colorscale=DENSITY_COLORS, showscale=False, hoverinfo="skip", zsmooth=False,
                      name="density (all points)", showlegend=False)
