"""Shared, read-only resources cached per server process (``st.cache_resource``).

Data, model and fitted embeddings are the same for every browser session of
one configuration, so they are loaded once and shared; per-session state
lives in :mod:`plint_app.session`. On disk, the engine's ``RunStore`` keeps
embeddings and runs, so a server restart reloads instead of refitting.
"""
from __future__ import annotations

import atexit
import gc
from dataclasses import replace

import numpy as np
import streamlit as st

from plint_core.pipeline import Embedding, RunResult, load_run
from plint_core.runs.executor import Executor
from plint_core.runs.select import make_executor
from plint_core.runs.tasks import EMBEDDING_STAGES, EmbeddingTask
from plint_core.workspace import Workspace, sweep_stale

from .config import AppConfig
from .jobs import Job, JobRegistry, relay
from .project import Project

STAGE_TITLES = {"latents": "computing latent activations", "affinities": "computing neighbour affinities",
                "pca-pretraining": "initialising the network (PCA)", "optimisation": "optimising the t-SNE",
                "quality": "measuring embedding quality", "projection": "projecting the enlarged training set",
                "starting": "starting", "queued": "waiting for a free worker"}


def app_config() -> AppConfig:
    """The configuration from the environment (cheap; read on every run)."""
    return AppConfig.from_env()


@st.cache_resource(show_spinner="Loading data and model…", max_entries=4)
def _load_project(key: str, _config: AppConfig) -> Project:
    proj = Project.load(_config)
    install_shipped_embedding(proj)
    return proj


def install_shipped_embedding(proj: Project):
    """Put the digits demo's shipped default embedding (:mod:`plint_core.shipped`) into the run store if this is
    the demo project and the store lacks it, so a first visit draws the map without a t-SNE fit. A shipped file
    that no longer matches is logged and left out: the embedding is then fitted as before."""
    from plint_core.shipped import install_logged

    return install_logged(proj.store, proj.base_data, proj.bundle, proj.default_layer, proj.config.tsne)


def project() -> Project:
    """The shared :class:`Project` of the current configuration (raises ``PlintError`` if it cannot load)."""
    config = app_config()
    return _load_project(config.cache_key(), config)


@st.cache_resource(show_spinner=False)
def _sweep_stale_workspaces() -> int:
    return sweep_stale()  # once per server process: upload folders left by a crashed one


@st.cache_resource(scope="session", on_release=Workspace.close, show_spinner=False)
def session_workspace() -> Workspace:
    """This browser session's private upload folder (:class:`~plint_core.workspace.Workspace`).

    Streamlit releases session-scoped resources when the session disconnects,
    and ``on_release`` removes the folder; a reconnecting session gets a new,
    empty one (uploads are only kept while they are read, see
    :mod:`plint_app.sources`). The folder is also removed when the object is
    garbage-collected or the server exits; one left by a crash is swept by the
    next server (:func:`~plint_core.workspace.sweep_stale`).
    """
    _sweep_stale_workspaces()
    return Workspace()


