"""A finished run as one self-contained HTML file, to send after a review meeting.

The file holds everything inline: plotly.js (from the installed ``plotly``
package, so no script is fetched), the figures as interactive plots, the
thumbnails as PNG data, the tables as HTML. It opens from a mail attachment,
offline, with no server. Contents: the run's settings, device, time and the
plint version; its moves with thumbnails of each moved group; test accuracy
and the targeted pair's confusions (with a 95 % interval over the test
images); the before / after / control confusion matrices and their
differences; the per-class table; the validation curves; the test embedding
before and after; and the project's flags on images (:mod:`plint_core.flags`), with thumbnails, where there are
any.

``python -m plint_core runs report RUN_ID --out report.html`` writes one
(:func:`write_report`); the app's Compare page offers the same as a download.
"""
from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .. import __version__
from ..atomic import write_atomic
from ..bootstrap import SeedBootstrap, pair_confusions
from ..data.dataset import Dataset
from ..errors import PlintError
from ..flags import KINDS, Flag
from ..intervention import InterventionSpec
from ..metrics import targeted_pair
from .figures import (
    before_after_figure,
    confusion_figure,
    confusion_max,
    difference_figure,
    moved_groups,
    path_animation_figure,
    path_figure,
    validation_figure,
)
from .summaries import MODEL_TITLES, MODELS, per_class_table, schedule_summary, selection_summary, spec_summary
from .thumbnails import montage, pick

