"""Fine-tuning C so that its embedding follows the user's edit, and the CE-only control.

Loss of the PLI run (E frozen, every parameter of C trainable)::

    L = (1 - lam) * CE(C(x), label) + lam * m * ||E(C_l(x)) - y'||^2

where ``m``, the embedding term's multiplier, depends on ``FinetuneConfig.weighting``:

``calibrated`` (default)
    ``m`` is set once, at the start, so that the embedding term's gradient is ``lam / (1 - lam)`` times the
    cross-entropy's (mean gradient norms over :data:`CALIBRATION_BATCHES` batches): ``lam`` is then the
    embedding term's share of the pull on the weights, whatever the data, the map's scale, the share of moved
    points or how well trained the model is (:func:`calibrate`).
``paper``
    ``m = 1``, the paper's loss: with a map some 30 units across the embedding term dominates.
``scaled``
    ``m = 1 / s**2`` with ``s`` the map's scale (RMS radius); plint's weighting before the calibration. On the
    digits demo it makes the embedding term about 1/1000 of the paper's.

The control starts from the same weights with the same seed, batches and steps and minimises CE alone. Both
record their path (:mod:`plint_core.path`) and each keeps a checkpoint by the rule ``FinetuneConfig.select``
(:mod:`plint_core.pick`).
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

from .class_weights import inverse_frequency_weights
from .data.images import Images
from .data.loader import batch_loader, iterate
from .device import autocast_dtype, resolve_device, trim_memory
from .errors import PlintError, RunCancelled
from .latents import as_images, capture, inference_batch_size, model_input, uses_convolutions
from .models.exclusive import exclusive
from .models.spec import ModelBundle
from .path import EditProbe, PathRecorder
from .pick import PICK_RULES, TOLERANCE, candidates, pick_steps, reference_accuracy
from .validation import Selection, Selector, eval_steps, stratified_sample

DEFAULT_STEPS = 1000
"""The default step budget of each run (PLI and control). Enough for the digits demo's edits to show (22
epochs of its 1,437 training images) and about half an epoch of Fashion-MNIST; with the best checkpoint kept
and early stopping (:mod:`plint_core.validation`) a run that has stopped improving ends sooner."""
SELECT_RULES = PICK_RULES
EMBED_ON = ("auto", "all", "moved", "balanced")
AUTO_MOVED_SHARE = 0.05
"""``embed_on="auto"`` acts on the moved rows only where they are fewer than this share of the fine-tuning rows (an
instance edit: 0.3-4.2 % in bench/RESULTS.md), else on every row (a class edit: 16 % and more there)."""
WEIGHTINGS = ("calibrated", "paper", "scaled")
OPTIMIZERS = ("adam", "sgd")
CLASS_WEIGHTS = ("none", "inverse")
SGD_MOMENTUM = 0.9
"""SGD's (Nesterov) momentum, the paper's."""
MOVED_PER_BATCH = 8
"""``FinetuneConfig.moved_per_batch``'s default: a quarter of the default batch. Chosen on bench/RESULTS.md ("Moved
rows in every step"), 5 seeds each, against 0 (the moved rows a batch happens to hold): on validation the imbalanced
Fashion-MNIST regime's pick went from outside the 0.5 pp tolerance to inside it (minority recall 0.742 → 0.768,
accuracy 0.832 → 0.843, seed 0) and PneumoniaMNIST's instance edit from 0.631 to 0.621 × the control's distance;
Fashion-MNIST's instance edit went the other way (0.561 → 0.581 ×). On the test split: PneumoniaMNIST's instance
edit 0.645 → 0.543 × (the moved training points 0.664 → 0.464 ×), Fashion-MNIST's 0.557 → 0.548 × (0.386 →
0.226 ×, accuracy −0.38 → −0.16 pp), the regime's accuracy gap −0.66 → −0.16 pp and minority recall +1.9 → +3.0 pp
over the control. Only 8 was tried; class edits (``all``) are not affected."""
CALIBRATION_BATCHES = 16
"""Batches whose gradient norms set the calibrated weighting's multiplier (drawn with their own generator, so
the runs' batch order is unchanged)."""
CHECKPOINT_BUDGET_BYTES = 128 * 2**20
"""A run keeps every checkpoint's weights (for any pick's download) when they fit in this many bytes (the
plint CNN: 0.6 MB each); a larger model keeps only those a rule could pick (:func:`plint_core.pick.candidates`)."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters shared by the PLI run and its control.

    lam: weight of the embedding term, in [0, 1] (default 0.5; with the ``calibrated`` weighting, the embedding
        term's share of the gradient at the start: 0.5 pulls as hard as cross-entropy).
    weighting: ``calibrated`` (default), ``paper`` or ``scaled``: the embedding term's multiplier (module doc).
    optimizer: ``adam`` (default) or ``sgd`` (with Nesterov momentum :data:`SGD_MOMENTUM`, the paper's; give it
        a larger ``lr``, such as 1e-2).
    epochs: passes over the training rows instead of ``steps`` (default ``None``: ``steps`` decide).
    lr: learning rate (default 1e-3).
    batch_size: images per step (default 32).
    seed: seeds the initial shuffle, every batch order and the ``train_points`` subset (default 0).
    train_points: fine-tune on a stratified subset of this many training points, the moved points always
        included (default ``None``: all of them); for large data sets, where an epoch over everything is long.
    steps: optimisation steps of each run (default :data:`DEFAULT_STEPS`), whatever the data set's size.
    select: which checkpoint each run keeps (:mod:`plint_core.pick`): ``follow`` (default: the PLI checkpoint
        that follows the edit most within ``tolerance`` of the best validation accuracy of the start and the
        control; the control its best), ``best-val`` (each its best validation accuracy, the start included)
        or ``last``. All three are made on validation images only, never the test split; every run records
        its whole path, so another checkpoint can be picked afterwards.
    tolerance: ``follow``'s accuracy tolerance (default :data:`plint_core.pick.TOLERANCE`, 0.5 pp).
    patience: with ``best-val``, stop a run after this many evaluations in a row below its best score
        (default 5; ``None``: run every step). ``follow`` and ``last`` run every step: the path is the result.
    evaluations: validation evaluations spread over the planned steps (default 10), each a checkpoint of the path.
    val_points: validation images scored per evaluation, at most (default 1,000; a fixed stratified sample).
    confirm: with ``best-val``, where those images are a sample of a larger validation set, the kept checkpoint
        must also score at least the starting weights on the whole of it, else the run keeps its start
        (default ``True``): the best of ten scores on a sample is partly luck.
    embed_on: which rows the embedding term acts on: ``auto`` (default: ``moved`` where the moved rows are fewer
        than :data:`AUTO_MOVED_SHARE` of the fine-tuning rows, else ``all``; :func:`resolve_embed_on`), ``all``
        (the method: unedited points keep their place ``y`` as target) or ``moved`` (only the moved points; the
        others are left to cross-entropy), or ``balanced`` (every row keeps its target, the moved and the unmoved
        rows carry half of the term each, :func:`balanced_weights`). ``auto`` was chosen on the figures of
        bench/RESULTS.md ("Which rows the embedding term acts on"): on instance edits (11-103 moved points)
        ``moved`` follows further at about the same accuracy (PneumoniaMNIST 0.84 → 0.65 × the control's distance
        over 5 seeds, Fashion-MNIST 1.01 → 0.59 × and −1.3 → +0.0 pp, seed 0; MNIST's 11 points neither); on
        digits' class edit it loses (0.86 × against 0.25 × with ``all``, four of five runs keep their start).
        ``balanced`` lies between the two on both kinds of edit.
    class_weight: ``none`` (default: plain cross-entropy) or ``inverse``: both runs, PLI and its control, weight
        their cross-entropy per class by the inverse of the class's frequency among the fine-tuning rows
        (:func:`plint_core.class_weights.inverse_frequency_weights`, as the ``classweight`` baseline does), for
        a class that is rare there; the control is then that baseline on the pair's steps, and the comparison
        isolates what the embedding term adds to a class-weighted loss.
    moved_per_batch: where the embedding term acts on the moved rows only (``embed_on`` ``moved``, or ``auto``
        resolved to it), every PLI step also carries this many moved rows for that term (drawn in turn from
        the moved rows, in an order of their own; cross-entropy stays on the step's own batch, the control's):
        with a few dozen moved rows among thousands most batches hold none, and the pull comes in rare
        jolts. Default :data:`MOVED_PER_BATCH`; 0: only the moved rows a batch happens to hold.
    device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``; not part of a run's key.
    amp: automatic mixed precision (:func:`plint_core.device.autocast_dtype`; ``None``: on for CUDA,
        off for the CPU); not part of a run's key, recorded in its result.
    workers: loader worker processes (``None``: :func:`plint_core.data.loader.default_workers`); not keyed.
    """

    lam: float = 0.5
    epochs: int | None = None
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    train_points: int | None = None
    steps: int = DEFAULT_STEPS
    select: str = "follow"
    patience: int | None = 5
    tolerance: float = TOLERANCE
    weighting: str = "calibrated"
    optimizer: str = "adam"
    evaluations: int = 10
    val_points: int = 1000
    confirm: bool = True
    embed_on: str = "auto"
    class_weight: str = "none"
    moved_per_batch: int = MOVED_PER_BATCH
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
            raise PlintError(f"select is {self.select!r}: use 'follow' (the checkpoint that follows the edit most "
                             "within the tolerance), 'best-val' (the best validation accuracy) or 'last'")
        if not (isinstance(self.tolerance, (int, float)) and 0.0 <= self.tolerance <= 0.5):
            raise PlintError(f"tolerance is {self.tolerance}: give a share of validation accuracy from 0 to 0.5 "
                             "(0.005 is half a percentage point)")
        if self.weighting not in WEIGHTINGS:
            raise PlintError(f"weighting is {self.weighting!r}: use one of {', '.join(WEIGHTINGS)}")
        if self.optimizer not in OPTIMIZERS:
            raise PlintError(f"optimizer is {self.optimizer!r}: use 'adam' or 'sgd'")
        if self.patience is not None and not (isinstance(self.patience, int) and self.patience >= 1):
            raise PlintError(f"patience is {self.patience}: give a whole number of evaluations, 1 or more, or "
                             "none to never stop early")
        if not (isinstance(self.evaluations, int) and 1 <= self.evaluations <= 1000):
            raise PlintError(f"evaluations is {self.evaluations}: give a whole number from 1 to 1000")
        if self.embed_on not in EMBED_ON:
            raise PlintError(f"embed_on is {self.embed_on!r}: use 'auto' (moved for a small edit, else all), 'all' "
                             "(every training point keeps its target), 'moved' (only the moved points) or "
                             "'balanced' (moved and unmoved points half each)")
        if self.class_weight not in CLASS_WEIGHTS:
            raise PlintError(f"class weight is {self.class_weight!r}: use 'none' (plain cross-entropy) or 'inverse' "
                             "(each class weighted by 1 / its frequency among the fine-tuning rows)")
        if not (isinstance(self.moved_per_batch, int) and 0 <= self.moved_per_batch <= 1024):
            raise PlintError(f"moved per batch is {self.moved_per_batch}: give a whole number from 0 (off) to 1024")
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
        if self.select != "best-val":
            for name in ("patience", "confirm"):
                d.pop(name)
        if self.select != "follow":
            d.pop("tolerance")
        if self.embed_on == "all":
            d.pop("embed_on")
        if self.class_weight == "none":
            d.pop("class_weight")
        if not self.moved_per_batch or self.embed_on in ("all", "balanced"):  # not used there: the key as before
            d.pop("moved_per_batch")
        return d

    @classmethod
    def from_key_dict(cls, d: dict) -> "FinetuneConfig":
        """The config a stored run's :meth:`key_dict` came from: a field that ``key_dict`` leaves out where it takes
        one value means that value (no ``embed_on``: ``all``; no ``moved_per_batch``: 0, off or unused), not
        today's default, so a run stored before a default changed is recomputed as it was made."""
        return cls(**{"embed_on": "all", "moved_per_batch": 0, **d})

    def describe(self) -> str:
        """``1,000 steps`` or ``3 epochs``, and the rule: for tables and labels."""
        plan = f"{self.epochs} epochs" if self.epochs is not None else f"{self.steps:,} steps"
        return plan + {"follow": ", the checkpoint that follows the edit", "best-val": ", best validation checkpoint",
                       "last": ", last step"}[self.select]


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
    snapshot: dict | None = None
    """In a run that records its path: its newest checkpoint's coordinates (:meth:`PathRecorder.latest`: ``step``,
    ``test_xy`` of the first :data:`SNAPSHOT_POINTS` test points, ``moved_xy``), on every report until the next
    evaluation, for a live map (reports are thinned out on their way to the page)."""

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
    """Whether each row was moved by the spec (used with ``embed_on="moved"`` or ``"balanced"``); ``None``: none
    known."""


