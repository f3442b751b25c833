"""Plotly figures of a finished run: confusion matrices, their differences, validation curves, test embeddings.

Inputs are a run's ``result.json`` content (``RunResult.result``) and its
``test_embedding`` table, so an old run reopened from the store renders the
same as a fresh one, in the app and in the HTML report.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import PlintError
from ..intervention import InterventionSpec
from .style import COMMITTED_COLOR, class_colors, marker_size, plot_ranges
from .summaries import MODELS


def confusion_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str, zmax: float) -> go.Figure:
    """A confusion-matrix heatmap (rows = true class, columns = prediction) with counts written in the cells.

    Pass the same ``zmax`` to every matrix of a run so the colours compare.
    """
    z = np.asarray(matrix)
    names = [str(c) for c in class_names]
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, zmin=0, zmax=zmax, colorscale="Blues", texttemplate="%{z}",
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>", showscale=False))
    _matrix_layout(fig, title)
    return fig


def difference_figure(before: Sequence[Sequence[int]], after: Sequence[Sequence[int]], class_names: Sequence[str],
                      title: str = "After − before") -> go.Figure:
    """``after − before`` counts on a diverging scale centred on 0 (blue = more, red = fewer); zeros left blank."""
    diff = np.asarray(after) - np.asarray(before)
    bound = max(1, int(np.abs(diff).max()))
    names = [str(c) for c in class_names]
    text = [[f"{v:+d}" if v else "" for v in row] for row in diff.tolist()]
    fig = go.Figure(go.Heatmap(z=diff, x=names, y=names, zmin=-bound, zmax=bound, zmid=0, colorscale="RdBu",
                               text=text, texttemplate="%{text}",
                               hovertemplate="true %{y}, predicted %{x}: %{z:+d}<extra></extra>",
                               colorbar=dict(thickness=10, tickformat="+d", dtick=max(1, bound // 2))))
    _matrix_layout(fig, title)
    return fig


def _matrix_layout(fig: go.Figure, title: str) -> None:
    fig.update_layout(title=dict(text=title, x=0.5, xanchor="center"), height=380, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(title="predicted", side="bottom", type="category"),
                      yaxis=dict(title="true", autorange="reversed", type="category", scaleanchor="x"))


def confusion_max(result: dict) -> int:
    """The largest count over the run's three confusion matrices (a shared colour scale)."""
    return max(int(np.max(result["confusion"][m])) for m in MODELS)


def validation_figure(result: dict, height: int = 260) -> go.Figure | None:
    """Validation accuracy against step for the PLI run and the control, the kept steps marked; ``None`` when
    the runs kept their last step without validation."""
    selection = result.get("selection") or {}
    curves = {name: selection[name] for name in ("pli", "control")
              if selection.get(name, {}).get("rule") == "best-val" and selection[name].get("curve")}
    if not curves:
        return None
    fig = go.Figure()
    for name, sel in curves.items():
        steps, scores = zip(*sel["curve"])
        title = "PLI" if name == "pli" else "Control (CE only)"
        color = "#d62728" if name == "pli" else "#7f7f7f"
        fig.add_trace(go.Scatter(x=steps, y=scores, mode="lines+markers", name=title, line={"color": color}))
        fig.add_trace(go.Scatter(x=[sel["step"]], y=[sel["score"]], mode="markers", showlegend=False,
                                 marker={"symbol": "star", "size": 14, "color": color},
                                 hovertemplate=f"{title} keeps step %{{x}}<br>validation accuracy %{{y:.4f}}"
                                               "<extra></extra>"))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title={"text": "Validation accuracy during fine-tuning (★ = the step each run keeps)",
                             "font": {"size": 13}},
                      xaxis_title="step", yaxis_title="validation accuracy", legend={"orientation": "h", "y": -0.3})
    return fig


