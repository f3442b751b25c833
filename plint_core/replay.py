"""A checkpoint's weights recomputed: the PLI run trained again, deterministically, up to the step picked.

A run keeps every checkpoint's weights when they fit its budget
(:data:`plint_core.finetune.CHECKPOINT_BUDGET_BYTES`); a larger model (ResNet-18: 45 MB a checkpoint) keeps
only those a rule could pick. Any other checkpoint of its path is recomputed here: the same training rows,
seed, batch order, calibration and steps, stopped at ``step`` (the evaluations the run made in between do not
change its weights: they score in eval mode, without gradients, and consume no random numbers). On the machine
and kernels that computed the run the result is bit for bit the checkpoint it recorded; elsewhere float sums
may differ in the last bits. :func:`replay_checkpoint` says which by comparing the recomputed weights' test
predictions with those the path recorded, and stores them beside the run's own
(:func:`plint_core.pipeline.checkpoint_weights`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import write_json_atomic
from .data.dataset import Dataset
from .errors import PlintError
from .finetune import FinetuneConfig, Progress, finetune_one
from .intervention import InterventionSpec
from .latents import predict
from .models.spec import ModelBundle
from .models.weights import save_model, state_fingerprint
from .pipeline import CHECKPOINTS_DIR, Embedding, RunResult, checkpoint_weights, training_source

__all__ = ["Replayed", "replay_checkpoint"]


@dataclass(frozen=True)
class Replayed:
    """A recomputed checkpoint: its weights file, and how many test predictions differ from the path's record
    (0: the same checkpoint; more: another machine's float sums)."""

    path: Path
    step: int
    differing: int
    n_test: int

    @property
    def exact(self) -> bool:
        return self.differing == 0


def replay_checkpoint(data: Dataset, bundle: ModelBundle, embedding: Embedding, run: RunResult, step: int, *,
                      device: str = "auto", progress: Callable[[Progress], None] | None = None,
                      cancel: threading.Event | None = None) -> Replayed:
    """Recompute the PLI run's weights at checkpoint ``step`` of ``run`` (made on ``data``, ``bundle`` and
    ``embedding``) and store them in the run's folder; a stored checkpoint is returned as it is."""
    r = run.result
    steps = [c["step"] for c in (r.get("path") or {}).get("pli", [])]
    if step not in steps:
        raise PlintError(f"run {run.run_id} has no checkpoint at step {step}: its checkpoints are "
                         + (", ".join(map(str, steps)) if steps else "none (it was stored without a path)"))
    if r.get("embedding_key") != embedding.key:
        raise PlintError(f"run {run.run_id} was made on embedding {r.get('embedding_key')}, not {embedding.key}")
    arrays = run.path_arrays()
    recorded = np.asarray(arrays["pli_test_pred"][steps.index(step)], dtype=np.int64)
    stored = checkpoint_weights(run.directory, step)
    if stored is not None:
        return Replayed(stored, step, 0, len(recorded))
    config = replace(FinetuneConfig.from_key_dict(r["finetune"]), device=device)
    spec = InterventionSpec.from_dict(r["spec"])
    targets, moved = spec.targets(embedding.train_xy, data.train.labels, data.train.ids, data.class_names)
    source, _ = training_source(data, targets, moved, config)
    model = bundle.module
    if step > 0:
        again = replace(config, steps=step, epochs=None, select="last")
        model, _ = finetune_one(bundle, embedding.layer, embedding.embedder.module, embedding.scale, source, again,
                                run="pli", lam=config.lam, progress=progress, cancel=cancel)
    tuned = ModelBundle(model, bundle.spec, state_fingerprint(model))
    pred = predict(tuned, data.test.images)
    out = run.directory / CHECKPOINTS_DIR / f"pli-{step:07d}.safetensors"
    out.parent.mkdir(exist_ok=True)
    save_model(tuned, out)
    differing = int((pred != recorded).sum())
    write_json_atomic(out.with_suffix(".replay.json"), {"step": step, "differing_test_predictions": differing,
                                                        "n_test": int(len(recorded))})
    return Replayed(out, step, differing, len(recorded))
