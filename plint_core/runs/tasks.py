"""Tasks: an embedding fit or a fine-tuning run, described so that any worker process can run it.

A task holds where its inputs come from (:class:`Source`: the model and data
as :func:`plint_core.inputs.open_inputs` takes them), the settings, and the
run store's folder. A worker opens the inputs itself, computes, writes the
result to the store and returns a small :class:`Outcome` (the key); the caller
loads the result from the store (:func:`plint_core.pipeline.load_embedding`, :func:`plint_core.pipeline.load_run`).
Nothing but the task and small progress reports crosses between processes.

A task's :meth:`run` takes ``report(stage, fraction, detail)`` and a
``cancel`` event, which it checks between steps.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..embedding.parametric_tsne import TSNEConfig
from ..baselines import Baseline
from ..errors import RunCancelled
from ..finetune import FinetuneConfig, Progress
from ..intervention import InterventionSpec
from ..models.sources import ModelOptions

__all__ = ["BaselineTask", "EMBEDDING_STAGES", "EmbeddingTask", "Outcome", "ReplayTask", "Report", "RunTask", "Source",
           "Task"]

Report = Callable[[str, float, Any], None]
"""``report(stage, fraction of the whole task in [0, 1], detail)``."""

EMBEDDING_STAGES = {"latents": (0.0, 0.04), "affinities": (0.04, 0.08), "pca-pretraining": (0.08, 0.16),
                    "optimisation": (0.16, 0.92), "quality": (0.92, 0.98), "projection": (0.98, 1.0)}
"""Each stage of an embedding fit as a share of the whole."""


class Task(Protocol):
    """What an executor runs: picklable, with a ``kind``, a ``label`` for people and ``run``."""

    kind: str

    @property
    def label(self) -> str: ...

    def run(self, report: Report, cancel: threading.Event) -> "Outcome": ...


@dataclass(frozen=True)
class Outcome:
    """What a task returns: the ``key`` of what it stored, whether that was there already (``cache_hit``),
    and the seconds it took in the worker."""

    key: str
    cache_hit: bool
    seconds: float


@dataclass(frozen=True)
class Source:
    """The inputs of a task: ``open_inputs(model, data, options, sidecar=sidecar)``, with the training split
    replicated to ``replicate`` points if set (:func:`plint_core.data.replicate.replicate_train`; the
    embedding is then fitted on the real split and projected). Paths must be readable by the worker."""

    model: str
    data: str
    options: ModelOptions = field(default_factory=ModelOptions)
    sidecar: str | None = None
    replicate: int = 0

    def open(self):
        from ..inputs import open_inputs

        return open_inputs(self.model, self.data, self.options, sidecar=self.sidecar)


@dataclass(frozen=True)
class EmbeddingTask:
    """Fit (or find in the store) the parametric t-SNE of ``layer`` on the real training split; returns the
    embedding's key. With a replicated source, the replicated rows' latents are computed too (the cache)."""

    source: Source
    store: str
    layer: str | None = None
    seed: int = 0
    config: TSNEConfig | None = None
    device: str = "auto"
    amp: bool | None = None
    kind: str = field(default="embedding", init=False)

    @property
    def label(self) -> str:
        return f"embedding of {self.layer or 'the default layer'} (seed {self.seed})"

    def run(self, report: Report, cancel: threading.Event) -> Outcome:
        started = time.perf_counter()

        def progress(stage: str, fraction: float) -> None:
            if cancel.is_set():
                raise RunCancelled("the embedding fit was cancelled")
            lo, hi = EMBEDDING_STAGES.get(stage, (0.0, 1.0))
            report(stage, lo + (hi - lo) * fraction, None)

        emb = _embedding(self, progress)
        return Outcome(emb.key, emb.cache_hit, time.perf_counter() - started)


@dataclass(frozen=True)
class RunTask:
    """Fine-tune PLI and its control against the embedding (``layer``, ``seed``, ``config``, found in the store
    or fitted first) and store the run; returns the run id."""

    source: Source
    store: str
    spec: InterventionSpec
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    layer: str | None = None
    seed: int = 0
    config: TSNEConfig | None = None
    device: str = "auto"
    amp: bool | None = None
    executor: str = "inline"
    """Set by the executor that runs the task; recorded in ``result.json``."""
    kind: str = field(default="run", init=False)

    @property
    def label(self) -> str:
        return f"fine-tuning run (λ {self.finetune.lam}, {self.finetune.describe()})"

    def run(self, report: Report, cancel: threading.Event) -> Outcome:
        from ..pipeline import run_intervention

        started = time.perf_counter()

        def embedding_progress(stage: str, fraction: float) -> None:
            if cancel.is_set():
                raise RunCancelled("the run was cancelled")
            report(stage, 0.0, None)

        inputs, emb = _embedding(self, embedding_progress, with_inputs=True)

        def progress(p: Progress) -> None:
            report(p.run, (0.0 if p.run == "control" else 0.5) + p.fraction / 2, p)  # the control runs first

        res = run_intervention(inputs.data, inputs.bundle, emb, self.spec, self.finetune, store=_store(self.store),
                               progress=progress, cancel=cancel, executor=self.executor)
        return Outcome(res.run_id, res.cache_hit, time.perf_counter() - started)


@dataclass(frozen=True)
class BaselineTask:
    """Fine-tune ``baseline`` (:func:`plint_core.pipeline.run_baseline`: a practitioner's baseline, or one that
    follows the flags on images) against the embedding (found in the store or fitted first) and store it; returns
    its key (``RunStore.baseline_dir``)."""

    source: Source
    store: str
    spec: InterventionSpec
    baseline: Baseline
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    layer: str | None = None
    seed: int = 0
    config: TSNEConfig | None = None
    device: str = "auto"
    amp: bool | None = None
    kind: str = field(default="baseline", init=False)

    @property
    def label(self) -> str:
        return f"{self.baseline.name} ({self.finetune.describe()})"

    def run(self, report: Report, cancel: threading.Event) -> Outcome:
        from ..pipeline import run_baseline

        started = time.perf_counter()

        def embedding_progress(stage: str, fraction: float) -> None:
            if cancel.is_set():
                raise RunCancelled("the run was cancelled")
            report(stage, 0.0, None)

        inputs, emb = _embedding(self, embedding_progress, with_inputs=True)
        result, _, hit = run_baseline(inputs.data, inputs.bundle, emb, self.spec, self.finetune, self.baseline,
                                      store=_store(self.store), progress=lambda p: report(p.run, p.fraction, p),
                                      cancel=cancel)
        return Outcome(result["run_id"], hit, time.perf_counter() - started)


@dataclass(frozen=True)
class ReplayTask:
    """Recompute the PLI weights of checkpoint ``step`` of the stored run ``run_id``
    (:func:`plint_core.replay.replay_checkpoint`) and store them with the run; returns the run id."""

    source: Source
    store: str
    run_id: str
    step: int
    device: str = "auto"
    kind: str = field(default="replay", init=False)

    @property
    def label(self) -> str:
        return f"weights of step {self.step} of run {self.run_id}"

    def run(self, report: Report, cancel: threading.Event) -> Outcome:
        from ..pipeline import load_embedding, load_run
        from ..replay import replay_checkpoint

        started = time.perf_counter()
        inputs = self.source.open()
        store = _store(self.store)
        run = load_run(store, self.run_id, cache_hit=False)
        emb = load_embedding(store, run.result["embedding_key"])

        def progress(p: Progress) -> None:
            report("replay", p.fraction, p)

        replay_checkpoint(inputs.data, inputs.bundle, emb, run, self.step, device=self.device, progress=progress,
                          cancel=cancel)
        return Outcome(self.run_id, False, time.perf_counter() - started)


def _store(root: str):
    from ..store import RunStore

    return RunStore(root)


def _embedding(task: EmbeddingTask | RunTask | BaselineTask, progress: Callable[[str, float], None], with_inputs: bool = False):
    """The task's inputs (data replicated as its source says) and embedding: fitted on the real training split,
    or found in the store, then projected onto a replicated one."""
    from dataclasses import replace

    from ..data.replicate import replicate_train
    from ..device import resolve_device
    from ..pipeline import prepare_embedding, project_embedding

    inputs = task.source.open()
    store = _store(task.store)
    base = prepare_embedding(inputs.data, inputs.bundle, layer=task.layer, seed=task.seed, config=task.config,
                             store=store, device=task.device, progress=progress, amp=task.amp)
    emb = base
    if task.source.replicate:  # the replicated rows' latents land in the store's cache for whoever shows them
        inputs = replace(inputs, data=replicate_train(inputs.data, task.source.replicate))
        progress("projection", 0.0)
        emb = project_embedding(base, inputs.data, inputs.bundle, resolve_device(task.device), store=store)
        progress("projection", 1.0)
    return (inputs, emb) if with_inputs else base
