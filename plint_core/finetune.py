"""Fine-tuning C so that its embedding follows the user's edit, and the CE-only control.

Loss of the PLI run (E frozen, every parameter of C trainable)::

    L = (1 - lam) * CE(C(x), label) + lam * ||E(C_l(x)) - y'||^2 / s^2

with ``s`` the embedding's scale (RMS radius of the fitted embedding), so
``lam`` means the same on any data. The control starts from the same weights
with the same seed, batches and epochs and minimises CE alone.
"""
from __future__ import annotations

import copy
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from .data.images import Images
from .data.loader import batch_loader, iterate
from .device import autocast_dtype, resolve_device, trim_memory
from .errors import PlintError, RunCancelled
from .latents import as_images, capture, inference_batch_size, model_input, uses_convolutions
from .models.exclusive import exclusive
from .models.spec import ModelBundle
from .validation import Selection, Selector, eval_steps, stratified_sample

DEFAULT_STEPS = 1000
"""The default step budget of each run (PLI and control). Enough for the digits demo's edits to show (22
epochs of its 1,437 training images) and about half an epoch of Fashion-MNIST; with the best checkpoint kept
and early stopping (:mod:`plint_core.validation`) a run that has stopped improving ends sooner."""
SELECT_RULES = ("best-val", "last")
EMBED_ON = ("all", "moved")


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters shared by the PLI run and its control.

    lam: weight of the embedding term, in [0, 1] (default 0.1, the paper's).
    steps: optimisation steps of each run (default :data:`DEFAULT_STEPS`), whatever the data set's size.
    epochs: passes over the training rows instead of ``steps`` (default ``None``: ``steps`` decide).
    lr: Adam learning rate (default 1e-3).
    batch_size: images per step (default 32).
    seed: seeds the initial shuffle, every batch order and the ``train_points`` subset (default 0).
    train_points: fine-tune on a stratified subset of this many training points, the moved points always
        included (default ``None``: all of them); for large data sets, where an epoch over everything is long.
    select: which weights a run keeps: ``best-val`` (default), the checkpoint with the best validation
        accuracy, the starting weights included, or ``last``, the weights after the last step
        (:mod:`plint_core.validation`; never the test split).
    patience: with ``best-val``, stop a run after this many evaluations in a row below its best score
        (default 5; ``None``: run every step).
    evaluations: with ``best-val``, validation evaluations spread over the planned steps (default 10).
    val_points: validation images scored per evaluation, at most (default 1,000; a fixed stratified sample).
    confirm: with ``best-val``, where those images are a sample of a larger validation set, the kept checkpoint
        must also score at least the starting weights on the whole of it, else the run keeps its start
        (default ``True``): the best of ten scores on a sample is partly luck, and a run must not end below
        the model it started from on its validation split.
    embed_on: which rows the embedding term acts on: ``all`` (default, the method: unedited points keep their
        place ``y`` as target) or ``moved`` (only the moved points; the others are left to cross-entropy).
    device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``; not part of a run's key.
    amp: automatic mixed precision (:func:`plint_core.device.autocast_dtype`; ``None``: on for CUDA,
        off for the CPU); not part of a run's key, recorded in its result.
    workers: loader worker processes (``None``: :func:`plint_core.data.loader.default_workers`); not keyed.
    """

    lam: float = 0.1
    epochs: int | None = None
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    train_points: int | None = None
    steps: int = DEFAULT_STEPS
    select: str = "best-val"
    patience: int | None = 5
    evaluations: int = 10
    val_points: int = 1000
    confirm: bool = True
    embed_on: str = "all"
    device: str = "auto"
    amp: bool | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise PlintError(f"lam is {self.lam}: it must lie in [0, 1] (0.1 is the paper's)")
        if self.epochs is not None and not (isinstance(self.epochs, int) and 1 <= self.epochs <= 1000):
            raise PlintError(f"epochs is {self.epochs}: give a whole number from 1 to 1000, or none to let the "
                             "step budget decide")
        if not (isinstance(self.steps, int) and 1 <= self.steps <= 1_000_000):
            raise PlintError(f"steps is {self.steps}: give a whole number from 1 to 1,000,000")
        if not (self.lr > 0 and self.lr < 1):
            raise PlintError(f"learning rate is {self.lr}: it must lie in (0, 1), e.g. 1e-3")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise PlintError(f"batch size is {self.batch_size}: it must be a positive whole number")
        if self.train_points is not None and not (isinstance(self.train_points, int) and self.train_points >= 2):
            raise PlintError(f"train points is {self.train_points}: give a whole number of at least 2, or leave it "
                             "empty to fine-tune on the whole training split")
        if self.select not in SELECT_RULES:
            raise PlintError(f"select is {self.select!r}: use 'best-val' (the checkpoint with the best validation "
                             "accuracy) or 'last'")
        if self.patience is not None and not (isinstance(self.patience, int) and self.patience >= 1):
            raise PlintError(f"patience is {self.patience}: give a whole number of evaluations, 1 or more, or "
                             "none to never stop early")
        if not (isinstance(self.evaluations, int) and 1 <= self.evaluations <= 1000):
            raise PlintError(f"evaluations is {self.evaluations}: give a whole number from 1 to 1000")
        if self.embed_on not in EMBED_ON:
            raise PlintError(f"embed_on is {self.embed_on!r}: use 'all' (every training point keeps its target) or "
                             "'moved' (only the moved points)")
        if not (isinstance(self.val_points, int) and self.val_points >= 10):
            raise PlintError(f"val points is {self.val_points}: give a whole number of at least 10")

    def schedule(self, steps_per_epoch: int) -> tuple[int, int]:
        """``(epochs, steps)`` each run goes through at most, for ``steps_per_epoch`` batches an epoch."""
        if self.epochs is not None:
            return self.epochs, self.epochs * steps_per_epoch
        return -(-self.steps // steps_per_epoch), self.steps

    def key_dict(self) -> dict:
        """The fields that determine a run's result (all but ``device``, ``amp`` and ``workers``; ``epochs``
        or ``steps``, whichever decides; ``train_points`` only when set)."""
        d = asdict(self)
        for name in ("device", "amp", "workers"):
            d.pop(name)
        d.pop("steps" if self.epochs is not None else "epochs")
        if d["train_points"] is None:
            d.pop("train_points")
        if self.select == "last":
            for name in ("patience", "evaluations", "val_points", "confirm"):
                d.pop(name)
        if self.embed_on == "all":
            d.pop("embed_on")
        return d

    def describe(self) -> str:
        """``1,000 steps`` or ``3 epochs``, and the rule: for tables and labels."""
        plan = f"{self.epochs} epochs" if self.epochs is not None else f"{self.steps:,} steps"
        return plan + (", best validation checkpoint" if self.select == "best-val" else ", last step")


@dataclass(frozen=True)
class Progress:
    """One report from a fine-tuning loop; ``run`` is ``"pli"``, ``"control"`` or a baseline's name
    (:mod:`plint_core.baselines`).

    ``seconds_left`` estimates the time until both runs end, from the steps
    done so far (``None`` during the first few steps).
    """

    run: str
    epoch: int
    epochs: int
    step: int
    steps: int
    ce: float
    embed: float
    loss: float
    seconds_left: float | None = None

    @property
    def fraction(self) -> float:
        """Share of this run done, 0..1."""
        return ((self.epoch - 1) * self.steps + self.step) / (self.epochs * self.steps)


@dataclass(frozen=True)
class TrainingBatchSource:
    """Training images (an :class:`~plint_core.data.images.Images` view, or ``[N, C, H, W]`` in ``[0, 1]``),
    their labels and embedding targets ``y'`` (row-aligned)."""

    images: Images | np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    moved: np.ndarray | None = None
    """Whether each row was moved by the spec (used with ``embed_on="moved"``); ``None``: none known."""