def resolve_embed_on(embed_on: str, moved: np.ndarray | None) -> str:
    """``embed_on`` as a run uses it: ``auto`` becomes ``moved`` where fewer than :data:`AUTO_MOVED_SHARE` of the
    rows were moved (and some were), else ``all`` (also where ``moved`` is not known)."""
    if embed_on != "auto":
        return embed_on
    if moved is None or not len(moved):
        return "all"
    share = float(np.asarray(moved, dtype=bool).mean())
    return "moved" if 0 < share < AUTO_MOVED_SHARE else "all"


def balanced_weights(moved: np.ndarray) -> np.ndarray:
    """Per-row weights of the embedding term with ``embed_on="balanced"``: the moved rows share half of the
    total weight and the unmoved rows the other half, scaled to a mean of 1 (so the term stays a mean over the
    batch). Where every row or no row was moved, all weights are 1 (the plain mean, as ``all``)."""
    moved = np.asarray(moved, dtype=bool)
    n, k = len(moved), int(moved.sum())
    if k == 0 or k == n:
        return np.ones(n, dtype=np.float32)
    return np.where(moved, 0.5 * n / k, 0.5 * n / (n - k)).astype(np.float32)


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
    rows: np.ndarray | None = None
    """Where ``images`` come from: positions in the ``val`` split, or in the training split for a held-out slice."""


