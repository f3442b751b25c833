"""Latents computed once per model, data and layer, kept on disk in the run store and memory-mapped.

``latents/<key>/`` holds one ``.npy`` per split (float32 ``[N, F]``) and its
predictions (int64 ``[N]``), written batch by batch into a memory-mapped file
in a staging folder and published whole (:meth:`plint_core.store.RunStore.write`).
The key names the data's content, the model's weights (and spec) and the
layer — not the t-SNE seed or settings, nor the run — so the same images are
never pushed through the same network twice, whatever embedding or run follows.
The device and precision that computed them are recorded, not keyed: a cache
filled on a GPU serves a CPU machine too.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .atomic import write_json_atomic
from .data.dataset import Dataset
from .device import autocast_dtype, precision_name, trim_memory
from .latents import forward_pass
from .models.spec import ModelBundle
from .store import EMBEDDING_META, RunStore, make_key

SPLITS = ("train", "test", "val")


@dataclass(frozen=True)
class Latents:
    """One layer's activations and the model's predictions for every split (read-only, memory-mapped)."""

    key: str
    layer: str
    arrays: dict[str, np.ndarray]
    meta: dict
    cache_hit: bool = False

    def latents(self, split: str) -> np.ndarray:
        """float32 ``[N, F]`` of ``split``."""
        return self.arrays[split]

    def predictions(self, split: str) -> np.ndarray:
        """int64 ``[N]`` of ``split``."""
        return self.arrays[f"{split}_pred"]


def latents_key(data: Dataset, bundle: ModelBundle, layer: str) -> str:
    return make_key(_key_fields(data, bundle, layer))


def latents_key_of(meta: dict) -> str:
    """:func:`latents_key` from the fields a stored ``meta.json`` records (to check imported latents)."""
    return make_key({"kind": "latents", "data": meta.get("data_fingerprint"), "model": meta.get("model_fingerprint"),
                     **{k: meta.get(k) for k in ("layer", "input", "mean", "std")}})


def _key_fields(data: Dataset, bundle: ModelBundle, layer: str) -> dict:
    return {"kind": "latents", "data": data.fingerprint(), "model": bundle.fingerprint, "layer": layer,
            "input": list(bundle.spec.input_shape), "mean": list(bundle.spec.mean), "std": list(bundle.spec.std)}


def cached_latents(data: Dataset, bundle: ModelBundle, layer: str, store: RunStore, *,
                   device: torch.device | str = "cpu", amp: bool | None = None,
                   progress: Callable[[float], None] | None = None) -> Latents:
    """``layer``'s latents and the predictions of every split of ``data``: from ``store``, or computed in one
    streamed pass per split and stored there first."""
    key = latents_key(data, bundle, layer)
    if store.has_latents(key):
        return load_latents(store, key)
    device = torch.device(device)
    splits = [s for s in SPLITS if getattr(data, s) is not None]
    total = sum(len(data.split(s)) for s in splits)
    started = time.perf_counter()

    def fill(tmp: Path) -> None:
        done = 0
        for name in splits:
            split = data.split(name)
            n_features = _n_features(bundle, split.images, layer, device)
            out = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=np.float32,
                                            shape=(len(split), n_features))
            report = None if progress is None else (lambda f, base=done, n=len(split): progress((base + f * n) / total))
            _, preds = forward_pass(bundle, split.images, layer, device=device, amp=amp, out=out, progress=report)
            out.flush()
            del out
            np.save(tmp / f"{name}_pred.npy", preds)
            done += len(split)
            trim_memory()
        meta = {"key": key, "layer": layer, "data": data.name, "model": bundle.source,
                "data_fingerprint": data.fingerprint(), "model_fingerprint": bundle.fingerprint,
                **{k: v for k, v in _key_fields(data, bundle, layer).items() if k in ("input", "mean", "std")},
                "device": device.type,
                "precision": precision_name(autocast_dtype(device, amp)), "images": total,
                "seconds": round(time.perf_counter() - started, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json_atomic(tmp / EMBEDDING_META, meta)

    store.write(store.latents_dir(key), fill)
    latents = load_latents(store, key)
    return Latents(latents.key, latents.layer, latents.arrays, latents.meta, cache_hit=False)


def load_latents(store: RunStore, key: str) -> Latents:
    """Stored latents, memory-mapped."""
    d = store.latents_dir(key)
    meta = json.loads((d / EMBEDDING_META).read_text(encoding="utf-8"))
    arrays = {p.stem: np.load(p, mmap_mode="r", allow_pickle=False) for p in sorted(d.glob("*.npy"))}
    return Latents(key, meta["layer"], arrays, meta, cache_hit=True)


def _n_features(bundle: ModelBundle, images, layer: str, device: torch.device) -> int:
    latents, _ = forward_pass(bundle, images.subset(np.zeros(1, np.int64)), layer, device="cpu", batch_size=1,
                              workers=0)
    return int(latents.shape[1])
