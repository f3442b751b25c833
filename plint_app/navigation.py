"""The app's navigation: its pages (titles, icons), their links in the sidebar, and deep links that come back
through ``app.py``.

Why a deep link needs help: the page scripts live in ``pages/``, next to ``app.py``. Streamlit still treats such
an app as a legacy (v1, folder-discovered) multipage app until a session runs ``st.navigation``: the first
session a server opens sets the process-wide ``PagesManager.uses_pages_directory`` from the folder's existence,
and only ``st.navigation`` clears it. Until then every run goes through Streamlit's ``_mpa_v1``, which lists
``pages/*.py`` as a navigation of file names ("app", "compare", ..., "model data") and runs the page the address
names, ``/compare`` → ``pages/compare.py``, on its own: ``app.py`` is not run, so no page config, no navigation
of ours, no sidebar status, no ``settled_heap``; and nothing clears the flag, so every deep link opened before
someone opens ``/`` gets the same. Streamlit offers no setting to switch the legacy mode off.

So (1) every page file calls :func:`through_app` first, which notices that run, switches the legacy mode off and
runs ``app.py`` in its place (which opens the same page, with the same query string); (2) the legacy navigation
must not show even for that first run: ``client.showSidebarNavigation = false`` (``.streamlit/config.toml``)
hides it, and since that setting also hides ``st.navigation``'s own sidebar menu, the app draws its menu itself,
with ``st.page_link`` (:func:`sidebar_links`), the way Streamlit documents custom navigation.

``AppTest`` resets the flag before every run, so there every run after the first one (which starts at ``app.py``)
is a legacy run of the current page file: :func:`through_app` runs ``app.py`` in the same run, which keeps that
run's widget events (a rerun would drop a button's click).
"""
from __future__ import annotations

import runpy
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import streamlit as st

PAGES = {"model": "pages/model_data.py", "embedding": "pages/embedding.py", "finetune": "pages/finetune.py",
         "compare": "pages/compare.py"}
"""The page files, by name (relative to ``app.py``). This module imports no more than Streamlit: ``app.py`` draws
the navigation (and :mod:`plint_app.first_paint`) before the engine's modules load."""
APP_SCRIPT = Path(__file__).resolve().parent.parent / "app.py"
FAVICON = Path(__file__).resolve().parent / "assets" / "favicon.png"
"""The browser tab's icon (``st.set_page_config(page_icon=...)``), a file of the app's own: no fetch from outside."""
_run = threading.local()  # .in_app: this thread is running a page from inside app.py


def app_pages() -> tuple[list, list]:
    """``(menu, hidden)``: the app's pages in menu order, and the pages that only an address reaches.

    The URL paths are pinned: ``/embedding``, ``/finetune``, ``/compare`` (:mod:`plint_app.links` hands them out
    with a query). The default page, Model & data, is ``/``; its file name's ``/model_data``, which Streamlit's
    legacy navigation used, would be "page not found" (a default page answers only ``/``), so a hidden page there
    switches to it.
    """
    model = st.Page(PAGES["model"], title="Model & data", icon=":material/database:", default=True, url_path="model")
    menu = [
        model,
        st.Page(PAGES["embedding"], title="Embedding & interventions", icon=":material/scatter_plot:",
                url_path="embedding"),
        st.Page(PAGES["finetune"], title="Fine-tune", icon=":material/model_training:", url_path="finetune"),
        st.Page(PAGES["compare"], title="Compare", icon=":material/compare:", url_path="compare"),
    ]
    hidden = [st.Page(lambda: st.switch_page(model), title="Model & data", url_path="model_data",
                      visibility="hidden")]
    return menu, hidden


def sidebar_links(pages: list) -> None:
    """The sidebar menu: one link per page, with its title and icon (the current page's is highlighted)."""
    with st.sidebar.container(key="plint_nav"):
        for page in pages:
            st.page_link(page)


@contextmanager
def in_app() -> Iterator[None]:
    """Around ``app.py``'s ``navigation.run()``: the page it runs came through the app."""
    _run.in_app = True
    try:
        yield
    finally:
        _run.in_app = False


def through_app() -> None:
    """Called by every page file before it shows anything: a page run without ``app.py`` (Streamlit's legacy
    ``pages/`` mode, see the module's docstring) runs ``app.py`` instead, then stops.

    A page file that is itself the script (``AppTest.from_file("pages/x.py")``, ``streamlit run pages/x.py``)
    runs on.
    """
    if getattr(_run, "in_app", False):
        return
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or Path(ctx.main_script_path).resolve() != APP_SCRIPT:
        return
    PagesManager.uses_pages_directory = False  # what st.navigation does: from now on every run starts at app.py
    # app.py, in this run: it opens the page the address names (and runs this file again, through the app); a
    # rerun instead would lose what this run was started for (a button's click)
    runpy.run_path(str(APP_SCRIPT), run_name="__main__")
    st.stop()  # this (legacy) run of the page file shows nothing itself
