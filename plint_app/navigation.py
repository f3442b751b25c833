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

So (1) every page file starts with :func:`through_app`, which notices that run, switches the legacy mode off and
reruns, which Streamlit starts at ``app.py`` with the same page and query string; (2) the legacy navigation
must not show even for that first run: ``client.showSidebarNavigation = false`` (``.streamlit/config.toml``)
hides it, and since that setting also hides ``st.navigation``'s own sidebar menu, the app draws its menu itself,
with ``st.page_link`` (:func:`sidebar_links`), the way Streamlit documents custom navigation.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import streamlit as st

from .ui import PAGES

APP_SCRIPT = Path(__file__).resolve().parent.parent / "app.py"
_run = threading.local()  # .in_app: this thread is running a page from inside app.py


def app_pages() -> list:
    """The app's pages, in menu order; their URLs are the file names (``/embedding``, ``/finetune``,
    ``/compare``; the default page, Model & data, is ``/``)."""
    return [
        st.Page(PAGES["model"], title="Model & data", icon=":material/database:", default=True),
        st.Page(PAGES["embedding"], title="Embedding & interventions", icon=":material/scatter_plot:"),
        st.Page(PAGES["finetune"], title="Fine-tune", icon=":material/model_training:"),
        st.Page(PAGES["compare"], title="Compare", icon=":material/compare:"),
    ]


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
    """The first line of every page file: a page run without ``app.py`` (Streamlit's legacy ``pages/`` mode, see
    the module's docstring) is stopped before it shows anything and rerun through ``app.py``.

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
    st.rerun()  # same page (its hash is its URL path in both modes) and the same query string
