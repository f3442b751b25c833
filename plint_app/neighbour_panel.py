"""The Embedding page's *Find an image*: search by sample id or file name, or click one point on the map (with
*Clicking the plot* on *Inspect*).

The image found is ringed on the map (an overlay, :func:`neighbour_overlay`); a search also centres the map on
it (:func:`map_view`: the axis ranges around the point, and a fresh ``uirevision`` so that Plotly applies them;
a click keeps the map where it is). Below the map a panel shows the image, its label and prediction, and its
10 nearest neighbours in the layer's latent space (not the 2-D map) with their images, labels and distances,
as the TensorFlow Embedding Projector does (:mod:`plint_core.neighbours`, fitted once per project and layer:
:func:`plint_app.resources.neighbour_index`). A search that finds nothing says why and changes nothing.

The image shown is this session's (``st.session_state[FOCUS_KEY]``): which embedding, split and sample id, and
whether a search centred the map.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from plint_core.errors import PlintError
from plint_core.neighbours import Neighbourhood, Sample
from plint_core.pipeline import Embedding
from plint_core.report.style import RING_COLOR
from plint_core.report.thumbnails import montage

from .chart_events import TEST, ChartEvent
from .project import Project
from .resources import neighbour_index
from .scatter import Overlay
from .scatter_view import ScatterView, signature
from .session import session
from .ui import show_flash
from .view_keys import QUERY_KEY, SHOW_TEST_KEY

FOCUS_KEY = "plint_neighbour_focus"
AREA = "neighbours"
NEIGHBOUR_COLOR = "#0b3d91"
"""The rings around the neighbours: dark blue, apart from the class colours and the flags' orange."""
ZOOM = 0.4
"""A search centres the map on the image with this fraction of the whole map's width and height."""


@dataclass(frozen=True)
class Focus:
    """The image this session looks at: in which project, its split and id, and the map's centring.

    The image stays open when the layer changes (its neighbours are then the new layer's); the centring belongs
    to the map (``view``) the search was made on."""

    project: str
    view: str
    split: str
    id: int
    centred: int = 0
    """How many searches have centred the map (0: none); names the ``uirevision`` of the centred map."""
    centre: tuple[float, float] | None = None


def _focus() -> Focus | None:
    return st.session_state.get(FOCUS_KEY)


def _set_focus(proj: Project, view: ScatterView, sample: Sample, centre: bool) -> None:
    old = _focus()
    keep = old is not None and old.view == view.key
    centred, at = (old.centred, old.centre) if keep else (0, None)
    if centre:
        points = view.train if sample.split == "train" else view.test
        centred, at = centred + 1, (float(points.x[sample.split_row]), float(points.y[sample.split_row]))
    st.session_state[FOCUS_KEY] = Focus(proj.cache_key, view.key, sample.split, sample.id, centred, at)


def _show_test() -> bool:
    return bool(st.session_state.get(SHOW_TEST_KEY, False))


def search(proj: Project, emb: Embedding, view: ScatterView) -> None:
    """Callback of the search box: show the image the query names, or say why there is none (nothing changes)."""
    query = st.session_state.get(QUERY_KEY) or ""
    try:
        index = neighbour_index(proj, emb, _show_test())
        found = index.neighbours_of(index.find(query))
    except PlintError as exc:
        session().flash(AREA, "error", str(exc))
        return
    _set_focus(proj, view, found.sample, centre=True)


def select_image(sample_id: int) -> None:
    """Button callback: make the image shown the selection (to move it, or flag it)."""
    sess = session()
    sess.editor.select_ids([sample_id], "replace")
    sess.reset_chart()


def clear() -> None:
    """Button callback: close the panel and show the whole map again."""
    st.session_state.pop(FOCUS_KEY, None)
    st.session_state[QUERY_KEY] = ""


def open_clicked(proj: Project, emb: Embedding, view: ScatterView, event: ChartEvent) -> bool:
    """Open the panel on the one point a click picked (and put it into the search box); whether it was a click."""
    if event.clicked is None:
        return False
    split, sample_id = ("test" if event.clicked[0] == TEST else "train"), event.clicked[1]
    try:
        index = neighbour_index(proj, emb, _show_test())
        sample = index.sample(index.row_of(split, sample_id))
    except PlintError as exc:
        session().flash(AREA, "error", str(exc))
        return True
    _set_focus(proj, view, sample, centre=False)
    st.session_state[QUERY_KEY] = str(sample_id) if split == "train" else f"test {sample_id}"
    return True


def focused(proj: Project, emb: Embedding, view: ScatterView) -> Neighbourhood | None:
    """The image this session looks at and its neighbours in ``emb``'s layer; ``None`` if none, or if it is not
    on this map (another project's, or a test point while test points are hidden)."""
    focus = _focus()
    if focus is None or focus.project != proj.cache_key or (focus.split == "test" and not _show_test()):
        return None
    index = neighbour_index(proj, emb, _show_test())
    try:
        return index.neighbours_of(index.row_of(focus.split, focus.id))
    except PlintError:
        return None