def finetune_pair(bundle: ModelBundle, layer: str, embedder: nn.Module, scale: float, source: TrainingBatchSource,
                  config: FinetuneConfig, progress: Callable[[Progress], None] | None = None,
                  cancel: threading.Event | None = None, validation: ValidationSet | None = None,
                  probe: EditProbe | None = None) -> tuple[nn.Module, nn.Module, dict[str, Selection]]:
    """Fine-tune a control copy and then a PLI copy of ``bundle.module``; returns ``(pli, control, selections)``
    on the CPU, ``selections`` saying for ``pli`` and ``control`` which step each kept and why.

    With ``probe`` (:class:`plint_core.path.EditProbe`) both runs record their path on its images
    (``selections[run].recorder``), and each keeps the checkpoint ``config.select`` picks
    (:func:`plint_core.pick.pick_steps`; ``selections[run].kept`` holds the weights of every checkpoint it
    kept, by step). Without one, with ``validation`` and ``best-val``, each keeps its best-scoring checkpoint
    (the starting weights included) and may stop early; otherwise the weights after its last step.
    ``progress`` is called after every step; setting ``cancel`` makes the loop raise :class:`RunCancelled` at
    the next step. The control runs first, so that ``follow``'s reference is known while the PLI run trains.
    """
    if scale <= 0 or not np.isfinite(scale):
        raise PlintError(f"embedding scale is {scale}: fit the embedding before fine-tuning")
    steps_per_epoch = -(-len(source.labels) // config.batch_size)
    _, total = config.schedule(steps_per_epoch)
    clock = _Clock(2 * total)
    weight = inverse_frequency_weights(source.labels, len(bundle.spec.classes)) \
        if config.class_weight == "inverse" else None
    control, control_sel = _train(bundle, layer, embedder, scale, source, config, 0.0, "control", progress, cancel,
                                  clock, validation, probe=probe, class_weight=weight)
    trim_memory()
    start = control_sel.recorder  # None without a probe
    before = control_sel.curve[0][1] if control_sel.curve else None  # the start, scored once for both runs
    before_whole = control_sel.confirm["start"] if control_sel.confirm else None
    reference = reference_accuracy(start.checkpoints[0], start.checkpoints) if start is not None else None
    pli, pli_sel = _train(bundle, layer, embedder, scale, source, config, config.lam, "pli", progress, cancel,
                          clock, validation, before, before_whole=before_whole, probe=probe, start=start,
                          reference=reference, class_weight=weight)
    trim_memory()
    selections = {"pli": pli_sel, "control": control_sel}
    if probe is not None:
        picks = pick_steps(config.select, pli_sel.recorder.checkpoints, control_sel.recorder.checkpoints,
                           config.tolerance)
        device = resolve_device(config.device)
        before_whole = None
        for name, model in (("control", control), ("pli", pli)):
            sel = selections[name]
            _keep(sel, picks[name], picks if name == "pli" or config.select != "follow" else None, model)
            if config.select == "best-val" and config.confirm and validation is not None \
                    and validation.whole is not None and sel.step != 0:
                _confirm(bundle, validation.whole, device, autocast_dtype(device, config.amp), model, config.workers,
                         sel, before_whole)
                before_whole = sel.confirm["start"]
    return pli, control, selections


def finetune_one(bundle: ModelBundle, layer: str, embedder: nn.Module, scale: float, source: TrainingBatchSource,
                 config: FinetuneConfig, *, run: str, lam: float = 0.0, class_weight: np.ndarray | None = None,
                 rows: np.ndarray | None = None, progress: Callable[[Progress], None] | None = None,
                 cancel: threading.Event | None = None, validation: ValidationSet | None = None
                 ) -> tuple[nn.Module, Selection]:
    """One run of :func:`finetune_pair`'s loop (same start, seed, batch-order generator, step budget and selection
    rule), named ``run`` in its progress reports: the control with ``lam=0``; with ``class_weight`` (one weight
    per class) its cross-entropy is weighted per class (``torch.nn.CrossEntropyLoss(weight=...)``: the mean is
    ``Σ w_y·ce / Σ w_y`` over the batch); with ``rows`` (positions in ``source``, repeats allowed) its batches are
    drawn from those rows instead of each row once. Used by :mod:`plint_core.baselines`, which keep their best
    validation checkpoint, as the control does (``follow`` counts as ``best-val`` here: there is no edit)."""
    if config.select == "follow":
        config = replace(config, select="best-val", patience=None)
    steps_per_epoch = -(-len(source.labels if rows is None else rows) // config.batch_size)
    _, total = config.schedule(steps_per_epoch)
    model, selection = _train(bundle, layer, embedder, scale, source, config, lam, run, progress, cancel,
                              _Clock(total), validation, class_weight=class_weight, rows=rows)
    trim_memory()
    return model, selection


def _keep(selection: Selection, step: int, picks: dict | None, model: nn.Module) -> None:
    """Put checkpoint ``step``'s weights into ``model`` and record the pick in ``selection`` (``picks`` ``None``:
    the control of a ``follow`` run, which keeps its best validation checkpoint)."""
    cp = next(c for c in selection.recorder.checkpoints if c.step == step)
    model.load_state_dict(selection.kept[step])
    selection.step, selection.epoch, selection.score = cp.step, cp.epoch, cp.accuracy
    if picks is None:  # the control under follow: its best validation checkpoint, as a baseline keeps its own
        selection.rule = "best-val"
        return
    selection.rule = picks["rule"]
    selection.pick = {k: v for k, v in picks.items() if k not in ("pli", "control")}


def calibrate(model: nn.Module, frozen: nn.Module, box: dict, loader, convert: Callable, device: torch.device,
              dtype: torch.dtype | None, ce_fn: nn.Module, embed_term: Callable, batch_size: int, seed: int,
              extra: "MovedRows | None" = None) -> dict:
    """The calibrated weighting's multiplier ``m``: mean gradient norm of cross-entropy ÷ that of the (unweighted)
    embedding term, over :data:`CALIBRATION_BATCHES` batches of the training rows drawn with their own generator,
    in eval mode (batch-norm statistics untouched). With it ``lam * m * embed`` pulls ``lam / (1 - lam)`` times as
    hard as ``(1 - lam) * CE`` at the start. Returns ``{"multiplier", "ce_grad", "embed_grad", "batches"}``; where
    no sampled batch has a moved point (the embedding term's gradient is 0), ``multiplier`` is ``None``. ``extra``:
    the moved rows every step carries (``moved_per_batch``), added to each batch as in training."""
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    ce_norms, embed_norms = [], []
    try:
        for batch in _calibration_batches(loader, batch_size, seed):
            y = batch["labels"].to(device, non_blocking=True)
            x, t, w = _with_extra(batch, extra.draw() if extra is not None else None, convert, device)
            with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
                ce = ce_fn(model(x)[:len(y)], y)
            with torch.autocast(device.type, enabled=False):
                embed = embed_term(frozen(box["out"].float()), t, w)
            g_ce = torch.autograd.grad(ce, params, retain_graph=True, allow_unused=True)
            g_e = torch.autograd.grad(embed, params, allow_unused=True)
            ce_norms.append(_norm(g_ce))
            embed_norms.append(_norm(g_e))
    finally:
        model.train(was_training)
    ce_grad, embed_grad = float(np.mean(ce_norms)), float(np.mean(embed_norms))
    multiplier = ce_grad / embed_grad if embed_grad > 0 and np.isfinite(embed_grad) else None
    return {"multiplier": multiplier, "ce_grad": ce_grad, "embed_grad": embed_grad, "batches": len(ce_norms)}


class MovedRows:
    """The moved rows a PLI step carries for the embedding term (``FinetuneConfig.moved_per_batch``): ``k`` at a
    time from ``dataset`` (a :class:`~plint_core.data.loader.RowBatches`), in turn through a permutation of
    ``positions`` drawn anew each pass with a generator of its own (``seed``), so the run's batch order, and the
    control's, stay as they are."""

    def __init__(self, dataset, positions: np.ndarray, k: int, seed: int):
        self.dataset, self.positions = dataset, np.asarray(positions, dtype=np.int64)
        self.k = min(int(k), len(self.positions))
        self.gen = torch.Generator().manual_seed(20_000 + int(seed))
        self.order: list[int] = []

    def draw(self) -> dict:
        while len(self.order) < self.k:
            self.order += self.positions[torch.randperm(len(self.positions), generator=self.gen).numpy()].tolist()
        rows, self.order = self.order[:self.k], self.order[self.k:]
        return self.dataset[rows]


def _with_extra(batch: dict, extra: dict | None, convert: Callable, device: torch.device):
    """The step's model input, targets and embedding weights: ``batch``'s, with ``extra``'s rows after them."""
    x = convert(batch["images"])
    t = batch["targets"].to(device, non_blocking=True)
    w = batch["weights"].to(device, non_blocking=True)
    if extra is None:
        return x, t, w
    return (torch.cat([x, convert(extra["images"])]), torch.cat([t, extra["targets"].to(device)]),
            torch.cat([w, extra["weights"].to(device)]))


def _norm(grads) -> float:
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)).item())