THUMBNAILS_PER_MOVE = 24
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #1f1f1f; padding: 0 1rem; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.muted { color: #666; font-size: 0.9rem; } .grid { display: flex; flex-wrap: wrap; gap: 0.5rem; }
.grid > div { flex: 0 0 auto; }
table { border-collapse: collapse; font-size: 0.85rem; } td, th { border: 1px solid #e3e3e3; padding: 3px 7px;
        text-align: right; } th { background: #f5f5f5; } td:first-child, th:first-child { text-align: left; }
.metrics { display: flex; gap: 2.5rem; margin: 0.8rem 0; } .metrics b { display: block; font-size: 1.6rem; }
.move { margin: 0.8rem 0; } .move img { image-rendering: pixelated; border: 1px solid #ddd; }
"""


MATRIX_PX = 390
"""Width of each confusion-matrix figure (three fit side by side in the page's 1,200 px)."""
SVG_POINTS = 20_000
"""Test embeddings up to this many points are drawn as SVG (shown even where the reader's browser has no
WebGL); larger ones with WebGL."""


def _figure_html(fig: go.Figure, div_id: str, width: int | None = None) -> str:
    if width:
        fig.update_layout(width=width, autosize=False)
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, auto_play=False,
                       config={"displaylogo": False, "responsive": width is None})


def _pick_note(result: dict) -> str:
    sel = result["selection"]["pli"]
    if sel.get("picked_by") == "user":
        return (f"<p class='muted'>This report shows the PLI checkpoint of step {sel['step']:,}, picked by the user "
                f"on validation figures (the run's rule kept step {sel['rule_step']:,}).</p>")
    return f"<p class='muted'>This report shows the PLI checkpoint the run's rule ({html.escape(sel['rule'])}) kept.</p>"


def _png_data_uri(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _settings_rows(result: dict) -> list[tuple[str, str]]:
    ft = result.get("finetune", {})
    sel = result.get("selection") or {}
    return [("run id", result["run_id"]), ("created", str(result.get("created", "")).replace("T", " ")),
            ("data", str(result.get("data", ""))), ("model", str(result.get("model", ""))),
            ("latent layer", str(result.get("layer", ""))), ("embedding", str(result.get("embedding_key", ""))),
            ("λ (embedding term)", f"{ft.get('lam', '')}"), ("schedule", schedule_summary(ft)),
            ("learning rate", f"{ft.get('lr', '')}"), ("batch size", f"{ft.get('batch_size', '')}"),
            ("seed", f"{ft.get('seed', '')}"), ("weights kept", f"{ft.get('select', '')}"),
            ("training points", f"{result.get('n_train', ''):,}" if result.get("n_train") else ""),
            ("moved points", f"{result.get('n_moved', 0):,}"), ("test images", f"{result.get('n_test', 0):,}"),
            ("which step each run kept", selection_summary(result) or "the last"),
            ("device", f"{result.get('device', '')} ({result.get('precision', 'float32')})"),
            ("executor", str(result.get("executor", ""))),
            ("compute time", f"{result.get('compute_seconds') or result.get('seconds', 0):.1f} s"),
            ("data fingerprint", str(result.get("data_fingerprint", ""))[:16]),
            ("model fingerprint", str(result.get("model_fingerprint", ""))[:16]),
            ("selection steps", ", ".join(f"{k}: {v.get('step')}" for k, v in sel.items()) or "–")]


def _table(rows: Sequence[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows) + \
        "</table>"


def _moves_html(result: dict, moved: np.ndarray | None, data: Dataset | None) -> str:
    spec = InterventionSpec.from_dict(result["spec"])
    parts = []
    groups: list[np.ndarray] | None = None
    if data is not None:
        try:
            groups = spec.groups(data.train.labels, data.train.ids, data.class_names)
        except PlintError:
            groups = None
    for k, move in enumerate(result["spec"].get("moves", [])):
        title = spec_summary({"moves": [move]})
        body = ""
        if groups is not None and k < len(groups):
            rows = pick(groups[k], THUMBNAILS_PER_MOVE)
            grid = montage(data.train.images.native(rows), None, columns=12, tile=40)
            body = (f'<div><img alt="moved images of move {k + 1}" src="{_png_data_uri(grid)}"></div>'
                    f'<div class="muted">{len(rows)} of the {len(groups[k]):,} images this move selects</div>')
        parts.append(f'<div class="move"><b>Move {k + 1}</b>: {html.escape(title)}{body}</div>')
    if data is None:
        parts.append('<p class="muted">No thumbnails: the data set was not available when this report was '
                     "written.</p>")
    if moved is not None:
        parts.append(f'<p class="muted">{int(np.asarray(moved).sum()):,} training points moved in all.</p>')
    return "".join(parts) or "<p>(no moves)</p>"


def _flags_html(flags: Sequence[Flag], names: Sequence[str], data: Dataset | None) -> str:
    """The flags on images, each with its kind, suggestion, note, who and when, and thumbnails of its images."""
    parts = []
    for k, flag in enumerate(flags):
        what = KINDS.get(flag.kind, flag.kind)
        if flag.suggested is not None and 0 <= flag.suggested < len(names):
            what += f" → {names[flag.suggested]}"
        n = len(flag.ids)
        head = (f"<b>Flag {k + 1}</b>: {html.escape(what)} · {n:,} image{'s' if n != 1 else ''} · "
                f"{html.escape(flag.who)} · {html.escape(flag.when.replace('T', ' ').replace('+00:00', ' UTC'))}")
        note = f'<div>{html.escape(flag.note)}</div>' if flag.note else ""
        body = ""
        if data is not None:
            ids = np.asarray(flag.ids, dtype=np.int64)
            present = np.isin(ids, data.train.ids)
            shown = pick(ids[present], THUMBNAILS_PER_MOVE)
            if len(shown):
                rows = np.flatnonzero(np.isin(data.train.ids, shown))
                grid = montage(data.train.images.native(rows), None, columns=12, tile=40)
                body = (f'<div><img alt="images of flag {k + 1}" src="{_png_data_uri(grid)}"></div>'
                        f'<div class="muted">{len(shown)} of the flag\'s {n:,} images, id '
                        f'{", ".join(str(int(i)) for i in data.train.ids[rows][:12])}{" …" if len(rows) > 12 else ""}'
                        '</div>')
        parts.append(f'<div class="move flag">{head}{note}{body}</div>')
    return (f"<h2>Flags on images ({len(flags)})</h2><p class='muted'>What the review said about the training "
            "images of this data and model, as the flags stood when this report was written.</p>" + "".join(parts)
            + ("" if data is not None else '<p class="muted">No thumbnails: the data set was not available when '
               "this report was written.</p>"))


def _pair_html(result: dict, table: pd.DataFrame, moved: np.ndarray | None, data: Dataset | None) -> str:
    names = result["classes"]
    labels = data.train.labels if data is not None and moved is not None and len(moved) == len(data.train) else None
    pair = targeted_pair(labels[moved] if labels is not None else np.zeros(0, np.int64),
                         np.asarray(result["confusion"]["before"]))
    stat = pair_confusions(pair)
    boot = SeedBootstrap(table["label"].to_numpy(), {m: table[f"pred_{m}"].to_numpy() for m in MODELS}, len(names))
    cells = []
    for m in MODELS:
        iv = boot.interval(stat, m)
        cells.append(f"<div>{html.escape(MODEL_TITLES[m])}<b>{iv.estimate:.0f}</b>"
                     f'<span class="muted">95 % interval {iv.low:.0f}–{iv.high:.0f}</span></div>')
    a, b = (html.escape(str(names[i])) for i in pair)
    return (f"<h2>Targeted pair: {a} ↔ {b}</h2><p class='muted'>Test images of either class predicted as the other "
            f"(both directions). Intervals: bootstrap over the {len(table):,} test images (this run's seed only)."
            f"</p><div class='metrics'>{''.join(cells)}</div>")


def render_report(result: dict, test_table: pd.DataFrame, train_targets: np.ndarray | None = None,
                  moved: np.ndarray | None = None, data: Dataset | None = None,
                  train_xy: np.ndarray | None = None, path_arrays: dict | None = None,
                  flags: Sequence[Flag] = ()) -> str:
    """The HTML text of a run's report.

    ``result`` is the run's ``result.json`` content and ``test_table`` its ``test_embedding.csv`` (or both as a
    pick shows them, :func:`plint_core.pick.picked_view`); with the training ``data`` (the run's data set, any
    input size) each move gets thumbnails of its images, with the embedding's ``train_xy`` the moves' arrows
    start where the groups were, and with the run's ``path_arrays`` (:func:`plint_core.pipeline.load_path`) the
    report holds the trade-off path and the animation of the map while the PLI run trained. ``flags``
    (:func:`plint_core.flags.stored_flags`) are listed, with thumbnails of their images given the ``data``.
    """
    import plotly.offline

    if data is not None and (moved is None or len(moved) != len(data.train)
                             or list(data.class_names) != list(result["classes"])):
        raise PlintError(f"the data set given ({data.name}: {len(data.train):,} training images, classes "
                         f"{', '.join(map(str, data.class_names))}) is not the one run {result['run_id']} was made on")
    names = result["classes"]
    acc = result["accuracy"]
    zmax = confusion_max(result)
    figures = [_figure_html(confusion_figure(result["confusion"][m], names, MODEL_TITLES[m], zmax), f"confusion-{m}",
                            MATRIX_PX) for m in MODELS]
    diffs = [_figure_html(difference_figure(result["confusion"]["before"], result["confusion"]["after"], names,
                                            "After − before"), "diff-before", MATRIX_PX + 40),
             _figure_html(difference_figure(result["confusion"]["control"], result["confusion"]["after"], names,
                                            "After − control"), "diff-control", MATRIX_PX + 40)]
    curves = validation_figure(result)
    trade_off = path_figure(result)
    animation = None
    if path_arrays is not None and "pli_test_xy" in path_arrays:
        targets = train_targets[path_arrays["moved_rows"]] if train_targets is not None else None
        animation = path_animation_figure(result, test_table, path_arrays, names, targets)
    groups = []
    if train_targets is not None and moved is not None:  # without the data: all moved points as one group
        labels, ids = (data.train.labels, data.train.ids) if data is not None else (np.zeros(0), np.zeros(0))
        groups = moved_groups(result["spec"], train_targets, moved, labels, ids, names, train_xy)
    embedding = _figure_html(before_after_figure(test_table, names, groups, webgl=len(test_table) > SVG_POINTS),
                             "test-embedding")
    per_class = per_class_table(result).style.format(precision=3).to_html()
    metrics = "".join(f"<div>{html.escape(MODEL_TITLES[m])}<b>{acc[m]:.4f}</b></div>" for m in MODELS)
    written = time.strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>plint report · run {html.escape(result['run_id'])}</title>
<style>{STYLE}</style>
<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>
</head><body>
<h1>plint report · run {html.escape(result['run_id'])}</h1>
<p class="muted">Projective Latent Interventions · written {written} by plint {__version__} ·
the run was computed on {html.escape(str(result.get('device', '')).upper())} at
{html.escape(str(result.get('created', '')).replace('T', ' '))}</p>
<h2>Moves</h2>{_moves_html(result, moved, data)}
{_flags_html(flags, names, data) if flags else ''}
<h2>Test accuracy</h2><div class="metrics">{metrics}</div>
{_pair_html(result, test_table, moved, data)}
<h2>Confusion matrices (test set; rows = true class, columns = prediction)</h2>
<div class="grid">{''.join(f'<div>{f}</div>' for f in figures)}</div>
<div class="grid">{''.join(f'<div>{f}</div>' for f in diffs)}</div>
<p class="muted">Differences count test images per cell: blue = more after PLI fine-tuning, red = fewer.</p>
<h2>Per-class precision, recall and F1</h2>{per_class}
{'<h2>Validation during fine-tuning</h2>' + _figure_html(curves, 'validation') if curves is not None else ''}
{'<h2>Trade-off path</h2>' + _figure_html(trade_off, 'trade-off') + _pick_note(result) if trade_off is not None else ''}
{'<h2>The map while the PLI run trained</h2>' + _figure_html(animation, 'path-animation') if animation is not None else ''}
<h2>Test embedding before and after</h2>{embedding}
<p class="muted">Grey rings: where the moved training groups were asked to go; arrows: from each group's original
centre. Black rings mark misclassified test images.</p>
<h2>Settings</h2>{_table(_settings_rows(result))}
</body></html>
"""


def write_report(path: str | Path, result: dict, test_table: pd.DataFrame, **parts) -> Path:
    """:func:`render_report` written to ``path`` (whole or not at all)."""
    text = render_report(result, test_table, **parts)
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
