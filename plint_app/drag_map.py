"""The scatter as a custom component (``st.components.v2``) on which a selected group is dragged to its target.

Streamlit's own Plotly chart reports selections and clicks, not the pointer's
path, so the map of the *Drag* mode is drawn by this component: the same
figure, with plotly.js from the installed ``plotly`` package. A box or lasso
selects as on the ordinary map (the event carries the sample ids). A press on
the selected group (or on its previewed targets) drags it instead: the preview
of the targets and an arrow follow the pointer, and on release the component
reports the translation, in data units, which the page puts into dx/dy for
the user to commit. Escape during a drag cancels it.

plotly.js (about 4.8 MB) reaches the browser once, through a second, constant
component (:func:`load_plotly`) that puts it on ``window``; Streamlit does not
send an unchanged element again (its forward-message cache sends a reference).
The same holds for the map's data traces, every point of the scatter: a third
element (:func:`drag_map` draws it, from :func:`base_payload`) puts them on
``window`` under their signature, and the map itself only carries that
signature, the overlays (moves, preview, selection ring) and the layout. A
drag's rerun, which only moves the preview, then sends kilobytes instead of
the whole scatter, and the map keeps the very trace objects it drew before.

On release the temporary preview stays where it was let go: the rerun the drag
causes draws the server's preview at that place (dx/dy are the drag) and
acknowledges the event (``ack``), so that redraw always comes. Taking the
preview off at once would redraw every point of the map before the event's
answer could be shown: at 20,000 points that kept the page busy for about
0.25 s, most of the drag's round trip (bench/results/app_drag_after.log).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

MAP_JS = r"""
function whenReady(gd, fn, tries = 0) {  // plotly.js and the latest data's traces come in elements of their own
  const bases = window.plintDragBases;
  if (window.Plotly && bases && bases.has(gd._plint.data.base)) { fn(); return; }
  if (tries < 2000) setTimeout(() => whenReady(gd, fn, tries + 1), 25);
  else gd._plint.pending = false;
}

function draw(gd) {
  const st = gd._plint, data = st.data, base = window.plintDragBases.get(data.base);
  st.pending = false;
  if (!base) return;
  if (st.drag) { st.redraw = true; return; }  // not under the pointer: when the drag ends
  // Shallow copies: the same arrays as the last drawing (Plotly.react compares them by reference), without what
  // plotly.js wrote into the trace objects it drew (the selected points of a box, a trace hidden in the legend).
  const traces = base.map(t => Object.assign({}, t)).concat(data.figure.data);
  window.Plotly.react(gd, traces, data.figure.layout, data.config).then(() => {
    if (gd._plintEvents) return;
    gd._plintEvents = true;
    gd.on('plotly_selected', ev => {
      const ids = [], test = [];
      for (const p of (ev && ev.points) || []) {
        const c = p.customdata;
        if (!c) continue;
        (Number(c[3]) === 0 ? ids : test).push(Number(c[0]));
      }
      gd._plint.seq += 1;
      // the shapes drawn, in data units: a thinned map's selection is resolved from them on the server
      const box = ev && ev.range && ev.range.x ? [{x: ev.range.x, y: ev.range.y}] : [];
      const lasso = ev && ev.lassoPoints && ev.lassoPoints.x ? [{x: ev.lassoPoints.x, y: ev.lassoPoints.y}] : [];
      gd._plint.setTriggerValue('selection', {ids, n_test: test.length, box, lasso, seq: gd._plint.seq,
                                              token: gd._plint.token});
    });
  });
}

function plotBox(gd) {
  const drag = gd.querySelector('.nsewdrag');
  return drag ? drag.getBoundingClientRect() : null;
}

function toData(gd, ev) {
  const r = plotBox(gd), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  return [xa.p2l(ev.clientX - r.left), ya.p2l(ev.clientY - r.top)];
}

function pixelBox(gd, xs, ys, pad) {
  if (!xs.length) return null;
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = plotBox(gd);
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < xs.length; i++) {
    const px = r.left + xa.l2p(xs[i]), py = r.top + ya.l2p(ys[i]);
    x0 = Math.min(x0, px); x1 = Math.max(x1, px); y0 = Math.min(y0, py); y1 = Math.max(y1, py);
  }
  return [x0 - pad, y0 - pad, x1 + pad, y1 + pad];
}

function inside(box, ev) {
  return box && ev.clientX >= box[0] && ev.clientX <= box[2] && ev.clientY >= box[1] && ev.clientY <= box[3];
}

