"""Plotly figures of the embedding scatter (pure: no Streamlit).

One ``Scattergl`` trace per colour group (class, or correct/incorrect), so
legend clicks hide whole classes and WebGL keeps 50k points responsive. Each
point's ``customdata`` is ``[sample id, label, prediction, split]`` (split 0 =
train, 1 = test); :mod:`plint_app.chart_events` reads it back. Overlays
(committed moves, the preview of the pending move, the selection ring, the
destination grid) are separate small traces and annotations, so the big
base traces can be built once and reused (:func:`base_traces`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from plint_core.report.style import COMMITTED_COLOR, FLAG_COLOR, GHOST_COLOR, RING_COLOR, class_colors, marker_size

from .chart_events import TEST, TRAIN

COLOR_MODES = {"label": "Label", "prediction": "Prediction", "correct": "Errors"}
CORRECT_COLOR, WRONG_COLOR = "#8fa8c8", "#d62728"
GRID_STEPS = 41


@dataclass(frozen=True)
class PointSet:
    """One split's points: coordinates, sample ids, labels and predictions (row-aligned)."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    labels: np.ndarray
    preds: np.ndarray
    split: int = TRAIN

    @classmethod
    def of(cls, xy: np.ndarray, ids: np.ndarray, labels: np.ndarray, preds: np.ndarray, split: int) -> "PointSet":
        xy = np.asarray(xy, dtype=np.float32)
        return cls(xy[:, 0], xy[:, 1], np.asarray(ids), np.asarray(labels), np.asarray(preds), split)

    def __len__(self) -> int:
        return int(self.x.size)

    def take(self, mask: np.ndarray) -> "PointSet":
        return PointSet(self.x[mask], self.y[mask], self.ids[mask], self.labels[mask], self.preds[mask], self.split)

    def customdata(self) -> np.ndarray:
        return np.stack([self.ids, self.labels, self.preds, np.full(len(self), self.split)], axis=1).astype(np.int32)


def _names_are_indices(class_names: Sequence[str]) -> bool:
    return all(name == str(i) for i, name in enumerate(class_names))


def _trace(points: PointSet, name: str, color: str, size: float, class_names: Sequence[str],
           legendgroup: str, showlegend: bool = True) -> go.Scattergl:
    split = "train" if points.split == TRAIN else "test"
    if _names_are_indices(class_names):
        hover = f"id %{{customdata[0]}} ({split})<br>label %{{customdata[1]}}<br>prediction %{{customdata[2]}}<extra></extra>"
        text = None
    else:  # names differ from indices: spell them out per point
        names = np.asarray(class_names, dtype=object)
        text = [f"label {a}<br>prediction {b}" for a, b in zip(names[points.labels], names[points.preds])]
        hover = f"id %{{customdata[0]}} ({split})<br>%{{text}}<extra></extra>"
    test = points.split == TEST
    return go.Scattergl(
        x=points.x, y=points.y, customdata=points.customdata(), text=text, hovertemplate=hover,
        mode="markers", name=name + (" (test)" if test else ""), legendgroup=legendgroup, showlegend=showlegend,
        marker=dict(color=color, size=size * (1.15 if test else 1.0), opacity=0.55 if test else 0.8,
                    symbol="diamond" if test else "circle", line=dict(width=0)),
    )


def base_traces(train: PointSet, test: PointSet | None, class_names: Sequence[str], color_by: str) -> list[go.Scattergl]:
    """The data traces: train (and test) points grouped by ``color_by`` (a key of :data:`COLOR_MODES`)."""
    if color_by not in COLOR_MODES:
        raise ValueError(f"unknown colour mode {color_by!r}")
    size = marker_size(len(train) + (len(test) if test is not None else 0))
    colors = class_colors(len(class_names))
    traces = []
    for points in (train, test) if test is not None else (train,):
        if color_by == "correct":
            groups = [("correct", CORRECT_COLOR, points.labels == points.preds),
                      ("misclassified", WRONG_COLOR, points.labels != points.preds)]
        else:
            key = points.labels if color_by == "label" else points.preds
            groups = [(str(name), colors[k], key == k) for k, name in enumerate(class_names)]
        for name, color, mask in groups:
            if mask.any():
                traces.append(_trace(points.take(mask), name, color, size, class_names, name))
    return traces


@dataclass
class Overlay:
    """Extra traces and arrow annotations drawn over the base traces."""

    traces: list[go.Scattergl]
    annotations: list[dict]

    @classmethod
    def empty(cls) -> "Overlay":
        return cls([], [])

    def __add__(self, other: "Overlay") -> "Overlay":
        return Overlay(self.traces + other.traces, self.annotations + other.annotations)

    def signature(self) -> str:
        text = pio.to_json(go.Figure(data=self.traces, layout={"annotations": self.annotations}), validate=False)
        return hashlib.sha1(text.encode()).hexdigest()


