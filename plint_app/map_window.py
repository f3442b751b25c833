"""*Show every point here*: a thinned map (:mod:`plint_app.map_thinning`) zoomed onto the selection, drawing the
points inside it instead of the whole map's sample; *Show the whole map* goes back.

Streamlit's chart does not report its zoom back to the server, so the region to draw in full is the one the user
selected. The window is this session's, kept per embedding (:attr:`plint_app.session.SessionData.map_window`).
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from .map_thinning import MapSample, Ranges
from .scatter_view import ScatterView
from .session import SessionData, session

PAD = 0.05
"""The window's margin around the selection, as a fraction of its width and height."""


def map_window(sess: SessionData, view: ScatterView) -> Ranges | None:
    """The ranges this session's map is zoomed onto (``None``: the whole map)."""
    if sess.map_window is None or sess.map_window[0] != view.key:
        return None
    return sess.map_window[1]


def window_of(xy: np.ndarray) -> Ranges:
    """A window around the points ``xy`` with a margin (:data:`PAD`), never narrower than a thousandth."""
    lo, hi = xy.min(0), xy.max(0)
    pad = np.maximum((hi - lo) * PAD, 1e-3)
    lo, hi = lo - pad, hi + pad
    return (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))


def _zoom(view: ScatterView) -> None:
    sess = session()
    if not len(sess.editor.selection):
        sess.flash("move", "info", "Select a region first (box or lasso), then *Show every point here*.")
        return
    sess.map_window = (view.key, window_of(view.xy_of(sess.editor.selection.ids)))


def _whole() -> None:
    session().map_window = None


def window_buttons(sess: SessionData, view: ScatterView, sample: MapSample) -> None:
    """What the thinned map shows, in words, and the buttons that zoom onto the selection and back."""
    st.caption(sample.caption())
    c1, c2 = st.columns(2)
    c1.button("Show every point here", on_click=_zoom, args=(view,), icon=":material/zoom_in:",
              disabled=not len(sess.editor.selection), width="stretch",
              help="Draw the points inside the selection's bounding box (up to the map's limit) instead of a sample "
                   "of the whole map.")
    c2.button("Show the whole map", on_click=_whole, icon=":material/zoom_out_map:", disabled=sample.window is None,
              width="stretch")