def _xy(view: ScatterView, samples) -> np.ndarray:
    rows = [((view.train if s.split == "train" else view.test), s.split_row) for s in samples]
    return np.array([[p.x[r], p.y[r]] for p, r in rows], dtype=np.float32).reshape(-1, 2)


def neighbour_overlay(view: ScatterView, found: Neighbourhood | None, size: float) -> Overlay:
    """A thick ring around the image found and thin ones around its neighbours (empty without an image)."""
    if found is None:
        return Overlay.empty()
    traces = []
    if found.neighbours:
        xy = _xy(view, found.neighbours)
        traces.append(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", name="neighbours", hoverinfo="skip",
                                   marker=dict(symbol="circle-open", color=NEIGHBOUR_COLOR, size=size + 5,
                                               line=dict(width=1.5))))
    xy = _xy(view, [found.sample])
    traces.append(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", name="found", hoverinfo="skip",
                               marker=dict(symbol="circle-open", color=RING_COLOR, size=size + 16,
                                           line=dict(width=3))))
    return Overlay(traces, [])


def map_view(view: ScatterView) -> tuple[tuple[tuple[float, float], tuple[float, float]], str]:
    """The axis ranges and ``uirevision`` of the map: centred on the last image searched, else the whole map.

    A new search gets a new ``uirevision``, so that Plotly draws its ranges; between searches the revision stays
    and the user's own zoom and pan are kept."""
    focus = _focus()
    if focus is None or focus.view != view.key or focus.centre is None:
        return view.ranges, view.key
    (x0, x1), (y0, y1) = view.ranges
    hx, hy = (x1 - x0) * ZOOM / 2, (y1 - y0) * ZOOM / 2
    cx, cy = focus.centre
    return ((cx - hx, cx + hx), (cy - hy, cy + hy)), signature(view.key, "centred", str(focus.centred))


def _tile(proj: Project, sample: Sample, px: int) -> np.ndarray:
    split = proj.data.train if sample.split == "train" else proj.data.test
    return montage(split.images.native(np.array([sample.split_row])), np.array([sample.correct]), columns=1, tile=px)


def _caption(names, s: Sample) -> str:
    verdict = "" if s.correct else f" → predicted {names[s.prediction]}"
    return f"{s.id}{' (test)' if s.split == 'test' else ''} · {names[s.label]}{verdict} · {s.distance:.2f}"


def search_field(proj: Project, emb: Embedding, view: ScatterView) -> None:
    """*Find an image*: the search field, a button that closes the panel, and the search's message."""
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    c1.text_input("Find an image", key=QUERY_KEY, on_change=search, args=(proj, emb, view),
                  placeholder="sample id (test 5 for a test point) or file name",
                  help="A training point's id as the map's tooltip shows it, 'test 5' for a test point, or (for data "
                       "read from image files) a file name or a unique part of one. Or click one point on the map. "
                       "The map centres on the image and its 10 nearest neighbours in the latent space are listed "
                       "below the map.")
    c2.button("Close", key="w_neighbour_close", on_click=clear, disabled=_focus() is None, width="stretch",
              help="Close the image's panel and show the whole map.")
    show_flash(AREA)


def neighbour_panel(proj: Project, emb: Embedding, found: Neighbourhood | None) -> None:
    """The image found, its label and prediction, and its nearest neighbours with images, labels, distances."""
    if found is None:
        return
    names, s = proj.data.class_names, found.sample
    with st.container(border=True, key="neighbour_panel"):
        verdict = "classified correctly" if s.correct else f"misclassified as **{names[s.prediction]}**"
        st.markdown(f"**Image {s.describe()}**: label **{names[s.label]}**, prediction **{names[s.prediction]}** "
                    f"({verdict})")
        left, right = st.columns([1, 4])
        left.image(_tile(proj, s, 96), caption=f"{s.id} · {names[s.label]}")
        if s.split == "train":
            left.button("Select it", key="w_neighbour_select", on_click=select_image, args=(s.id,),
                        help="Make this image the selection, to move it (or flag it).")
        with right:
            st.markdown(f"**{len(found)} nearest neighbours** in the latent space of layer `{emb.layer}` "
                        "(Euclidean distance; green frame: classified correctly, red: misclassified)")
            if found.neighbours:
                st.image([_tile(proj, n, 56) for n in found.neighbours],
                         caption=[_caption(names, n) for n in found.neighbours])
        rows = [{"rank": k + 1, "id": n.id, "split": n.split, "label": names[n.label],
                 "prediction": names[n.prediction], "distance": round(n.distance, 4),
                 **({"file": n.name} if n.name else {})} for k, n in enumerate(found.neighbours)]
        if rows:
            st.dataframe(rows, hide_index=True)