SMALL_MEMORY_BYTES = 4_000_000_000
"""Below this much memory a host counts as small for :func:`preset_batch_size` (Streamlit Cloud: about 2.7 GB)."""
LARGE_INPUT_VALUES = 100_000
"""Input values per image from which an image counts as large (3 × 224 × 224 is 150,528)."""


def preset_batch_size(input_shape: tuple[int, ...], memory_bytes: int | None, device: str = "cpu") -> int:
    """The batch size to offer: :attr:`FinetuneConfig.batch_size` (32), or 16 for large images
    (:data:`LARGE_INPUT_VALUES`) on a CPU host with less than :data:`SMALL_MEMORY_BYTES` of memory.

    Fine-tuning keeps a batch's activations for the backward pass, and at 224 × 224 they dominate: the
    20,000-image ResNet-18 project of ``bench/bench_app_memory.py`` peaked at 2.92 GB (server and worker
    together, summed Pss) with batch 32 and at 2.35 GB with 16 (bench/RESULTS.md), against Streamlit
    Cloud's 2.7 GB. A GPU keeps activations in its own memory, so the preset stays 32 there.
    """
    default = FinetuneConfig.batch_size
    if device == "cuda" or memory_bytes is None or memory_bytes >= SMALL_MEMORY_BYTES:
        return default
    return min(default, 16) if int(np.prod(input_shape)) >= LARGE_INPUT_VALUES else default


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


