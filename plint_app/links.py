"""Deep links: a page's address names what it shows, so that it can be pasted into a meeting's chat.

``/compare?run=RUN_ID`` opens that run on Compare, ``/embedding?layer=NAME`` that
layer's embedding. A page follows a link once (:func:`follow`), and then writes
what it shows back into its address (:func:`show_in_address`), so the address
bar always holds a link to the current view, and a choice made on the page is
not undone by the link it was opened with.
"""
from __future__ import annotations

from typing import Collection

import streamlit as st

SEEN_KEY = "_plint_links"
"""Session state: per parameter, the value last followed or written."""


def follow(param: str, known: Collection[str]) -> tuple[str | None, str | None]:
    """``(value, None)`` when the address's ``?param=`` names one of ``known`` and was not followed yet,
    ``(None, value)`` when it names something unknown (once), else ``(None, None)``."""
    value = st.query_params.get(param)
    seen = st.session_state.setdefault(SEEN_KEY, {})
    if not value or seen.get(param) == value:
        return None, None
    seen[param] = value
    return (value, None) if value in known else (None, value)


def show_in_address(param: str, value: str) -> None:
    """Put ``?param=value`` in the page's address (a link to what the page now shows)."""
    st.session_state.setdefault(SEEN_KEY, {})[param] = value
    if st.query_params.get(param) != value:
        st.query_params[param] = value
