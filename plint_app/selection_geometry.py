"""A box or lasso selection resolved on the server from its geometry: every point inside it, drawn or not (pure: no
Streamlit).

On a thinned map (:mod:`plint_app.map_thinning`) the browser only knows the points it draws, so the points its
selection event lists are a sample of those selected. The event also carries the shapes the user drew, in data
coordinates: Streamlit's ``PlotlyState`` has ``selection.box`` (``[{"x": [x0, x1], "y": [y0, y1], ...}]``) and
``selection.lasso`` (``[{"x": [...], "y": [...], ...}]``, the polygon's vertices), and the drag map
(:mod:`plint_app.drag_map`) sends the same two lists. A point is selected when it lies in any of the shapes (a
shift-drag adds one), as Plotly's own selection does; a lasso is tested with shapely's vectorised
``intersects_xy`` (edges count as inside), after a cheap bounding-box cut.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .chart_events import ChartEvent

if TYPE_CHECKING:
    from .map_thinning import MapSample
    from .scatter_view import ScatterView

Box = tuple[float, float, float, float]
"""``(x0, x1, y0, y1)``, ordered."""
Polygon = tuple[tuple[float, ...], tuple[float, ...]]
"""A lasso's vertices, ``(xs, ys)``."""


@dataclass(frozen=True)
class Shapes:
    """The boxes and lassos of one selection event, in data coordinates."""

    boxes: tuple[Box, ...] = ()
    lassos: tuple[Polygon, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.boxes or self.lassos)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether each point ``(x[i], y[i])`` lies in one of the shapes."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        hit = np.zeros(x.shape, dtype=bool)
        for x0, x1, y0, y1 in self.boxes:
            hit |= (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
        for xs, ys in self.lassos:
            near = np.flatnonzero(~hit & (x >= min(xs)) & (x <= max(xs)) & (y >= min(ys)) & (y <= max(ys)))
            if near.size:
                hit[near] = _in_polygon(xs, ys, x[near], y[near])
        return hit


def _in_polygon(xs: Sequence[float], ys: Sequence[float], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    import shapely

    polygon = shapely.Polygon(np.column_stack([xs, ys]))
    if not polygon.is_valid:  # a lasso that crosses itself: the area it encloses, as Plotly fills it
        polygon = shapely.make_valid(polygon)
    shapely.prepare(polygon)
    return shapely.intersects_xy(polygon, x, y)


def _numbers(values: Any) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in values or ())
    except (TypeError, ValueError):
        return None
    return out if all(np.isfinite(out)) else None


def shapes_of(selection: Mapping[str, Any] | None) -> Shapes:
    """The boxes and lassos of a selection (``PlotlyState["selection"]``, or the drag map's event); malformed
    entries are left out."""
    if not isinstance(selection, Mapping):
        return Shapes()
    boxes, lassos = [], []
    for b in selection.get("box") or ():
        xs, ys = _numbers(b.get("x")) if isinstance(b, Mapping) else None, \
            _numbers(b.get("y")) if isinstance(b, Mapping) else None
        if xs and ys and len(xs) == 2 and len(ys) == 2:
            boxes.append((min(xs), max(xs), min(ys), max(ys)))
    for lasso in selection.get("lasso") or ():
        xs, ys = _numbers(lasso.get("x")) if isinstance(lasso, Mapping) else None, \
            _numbers(lasso.get("y")) if isinstance(lasso, Mapping) else None
        if xs and ys and len(xs) == len(ys) and len(xs) >= 3:
            lassos.append((xs, ys))
    return Shapes(tuple(boxes), tuple(lassos))


def selection_of(state: Any) -> Mapping[str, Any] | None:
    """``state["selection"]`` of a ``PlotlyState`` (or ``None``)."""
    try:
        sel = state["selection"]
    except (KeyError, TypeError):
        return None
    return sel if isinstance(sel, Mapping) else None


def resolve(shapes: Shapes, train_xy: np.ndarray, train_ids: np.ndarray,
            test_xy: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """The training sample ids inside ``shapes`` (sorted) and how many test points are (``test_xy``: the test
    points shown, ``None`` when hidden)."""
    xy = np.asarray(train_xy)
    ids = np.sort(np.asarray(train_ids)[shapes.contains(xy[:, 0], xy[:, 1])]).astype(np.int64)
    n_test = 0
    if test_xy is not None and len(test_xy):
        t = np.asarray(test_xy)
        n_test = int(shapes.contains(t[:, 0], t[:, 1]).sum())
    return ids, n_test


def resolved(selection: Mapping[str, Any] | None, view: "ScatterView", sample: "MapSample",
             show_test: bool) -> tuple[np.ndarray, int] | None:
    """On a thinned map, the training ids inside ``selection``'s boxes and lassos (``PlotlyState["selection"]`` or
    the drag map's event) and how many test points are; ``None`` on a map that draws every point, or without
    shapes (a click): the browser's own points are then the selection."""
    shapes = shapes_of(selection) if sample.thinned else Shapes()
    if not shapes:
        return None
    return resolve(shapes, view.index.xy, view.index.ids, view.test_xy if show_test else None)


def whole_selection(event: ChartEvent, state: Any, view: "ScatterView", sample: "MapSample",
                    show_test: bool) -> ChartEvent:
    """``event`` (parsed from ``state``, a ``PlotlyState``) with, on a thinned map, its training ids replaced by
    every point inside its boxes and lassos, drawn or not (:func:`resolved`)."""
    found = resolved(selection_of(state), view, sample, show_test)
    if found is None:
        return event
    return replace(event, train_ids=found[0], n_test=found[1])
