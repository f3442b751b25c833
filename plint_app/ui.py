"""Small Streamlit building blocks shared by the pages."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import streamlit as st
import torch

from plint_core.errors import PlintError
from plint_core.pipeline import Embedding

from .jobs import DONE, FAILED, Job, Queued
from .navigation import PAGES
from .project import Project
from .resources import STAGE_TITLES, embedding_job, project
from .view_keys import EMB_SEED_KEY, LAYER_KEY  # noqa: F401 (the pages import them from here)

LOG = logging.getLogger("plint_app")
POLL_SECONDS = 0.5


@contextmanager
def user_errors() -> Iterator[None]:
    """Show a ``PlintError`` raised inside the block as ``st.error`` (its message says what to do)."""
    try:
        yield
    except PlintError as exc:
        st.error(str(exc), icon=":material/error:")


def active_project() -> Project:
    """This session's project: the model and data it loaded itself, else the shared, configured one.

    Raises ``PlintError`` if the shared project is needed and cannot load.
    """
    from .session import session

    return session().project or project()


def load_project() -> Project:
    """The session's project (:func:`active_project`), or an error message and a stopped page."""
    try:
        return active_project()
    except PlintError as exc:
        st.error(f"Cannot load the data or the model: {exc}", icon=":material/error:")
        st.stop()


def current_layer(proj: Project) -> str:
    layer = st.session_state.get(LAYER_KEY)
    return layer if layer in {info.name for info in proj.layers} else proj.default_layer


def current_embedding_seed() -> int:
    return int(st.session_state.get(EMB_SEED_KEY, 0) or 0)


def device_label() -> str:
    """``GPU (name)`` or ``CPU`` for the device ``auto`` resolves to."""
    if torch.cuda.is_available():
        return f"GPU ({torch.cuda.get_device_name(0)})"
    return "CPU"


def show_embedding_progress(job: Job) -> None:
    """A progress bar for an embedding job."""
    report = job.progress
    if isinstance(report.detail, Queued):
        st.progress(0.0, text=f"Embedding: waiting for a free worker, {report.detail.in_line()} "
                              f"({job.seconds:.0f} s)")
        return
    stage = STAGE_TITLES.get(report.stage, report.stage)
    st.progress(report.fraction, text=f"Embedding: {stage} … {report.fraction:.0%} ({job.seconds:.0f} s)")


@st.fragment(run_every=POLL_SECONDS)
def poll_embedding(job: Job) -> None:
    """A live progress bar of an embedding job; reruns the page when the job ends."""
    show_embedding_progress(job)
    if not job.running:
        st.rerun()


def embedding_or_progress(proj: Project) -> Embedding | None:
    """The session's embedding when ready; else a live progress bar (or the error) and ``None``.

    The fit is a shared background job: it starts on the first page that
    needs it, and a stored embedding loads from the run store within seconds.
    """
    layer, seed = current_layer(proj), current_embedding_seed()
    job = embedding_job(proj, layer, seed)
    if job.running and proj.has_stored_embedding(layer, seed):
        job.wait(60)  # loading from the store: quicker to wait than to poll
    if job.status == DONE:
        return job.result
    if job.status == FAILED:
        st.error(f"The embedding of layer {layer!r} could not be computed: {job.user_error()}", icon=":material/error:")
        if st.button("Try again", key="retry_embedding"):
            embedding_job(proj, layer, seed, retry=True)
            st.rerun()
        if not isinstance(job.error, PlintError):
            LOG.error("embedding job failed", exc_info=job.error)
        return None
    st.info(f"The parametric t-SNE of layer **{layer}** is being fitted; this page fills in when it is ready. "
            "Fitted embeddings are stored, so this happens once per layer.", icon=":material/hourglass_top:")
    poll_embedding(job)
    return None


def page_link(page: str, label: str, icon: str | None = None) -> None:
    st.page_link(PAGES[page], label=label, icon=icon)


def show_flash(area: str) -> None:
    """Show (and forget) the message queued for ``area`` by a callback."""
    from .session import session

    kind, text = session().notices.pop(area, ("", ""))
    if kind == "error":
        st.error(text, icon=":material/error:")
    elif kind == "success":
        st.success(text, icon=":material/check_circle:")
    elif kind:
        st.info(text, icon=":material/info:")
