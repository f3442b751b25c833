"""What the dashboard works on: data, model, run store and the embedding of a layer.

A :class:`Project` is loaded once per configuration and shared read-only by
all browser sessions; a session that loads its own model and data
(:mod:`plint_app.sources`) gets its own project (:meth:`Project.from_inputs`)
with the same run store. With ``scale_points`` set, the training split shown and
fine-tuned is the real one replicated with pixel jitter (:func:`replicate_train`)
and its coordinates come from the parametric network fitted on the real data
(:func:`project_embedding`), so large views never need a large t-SNE fit.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Callable

import torch

from plint_core.data.dataset import Dataset
from plint_core.data.replicate import replicate_train
from plint_core.device import resolve_device, set_threads
from plint_core.inputs import Inputs, open_inputs
from plint_core.latents import LayerInfo, list_layers, pick_default
from plint_core.models.sources import describe
from plint_core.models.spec import ModelBundle
from plint_core.pipeline import Embedding, prepare_embedding, project_embedding
from plint_core.runs.tasks import Source
from plint_core.store import RunStore

from .config import AppConfig

StageProgress = Callable[[str, float], None]


@dataclass(frozen=True)
class Origin:
    """Where a session's own model and data came from (for display and run history)."""

    kind: str
    """``upload`` or ``path``."""
    model: str
    """The model's file name (upload) or path, as the user gave it."""
    data: str
    notes: tuple[str, ...] = ()
    """What was assumed or converted on the user's behalf (:attr:`plint_core.inputs.Inputs.notes`)."""


@dataclass(frozen=True)
class Project:
    """Data, model and store for one :class:`AppConfig`; ``base_data`` is what the embedding is fitted on.

    ``origin`` is ``None`` for the configured project (``PLINT_DATA``/``PLINT_MODEL``,
    shared by all sessions) and set for a session's own model and data.
    """

    config: AppConfig
    data: Dataset
    base_data: Dataset
    bundle: ModelBundle
    layers: tuple[LayerInfo, ...]
    store: RunStore
    origin: Origin | None = None
    key: str = ""
    """Identity for in-memory caches and shared jobs; see :attr:`cache_key`."""
    source: Source | None = None
    """How a worker process opens the same inputs (:mod:`plint_core.runs`)."""

    @classmethod
    def load(cls, config: AppConfig) -> "Project":
        """Load the configured data and model and check they fit together (raises ``PlintError`` otherwise).

        Also sets torch's thread count (:func:`plint_core.device.set_threads`).
        """
        inputs = open_inputs(config.model, config.data)  # the data read as the model's input, batch by batch
        return cls._assemble(config, inputs.data, inputs.bundle,
                             source=Source(config.model, config.data, replicate=config.scale_points))

    @classmethod
    def from_inputs(cls, config: AppConfig, inputs: Inputs, origin: Origin, source: Source) -> "Project":
        """A session's project on a checked model and data (:func:`plint_core.inputs.open_inputs`).

        Its :attr:`cache_key` adds the data's and the weights' fingerprints to the
        configuration's, so sessions with different inputs never share a cached
        view or an embedding job (identical inputs may: they give identical results).
        """
        key = json.dumps({"config": config.cache_key(), "data": inputs.data.fingerprint(),
                          "model": inputs.bundle.fingerprint}, sort_keys=True)
        if config.scale_points:
            source = replace(source, replicate=config.scale_points)
        return cls._assemble(config, inputs.data, inputs.bundle, origin=origin, key=key, source=source)

    @classmethod
    def _assemble(cls, config: AppConfig, base: Dataset, bundle: ModelBundle, **extra) -> "Project":
        set_threads(config.torch_threads)
        data = replicate_train(base, config.scale_points) if config.scale_points else base
        return cls(config, data, base, bundle, tuple(list_layers(bundle)), RunStore(config.runs_dir), **extra)

    @property
    def cache_key(self) -> str:
        """A string naming everything loaded, for in-memory caches and the embedding job registry."""
        return self.key or self.config.cache_key()

    @property
    def data_label(self) -> str:
        """Where the data came from, in words."""
        if self.origin is not None:
            return self.origin.data
        return "built-in demo: scikit-learn's handwritten digits" if self.config.data == "digits" else self.config.data

    @property
    def model_label(self) -> str:
        """Where the model came from, in words."""
        if self.origin is not None:
            return f"{self.origin.model} ({describe(self.bundle.spec)})"
        return "built-in demo CNN trained on the digits" if self.config.model == "demo" else self.config.model

    def owns_run(self, result: dict) -> bool:
        """Whether a stored run (its ``result.json``) was made on this project's data and model.

        The run store is shared by all sessions and sources; each project's run
        history lists only its own runs, and only those can be opened on it.
        Runs that record the fingerprints of their data and weights are matched
        by those (a run imported from another machine, where the files had other
        paths, still belongs); older runs by the data's and model's names.
        """
        if result.get("classes") != list(self.data.class_names):
            return False
        data_fp, model_fp = result.get("data_fingerprint"), result.get("model_fingerprint")
        if data_fp and model_fp:
            return data_fp == self.data.fingerprint() and model_fp == self.bundle.fingerprint
        return result.get("data") == self.data.name and result.get("model") == self.bundle.source

    def runs(self) -> list[dict]:
        """This project's finished runs in the store, newest first (see :meth:`owns_run`)."""
        return [r for r in self.store.list_runs() if self.owns_run(r)]

    @property
    def default_layer(self) -> str:
        return pick_default(self.layers)

    @property
    def device(self) -> torch.device:
        return resolve_device(self.config.device)

    def has_stored_embedding(self, layer: str, seed: int) -> bool:
        """Whether the base embedding of ``layer`` is already in the run store (no fit needed)."""
        from plint_core.pipeline import embedding_key

        return self.store.has_embedding(embedding_key(self.base_data, self.bundle, layer, seed, self.config.tsne))

    def embedding(self, layer: str, seed: int, progress: StageProgress | None = None) -> Embedding:
        """The embedding of :attr:`data` (fitted, or loaded from the store, on :attr:`base_data`)."""
        emb = prepare_embedding(self.base_data, self.bundle, layer=layer, seed=seed, config=self.config.tsne,
                                store=self.store, device=self.config.device, progress=progress)
        if self.data is self.base_data:
            return emb
        if progress:
            progress("projection", 0.0)
        projected = project_embedding(emb, self.data, self.bundle, self.device, store=self.store)
        if progress:
            progress("projection", 1.0)
        return projected
