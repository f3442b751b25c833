"""The PLI pipeline: latents → parametric t-SNE → targets → fine-tune PLI + control → metrics; and the
practitioner's baselines, trained like the control (:func:`run_baseline`).

:func:`prepare_embedding`, :func:`run_intervention` and :func:`run_baseline` look in the
:class:`~plint_core.store.RunStore` first and compute only what is missing.
"""
from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .atomic import write_json_atomic
from .baselines import FLAG_KINDS, Baseline, finetune_baseline, flag_rows
from .data.dataset import Dataset
from .device import autocast_dtype, precision_name, resolve_device
from .embedding.parametric_tsne import ParametricTSNE, TSNEConfig
from .embedding.quality import embedding_quality
from .errors import PlintError
from .finetune import FinetuneConfig, Progress, TrainingBatchSource, ValidationSet, finetune_pair, training_rows
from .intervention import InterventionSpec
from .latent_cache import cached_latents
from .latents import forward_pass, resolve_layer
from .metrics import Evaluation, evaluate, mean_target_distance, targeted_pair
from .models.spec import ModelBundle
from .models.weights import save_model, state_fingerprint
from .path import RUNS, EditProbe, tracked_rows
from .store import EMBEDDING_META, RESULT, RunStore, make_key
from .validation import held_out_slice, stratified_sample, validation_rows

if TYPE_CHECKING:
    import pandas as pd
    import torch

StageProgress = Callable[[str, float], None]


@dataclass
class Embedding:
    """A fitted parametric t-SNE of one model's layer on one data set, with its coordinates.

    ``train_xy``/``test_xy`` are float32 ``[N, 2]`` in embedding units, row-aligned
    with the data set's splits; ``*_pred`` are the model's predictions.
    """

    key: str
    layer: str
    seed: int
    embedder: ParametricTSNE
    train_xy: np.ndarray
    test_xy: np.ndarray
    train_pred: np.ndarray
    test_pred: np.ndarray
    quality: dict
    cache_hit: bool = False

    @property
    def scale(self) -> float:
        return float(self.embedder.scale_)

    def table(self, data: Dataset) -> "pd.DataFrame":
        """``embedding.csv``'s rows: ``id, split, label, pred, x, y`` (train rows first)."""
        import pandas as pd

        frames = []
        for name, split, xy, pred in (("train", data.train, self.train_xy, self.train_pred),
                                      ("test", data.test, self.test_xy, self.test_pred)):
            frames.append(pd.DataFrame({"id": split.ids, "split": name, "label": split.labels, "pred": pred,
                                        "x": xy[:, 0], "y": xy[:, 1]}))
        return pd.concat(frames, ignore_index=True)


def embedding_key(data: Dataset, bundle: ModelBundle, layer: str, seed: int, config: TSNEConfig) -> str:
    return embedding_key_of(data.fingerprint(), bundle.fingerprint, layer, seed, config.to_dict())


def embedding_key_of(data_fingerprint: str, model_fingerprint: str, layer: str, seed: int, tsne: dict) -> str:
    """:func:`embedding_key` from the fields an embedding's ``meta.json`` records (to check an imported one)."""
    return make_key({"kind": "embedding", "data": data_fingerprint, "model": model_fingerprint, "layer": layer,
                     "seed": seed, "tsne": tsne})