function targets(group, t) {
  const a = group.contract, cx = group.centroid[0], cy = group.centroid[1];
  return [group.x.map(v => a * (v - cx) + cx + t[0]), group.y.map(v => a * (v - cy) + cy + t[1])];
}

function startDrag(gd, ev) {
  const st = gd._plint, group = st.data.group;
  if (!group || !group.x.length || ev.button !== 0) return;
  const [tx, ty] = targets(group, group.translate);
  const onTargets = inside(pixelBox(gd, tx, ty, 8), ev);
  if (!onTargets && !inside(pixelBox(gd, group.x, group.y, 8), ev)) return;  // a box selection instead
  ev.stopPropagation(); ev.preventDefault();
  const from = toData(gd, ev), base = onTargets ? group.translate.slice() : [0, 0];
  window.Plotly.addTraces(gd, {x: tx, y: ty, type: 'scattergl', mode: 'markers', name: 'drag preview',
    hoverinfo: 'skip', showlegend: false, marker: {symbol: 'circle', size: group.size + 1, color: '#2b2b2b', opacity: 0.6}});
  const annotations = (gd.layout.annotations || []).slice();
  st.drag = {from, base, t: base.slice(), trace: gd.data.length - 1, annotations, raf: 0};
  const move = e => {
    const d = st.drag; if (!d) return;
    const at = toData(gd, e);
    d.t = [d.base[0] + at[0] - d.from[0], d.base[1] + at[1] - d.from[1]];
    gd.dataset.dragging = JSON.stringify(d.t);  // the translation so far (tests read it)
    if (d.raf) return;
    d.raf = requestAnimationFrame(() => {
      d.raf = 0; if (st.drag !== d) return;
      const [nx, ny] = targets(group, d.t);
      const cx = group.centroid[0], cy = group.centroid[1];
      window.Plotly.update(gd, {x: [nx], y: [ny]}, {annotations: d.annotations.concat([{x: cx + d.t[0],
        y: cy + d.t[1], ax: cx, ay: cy, xref: 'x', yref: 'y', axref: 'x', ayref: 'y', showarrow: true,
        arrowhead: 2, arrowwidth: 2, arrowcolor: '#2b2b2b', text: 'drag'}])}, [d.trace]);
    });
  };
  const end = (e, cancelled) => {
    const d = st.drag; if (!d) return;
    st.drag = null;
    window.removeEventListener('pointermove', move, true);
    window.removeEventListener('pointerup', up, true);
    window.removeEventListener('keydown', key, true);
    if (d.raf) cancelAnimationFrame(d.raf);
    delete gd.dataset.dragging;
    if (cancelled) {  // nothing goes to the server: take the temporary preview and arrow off here
      if (st.redraw) { st.redraw = false; draw(gd); return; }  // a rerun came during the drag: draw its figure
      window.Plotly.react(gd, gd.data.filter((_, i) => i !== d.trace),
                          Object.assign({}, gd.layout, {annotations: d.annotations}));
      return;
    }
    st.redraw = false;  // the rerun this event causes draws the map again
    const at = toData(gd, e);
    const t = [d.base[0] + at[0] - d.from[0], d.base[1] + at[1] - d.from[1]];
    st.seq += 1;
    st.setTriggerValue('drag', {dx: t[0], dy: t[1], n: group.x.length, digest: group.digest, seq: st.seq,
                                token: st.token});
    // The preview stays until the rerun's redraw (see the module's docstring).
  };
  const up = e => end(e, false);
  const key = e => { if (e.key === 'Escape') { e.preventDefault(); end(e, true); } };
  window.addEventListener('pointermove', move, true);
  window.addEventListener('pointerup', up, true);
  window.addEventListener('keydown', key, true);
}

