"""Reading the scatter's selection events (``st.plotly_chart(..., on_select="rerun")``).

The event is Streamlit's ``PlotlyState``: ``{"selection": {"points": [...],
"point_indices": [...], "box": [...], "lasso": [...]}}``. ``point_indices`` are
per trace, so the scatter puts each point's identity in ``customdata``:
``[sample id, label, prediction, split]`` with split 0 = train, 1 = test
(see :mod:`plint_app.scatter`). Points without customdata (the destination
grid, overlays) only count for :func:`destination`.

In the browser, Plotly decodes ``customdata`` sent as a typed array, so each
point's row reaches Python as ``{"0": id, "1": label, ...}`` rather than a
list; :func:`customdata_row` accepts both.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

TRAIN, TEST = 0, 1


@dataclass(frozen=True)
class ChartEvent:
    """A parsed selection event: selected training ids, clicked points and drawn boxes."""

    train_ids: np.ndarray
    n_test: int
    points_xy: tuple[tuple[float, float], ...]
    boxes: tuple[tuple[float, float, float, float], ...]
    signature: str
    clicked: tuple[int, int] | None = None
    """``(split, sample id)`` of the one data point a click picked (no box, no lasso); else ``None``."""

    @property
    def empty(self) -> bool:
        return not self.points_xy and not self.boxes

    def destination(self) -> tuple[float, float] | None:
        """Where the user pointed: the centre of the last box drawn, else the clicked point."""
        if self.boxes:
            x0, x1, y0, y1 = self.boxes[-1]
            return ((x0 + x1) / 2, (y0 + y1) / 2)
        if self.points_xy:
            return self.points_xy[0]
        return None


def _selection(state: Any) -> Mapping[str, Any]:
    if not state:
        return {}
    try:
        sel = state["selection"]
    except (KeyError, TypeError):
        return {}
    return sel if isinstance(sel, Mapping) else {}


def customdata_row(value: Any) -> list[Any] | None:
    """A point's customdata as a list (from a list, or from the index-keyed object a typed array becomes)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, Mapping):
        try:
            return [value[str(i)] if str(i) in value else value[i] for i in range(len(value))]
        except KeyError:
            return None
    return None


def parse_event(state: Any) -> ChartEvent:
    """Parse a ``PlotlyState`` (or ``None``) into a :class:`ChartEvent`."""
    sel = _selection(state)
    points = list(sel.get("points") or [])
    train, n_test, xy, picked = [], 0, [], []
    for p in points:
        if "x" in p and "y" in p and p["x"] is not None and p["y"] is not None:
            xy.append((float(p["x"]), float(p["y"])))
        cd = customdata_row(p.get("customdata"))
        if cd is not None and len(cd) >= 4:
            picked.append((int(cd[3]), int(cd[0])))
            if int(cd[3]) == TRAIN:
                train.append(int(cd[0]))
            else:
                n_test += 1
    boxes = []
    for b in sel.get("box") or []:
        xs, ys = b.get("x") or [], b.get("y") or []
        if len(xs) == 2 and len(ys) == 2:
            boxes.append((float(xs[0]), float(xs[1]), float(ys[0]), float(ys[1])))
    lasso = [(tuple(l.get("x") or []), tuple(l.get("y") or [])) for l in sel.get("lasso") or []]
    ids = np.unique(np.asarray(train, dtype=np.int64))
    digest = hashlib.sha1(ids.tobytes())
    digest.update(json.dumps([n_test, xy[:1], boxes, lasso], default=float).encode())
    clicked = picked[0] if len(points) == 1 and len(picked) == 1 and not boxes and not lasso else None
    return ChartEvent(ids, n_test, tuple(xy), tuple(boxes), digest.hexdigest(), clicked)