def prepare_embedding(data: Dataset, bundle: ModelBundle, *, layer: str | None = None, seed: int = 0,
                      config: TSNEConfig | None = None, store: RunStore | None = None, device: str = "auto",
                      progress: StageProgress | None = None, amp: bool | None = None) -> Embedding:
    """Fit (or load from ``store``) the parametric t-SNE of ``layer``'s latents of the training split.

    The latents come from the store's latent cache (:func:`plint_core.latent_cache.cached_latents`):
    computed once per model, data and layer, streamed batch by batch, whatever
    the seed. The fit uses at most ``config.max_fit_points`` training points,
    sampled with ``seed``; every train and test point is then projected by the network.
    """
    bundle.check_data(data)
    layer = resolve_layer(bundle, layer)
    config = config or TSNEConfig()
    store = store or RunStore()
    key = embedding_key(data, bundle, layer, seed, config)
    if store.has_embedding(key):
        return load_embedding(store, key)
    report = progress or (lambda stage, frac: None)
    dev = resolve_device(device)
    report("latents", 0.0)
    lat = cached_latents(data, bundle, layer, store, device=dev, amp=amp,
                         progress=lambda f: report("latents", min(f, 0.999)))
    train_lat, test_lat = lat.latents("train"), lat.latents("test")
    train_pred, test_pred = np.asarray(lat.predictions("train")), np.asarray(lat.predictions("test"))
    report("latents", 1.0)
    embedder = ParametricTSNE(config, random_state=seed, device=dev.type).fit(train_lat, progress=report)
    train_xy, test_xy = embedder.transform(train_lat), embedder.transform(test_lat)
    report("quality", 0.0)
    quality = embedding_quality(train_lat, train_xy, data.train.labels, random_state=seed)
    quality["fit_seconds"] = float(embedder.fit_seconds_)
    report("quality", 1.0)
    meta = {"key": key, "layer": layer, "seed": seed, "quality": quality, "tsne": config.to_dict(),
            "latents": lat.key, "data": data.name, "model": bundle.source,
            "data_fingerprint": data.fingerprint(), "model_fingerprint": bundle.fingerprint,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def fill(tmp: Path) -> None:
        embedder.save(tmp / "embedder")
        np.savez(tmp / "coords.npz", train_xy=train_xy, test_xy=test_xy, train_pred=train_pred, test_pred=test_pred)
        write_json_atomic(tmp / EMBEDDING_META, meta)

    store.write(store.embedding_dir(key), fill)
    return Embedding(key, layer, seed, embedder, train_xy, test_xy, train_pred, test_pred, quality)


def load_embedding(store: RunStore, key: str) -> Embedding:
    """Load a finished embedding from ``store``."""
    d = store.embedding_dir(key)
    meta = json.loads((d / EMBEDDING_META).read_text(encoding="utf-8"))
    with np.load(d / "coords.npz", allow_pickle=False) as c:
        arrays = {k: c[k] for k in c.files}
    return Embedding(key, meta["layer"], int(meta["seed"]), ParametricTSNE.load(d / "embedder"),
                     arrays["train_xy"], arrays["test_xy"], arrays["train_pred"], arrays["test_pred"],
                     meta["quality"], cache_hit=True)


@dataclass
class RunResult:
    """A finished PLI run: ``result`` is ``result.json``'s content; ``directory`` holds its files."""

    run_id: str
    result: dict
    directory: Path
    cache_hit: bool = False
    test_embedding: "pd.DataFrame | None" = None
    train_targets: np.ndarray | None = None
    moved: np.ndarray | None = None

    def load_embedder(self, device: str = "cpu") -> ParametricTSNE:
        """The frozen embedder E this run was fine-tuned against (stored with the run)."""
        return ParametricTSNE.load(self.directory / "embedder", device=device)

    def path_arrays(self) -> dict[str, np.ndarray] | None:
        """The run's recorded path (:func:`load_path`), or ``None`` for a run stored without one."""
        return load_path(self.directory)

    def weights(self, step: int | None = None) -> Path | None:
        """The PLI run's weights file: the kept checkpoint's (``step`` ``None`` or the run's own pick), or
        checkpoint ``step``'s where they were stored (:func:`checkpoint_weights`), else ``None``."""
        if step is None or step == (self.result.get("selection") or {}).get("pli", {}).get("step"):
            f = self.directory / "finetuned.safetensors"
            return f if f.is_file() else None
        return checkpoint_weights(self.directory, step)


def run_key(embedding: Embedding, spec: InterventionSpec, config: FinetuneConfig) -> str:
    return run_key_of(embedding.key, spec.to_dict(), config.key_dict())


def run_key_of(embedding_key: str, spec: dict, finetune: dict) -> str:
    """:func:`run_key` from the fields a run's ``result.json`` records (to check an imported one)."""
    return make_key({"kind": "run", "embedding": embedding_key, "spec": spec, "finetune": finetune})


def training_source(data: Dataset, targets: np.ndarray, moved: np.ndarray, config: FinetuneConfig, *,
                    labels: np.ndarray | None = None, drop: np.ndarray | None = None
                    ) -> tuple[TrainingBatchSource, ValidationSet | None]:
    """The training rows a run (and a baseline of it) fine-tunes on, with their targets, and the validation images
    its checkpoints are scored on: the val split, or a fixed slice held out of the training split
    (:func:`plint_core.validation.validation_set`), never the test split.

    ``labels`` (one per training row) replace the given labels in training, ``drop`` (training rows) are left out
    (:func:`plint_core.baselines.flag_rows`); the validation images and their labels stay as without them."""
    validation, held_out = validation_set(data, moved, config)
    exclude = held_out if drop is None else np.union1d(held_out, drop).astype(np.int64)
    rows = training_rows(data.train.labels, moved, config.train_points, config.seed, exclude=exclude)
    train = data.train.subset(rows) if len(rows) < len(data.train) else data.train
    train_labels = train.labels if labels is None else np.asarray(labels, dtype=np.int64)[rows]
    return TrainingBatchSource(train.images, train_labels, targets[rows], moved[rows]), validation


def run_intervention(data: Dataset, bundle: ModelBundle, embedding: Embedding, spec: InterventionSpec,
                     config: FinetuneConfig = FinetuneConfig(), *, store: RunStore | None = None,
                     progress: Callable[[Progress], None] | None = None,
                     cancel: threading.Event | None = None, executor: str = "inline") -> RunResult:
    """Fine-tune with the PLI loss and its CE-only control, evaluate both, store the run.

    A run with the same key already in ``store`` is loaded instead (``cache_hit``).
    ``executor`` names what ran it in ``result.json`` (``local``, ``ray``; ``inline`` when called directly).
    """
    started = time.perf_counter()
    store = store or RunStore()
    if not spec.moves:
        raise PlintError("the spec has no moves: select a group and move it before fine-tuning")
    targets, moved = spec.targets(embedding.train_xy, data.train.labels, data.train.ids, data.class_names)
    run_id = run_key(embedding, spec, config)
    if store.has_run(run_id):
        return load_run(store, run_id, started)
    device = resolve_device(config.device)
    source, validation = training_source(data, targets, moved, config)
    probe = edit_probe(data, bundle, embedding, spec, targets, moved, validation, device, config.amp)
    pli, control, selections = finetune_pair(bundle, embedding.layer, embedding.embedder.module, embedding.scale,
                                             source, config, progress, cancel, validation, probe)
    models = {"before": bundle.module, "after": pli, "control": control}
    evals: dict[str, Evaluation] = {}
    distance: dict[str, float] = {}
    test_xy: dict[str, np.ndarray] = {}
    test_pred: dict[str, np.ndarray] = {"before": embedding.test_pred}
    moved_images = data.train.images.subset(np.flatnonzero(moved))
    for name, module in models.items():
        b = ModelBundle(module, bundle.spec, "")
        if name == "before":
            moved_xy = embedding.train_xy[moved]
            test_xy[name] = embedding.test_xy
        else:
            moved_lat, _ = forward_pass(b, moved_images, embedding.layer, device=device, amp=config.amp)
            test_lat, test_pred[name] = forward_pass(b, data.test.images, embedding.layer, device=device,
                                                     amp=config.amp)
            moved_xy = embedding.embedder.transform(moved_lat)
            test_xy[name] = embedding.embedder.transform(test_lat)
        evals[name] = evaluate(data.test.labels, test_pred[name], data.n_classes)
        distance[name] = mean_target_distance(moved_xy, targets[moved])
    result = {
        "run_id": run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "data": data.name, "model": bundle.source, "layer": embedding.layer, "embedding_key": embedding.key,
        "data_fingerprint": data.fingerprint(), "model_fingerprint": bundle.fingerprint,
        "classes": list(data.class_names), "n_test": len(data.test), "n_moved": int(moved.sum()),
        "n_train": int(len(source.labels)),
        "validation": None if validation is None else {"source": validation.source, "n": int(len(validation.labels)),
                                                       "before": selections["pli"].curve[0][1]},
        "selection": {name: sel.to_dict() for name, sel in selections.items()},
        "path": None if probe is None else {**probe.to_dict(),
                                            **{name: [c.to_dict() for c in selections[name].recorder.checkpoints]
                                               for name in RUNS},
                                            "stored_weights": sorted(selections["pli"].kept)},
        "spec": spec.to_dict(), "finetune": config.key_dict(),
        "accuracy": {k: e.accuracy for k, e in evals.items()},
        "confusion": {k: e.confusion.tolist() for k, e in evals.items()},
        "per_class": {k: e.per_class(data.class_names) for k, e in evals.items()},
        "target_distance": distance,
        "device": device.type,
        "executor": executor,
        "precision": precision_name(autocast_dtype(device, config.amp)),
        "seconds": round(time.perf_counter() - started, 3),
        "cache_hit": False,
    }
    import pandas as pd  # imported after training, not carried through its memory peak (bench_scale)

    table = pd.DataFrame({"id": data.test.ids, "label": data.test.labels})
    for name in models:
        table[f"pred_{name}"] = test_pred[name]
        table[f"x_{name}"], table[f"y_{name}"] = test_xy[name][:, 0], test_xy[name][:, 1]

    def fill(tmp: Path) -> None:
        embedding.embedder.save(tmp / "embedder")
        for name in ("after", "control"):
            weights = "finetuned" if name == "after" else "control"
            save_model(ModelBundle(models[name], bundle.spec, state_fingerprint(models[name])), tmp / f"{weights}.safetensors")
        write_json_atomic(tmp / "spec.json", spec.to_dict())
        table.to_csv(tmp / "test_embedding.csv", index=False)
        np.savez(tmp / "train_targets.npz", targets=targets, moved=moved)
        if probe is not None:
            save_path(tmp, probe, selections, ModelBundle(pli, bundle.spec, ""))
        write_json_atomic(tmp / RESULT, result)

    directory = store.write(store.run_dir(run_id), fill)
    return RunResult(run_id, result, directory, False, table, targets, moved)


def edit_probe(data: Dataset, bundle: ModelBundle, embedding: Embedding, spec: InterventionSpec, targets: np.ndarray,
               moved: np.ndarray, validation: ValidationSet | None, device: "torch.device",
               amp: bool | None = None) -> EditProbe | None:
    """What a run's path is recorded on (:mod:`plint_core.path`): the validation images with the edit applied to
    them where the starting model places them (:meth:`InterventionSpec.targets_for`; a held-out training slice
    keeps its own targets), the targeted pair (the two classes with the most moved points; one moved class with
    the class it is most confused with on validation, before fine-tuning), the test split and the tracked moved
    training points. ``None`` without validation images."""
    if validation is None or validation.rows is None:
        return None
    labels = np.asarray(validation.labels)
    lat, pred = forward_pass(bundle, validation.images, embedding.layer, device=device, amp=amp)
    if validation.source == "val split":
        val_targets, val_moved = spec.targets_for(embedding.embedder.transform(lat), labels, None, embedding.train_xy,
                                                  data.train.labels, data.train.ids, data.class_names)
    else:
        val_targets, val_moved = targets[validation.rows], moved[validation.rows]
    pair = targeted_pair(data.train.labels[moved], evaluate(labels, pred, data.n_classes).confusion)
    tracked = tracked_rows(moved)
    return EditProbe(validation.images, labels, np.asarray(val_targets, np.float32), np.asarray(val_moved, bool),
                     pair, data.test.images, data.train.images.subset(tracked), targets[tracked], tracked)


PATH_FILE = "path.npz"
CHECKPOINTS_DIR = "checkpoints"


def save_path(directory: Path, probe: EditProbe, selections: dict, bundle: ModelBundle) -> None:
    """A run's path arrays (``path.npz``: each run's steps, test predictions and coordinates, the tracked moved
    points' coordinates, ``moved_rows``) and the PLI checkpoints' weights it kept (``checkpoints/pli-STEP``)."""
    arrays = {"moved_rows": probe.moved_rows}
    for name in RUNS:
        arrays.update(selections[name].recorder.arrays(name))
    np.savez_compressed(directory / PATH_FILE, **arrays)
    (directory / CHECKPOINTS_DIR).mkdir(exist_ok=True)
    model = copy.deepcopy(bundle.module)
    for step, state in selections["pli"].kept.items():
        model.load_state_dict(state)
        save_model(ModelBundle(model, bundle.spec, state_fingerprint(model)),
                   directory / CHECKPOINTS_DIR / f"pli-{step:07d}.safetensors")


def load_path(directory: Path) -> dict[str, np.ndarray] | None:
    """A stored run's path arrays (:func:`save_path`), or ``None`` for a run stored without one."""
    f = Path(directory) / PATH_FILE
    if not f.is_file():
        return None
    with np.load(f, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def checkpoint_weights(directory: Path, step: int) -> Path | None:
    """The stored weights of the PLI run's checkpoint ``step`` (safetensors), or ``None`` where they were not
    kept (a model too large to keep every checkpoint, :data:`plint_core.finetune.CHECKPOINT_BUDGET_BYTES`)."""
    f = Path(directory) / CHECKPOINTS_DIR / f"pli-{int(step):07d}.safetensors"
    return f if f.is_file() else None


def baseline_key(embedding: Embedding, spec: InterventionSpec, config: FinetuneConfig, baseline: Baseline) -> str:
    """A baseline run's key: what decides its training rows (the spec's moved points with ``train_points``), its
    fine-tuning settings (``lam`` and ``embed_on`` left out: no embedding term) and the baseline's own."""
    finetune = {k: v for k, v in config.key_dict().items() if k not in ("lam", "embed_on", "class_weight")}
    return make_key({"kind": "baseline", "embedding": embedding.key, "spec": spec.to_dict(), "finetune": finetune,
                     "baseline": baseline.key_dict()})


def run_baseline(data: Dataset, bundle: ModelBundle, embedding: Embedding, spec: InterventionSpec,
                 config: FinetuneConfig, baseline: Baseline, *, store: RunStore | None = None,
                 progress: Callable[[Progress], None] | None = None,
                 cancel: threading.Event | None = None) -> tuple[dict, np.ndarray, bool]:
    """Fine-tune ``baseline`` (:mod:`plint_core.baselines`) on the same training rows, validation images and
    settings as :func:`run_intervention` with ``spec`` and ``config`` would train its control, evaluate it on the
    test split and store it (``store.baseline_dir``); a stored one with the same key is loaded instead.

    Returns ``(result, test_predictions, cache_hit)``: ``result`` has ``accuracy``, ``confusion``, ``per_class``
    and ``target_distance`` (the moved training points' mean distance to their targets in the frozen embedding,
    for comparison with the PLI run) for ``before`` and ``baseline``, and the ``selection``. The flags' baselines
    (``relabel``, ``drop_flagged``) also run on a spec without moves: on every training row but the held-out ones.
    """
    started = time.perf_counter()
    store = store or RunStore()
    if not spec.moves and baseline.kind not in FLAG_KINDS:
        raise PlintError("the spec has no moves: a baseline is trained on the same rows as a PLI run of a spec")
    key = baseline_key(embedding, spec, config, baseline)
    directory = store.baseline_dir(key)
    if (directory / RESULT).is_file():
        with np.load(directory / "test_predictions.npz", allow_pickle=False) as f:
            return json.loads((directory / RESULT).read_text(encoding="utf-8")), f["pred"], True
    targets, moved = spec.targets(embedding.train_xy, data.train.labels, data.train.ids, data.class_names)
    device = resolve_device(config.device)
    labels, drop = flag_rows(baseline, data.train.ids, data.train.labels, data.n_classes)
    source, validation = training_source(data, targets, moved, config, labels=labels, drop=drop)
    if labels is not None:
        info_flags = {"n_relabelled": int((labels != data.train.labels).sum())}
    elif drop is not None:
        info_flags = {"n_dropped": int(len(drop))}
    else:
        info_flags = {}
    model, selection, info = finetune_baseline(bundle, embedding.layer, embedding.embedder.module, embedding.scale,
                                               source, config, baseline, progress, cancel, validation)
    tuned = ModelBundle(model, bundle.spec, "")
    if moved.any():
        moved_lat, _ = forward_pass(tuned, data.train.images.subset(np.flatnonzero(moved)), embedding.layer,
                                    device=device, amp=config.amp)
        distance = {"before": mean_target_distance(embedding.train_xy[moved], targets[moved]),
                    "baseline": mean_target_distance(embedding.embedder.transform(moved_lat), targets[moved])}
    else:  # a flags' baseline with a spec of no moves: no edit to follow
        distance = None
    _, test_pred = forward_pass(tuned, data.test.images, None, device=device, amp=config.amp)
    evals = {"before": evaluate(data.test.labels, embedding.test_pred, data.n_classes),
             "baseline": evaluate(data.test.labels, test_pred, data.n_classes)}
    result = {
        "run_id": key, "kind": "baseline", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "data": data.name, "model": bundle.source, "layer": embedding.layer, "embedding_key": embedding.key,
        "classes": list(data.class_names), "n_test": len(data.test), "n_moved": int(moved.sum()),
        "n_train": int(len(source.labels)), **info, **info_flags,
        "baseline": baseline.key_dict() | {"name": baseline.name},
        "data_fingerprint": data.fingerprint(), "model_fingerprint": bundle.fingerprint,
        "validation": None if validation is None or not selection.curve else
        {"source": validation.source, "n": int(len(validation.labels)), "before": selection.curve[0][1]},
        "selection": {baseline.kind: selection.to_dict()},
        "spec": spec.to_dict(), "finetune": config.key_dict(),
        "accuracy": {k: e.accuracy for k, e in evals.items()},
        "confusion": {k: e.confusion.tolist() for k, e in evals.items()},
        "per_class": {k: e.per_class(data.class_names) for k, e in evals.items()},
        "target_distance": distance,
        "device": device.type, "seconds": round(time.perf_counter() - started, 3),
    }

    def fill(tmp: Path) -> None:
        save_model(ModelBundle(model, bundle.spec, state_fingerprint(model)), tmp / "baseline.safetensors")
        np.savez(tmp / "test_predictions.npz", pred=test_pred, ids=data.test.ids)
        write_json_atomic(tmp / RESULT, result)

    store.write(directory, fill)
    return result, test_pred, False


def validation_set(data: Dataset, moved: np.ndarray, config: FinetuneConfig) -> tuple[ValidationSet | None, np.ndarray]:
    """The images a run's checkpoints are scored on (:mod:`plint_core.validation`) and the training rows held out
    for them: the ``val`` split (nothing held out) or a fixed slice of the training split; never the test split.
    ``(None, [])`` when there is none (a training split too small to hold a slice out)."""
    none = np.zeros(0, dtype=np.int64)
    if data.val is not None and len(data.val):
        rows = stratified_sample(data.val.labels, np.arange(len(data.val)), config.val_points)
        whole = ValidationSet(data.val.images, np.asarray(data.val.labels), "val split") \
            if len(rows) < len(data.val) else None
        return ValidationSet(data.val.images.subset(rows), data.val.labels[rows], "val split", whole, rows), none
    held = held_out_slice(data.train.labels)
    scored = validation_rows(data.train.labels, config.val_points)
    moved = np.asarray(moved, dtype=bool)
    if not len(held) or (moved.any() and moved.sum() == moved[held].sum()):
        return None, none  # too small to hold anything out, or every moved point would be held out
    source = "held-out slice of the training split"
    whole = ValidationSet(data.train.images.subset(held), data.train.labels[held], source) \
        if len(scored) < len(held) else None
    return ValidationSet(data.train.images.subset(scored), data.train.labels[scored], source, whole, scored), held


def load_run(store: RunStore, run_id: str, started: float | None = None, *, cache_hit: bool = True) -> RunResult:
    """Load a finished run. As a reuse (``cache_hit``, the default) ``seconds`` is the time this load took and
    ``compute_seconds`` the stored time; with ``cache_hit=False`` (a worker has just computed it) the result is
    as stored."""
    result = store.load_run(run_id)
    d = store.run_dir(run_id)
    import pandas as pd

    table = pd.read_csv(d / "test_embedding.csv")
    with np.load(d / "train_targets.npz", allow_pickle=False) as t:
        targets, moved = t["targets"], t["moved"]
    if not cache_hit:
        return RunResult(run_id, result, d, False, table, targets, moved)
    result = dict(result, cache_hit=True, compute_seconds=result.get("seconds"))
    if started is not None:
        result["seconds"] = round(time.perf_counter() - started, 3)
    return RunResult(run_id, result, d, True, table, targets, moved)


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
