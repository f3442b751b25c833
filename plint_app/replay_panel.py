"""Compare's weights of a picked checkpoint that a large model did not store: recomputed by a worker on request.

The job goes through the server's executor (:func:`plint_app.resources.executor`) as a
:class:`~plint_core.runs.tasks.ReplayTask`; the page shows its progress and, once done, the download.
"""
from __future__ import annotations

import streamlit as st

from plint_core.runs.tasks import ReplayTask

from .jobs import DONE, FAILED, Job, relay
from .project import Project
from .resources import executor
from .ui import POLL_SECONDS

JOBS_KEY = "_plint_replay_jobs"


def _jobs() -> dict:
    return st.session_state.setdefault(JOBS_KEY, {})


def start_replay(proj: Project, run_id: str, step: int) -> None:
    """Button callback: recompute the PLI weights of ``step`` of ``run_id`` in a worker."""
    task = ReplayTask(proj.source, str(proj.store.root), run_id, int(step), device=proj.config.device)
    _jobs()[(run_id, int(step))] = Job(lambda job: relay(job, executor(), task, lambda outcome: outcome),
                                       name="replay").start()


def replay_panel(proj: Project, run_id: str, step: int, where) -> None:
    """In ``where`` (a column): the button, the running job's progress, or what went wrong."""
    job = _jobs().get((run_id, int(step)))
    if job is None:
        where.caption(f"The weights of step {step:,} were not stored (a model this large keeps only the "
                      "checkpoints a rule can pick); its figures are shown.")
        where.button(f"Recompute the weights of step {step:,}", on_click=start_replay, args=(proj, run_id, step),
                     icon=":material/replay:", key=f"w_replay_{run_id}_{step}",
                     help="Trains the PLI run again, with its seed and batches, up to this step, in a worker: the "
                          "same weights on this machine.")
    elif job.running:
        _progress(job, where)
    elif job.status == FAILED:
        where.error(f"Recomputing step {step:,} failed: {job.user_error()}", icon=":material/error:")
    elif job.status == DONE:
        st.rerun()


@st.fragment(run_every=POLL_SECONDS)
def _poll(job: Job) -> None:
    st.progress(job.progress.fraction, text="Recomputing the checkpoint's weights …")
    if not job.running:
        st.rerun()


def _progress(job: Job, where) -> None:
    with where:
        _poll(job)


__all__ = ["replay_panel", "start_replay"]