ESTIMATE_AFTER_STEPS = 5
"""Steps timed before the first estimate of the time left."""


class _Clock:
    """Time left for ``total`` steps, from the mean time per step so far (after :data:`ESTIMATE_AFTER_STEPS`)."""

    def __init__(self, total: int):
        self.total, self.done, self.started = total, 0, time.perf_counter()

    def tick(self) -> float | None:
        self.done += 1
        return self.left()

    def left(self) -> float | None:
        if self.done < ESTIMATE_AFTER_STEPS:
            return None
        return (time.perf_counter() - self.started) / self.done * (self.total - self.done)


def training_rows(labels: np.ndarray, moved: np.ndarray, n: int | None, seed: int,
                  exclude: np.ndarray | None = None) -> np.ndarray:
    """Rows to fine-tune on: all of them but ``exclude`` (rows held out for validation) when ``n`` is None or at
    least that many, else the ``moved`` rows not excluded and a sample of the others stratified by label
    (``seed``), ``n`` in all — or just those moved rows if they are more."""
    rows = np.arange(len(labels))
    if exclude is not None and len(exclude):
        keep = np.ones(len(labels), dtype=bool)
        keep[exclude] = False
        rows = rows[keep]
    if n is None or n >= len(rows):
        return rows
    moved = np.asarray(moved, dtype=bool)
    kept_moved = rows[moved[rows]]
    rest = rows[~moved[rows]]
    fill = n - len(kept_moved)
    if fill <= 0:
        return kept_moved
    return np.sort(np.concatenate([kept_moved, stratified_sample(labels, rest, fill, seed)]))


@dataclass(frozen=True)
class ValidationSet:
    """Images the runs are scored on to pick their checkpoints (:mod:`plint_core.validation`), their labels,
    and where they come from, in words (``val split`` or ``held-out training slice``)."""

    images: Images
    labels: np.ndarray
    source: str
    whole: "ValidationSet | None" = None
    """The whole validation set when ``images`` are a sample of it (``FinetuneConfig.confirm``); else ``None``."""


