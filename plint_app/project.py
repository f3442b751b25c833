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

import numpy as np
import torch

from plint_core.data.dataset import Dataset, Split
from plint_core.data.images import Images
from plint_core.device import resolve_device, set_threads
from plint_core.inputs import Inputs, open_inputs
from plint_core.latent_cache import cached_latents
from plint_core.latents import LayerInfo, forward_pass, list_layers, pick_default
from plint_core.models.sources import describe
from plint_core.models.spec import ModelBundle
from plint_core.pipeline import Embedding, prepare_embedding
from plint_core.store import RunStore, make_key

from .config import AppConfig

StageProgress = Callable[[str, float], None]
JITTER_STD = 0.05
"""Standard deviation of the pixel noise added to replicated training images (images are in [0, 1])."""


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

    @classmethod
    def load(cls, config: AppConfig) -> "Project":
        """Load the configured data and model and check they fit together (raises ``PlintError`` otherwise).

        Also sets torch's thread count (:func:`plint_core.device.set_threads`).
        """
        inputs = open_inputs(config.model, config.data)  # the data read as the model's input, batch by batch
        return cls._assemble(config, inputs.data, inputs.bundle)

    @classmethod
    def from_inputs(cls, config: AppConfig, inputs: Inputs, origin: Origin) -> "Project":
        """A session's project on a checked model and data (:func:`plint_core.inputs.open_inputs`).

        Its :attr:`cache_key` adds the data's and the weights' fingerprints to the
        configuration's, so sessions with different inputs never share a cached
        view or an embedding job (identical inputs may: they give identical results).
        """
        key = json.dumps({"config": config.cache_key(), "data": inputs.data.fingerprint(),
                          "model": inputs.bundle.fingerprint}, sort_keys=True)
        return cls._assemble(config, inputs.data, inputs.bundle, origin=origin, key=key)

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
        """
        return (result.get("data") == self.data.name and result.get("model") == self.bundle.source
                and result.get("classes") == list(self.data.class_names))

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


@dataclass(frozen=True, eq=False)
class JitteredCopies(Images):
    """``n`` images: row ``r`` is ``base`` row ``r % len(base)``; rows past the first ``len(base)`` get
    Gaussian pixel noise (``std``, drawn per row from ``seed`` and ``r``), clipped to ``[0, 1]``.

    Read on demand like any :class:`~plint_core.data.images.Images`: nothing is materialised.
    """

    base: Images | None = None
    n: int = 0
    std: float = JITTER_STD
    seed: int = 0

    @property
    def n_source(self) -> int:
        return self.n

    @property
    def source_shape(self) -> tuple[int, int, int]:
        return tuple(self.base.shape[1:])  # type: ignore[return-value]

    def _read(self, source_rows: np.ndarray) -> torch.Tensor:
        source_rows = np.asarray(source_rows, dtype=np.int64)
        images = self.base[source_rows % len(self.base)]
        for i in np.flatnonzero(source_rows >= len(self.base)):
            noise = np.random.default_rng((self.seed, int(source_rows[i]))).normal(0.0, self.std, images[i].shape)
            images[i] = np.clip(images[i] + noise.astype(np.float32), 0.0, 1.0)
        return torch.from_numpy(images)

    def _hash_source(self, h) -> None:
        self.base.update_hash(h)
        h.update(f"jittered:{self.n}:{self.std}:{self.seed}".encode())


def replicate_train(data: Dataset, n_train: int, seed: int = 0) -> Dataset:
    """``data`` with a training split of ``n_train`` points: the real rows, cycled, copies jittered
    (:class:`JitteredCopies`). Ids are ``0..n_train-1``; the test split is unchanged."""
    train = data.train
    rows = np.arange(n_train) % len(train)
    split = Split(JitteredCopies(base=train.images, n=n_train, seed=seed), train.labels[rows].copy(),
                  np.arange(n_train, dtype=np.int64))
    return replace(data, name=f"{data.name}×{n_train}", train=split)


def project_embedding(base: Embedding, data: Dataset, bundle: ModelBundle, device: torch.device | str = "cpu",
                      store: RunStore | None = None) -> Embedding:
    """``base``'s fitted network applied to ``data`` (out-of-sample projection, no refit).

    With a ``store`` the latents of ``data`` come from its latent cache
    (:func:`plint_core.latent_cache.cached_latents`): computed once, reused by every later start.
    """
    if store is not None:
        lat = cached_latents(data, bundle, base.layer, store, device=device)
        parts = {s: (lat.latents(s), np.asarray(lat.predictions(s))) for s in ("train", "test")}
    else:
        parts = {s: forward_pass(bundle, data.split(s).images, base.layer, device=device) for s in ("train", "test")}
    (train_lat, train_pred), (test_lat, test_pred) = parts["train"], parts["test"]
    key = make_key({"kind": "projected", "base": base.key, "data": data.fingerprint()})
    return Embedding(key, base.layer, base.seed, base.embedder, base.embedder.transform(train_lat),
                     base.embedder.transform(test_lat), train_pred, test_pred, dict(base.quality),
                     cache_hit=base.cache_hit)
