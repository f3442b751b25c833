"""The first visit's frame (:mod:`plint_app.first_paint`): drawn before the engine loads, never left behind.

The browser half (the frame shows on a fresh server's first page, and on no later one) is in
``tests/test_browser_deep_links.py``; the time it saves is measured by ``bench/bench_app.py --first-visit``.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "pages").glob("*.py"))


def test_app_py_imports_no_engine_before_the_page_runs():
    """What ``app.py`` imports before ``navigation.run()`` loads neither torch nor the engine (in a fresh
    interpreter: this one has imported them already)."""
    tree = ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    before = []
    for node in tree.body:
        if isinstance(node, (ast.With, ast.Try)):  # the page's run
            break
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            before.append(ast.unparse(node))
    assert all(any(name in line for line in before) for name in ("first_paint", "navigation", "meeting")), before
    code = "; ".join(before) + "; import sys; print(sorted(m for m in ('torch', 'plint_core.pipeline', 'numpy') " \
                               "if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split("\n")[0] == "[]", out.stdout


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_every_page_goes_through_the_app_before_its_own_imports(page):
    """A page file's first statements: its docstring, ``import streamlit``, ``through_app``'s import and call;
    everything else comes after (a deep link on a fresh server then reaches app.py's frame before torch loads)."""
    body = ast.parse(page.read_text(encoding="utf-8")).body
    calls = [i for i, n in enumerate(body) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
             and getattr(n.value.func, "id", None) == "through_app"]
    assert calls, f"{page.name} does not call through_app()"
    head = [ast.unparse(n) for n in body[:calls[0]] if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assert head == ["import streamlit as st", "from plint_app.navigation import through_app"], head


def _page_in_frame(url_path: str) -> None:
    """The script: a page (one line of text) inside the frame."""
    import streamlit as st

    from plint_app.first_paint import frame

    with frame(url_path) as drawn:
        st.session_state["drawn"] = drawn
        st.markdown("the page")


def _run(url_path: str) -> AppTest:
    at = AppTest.from_function(_page_in_frame, args=(url_path,), default_timeout=60)
    return at.run()


def test_the_frame_is_drawn_while_the_engine_loads_and_taken_off_after_the_page(monkeypatch):
    import plint_app.first_paint as first_paint

    monkeypatch.setattr(first_paint, "ENGINE_MODULE", "plint_core._not_loaded_yet")  # as on a fresh server
    at = _run("embedding")
    assert not at.exception, at.exception
    assert at.session_state["drawn"] is True
    assert not at.get("plotly_chart"), "the frame was left on the page"
    assert [m.value for m in at.markdown] == ["the page"]


def test_no_frame_once_the_engine_is_loaded_or_on_a_page_without_a_chart(monkeypatch):
    import plint_app.first_paint as first_paint

    import plint_core.pipeline  # noqa: F401 (what every page loads)

    assert first_paint.engine_loaded()
    at = _run("embedding")
    assert at.session_state["drawn"] is False and not at.get("plotly_chart")
    monkeypatch.setattr(first_paint, "ENGINE_MODULE", "plint_core._not_loaded_yet")
    at = _run("model")  # Model & data draws no Plotly chart: nothing to load ahead
    assert at.session_state["drawn"] is False and not at.get("plotly_chart")


def test_the_frame_says_what_loads_and_has_the_maps_height():
    from plint_app.first_paint import FRAMES, HEIGHT, frame_figure
    from plint_app.scatter import Overlay, assemble

    fig = frame_figure(FRAMES["embedding"])
    assert not fig.data and fig.layout.annotations[0].text == "Loading the map…"
    assert fig.layout.height == HEIGHT == assemble([], Overlay([], []), ranges=((0, 1), (0, 1))).layout.height


def test_while_the_engine_loads_one_session_at_a_time_runs_and_none_waits_after(monkeypatch):
    """Two sessions of a fresh server would import the engine in two threads at once (modules importing each
    other then meet half-initialised); ``first_load`` lets the second wait for the first, and nobody once the
    engine is in."""
    import threading
    import time

    from plint_app import first_paint

    monkeypatch.setattr(first_paint, "engine_loaded", lambda: False)
    inside, overlap = [], []

    def session(name: str) -> None:
        with first_paint.first_load():
            inside.append(name)
            if len(inside) > 1:
                overlap.append(tuple(inside))
            time.sleep(0.2)
            inside.remove(name)

    threads = [threading.Thread(target=session, args=(f"s{k}",)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == []
    monkeypatch.setattr(first_paint, "engine_loaded", lambda: True)
    with first_paint._FIRST_LOAD:  # held elsewhere: a loaded engine does not wait for it
        done = threading.Event()
        t = threading.Thread(target=lambda: (first_paint.first_load().__enter__(), done.set()))
        t.start()
        assert done.wait(5)
        t.join()
