"""plint dashboard: ``streamlit run app.py``.

The entry point only sets up the page and the navigation; each page is one
file in ``pages/`` and the helpers live in :mod:`plint_app`.
"""
import streamlit as st

from plint_app.resources import settled_heap
from plint_app.sidebar import sidebar_status
from plint_app.ui import PAGES

st.set_page_config(page_title="plint · Projective Latent Interventions", page_icon=":material/scatter_plot:",
                   layout="wide")
navigation = st.navigation([
    st.Page(PAGES["model"], title="Model & data", icon=":material/database:", default=True),
    st.Page(PAGES["embedding"], title="Embedding & interventions", icon=":material/scatter_plot:"),
    st.Page(PAGES["finetune"], title="Fine-tune", icon=":material/model_training:"),
    st.Page(PAGES["compare"], title="Compare", icon=":material/compare:"),
])
navigation.run()
sidebar_status()  # after the page, so it reports what the page just loaded
settled_heap()  # once per server, after its first page: keeps the garbage collection after each rerun cheap
