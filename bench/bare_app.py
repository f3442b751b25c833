"""The reference for bench_app.py: a bare one-chart Streamlit app with a selectable N-point scatter.

What a first version would look like: the figure is rebuilt with Plotly
Express on every rerun, one WebGL trace per class, and the selection size
is printed below. ``BENCH_POINTS`` sets N (10 Gaussian blobs, fixed seed).
"""
import os

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

n = int(os.environ.get("BENCH_POINTS", "2000"))
rng = np.random.default_rng(0)
labels = rng.integers(0, 10, n)
angles = labels * 2 * np.pi / 10
df = pd.DataFrame({"x": 10 * np.cos(angles) + rng.normal(0, 2.5, n), "y": 10 * np.sin(angles) + rng.normal(0, 2.5, n),
                   "label": labels.astype(str), "id": np.arange(n)})
fig = px.scatter(df, x="x", y="y", color="label", custom_data=["id"], render_mode="webgl",
                 category_orders={"label": [str(k) for k in range(10)]}, height=620)
fig.update_layout(dragmode="select")
event = st.plotly_chart(fig, key="chart", on_select="rerun", selection_mode=("box", "lasso"))
st.markdown(f"Selection: {len(event.selection.points):,} training points")
