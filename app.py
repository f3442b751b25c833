"""plint dashboard: ``streamlit run app.py``.

The entry point only sets up the page and the navigation; each page is one
file in ``pages/`` and the helpers live in :mod:`plint_app`. Every page file
starts with :func:`plint_app.navigation.through_app`, so that a deep link
(``/compare?run=…``) opened on a fresh server runs through this file too.

Before the page runs, only Streamlit and the light :mod:`plint_app.navigation` and :mod:`plint_app.first_paint`
are imported: on a fresh server the page's own modules (torch among them) load while the browser already draws
the first visit's frame.
"""
import streamlit as st

from plint_app.first_paint import first_load, frame
from plint_app.meeting import meeting_bar, publish_view
from plint_app.navigation import FAVICON, app_pages, in_app, sidebar_links

# the tab's icon from a file of our own: a Material icon as page_icon is fetched from fonts.gstatic.com, which a
# lab machine without internet cannot reach (tests/test_browser_deep_links.py checks every request stays local)
st.set_page_config(page_title="plint · Projective Latent Interventions", page_icon=str(FAVICON), layout="wide")
menu, hidden = app_pages()
# hidden: the sidebar menu is the app's own (sidebar_links), as client.showSidebarNavigation is off
navigation = st.navigation(menu + hidden, position="hidden")
sidebar_links(menu)
with first_load():  # on a fresh server, one session at a time imports the engine
    meeting_bar(navigation.url_path)  # a follower takes the presenter's view over first (it may switch the page)
    try:
        with in_app(), frame(navigation.url_path):
            navigation.run()
    finally:  # also when the page stops early (st.stop) or reruns
        publish_view(navigation.url_path)  # a presenter's view, for its followers

from plint_app.resources import settled_heap  # noqa: E402 (after the page: it loads the engine)
from plint_app.sidebar import sidebar_status  # noqa: E402

sidebar_status()  # after the page, so it reports what the page just loaded
settled_heap()  # once per server, after its first page: keeps the garbage collection after each rerun cheap