@st.cache_resource(show_spinner=False)
def settled_heap() -> int:
    """Hide what the server has loaded by its first page (modules, the shared model and data) from Python's
    cyclic garbage collector (:func:`gc.freeze`); returns how many objects that is.

    Streamlit runs a full ``gc.collect()`` after every script run (``runner.postScriptGC``), fragment reruns
    included, holding the interpreter lock. With torch, pandas and Plotly loaded that scans some 330,000
    objects: 0.18 s per run on the 2-core test machine. Four sessions following their runs' progress (two
    fragment reruns a second each) then kept the lock most of the time, and another session's box selection
    waited seconds for it (bench/RESULTS.md, Concurrency). Frozen objects are still freed when nothing refers
    to them; only reference cycles among them are never collected, and those live as long as the server anyway.
    The collection after each run, which keeps per-session garbage in check, stays on and now takes
    milliseconds.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@st.cache_resource(show_spinner=False)
def executor() -> Executor:
    """The executor of this server's long jobs, shared by all sessions and shut down with the server:
    ``PLINT_EXECUTOR`` (:func:`~plint_core.runs.select.make_executor`) ``local`` (the default: ``PLINT_WORKERS``
    worker processes, first in, first out) or ``ray`` (tasks on the Ray cluster at ``PLINT_RAY_ADDRESS``). A
    ``PlintError`` (Ray missing or unreachable) fails the job that asked, and the next job tries again."""
    ex = make_executor()
    atexit.register(ex.shutdown, False)
    return ex


@st.cache_resource
def embedding_jobs() -> JobRegistry:
    """The registry of embedding jobs, shared by all sessions of this server."""
    return JobRegistry()


def embedding_job(proj: Project, layer: str, seed: int, *, start: bool = True, retry: bool = False) -> Job | None:
    """The (shared) job that fits or loads the embedding of ``layer``; started unless ``start`` is false."""
    key = f"{proj.cache_key}|{layer}|{seed}"
    registry = embedding_jobs()
    if not start:
        return registry.get(key)

    def fit(job: Job) -> Embedding:
        def progress(stage: str, fraction: float) -> None:
            job.check_cancelled()  # the engine's fit has no cancel flag; its progress callback is the way out
            lo, hi = EMBEDDING_STAGES.get(stage, (0.0, 1.0))
            job.report(stage, lo + (hi - lo) * fraction)

        if proj.has_stored_embedding(layer, seed) and (proj.data is proj.base_data or _stored_latents(proj, layer)):
            return proj.embedding(layer, seed, progress)  # only read from the store: no worker needed
        task = EmbeddingTask(proj.source, str(proj.store.root), layer=layer, seed=seed, config=proj.config.tsne,
                             device=proj.config.device)
        # The worker fits (and for a replicated project computes the enlarged split's latents); this thread then
        # reads the stored embedding and projects from the latent cache.
        return relay(job, executor(), task,
                     lambda outcome: replace(proj.embedding(layer, seed, progress), cache_hit=outcome.cache_hit))

    return registry.ensure(key, fit, name="embedding", retry=retry)


def _stored_latents(proj: Project, layer: str) -> bool:
    """Whether the latents of the project's (enlarged) training split are in the run store's latent cache, so that
    its projection needs no worker (a large map's server then draws it seconds sooner: no worker importing torch)."""
    from plint_core.latent_cache import latents_key

    return proj.store.has_latents(latents_key(proj.data, proj.bundle, layer))


@st.cache_resource(max_entries=32)
def _run(root: str, run_id: str, _proj: Project) -> RunResult:
    return load_run(_proj.store, run_id)


def stored_run(proj: Project, run_id: str) -> RunResult:
    """A finished run from the store (kept in memory: stored runs never change)."""
    return _run(str(proj.store.root.resolve()), run_id, proj)


@st.cache_resource(max_entries=8)
def _seed_bootstrap(root: str, run_ids: tuple[str, ...], step: int | None, _proj: Project):
    from plint_core.pick import picked_view

    from .seeds import bootstrap_of

    tables = []
    for run_id in run_ids:
        res = stored_run(_proj, run_id)
        arrays = res.path_arrays() if step is not None else None
        has_step = arrays is not None and step in [int(s) for s in arrays.get("pli_steps", [])]
        tables.append(picked_view(res.result, res.test_embedding, arrays, step)[1] if has_step
                      else res.test_embedding)
    return bootstrap_of(tables, len(_proj.data.class_names))


def seed_bootstrap(proj: Project, run_ids: tuple[str, ...], step: int | None = None):
    """The bootstrap over test images and seeds of stored runs (:func:`plint_app.seeds.bootstrap_of`), kept; with
    ``step``, each run's PLI checkpoint at that step where it has one (:func:`plint_core.pick.picked_view`)."""
    return _seed_bootstrap(str(proj.store.root.resolve()), tuple(run_ids), step, proj)


@st.cache_resource(max_entries=8)
def _scatter_view(key: str, _proj: Project, _emb: Embedding):
    from .scatter_view import ScatterView

    return ScatterView.of(_proj.data, _emb)


def scatter_view(proj: Project, emb: Embedding):
    """The :class:`~plint_app.scatter_view.ScatterView` of ``emb`` (shared, built once)."""
    return _scatter_view(f"{proj.cache_key}|{emb.key}", proj, emb)


@st.cache_resource(max_entries=16)
def _map_sample(key: str, show_test: bool, window, max_points: int, _view):
    from .map_thinning import sample_map

    return sample_map(_view.index.xy, _view.test_xy if show_test else None, max_points, window)


def map_sample(proj: Project, view, show_test: bool, window=None):
    """Which points the map draws (:func:`plint_app.map_thinning.sample_map`): all of them up to
    ``PLINT_MAP_MAX_POINTS``, else a fixed sample, the whole map's or that of ``window`` (shared, built once)."""
    return _map_sample(f"{proj.cache_key}|{view.key}", bool(show_test), window, proj.config.map_max_points, view)


@st.cache_resource(max_entries=24)
def _base_traces(key: str, color_by: str, show_test: bool, window, max_points: int, _view,
                 _class_names: tuple[str, ...]) -> tuple:
    from .scatter import base_traces

    sample = _map_sample(key, show_test, window, max_points, _view)
    if not sample.thinned:
        return tuple(base_traces(_view.train, _view.test if show_test else None, _class_names, color_by))
    from .map_thinning import density_trace

    shown = (_view.index.xy, _view.test_xy) if show_test else (_view.index.xy,)
    density = density_trace(np.concatenate(shown), window or _view.ranges)
    return (density, *base_traces(_view.train.take(sample.train_rows),
                                  _view.test.take(sample.test_rows) if show_test else None, _class_names, color_by))


def cached_base_traces(proj: Project, view, color_by: str, show_test: bool, window=None) -> tuple:
    """The scatter's data traces for one colour mode (shared; Plotly copies them into each figure): every point, or
    on a thinned map (:func:`map_sample`) the sample's points over a density heatmap of all."""
    return _base_traces(f"{proj.cache_key}|{view.key}", color_by, show_test, window, proj.config.map_max_points, view,
                        tuple(proj.data.class_names))


@st.cache_resource(max_entries=24)
def _base_payload(key: str, color_by: str, show_test: bool, window, max_points: int, _view,
                  _class_names: tuple[str, ...]) -> dict:
    from .drag_map import base_payload
    from .scatter_view import signature

    traces = _base_traces(key, color_by, show_test, window, max_points, _view, _class_names)
    return base_payload(traces, signature(key, color_by, str(show_test), str(window), str(max_points)))


def cached_base_payload(proj: Project, view, color_by: str, show_test: bool, window=None) -> dict:
    """The drag map's data traces for one colour mode, as its component takes them (shared, serialised once;
    :func:`plint_app.drag_map.base_payload`)."""
    return _base_payload(f"{proj.cache_key}|{view.key}", color_by, show_test, window, proj.config.map_max_points, view,
                         tuple(proj.data.class_names))


@st.cache_resource(max_entries=8, show_spinner="Indexing the latent space for neighbour search…")
def _neighbours(key: str, show_test: bool, _proj: Project, _emb: Embedding):
    from plint_core.latent_cache import cached_latents
    from plint_core.neighbours import fit_neighbours

    lat = cached_latents(_proj.data, _proj.bundle, _emb.layer, _proj.store, device=_proj.device)
    return fit_neighbours(_proj.data, lat.latents("train"), _emb.train_pred,
                          *((lat.latents("test"), _emb.test_pred) if show_test else ()))


def neighbour_index(proj: Project, emb: Embedding, show_test: bool):
    """The :class:`~plint_core.neighbours.NeighbourIndex` of ``emb``'s layer over the points shown (the training
    points, and the test points with ``show_test``): fitted once per project and layer, shared by all sessions.
    The latents come from the run store's latent cache (:func:`plint_core.latent_cache.cached_latents`)."""
    return _neighbours(f"{proj.cache_key}|{emb.layer}", bool(show_test), proj, emb)