def _arrow(start: np.ndarray, end: np.ndarray, color: str, text: str = "") -> dict:
    return dict(x=float(end[0]), y=float(end[1]), ax=float(start[0]), ay=float(start[1]), xref="x", yref="y",
                axref="x", ayref="y", showarrow=True, arrowhead=2, arrowsize=1.3, arrowwidth=2, arrowcolor=color,
                text=text, font=dict(color=color, size=12), xanchor="left", yanchor="bottom")


def _ghosts(xy: np.ndarray, name: str, color: str, size: float, opacity: float, showlegend: bool = True) -> go.Scattergl:
    """Semi-transparent grey points where a group is asked to go."""
    return go.Scattergl(x=xy[:, 0].astype(np.float32), y=xy[:, 1].astype(np.float32), mode="markers", name=name,
                        hoverinfo="skip", showlegend=showlegend,
                        marker=dict(symbol="circle", color=color, size=size, opacity=opacity, line=dict(width=0)))


def moves_overlay(origins: Sequence[np.ndarray], targets: Sequence[np.ndarray], size: float,
                  drawn: Sequence[np.ndarray] | None = None) -> Overlay:
    """Committed moves: each group's targets as light ghost points and an arrow from its centroid to theirs
    (``drawn``: the ghost points to draw instead of every target, on a thinned map)."""
    overlay = Overlay.empty()
    for k, (start, end) in enumerate(zip(origins, targets)):
        ghosts = end if drawn is None else drawn[k]
        overlay += Overlay([_ghosts(ghosts, "committed targets", COMMITTED_COLOR, size, 0.45, showlegend=k == 0)],
                           [_arrow(start.mean(0), end.mean(0), COMMITTED_COLOR, f"move {k + 1}")])
    return overlay


def selection_overlay(xy: np.ndarray, size: float) -> Overlay:
    """A dark ring around every selected point."""
    ring = go.Scattergl(x=xy[:, 0].astype(np.float32), y=xy[:, 1].astype(np.float32), mode="markers",
                        name="selected", hoverinfo="skip",
                        marker=dict(symbol="circle-open", color=RING_COLOR, size=size + 3, line=dict(width=1)))
    return Overlay([ring], [])


def flag_overlay(xy: np.ndarray, size: float) -> Overlay:
    """An orange cross on every flagged point (:mod:`plint_core.flags`); clicks and hovers go to the point below."""
    if not len(xy):
        return Overlay.empty()
    cross = go.Scattergl(x=xy[:, 0].astype(np.float32), y=xy[:, 1].astype(np.float32), mode="markers",
                         name="flagged", hoverinfo="skip",
                         marker=dict(symbol="x", color=FLAG_COLOR, size=size + 3, line=dict(width=0)))
    return Overlay([cross], [])


def preview_overlay(origin: np.ndarray, target: np.ndarray, size: float, drawn: np.ndarray | None = None) -> Overlay:
    """The pending move: dark ghost points at the targets and an arrow between the two centroids (``drawn``: the
    ghost points to draw instead of every target, on a thinned map)."""
    return Overlay([_ghosts(target if drawn is None else drawn, "preview targets", GHOST_COLOR, size, 0.55)],
                   [_arrow(origin.mean(0), target.mean(0), GHOST_COLOR, "preview")])


def destination_grid(x_range: tuple[float, float], y_range: tuple[float, float], steps: int = GRID_STEPS) -> Overlay:
    """Invisible clickable points covering the plot, so a click anywhere picks a destination."""
    gx, gy = np.meshgrid(np.linspace(*x_range, steps), np.linspace(*y_range, steps))
    grid = go.Scattergl(x=gx.ravel().astype(np.float32), y=gy.ravel().astype(np.float32), mode="markers",
                        name="destination", showlegend=False,
                        hovertemplate="move the group here: (%{x:.2f}, %{y:.2f})<extra></extra>",
                        marker=dict(size=14, opacity=0.0, color="#000000"))
    return Overlay([grid], [])


def assemble(base: Sequence[go.Scattergl], overlay: Overlay, *, ranges, dragmode: str = "select",
             height: int = 620, uirevision: str = "plint") -> go.Figure:
    """The scatter figure: base traces, then overlays; equal axis scales, selection drag by default."""
    fig = go.Figure(data=list(base) + overlay.traces)
    (x0, x1), (y0, y1) = ranges
    fig.update_layout(
        height=height, dragmode=dragmode, uirevision=uirevision, hovermode="closest",
        margin=dict(l=10, r=10, t=30, b=10), legend=dict(itemsizing="constant", title_text=""),
        annotations=overlay.annotations,
        xaxis=dict(range=[x0, x1], showgrid=False, zeroline=False, title=None),
        yaxis=dict(range=[y0, y1], showgrid=False, zeroline=False, title=None, scaleanchor="x", scaleratio=1),
    )
    return fig
