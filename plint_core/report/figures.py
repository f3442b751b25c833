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
    curves = {name: selection[name] for name in ("pli", "control") if selection.get(name, {}).get("curve")}
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


PATH_COLORS = {"pli": "#d62728", "control": "#7f7f7f"}
PATH_TITLES = {"pli": "PLI", "control": "Control (CE only)"}


def path_figure(result: dict, picked: int | None = None, height: int = 340) -> go.Figure | None:
    """Each run's path in the plane of the edit's distance (x; validation images, or the moved training points
    where no validation image is moved) against validation accuracy (y), one point per checkpoint, start to end;
    the tolerance band of the ``follow`` rule, the control's kept checkpoint and the PLI pick (``picked``, default:
    the run's own) starred. ``None`` for a run stored without a path."""
    path = result.get("path")
    if not path:
        return None
    from ..path import Checkpoint
    from ..pick import edit_distance

    sel = result.get("selection") or {}
    pick = (sel.get("pli") or {}).get("pick") or {}
    picked = sel.get("pli", {}).get("step") if picked is None else picked
    on_val = bool(path.get("n_val_moved"))
    fig = go.Figure()
    for name in ("control", "pli"):
        cps = [Checkpoint.from_dict(c) for c in path[name]]
        x = [edit_distance(c) for c in cps]
        y = [c.accuracy for c in cps]
        steps = [c.step for c in cps]
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=PATH_TITLES[name], line={"color": PATH_COLORS[name]},
            customdata=np.array([[c.step, c.pair] for c in cps]),
            hovertemplate=PATH_TITLES[name] + " step %{customdata[0]}<br>validation accuracy %{y:.4f}<br>"
                          "edit distance %{x:.2f}<br>pair confusions %{customdata[1]}<extra></extra>"))
        kept = picked if name == "pli" else sel.get(name, {}).get("step")
        if kept in steps:
            i = steps.index(kept)
            fig.add_trace(go.Scatter(x=[x[i]], y=[y[i]], mode="markers", showlegend=False, hoverinfo="skip",
                                     marker={"symbol": "star", "size": 16, "color": PATH_COLORS[name],
                                             "line": {"width": 1, "color": "#000000"}}))
        fig.add_annotation(x=x[0], y=y[0], text="start", showarrow=False, yshift=12, font={"size": 10})
    if pick.get("reference") is not None:
        low = pick["reference"] - pick.get("tolerance", 0.0)
        fig.add_hline(y=low, line={"dash": "dot", "color": "#1f77b4", "width": 1},
                      annotation_text=f"within {pick.get('tolerance', 0) * 100:.1f} pp of the best accuracy "
                                      "(start or control)", annotation_font_size=10)
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 36, "b": 10},
                      title={"text": "Trade-off path: one point per checkpoint (★ = kept; left = follows the edit "
                                     "more, up = more accurate)", "font": {"size": 13}},
                      xaxis_title="edit distance, " + ("moved validation images" if on_val
                                                       else "moved training points") + " (map units)",
                      yaxis_title="validation accuracy", legend={"orientation": "h", "y": -0.25})
    return fig


def path_animation_figure(result: dict, table: pd.DataFrame, arrays: dict, class_names: Sequence[str],
                          targets: np.ndarray | None = None, height: int = 520, max_points: int = 3000) -> go.Figure:
    """The test map moving while the PLI run trained: one frame per checkpoint (the test points through the frozen
    E, coloured by true label, the tracked moved training points in black, their targets as grey rings), with a
    play button and a slider to scrub; at most ``max_points`` test points (a fixed sample)."""
    steps = [int(s) for s in arrays["pli_steps"]]
    xy, moved_xy = arrays["pli_test_xy"], arrays["pli_moved_xy"]
    labels = table["label"].to_numpy()
    n = len(labels)
    rows = np.arange(n) if n <= max_points else np.sort(np.random.default_rng(0).choice(n, max_points, False))
    colors = class_colors(len(class_names))
    size = marker_size(len(rows))
    accuracy = {c["step"]: c["accuracy"] for c in (result.get("path") or {}).get("pli", [])}

    def traces(k: int) -> list:
        out = []
        for c, name in enumerate(class_names):
            m = rows[labels[rows] == c]
            out.append(go.Scatter(x=xy[k, m, 0], y=xy[k, m, 1], mode="markers", name=str(name),
                                  marker={"color": colors[c], "size": size, "opacity": 0.75}, hoverinfo="skip"))
        out.append(go.Scatter(x=moved_xy[k, :, 0], y=moved_xy[k, :, 1], mode="markers", name="moved training points",
                              marker={"color": "#000000", "size": max(3.0, size - 1), "opacity": 0.6},
                              hoverinfo="skip"))
        return out

    fig = go.Figure(data=traces(0) + ([go.Scatter(x=targets[:, 0], y=targets[:, 1], mode="markers",
                                                  name="their targets", hoverinfo="skip",
                                                  marker={"symbol": "circle-open", "color": COMMITTED_COLOR,
                                                          "size": size + 2})]
                                      if targets is not None and len(targets) else []))
    n_traces = len(class_names) + 1
    fig.frames = [go.Frame(data=traces(k), name=str(s), traces=list(range(n_traces))) for k, s in enumerate(steps)]
    everything = [xy[:, rows].reshape(-1, 2), moved_xy.reshape(-1, 2)] + ([targets] if targets is not None else [])
    (x0, x1), (y0, y1) = plot_ranges(*[a for a in everything if len(a)])
    play = {"args": [None, {"frame": {"duration": 600, "redraw": False}, "fromcurrent": True,
                            "transition": {"duration": 300}}], "label": "▶ Play", "method": "animate"}
    pause = {"args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}],
             "label": "❚❚ Pause", "method": "animate"}
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"itemsizing": "constant"},
        xaxis={"range": [x0, x1], "showgrid": False, "zeroline": False},
        yaxis={"range": [y0, y1], "showgrid": False, "zeroline": False},
        title={"text": "The test map while the PLI run trained (frozen E; play or drag the slider)",
               "font": {"size": 13}},
        updatemenus=[{"type": "buttons", "buttons": [play, pause], "x": 0.0, "y": -0.02, "xanchor": "left",
                      "yanchor": "top", "direction": "left", "showactive": False}],
        sliders=[{"active": 0, "x": 0.15, "len": 0.85, "y": -0.02, "yanchor": "top",
                  "currentvalue": {"prefix": "step "},
                  "steps": [{"label": f"{s}" + (f" ({accuracy[s]:.3f})" if s in accuracy else ""),
                             "method": "animate",
                             "args": [[str(s)], {"mode": "immediate", "frame": {"duration": 0, "redraw": False},
                                                 "transition": {"duration": 0}}]} for s in steps]}])
    return fig
