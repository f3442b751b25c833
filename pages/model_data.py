"""Page 1 · Model & data: what is loaded, the latent layer, and the embedding fit."""
import streamlit as st

from plint_app.navigation import through_app

through_app()  # first of all: a deep link on a fresh server comes back through app.py before this page's
# modules (torch among them) load, so that app.py can paint the first visit while they do (plint_app.first_paint)

import numpy as np
import pandas as pd
import torch

from plint_app.source_panel import source_section
from plint_app.ui import (
    EMB_SEED_KEY,
    LAYER_KEY,
    current_layer,
    device_label,
    embedding_or_progress,
    load_project,
    page_link,
)

WIDE_CLASS_TABLE = 12  # up to this many classes, the counts table lies on its side (one column per class)

st.title("Model & data")
st.caption("plint shows how a classifier arranges its data in a 2-D map of one of its layers. You move groups "
           "of points in the map, the classifier is fine-tuned to follow, and the result is compared with a "
           "control that was fine-tuned without your edit.")
source_section()
proj = load_project()
data, spec = proj.data, proj.bundle.spec

st.subheader("Latent layer and embedding")
names = [info.name for info in proj.layers]
st.session_state.setdefault(LAYER_KEY, current_layer(proj))
st.session_state.setdefault(EMB_SEED_KEY, 0)
c1, c2 = st.columns([2, 1])
c1.selectbox("Latent layer C_l", names, key=LAYER_KEY, persist_state="session",
             help="The layer whose activations are embedded in 2-D and steered by the interventions. "
                  "The default, the logits, is the paper's choice.")
c2.number_input("Embedding seed", min_value=0, max_value=2**31 - 1, step=1, key=EMB_SEED_KEY, persist_state="session",
                help="Seeds the t-SNE fit. Each layer and seed is fitted once and then loaded from the run store.")
emb = embedding_or_progress(proj)
if emb is not None:
    origin = "loaded from the run store" if emb.cache_hit else "fitted on this server"
    fit_s = emb.quality.get("fit_seconds")
    st.success(f"The embedding of layer **{emb.layer}** is ready ({origin}"
               f"{f'; the fit took {fit_s:.0f} s' if fit_s else ''}).", icon=":material/check_circle:")
    q = emb.quality
    m1, m2, m3 = st.columns(3)
    m1.metric("10-NN label accuracy in 2-D", f"{q.get('knn_acc10', float('nan')):.3f}",
              help="How often a point's 10 nearest neighbours in the map share its label (higher is better).")
    m2.metric("10-NN recall", f"{q.get('knn_recall10', float('nan')):.3f}",
              help="Share of each point's 10 nearest latent neighbours that stay neighbours in the map.")
    m3.metric("Trustworthiness (5)", f"{q.get('trustworthiness5', float('nan')):.3f}",
              help="Penalises map neighbours that are far apart in the latent space (1 = perfect).")
    page_link("embedding", "Next: select and move groups of points", icon=":material/arrow_forward:")

left, right = st.columns(2, gap="large")
with left:
    st.subheader("Data set")
    st.markdown(f"**{data.name}** — {proj.data_label}")
    m1, m2, m3 = st.columns(3)
    m1.metric("Training images", f"{len(data.train):,}")
    m2.metric("Test images", f"{len(data.test):,}")
    m3.metric("Classes", data.n_classes)
    st.caption(f"Images {data.input_shape[1]}×{data.input_shape[2]} pixels, {data.input_shape[0]} channel(s).")
    counts = pd.DataFrame({"class": list(data.class_names),
                           "train": np.bincount(data.train.labels, minlength=data.n_classes),
                           "test": np.bincount(data.test.labels, minlength=data.n_classes)})
    if data.n_classes <= WIDE_CLASS_TABLE:
        st.table(counts.set_index("class").T)
    else:
        st.dataframe(counts, hide_index=True, width="stretch", height=400)
with right:
    st.subheader("Classifier")
    st.markdown(f"**{spec.arch}** — {proj.model_label}")
    m1, m2 = st.columns(2)
    m1.metric("Parameters", f"{sum(p.numel() for p in proj.bundle.module.parameters()):,}")
    m2.metric("Device", device_label())
    st.caption(f"Weights fingerprint `{proj.bundle.fingerprint[:12]}` · torch uses {torch.get_num_threads()} CPU "
               "thread(s).")
    with st.expander(f"Layers ({len(proj.layers)})"):
        st.dataframe(pd.DataFrame([{"layer": i.name, "type": i.kind, "output shape": " × ".join(map(str, i.output_shape)),
                                    "features": i.n_features} for i in proj.layers]), hide_index=True, width="stretch")

with st.expander("t-SNE settings"):
    st.json(proj.config.tsne.to_dict())
    if proj.config.scale_points:
        st.caption(f"Training split enlarged to {proj.config.scale_points:,} points (PLINT_SCALE_POINTS): "
                   "replicas with pixel jitter, placed by the network fitted on the real data.")