export default function (component) {
  const { parentElement, data, setTriggerValue } = component;
  let gd = parentElement.querySelector('div.plint-drag-map');
  if (!gd) {
    gd = document.createElement('div');
    gd.className = 'plint-drag-map';
    parentElement.appendChild(gd);
    gd._plint = { seq: 0, drag: null, token: Math.random().toString(36).slice(2) };
    gd.addEventListener('pointerdown', ev => startDrag(gd, ev), true);
  }
  gd._plint.data = data;
  gd._plint.setTriggerValue = setTriggerValue;
  // Drawn after the next frame: the rest of the rerun (the new dx/dy of a drag) is painted first, not after
  // plotly.js has redrawn every point.
  if (gd._plint.pending) return;  // one drawing is already waiting: it draws the latest data
  gd._plint.pending = true;
  whenReady(gd, () => requestAnimationFrame(() => setTimeout(() => draw(gd), 0)));
}
"""

BASE_JS = r"""
export default function (component) {  // the map's data traces, kept on the page under their signature
  const { data, parentElement } = component;
  const bases = window.plintDragBases = window.plintDragBases || new Map();
  const kept = bases.get(data.sig);  // the very objects drawn before, if any
  bases.delete(data.sig);
  bases.set(data.sig, kept || data.traces);  // the most recent last; the four most recent are kept
  while (bases.size > 4) bases.delete(bases.keys().next().value);
  parentElement.dataset.sig = data.sig;
}
"""

BASE_KEY = "plint_drag_base"
BASE_CSS = f".st-key-{BASE_KEY} {{ display: none; }}"  # it draws nothing: no gap for it above the map

LOADER_JS_TAIL = "\nexport default function (component) { component.parentElement.dataset.plotly = 'loaded'; }\n"


@st.cache_resource
def _loader() -> Callable[..., Any]:
    import plotly.offline

    return st.components.v2.component("plint.plotly_loader", js=plotly.offline.get_plotlyjs() + LOADER_JS_TAIL,
                                      isolate_styles=False)


@st.cache_resource
def _base() -> Callable[..., Any]:
    return st.components.v2.component("plint.drag_base", js=BASE_JS, css=BASE_CSS, isolate_styles=False)


@st.cache_resource
def _map() -> Callable[..., Any]:
    return st.components.v2.component("plint.drag_map", js=MAP_JS, isolate_styles=False)


def load_plotly() -> None:
    """Put plotly.js on the page (sent once; an unchanged element is not sent again)."""
    _loader()(key="plint_plotly_loader", height=0)


def group_payload(xy: np.ndarray, translate: Sequence[float], contract: float, size: float, digest: str,
                  drawn: np.ndarray | None = None) -> dict:
    """What the component needs to drag a group: its points, centroid, contraction, current translation.
    ``drawn`` (a mask over ``xy``'s rows, on a thinned map) sends only the points drawn; the centroid stays the
    whole group's."""
    xy = np.asarray(xy, dtype=np.float64)
    centroid = xy.mean(0).round(6).tolist() if len(xy) else [0.0, 0.0]
    if drawn is not None:
        xy = xy[drawn]
    return {"x": xy[:, 0].round(5).tolist(), "y": xy[:, 1].round(5).tolist(),
            "centroid": centroid, "contract": float(contract),
            "translate": [float(translate[0]), float(translate[1])], "size": float(size), "digest": digest}


def base_payload(traces: Sequence[go.Scattergl], sig: str) -> dict:
    """The map's data traces as the component takes them (Plotly's JSON), named by ``sig``, which must change
    whenever they do. Built once per colour mode and kept (:func:`plint_app.resources.cached_base_payload`)."""
    return {"sig": sig, "traces": json.loads(go.Figure(data=list(traces)).to_json())["data"]}


def drag_map(base: dict, fig: go.Figure, group: dict | None, key: str, config: dict,
             on_change: Callable[[], None], ack: str = "") -> Any:
    """Draw ``base``'s traces (:func:`base_payload`), then ``fig``'s (the overlays) with ``fig``'s layout;
    ``group`` (:func:`group_payload`) can be dragged. ``ack`` names the last event acted on (a new one makes the
    map redraw even when nothing else changed). Returns the component's result: ``.selection`` (``{ids, n_test,
    seq, token}``) and ``.drag`` (``{dx, dy, n, digest, seq, token}``), each set for the one rerun its event
    causes; ``token`` names the drawn map and ``seq`` counts its events."""
    load_plotly()
    _base()(data=base, key=BASE_KEY, height=0)  # unchanged, it is not sent again
    figure = json.loads(fig.to_json())
    return _map()(data={"base": base["sig"], "figure": figure, "config": config, "group": group, "ack": ack},
                  key=key, on_selection_change=on_change, on_drag_change=on_change)


def drag_events(state: Any) -> list[tuple[str, dict, str]]:
    """The events in the drag map's widget state (:func:`drag_map`'s result): ``(kind, event, name)`` for
    ``selection`` and ``drag``, where set; ``name`` (``token:seq``) tells one event from the next."""
    out = []
    for kind in ("selection", "drag"):
        event = None if state is None else (state.get(kind) if isinstance(state, dict) else getattr(state, kind, None))
        if event:
            out.append((kind, event, f"{event.get('token', '')}:{event.get('seq', '')}"))
    return out
