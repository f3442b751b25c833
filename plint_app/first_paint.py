"""The first visit's frame: an empty chart that the browser draws while a fresh server loads the engine.

A server runs none of the app's code before its first session, so the first visit pays for importing the engine's
modules (torch most of all: about 2 s of the 2.7 s that separated plint's first chart from a bare Streamlit app's on
the 2-core machine, bench/RESULTS.md, First visit). The browser, meanwhile, has nothing to draw, and it fetches and
starts plotly.js (Streamlit's chart bundle) only when the first Plotly element arrives, after those imports.

:func:`frame` draws, before the page runs, an empty Plotly chart of the map's height saying what is loading, and
takes it off once the page has drawn: the browser loads plotly.js while the server imports torch, and the page's
real chart then draws at once. It is drawn only while the engine is not yet loaded in this process (the first
script run of a server, or of a page after a restart) and only on the pages whose first chart is a Plotly figure;
any later run draws nothing extra, so a rerun never flickers. Only Streamlit and Plotly are imported here.
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

ENGINE_MODULE = "plint_core.pipeline"
"""Loaded by every page (it imports torch): while it is not in ``sys.modules`` the engine has not been loaded."""
FRAMES = {"embedding": "Loading the map…", "compare": "Loading the run's figures…"}
"""The pages that get a frame (by URL path) and what it says."""
HEIGHT = 620
"""The map's height (:func:`plint_app.scatter.assemble`), so the page does not jump when the map replaces it."""


_FIRST_LOAD = threading.RLock()


@contextmanager
def first_load() -> Iterator[None]:
    """Around a script run's pre-page work and page: while the engine is not loaded, one session at a time.

    Two sessions that a fresh server runs at once would import the engine's modules (torch, pandas, plotly) in two
    threads; modules that import each other can then meet half-initialised ("partially initialized module
    'pandas'", seen when a second browser opened a page while the first was loading). The second session waits
    here for the first's run instead; once the engine is loaded, nothing waits."""
    if engine_loaded():
        yield
        return
    with _FIRST_LOAD:
        yield


def engine_loaded() -> bool:
    """Whether this process has already imported the engine (then a page draws at once: no frame)."""
    return ENGINE_MODULE in sys.modules


def frame_figure(text: str):
    """The frame: no axes, no data, ``text`` in the middle."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(height=HEIGHT, margin=dict(l=10, r=10, t=30, b=10), xaxis=dict(visible=False),
                      yaxis=dict(visible=False), plot_bgcolor="rgba(0,0,0,0)", paper_bgcolor="rgba(0,0,0,0)",
                      annotations=[dict(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                                        font=dict(size=15, color="#888888"))])
    return fig


@contextmanager
def frame(url_path: str) -> Iterator[bool]:
    """Around ``app.py``'s ``navigation.run()``: the frame for the page at ``url_path`` while the engine loads
    (see the module's docstring), taken off when the page has run. Yields whether a frame was drawn."""
    text = FRAMES.get(url_path)
    if text is None or engine_loaded():
        yield False
        return
    slot = st.empty()
    slot.plotly_chart(frame_figure(text), config={"displayModeBar": False, "staticPlot": True},
                      key="plint_first_paint")
    try:
        yield True
    finally:
        slot.empty()