def _calibration_batches(loader, batch_size: int, seed: int):
    """:data:`CALIBRATION_BATCHES` batches of ``loader``'s rows (its :class:`~plint_core.data.loader.RowBatches`),
    drawn with a generator of their own (``seed``), so the runs' own batch order is untouched."""
    dataset = loader.dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(10_000 + seed)).tolist()
    for start in range(0, min(len(order), CALIBRATION_BATCHES * batch_size), batch_size):
        yield dataset[order[start:start + batch_size]]


def _multiplier(config: FinetuneConfig, scale: float, calibration: dict | None) -> float:
    if config.weighting == "paper":
        return 1.0
    if config.weighting == "calibrated" and calibration is not None and calibration["multiplier"] is not None:
        return calibration["multiplier"]
    return 1.0 / scale ** 2


def _train(bundle: ModelBundle, layer: str, embedder: nn.Module, scale: float, source: TrainingBatchSource,
           config: FinetuneConfig, lam: float, run: str, progress: Callable[[Progress], None] | None,
           cancel: threading.Event | None, clock: _Clock, validation: ValidationSet | None = None,
           before: float | None = None, class_weight: np.ndarray | None = None,
           rows: np.ndarray | None = None, before_whole: float | None = None, probe: EditProbe | None = None,
           start: PathRecorder | None = None, reference: float | None = None) -> tuple[nn.Module, Selection]:
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
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=SGD_MOMENTUM, nesterov=True)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    gen = torch.Generator().manual_seed(config.seed)
    embed_on = resolve_embed_on(config.embed_on, source.moved)
    only_moved = embed_on == "moved"
    if embed_on != "all" and source.moved is None:
        raise PlintError(f"embed_on={config.embed_on!r} needs to know which training points were moved")
    if embed_on == "balanced":
        weights = balanced_weights(source.moved)
    else:
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
    extra = MovedRows(loader.dataset, np.flatnonzero(weights > 0), config.moved_per_batch, config.seed) \
        if lam > 0 and only_moved and config.moved_per_batch > 0 and weights.any() else None
    recorder = PathRecorder(probe, bundle, layer, device, dtype, config.workers) if probe is not None else None
    scorer = _Scorer(bundle, validation, device, dtype, model, config.workers) \
        if recorder is None and validation is not None and config.select == "best-val" else None
    selector = None
    if recorder is not None:
        first = recorder.adopt_start(start) if start is not None else recorder.record(model, frozen, 0, 0)
        selector = Selector(first.accuracy, config.patience if config.select == "best-val" else None)
    elif scorer is not None:
        selector = Selector(scorer(model) if before is None else before, config.patience)
    selection = selector.selection if selector else Selection("last")
    selection.recorder = recorder
    selection.embed_on = embed_on if lam > 0 else None
    keep_all = recorder is not None and \
        _state_bytes(model) * (config.evaluations + 1) <= CHECKPOINT_BUDGET_BYTES
    if recorder is not None:
        selection.kept = {0: _cpu_state(bundle.module)}
    ce_fn = nn.CrossEntropyLoss() if class_weight is None else \
        nn.CrossEntropyLoss(weight=torch.as_tensor(np.asarray(class_weight, dtype=np.float32), device=device))

    def embed_term(xy: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        squared = ((xy - t) ** 2).sum(1)
        if only_moved:
            return (w * squared).sum() / w.sum().clamp(min=1.0)
        return (w * squared).mean()  # all: w is 1; balanced: mean 1 over the training rows

    checkpoints = set(eval_steps(total, config.evaluations)) if selector is not None else set()
    done, stop = 0, False
    snapshot = recorder.latest(SNAPSHOT_POINTS) if recorder is not None else None
    with capture(model, layer) as box:
        multiplier = 1.0 / scale ** 2
        if lam > 0:
            if config.weighting == "calibrated":
                selection.calibration = calibrate(
                    model, frozen, box, loader, convert, device, dtype, ce_fn, embed_term, config.batch_size,
                    config.seed, None if extra is None else MovedRows(extra.dataset, extra.positions, extra.k,
                                                                      10_000 + config.seed))
            multiplier = _multiplier(config, scale, selection.calibration)
            if selection.calibration is not None:
                selection.calibration["used"] = multiplier
        for epoch in range(1, epochs + 1):
            for step, batch in enumerate(iterate(loader), start=1):
                if cancel is not None and cancel.is_set():
                    raise RunCancelled(f"{run} run cancelled in epoch {epoch}")
                y = batch["labels"].to(device, non_blocking=True)
                x, t, w = _with_extra(batch, extra.draw() if extra is not None else None, convert, device)
                with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
                    logits = model(x)
                    ce = ce_fn(logits[:len(y)], y)  # the extra moved rows carry the embedding term only
                with torch.autocast(device.type, enabled=False), torch.set_grad_enabled(lam > 0):
                    embed = embed_term(frozen(box["out"].float()), t, w) * multiplier
                loss = (1 - lam) * ce + lam * embed if lam > 0 else ce
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                done += 1
                last = Progress(run, epoch, epochs, step, steps, ce.item(), embed.item(), loss.item(), clock.tick(),
                                snapshot=snapshot)
                if done in checkpoints:
                    if recorder is not None:
                        cp = recorder.record(model, frozen, done, epoch)
                        stop = selector.offer(done, epoch, cp.accuracy, model, keep=False)
                        wanted = None if keep_all else candidates(recorder.checkpoints, reference if lam > 0
                                                                  else None, config.tolerance)
                        _offer_state(selection.kept, done, model, wanted)
                        snapshot = recorder.latest(SNAPSHOT_POINTS)
                        last = replace(last, snapshot=snapshot)
                    else:
                        stop = selector.offer(done, epoch, scorer(model), model)
                if progress is not None:
                    progress(last)
                if stop or done >= total:
                    break
            if stop or done >= total:
                break
    if done < total:  # stopped early: the time left counts only the steps still to come, and says so at once
        clock.total -= total - done
        if progress is not None:
            progress(replace(last, seconds_left=clock.left()))
    model.zero_grad(set_to_none=True)  # the last step's gradients are not part of the result
    if recorder is not None:
        selection.steps_run = done  # the pick, and the weights it needs, come after both runs (finetune_pair)
    elif selector is not None:
        with exclusive(bundle.module):
            selector.restore(model, bundle.module)
        if config.confirm and validation.whole is not None and selection.step != 0:
            _confirm(bundle, validation.whole, device, dtype, model, config.workers, selection, before_whole)
    else:
        selection.step, selection.steps_run = done, done
        selection.epoch = epoch
    return model.eval().to(memory_format=torch.contiguous_format).cpu(), selection


SNAPSHOT_POINTS = 1500
"""Test points whose coordinates a progress report carries at each evaluation (the live map)."""


def _state_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _offer_state(kept: dict[int, dict], step: int, model: nn.Module, wanted: set[int] | None) -> None:
    """Keep checkpoint ``step``'s weights; with ``wanted`` (over the budget) drop those no rule can pick any more."""
    kept[step] = _cpu_state(model)
    if wanted is not None:
        for s in [s for s in kept if s not in wanted and s != 0]:
            del kept[s]


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
