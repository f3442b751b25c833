"""The sidebar's status box: what is loaded and which run is open."""
from __future__ import annotations

import streamlit as st

from plint_core.errors import PlintError

from .jobs import DONE
from .resources import embedding_job
from .session import session
from .ui import active_project, current_embedding_seed, current_layer, device_label


def sidebar_status() -> None:
    """Render the status lines (silently empty if the project cannot load: the page says why)."""
    try:
        proj = active_project()
    except PlintError:
        return
    sess = session()
    layer = current_layer(proj)
    job = embedding_job(proj, layer, current_embedding_seed(), start=False)
    state = "ready" if job is not None and job.status == DONE else "not ready"
    model = proj.origin.model if proj.origin else proj.config.model
    with st.sidebar:
        st.caption(f"**Data** {proj.data.name} · **Model** {model}  \n"
                   f"**Layer** {layer} ({state}) · **Device** {device_label()}  \n"
                   f"**Open run** {sess.current_run_id or '–'}")