def before_after_figure(table: pd.DataFrame, class_names: Sequence[str], groups: Sequence[tuple[np.ndarray, np.ndarray]],
                        height: int = 520, webgl: bool = True) -> go.Figure:
    """Test points before (left) and after (right) fine-tuning, on the same axes, coloured by true label.

    ``groups`` are the moved training groups as ``(origin xy, target xy)``:
    their targets are drawn as grey rings in both panels, with an arrow from
    the group's original centroid to its target centroid. ``webgl=False`` draws
    SVG markers instead (slower with many points, but shown where WebGL is not).
    """
    scatter = go.Scattergl if webgl else go.Scatter
    fig = make_subplots(rows=1, cols=2, shared_xaxes=True, shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=("Test set before fine-tuning", "Test set after PLI fine-tuning"))
    colors = class_colors(len(class_names))
    size = marker_size(len(table))
    labels = table["label"].to_numpy()
    for col, model in ((1, "before"), (2, "after")):
        pred = table[f"pred_{model}"].to_numpy()
        x, y = table[f"x_{model}"].to_numpy(), table[f"y_{model}"].to_numpy()
        for k, name in enumerate(class_names):
            m = labels == k
            if not m.any():
                continue
            fig.add_trace(scatter(
                x=x[m], y=y[m], mode="markers", name=str(name), legendgroup=str(name), showlegend=col == 1,
                customdata=np.stack([table["id"].to_numpy()[m], pred[m]], 1),
                hovertemplate=f"id %{{customdata[0]}}<br>label {name}<br>prediction %{{customdata[1]}}<extra></extra>",
                marker=dict(color=colors[k], size=size, opacity=0.8)), row=1, col=col)
        wrong = pred != labels
        fig.add_trace(scatter(x=x[wrong], y=y[wrong], mode="markers", name="misclassified", legendgroup="wrong",
                                   showlegend=col == 1, hoverinfo="skip",
                                   marker=dict(symbol="circle-open", color="#000000", size=size + 3,
                                               line=dict(width=1.2))), row=1, col=col)
        for g, (origin, target) in enumerate(groups):
            fig.add_trace(scatter(x=target[:, 0], y=target[:, 1], mode="markers", name="moved group targets",
                                       legendgroup="targets", showlegend=col == 1 and g == 0, hoverinfo="skip",
                                       marker=dict(symbol="circle-open", color=COMMITTED_COLOR, size=size + 2)),
                          row=1, col=col)
            start, end = origin.mean(0), target.mean(0)
            suffix = "" if col == 1 else str(col)
            fig.add_annotation(x=float(end[0]), y=float(end[1]), ax=float(start[0]), ay=float(start[1]),
                               xref=f"x{suffix}", yref=f"y{suffix}", axref=f"x{suffix}", ayref=f"y{suffix}",
                               showarrow=True, arrowhead=2, arrowwidth=2, arrowcolor="#555555", text=f"move {g + 1}")
    everything = [table[[f"x_{m}", f"y_{m}"]].to_numpy() for m in ("before", "after")] + [t for _, t in groups]
    (x0, x1), (y0, y1) = plot_ranges(*everything)
    fig.update_xaxes(range=[x0, x1], showgrid=False, zeroline=False)
    fig.update_yaxes(range=[y0, y1], showgrid=False, zeroline=False)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), legend=dict(itemsizing="constant"))
    return fig


def moved_groups(spec: dict, targets: np.ndarray, moved: np.ndarray, labels: np.ndarray, ids: np.ndarray,
                 class_names: Sequence[str], train_xy: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(origin xy, target xy)`` per move of a run.

    Groups come from the spec when it fits the given training data, else all
    moved points form one group; without ``train_xy`` origins are the targets.
    """
    try:
        if len(labels) != len(targets):
            raise PlintError("the run was made on other data")
        rows = InterventionSpec.from_dict(spec).groups(labels, ids, class_names)
    except PlintError:
        rows = [np.flatnonzero(moved)] if moved is not None and moved.any() else []
    origin = train_xy if train_xy is not None and len(train_xy) == len(targets) else targets
    return [(np.asarray(origin[r]), np.asarray(targets[r])) for r in rows if len(r)]
