"""How plint draws points: marker sizes, class colours, padded plot ranges and the overlay colours.

Shared by the app's interactive scatter (:mod:`plint_app.scatter`) and a run's
figures (:mod:`plint_core.report.figures`), so the report looks like the app.
"""
from __future__ import annotations

import numpy as np
from plotly.colors import qualitative

GHOST_COLOR, COMMITTED_COLOR, RING_COLOR = "#2b2b2b", "#8c8c8c", "#000000"
FLAG_COLOR = "#ff7f0e"
"""Flagged images (:mod:`plint_core.flags`): their marker on the map, the corner of their thumbnails."""


def marker_size(n_points: int) -> float:
    """Marker diameter (px) that keeps ``n_points`` readable: 7 for a few hundred, 3 at 50k."""
    return float(np.clip(10.5 - 1.6 * np.log10(max(n_points, 1)), 3.0, 7.0))


def class_colors(n_classes: int) -> list[str]:
    """A categorical palette with at least ``n_classes`` colours."""
    palette = qualitative.Plotly if n_classes <= 10 else qualitative.Dark24 if n_classes <= 24 else qualitative.Alphabet
    return [palette[i % len(palette)] for i in range(n_classes)]


def plot_ranges(*arrays: np.ndarray, pad: float = 0.08) -> tuple[tuple[float, float], tuple[float, float]]:
    """Padded ``(x_range, y_range)`` covering every ``[N, 2]`` array given."""
    xy = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1, 2) for a in arrays if len(a)])
    lo, hi = xy.min(0), xy.max(0)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - pad * span, hi + pad * span
    return (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))