def finetune_pair(bundle: ModelBundle, layer: str, embedder: nn.Module, scale: float, source: TrainingBatchSource,
                  config: FinetuneConfig, progress: Callable[[Progress], None] | None = None,
                  cancel: threading.Event | None = None, validation: ValidationSet | None = None
                  ) -> tuple[nn.Module, nn.Module, dict[str, Selection]]:
    """Fine-tune a PLI copy and a control copy of ``bundle.module``; returns ``(pli, control, selections)`` on
    the CPU, ``selections`` saying for ``pli`` and ``control`` which step each kept and why.

    With ``validation`` and ``config.select == "best-val"`` each run keeps its best-scoring checkpoint (the
    starting weights included) and may stop early; otherwise the weights after its last step. ``progress``
    is called after every step; setting ``cancel`` makes the loop raise :class:`RunCancelled` at the next step.
    """
    if scale <= 0 or not np.isfinite(scale):
        raise PlintError(f"embedding scale is {scale}: fit the embedding before fine-tuning")
    steps_per_epoch = -(-len(source.labels) // config.batch_size)
    _, total = config.schedule(steps_per_epoch)
    clock = _Clock(2 * total)
    pli, pli_sel = _train(bundle, layer, embedder, scale, source, config, config.lam, "pli", progress, cancel, clock,
                          validation)
    trim_memory()
    before = pli_sel.curve[0][1] if pli_sel.curve else None  # the start, scored once for both runs
    before_whole = pli_sel.confirm["start"] if pli_sel.confirm else None
    control, control_sel = _train(bundle, layer, embedder, scale, source, config, 0.0, "control", progress, cancel,
                                  clock, validation, before, before_whole=before_whole)
    trim_memory()
    return pli, control, {"pli": pli_sel, "control": control_sel}


def finetune_one(bundle: ModelBundle, layer: str, embedder: nn.Module, scale: float, source: TrainingBatchSource,
                 config: FinetuneConfig, *, run: str, lam: float = 0.0, class_weight: np.ndarray | None = None,
                 rows: np.ndarray | None = None, progress: Callable[[Progress], None] | None = None,
                 cancel: threading.Event | None = None, validation: ValidationSet | None = None
                 ) -> tuple[nn.Module, Selection]:
    """One run of :func:`finetune_pair`'s loop (same start, seed, batch-order generator, step budget and selection
    rule), named ``run`` in its progress reports: the control with ``lam=0``; with ``class_weight`` (one weight
    per class) its cross-entropy is weighted per class (``torch.nn.CrossEntropyLoss(weight=...)``: the mean is
    ``Σ w_y·ce / Σ w_y`` over the batch); with ``rows`` (positions in ``source``, repeats allowed) its batches are
    drawn from those rows instead of each row once. Used by :mod:`plint_core.baselines`."""
    steps_per_epoch = -(-len(source.labels if rows is None else rows) // config.batch_size)
    _, total = config.schedule(steps_per_epoch)
    model, selection = _train(bundle, layer, embedder, scale, source, config, lam, run, progress, cancel,
                              _Clock(total), validation, class_weight=class_weight, rows=rows)
    trim_memory()
    return model, selection


def _train(bundle: ModelBundle, layer: str, embedder: nn.Module, scale: float, source: TrainingBatchSource,
           config: FinetuneConfig, lam: float, run: str, progress: Callable[[Progress], None] | None,
           cancel: threading.Event | None, clock: _Clock, validation: ValidationSet | None = None,
           before: float | None = None, class_weight: np.ndarray | None = None,
           rows: np.ndarray | None = None, before_whole: float | None = None) -> tuple[nn.Module, Selection]:
    device = resolve_device(config.device)
    dtype = autocast_dtype(device, config.amp)
    torch.manual_seed(config.seed)
    with exclusive(bundle.module):  # not while another session's forward pass has its hook on it
        model = copy.deepcopy(bundle.module)
    model = model.to(device).train()
    channels_last = device.type == "cuda" and uses_convolutions(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    with exclusive(embedder):
        frozen = copy.deepcopy(embedder)
    frozen = frozen.to(device).eval().requires_grad_(False)  # the shared embedder stays as it is (other users)
    images = as_images(source.images)
    convert = model_input(bundle, images, device, model)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    gen = torch.Generator().manual_seed(config.seed)
    only_moved = config.embed_on == "moved"
    if only_moved and source.moved is None:
        raise PlintError("embed_on='moved' needs to know which training points were moved")
    weights = np.asarray(source.moved if only_moved else np.ones(len(source.labels)), dtype=np.float32)
    labels = np.asarray(source.labels, dtype=np.int64)
    targets = np.asarray(source.targets, dtype=np.float32)
    if rows is not None:  # batches drawn from these positions (repeats: oversampled), in the seed's order
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows) or rows.min() < 0 or rows.max() >= len(labels):
            raise PlintError(f"rows to draw batches from must be positions 0..{len(labels) - 1}, at least one")
        images, labels, targets, weights = images.subset(rows), labels[rows], targets[rows], weights[rows]
    loader = batch_loader(images, config.batch_size, device, generator=gen, workers=config.workers,
                          labels=labels, targets=targets, weights=weights)
    steps = len(loader)
    epochs, total = config.schedule(steps)
    scorer = _Scorer(bundle, validation, device, dtype, model, config.workers) \
        if validation is not None and config.select == "best-val" else None
    selector = Selector(scorer(model) if before is None else before, config.patience) if scorer else None
    selection = selector.selection if selector else Selection("last")
    ce_fn = nn.CrossEntropyLoss() if class_weight is None else \
        nn.CrossEntropyLoss(weight=torch.as_tensor(np.asarray(class_weight, dtype=np.float32), device=device))
    checkpoints = set(eval_steps(total, config.evaluations)) if scorer else set()
    done, stop = 0, False
    with capture(model, layer) as box:
        for epoch in range(1, epochs + 1):
            for step, batch in enumerate(iterate(loader), start=1):
                if cancel is not None and cancel.is_set():
                    raise RunCancelled(f"{run} run cancelled in epoch {epoch}")
                x = convert(batch["images"])
                y = batch["labels"].to(device, non_blocking=True)
                t = batch["targets"].to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
                    logits = model(x)
                    ce = ce_fn(logits, y)
                with torch.autocast(device.type, enabled=False), torch.set_grad_enabled(lam > 0):
                    squared = ((frozen(box["out"].float()) - t) ** 2).sum(1)
                    if only_moved:
                        w = batch["weights"].to(device, non_blocking=True)
                        embed = (w * squared).sum() / w.sum().clamp(min=1.0) / scale ** 2
                    else:
                        embed = squared.mean() / scale ** 2
                loss = (1 - lam) * ce + lam * embed if lam > 0 else ce
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                done += 1
                last = Progress(run, epoch, epochs, step, steps, ce.item(), embed.item(), loss.item(), clock.tick())
                if progress is not None:
                    progress(last)
                if done in checkpoints:
                    stop = selector.offer(done, epoch, scorer(model), model)
                if stop or done >= total:
                    break
            if stop or done >= total:
                break
    if done < total:  # stopped early: the time left counts only the steps still to come, and says so at once
        clock.total -= total - done
        if progress is not None:
            progress(replace(last, seconds_left=clock.left()))
    model.zero_grad(set_to_none=True)  # the last step's gradients are not part of the result
    if selector is not None:
        with exclusive(bundle.module):
            selector.restore(model, bundle.module)
        if config.confirm and validation.whole is not None and selection.step != 0:
            _confirm(bundle, validation.whole, device, dtype, model, config.workers, selection, before_whole)
    else:
        selection.step, selection.steps_run = done, done
        selection.epoch = epoch
    return model.eval().to(memory_format=torch.contiguous_format).cpu(), selection


def _confirm(bundle: ModelBundle, whole: ValidationSet, device: torch.device, dtype: torch.dtype | None,
             model: nn.Module, workers: int | None, selection: Selection, before: float | None = None) -> None:
    """Score the kept weights (in ``model``) and the starting ones (``before``, if already scored) on the ``whole``
    validation set; if the kept ones score lower, put the starting weights back into ``model`` and record that the
    run kept its start."""
    scorer = _Scorer(bundle, whole, device, dtype, model, workers)
    kept = scorer(model)
    if before is None:
        with exclusive(bundle.module):
            start = copy.deepcopy(bundle.module)
        before = scorer(start.to(device))
        del start
    selection.confirm = {"n": int(len(whole.labels)), "start": before, "kept": kept, "kept_step": selection.step,
                         "reverted": kept < before}
    if kept < before:
        with exclusive(bundle.module):
            model.load_state_dict(bundle.module.state_dict())
        selection.step, selection.epoch, selection.score = 0, 0, selection.curve[0][1]


class _Scorer:
    """Validation accuracy of the model being trained (eval mode, no gradients, the training's precision),
    without moving it off its device."""

    def __init__(self, bundle: ModelBundle, validation: ValidationSet, device: torch.device,
                 dtype: torch.dtype | None, model: nn.Module, workers: int | None):
        self.images = as_images(validation.images)
        self.labels = np.asarray(validation.labels, dtype=np.int64)
        self.device, self.dtype = device, dtype
        self.convert = model_input(bundle, self.images, device, model)
        self.loader = batch_loader(self.images, inference_batch_size(self.images.shape[1:], device), device,
                                   workers=workers)

    def __call__(self, model: nn.Module) -> float:
        was_training = model.training
        model.eval()
        correct = 0
        with torch.no_grad(), (torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None
                               else nullcontext()):
            for batch in iterate(self.loader):
                rows = batch["index"].numpy()
                predicted = model(self.convert(batch["images"])).argmax(1).cpu().numpy()
                correct += int((predicted == self.labels[rows]).sum())
        model.train(was_training)
        return correct / max(len(self.labels), 1)
