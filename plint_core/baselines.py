"""What a practitioner would try instead of PLI for a confused class pair, or for a rare class: three
cross-entropy baselines.

- ``upweight``: cross-entropy with the pair's two classes weighted ``weight`` × (every other class 1;
  ``torch.nn.CrossEntropyLoss(weight=...)``, whose batch mean is ``Σ w_y·ce / Σ w_y``).
- ``classweight``: cross-entropy with every class weighted by the inverse of its frequency among the fine-tuning
  rows (``w_k ∝ 1 / n_k``, normalised to mean 1 over the classes present; :func:`inverse_frequency_weights`): the
  first thing an engineer tries against class imbalance. It needs no pair.
- ``oversample``: the pair's *hard* training points drawn ``repeats`` times per pass instead of once. Hard: a
  training point of one of the two classes that the starting model misclassifies, or classifies with a margin
  ``p(true class) − max p(other class)`` (softmax of its outputs) below ``margin``.

And two that follow a review's flags on images (:mod:`plint_core.flags`, :meth:`~plint_core.flags.FlagBook.baseline`):

- ``relabel``: cross-entropy with the suggested labels of the images flagged *label wrong* (``relabel``: pairs of
  sample id and class) instead of their given ones.
- ``drop_flagged``: cross-entropy without the flagged images (``drop``: their sample ids).

Their key holds the flags' effect (the ids and the classes), so a changed flag book that changes the training is a
new run. The validation images and their labels are every other run's, so the picks stay comparable.

Each is trained exactly like the CE-only control of :func:`plint_core.finetune.finetune_pair`: from the same
weights, with the same seed (the same generator draws the batch order; with oversampling it permutes the longer
list of rows, so the hard points recur ``repeats`` times per pass, the same way for a seed), the same step budget,
the same validation images and the same selection rule and patience (:mod:`plint_core.validation`); only the loss
or the sampling differs. With ``weight=1`` or ``repeats=1`` a baseline is the control, bit for bit.
"""
from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from .data.images import Images
from .data.loader import batch_loader, iterate
from .device import autocast_dtype, resolve_device
from .class_weights import inverse_frequency_weights  # noqa: F401 (part of this module's API)
from .errors import PlintError
from .finetune import FinetuneConfig, Progress, TrainingBatchSource, ValidationSet, finetune_one
from .latents import as_images, inference_batch_size, model_input
from .models.exclusive import exclusive
from .models.spec import ModelBundle
from .validation import Selection

BASELINES = ("upweight", "oversample", "classweight", "relabel", "drop_flagged")
PAIR_KINDS = ("upweight", "oversample")
"""The kinds that act on a class pair (``classweight`` acts on every class)."""
FLAG_KINDS = ("relabel", "drop_flagged")
"""The kinds that follow the flags on images: the suggested labels, or the flagged images left out."""


@dataclass(frozen=True)
class Baseline:
    """A baseline run: for the class pair ``pair`` (two class indices), or for every class (``classweight``).

    kind: ``upweight``, ``oversample``, ``classweight``, ``relabel`` or ``drop_flagged``.
    pair: with ``upweight`` and ``oversample``, the class pair (required); ``classweight`` takes none.
    weight: with ``upweight``, the pair's classes' weight in the cross-entropy (default 2.0; 1.0 is the control).
    repeats: with ``oversample``, how many times per pass a hard point is drawn (default 4; 1 is the control).
    margin: with ``oversample``, a point of the pair whose softmax margin ``p(true) − max p(other)`` under the
        starting model is below this is hard (default 0.2; misclassified points have a negative margin).
    relabel: with ``relabel``, ``(sample id, class)`` pairs: the training images to train with another label.
    drop: with ``drop_flagged``, the sample ids of the training images to leave out.
    """

    kind: str
    pair: tuple[int, int] | None = None
    weight: float = 2.0
    repeats: int = 4
    margin: float = 0.2
    relabel: tuple[tuple[int, int], ...] = ()
    drop: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in BASELINES:
            raise PlintError(f"baseline is {self.kind!r}: use 'upweight' (the pair's classes weighted in the "
                             "cross-entropy), 'oversample' (the pair's hard training points drawn more often), "
                             "'classweight' (every class weighted by 1 / its frequency), 'relabel' (the flagged "
                             "images' suggested labels) or 'drop_flagged' (without the flagged images)")
        if self.kind in FLAG_KINDS:
            self._check_flags()
            return
        if self.kind == "classweight":
            if self.pair is not None:
                raise PlintError(f"pair is {self.pair!r}: the classweight baseline weights every class by 1 / its "
                                 "count in the fine-tuning rows and takes no pair; leave the pair out")
            return
        if self.pair is None:
            raise PlintError(f"the {self.kind} baseline needs a class pair: give two different class indices, "
                             "e.g. (0, 6)")
        pair = tuple(self.pair)
        if len(pair) != 2 or not all(isinstance(k, (int, np.integer)) and k >= 0 for k in pair) or pair[0] == pair[1]:
            raise PlintError(f"pair is {self.pair!r}: give two different class indices, e.g. (0, 6)")
        object.__setattr__(self, "pair", (int(pair[0]), int(pair[1])))
        if not (np.isfinite(self.weight) and 0 < self.weight <= 1000):
            raise PlintError(f"weight is {self.weight}: give the pair's class weight, a number in (0, 1000] (1 is "
                             "the control)")
        if not (isinstance(self.repeats, (int, np.integer)) and 1 <= self.repeats <= 1000):
            raise PlintError(f"repeats is {self.repeats}: give a whole number from 1 to 1000 (1 is the control)")
        if not (np.isfinite(self.margin) and -1 <= self.margin <= 1):
            raise PlintError(f"margin is {self.margin}: give a softmax margin in [-1, 1] (0 takes only the "
                             "misclassified points)")

    def _check_flags(self) -> None:
        if self.pair is not None:
            raise PlintError(f"pair is {self.pair!r}: the {self.kind} baseline follows the flags on images and takes "
                             "no pair; leave the pair out")
        if self.kind == "relabel":
            pairs = sorted({(int(i), int(k)) for i, k in self.relabel})
            if not pairs:
                raise PlintError("the relabel baseline needs images flagged 'label wrong' with a suggested class: "
                                 "flag some first")
            if len({i for i, _ in pairs}) != len(pairs) or any(k < 0 for _, k in pairs):
                raise PlintError("relabel gives one image two classes, or a negative class: give each sample id "
                                 "one class index")
            object.__setattr__(self, "relabel", tuple(pairs))
        else:
            ids = tuple(sorted({int(i) for i in self.drop}))
            if not ids:
                raise PlintError("the drop_flagged baseline needs flagged images to leave out: flag some first")
            object.__setattr__(self, "drop", ids)

    @property
    def name(self) -> str:
        """``upweight ×2``, ``oversample ×4 (margin 0.2)``, ``class-weighted (1/frequency)``, ``relabelled (5 flagged
        images)`` or ``without the 8 flagged images``: for tables and labels."""
        if self.kind == "classweight":
            return "class-weighted (1/frequency)"
        if self.kind == "relabel":
            return f"relabelled ({len(self.relabel)} flagged images)"
        if self.kind == "drop_flagged":
            return f"without the {len(self.drop)} flagged images"
        if self.kind == "upweight":
            return f"upweight ×{self.weight:g}"
        return f"oversample ×{self.repeats} (margin {self.margin:g})"

    def key_dict(self) -> dict:
        """The fields that determine the run (the other kinds' options left out; ``classweight``: its kind only,
        the weights following from the training rows)."""
        if self.kind == "classweight":
            return {"kind": self.kind}
        if self.kind == "relabel":
            return {"kind": self.kind, "relabel": [list(p) for p in self.relabel]}
        if self.kind == "drop_flagged":
            return {"kind": self.kind, "drop": list(self.drop)}
        d = {"kind": self.kind, "pair": list(self.pair)}
        return d | ({"weight": float(self.weight)} if self.kind == "upweight"
                    else {"repeats": int(self.repeats), "margin": float(self.margin)})


def check_pair(pair: tuple[int, int], n_classes: int) -> None:
    """A :class:`PlintError` unless both classes of ``pair`` are among ``0..n_classes-1``."""
    if max(pair) >= n_classes:
        raise PlintError(f"pair {pair[0]}, {pair[1]} names a class the model does not have: its classes are "
                         f"0..{n_classes - 1}")


def class_weights(n_classes: int, pair: tuple[int, int], weight: float) -> np.ndarray:
    """float32 ``[n_classes]``: ``weight`` for the pair's two classes, 1 for the others."""
    check_pair(pair, n_classes)
    w = np.ones(n_classes, dtype=np.float32)
    w[list(pair)] = weight
    return w


def softmax_margins(bundle: ModelBundle, images: Images | np.ndarray, labels: np.ndarray, *,
                    device: torch.device | str = "cpu", amp: bool | None = None) -> np.ndarray:
    """``p(true class) − max p(other class)`` under ``bundle``'s softmax, per image (float64 ``[N]``; negative for
    a misclassified image). Eval mode, no gradients."""
    images = as_images(images)
    labels = np.asarray(labels, dtype=np.int64)
    device = torch.device(device)
    dtype = autocast_dtype(device, amp)
    margins = np.empty(len(labels), np.float64)
    with exclusive(bundle.module):
        module = bundle.module.to(device).eval()
        convert = model_input(bundle, images, device, module)
        try:
            with torch.no_grad(), (torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()):
                for batch in iterate(batch_loader(images, inference_batch_size(images.shape[1:], device), device)):
                    rows = batch["index"].numpy()
                    p = torch.softmax(module(convert(batch["images"])).float(), 1).cpu().numpy()
                    truth = labels[rows]
                    own = p[np.arange(len(rows)), truth]
                    p[np.arange(len(rows)), truth] = -np.inf
                    margins[rows] = own - p.max(1)
        finally:
            bundle.module.cpu()
    return margins


def hard_examples(margins: np.ndarray, labels: np.ndarray, pair: tuple[int, int], margin: float) -> np.ndarray:
    """Whether each point is hard: of one of the pair's classes, with a softmax margin below ``margin``."""
    return np.isin(np.asarray(labels), pair) & (np.asarray(margins) < margin)


def oversampled_rows(hard: np.ndarray, repeats: int) -> np.ndarray:
    """Positions to draw batches from: every row once, each hard row ``repeats`` times (sorted; the batch order
    is the seed's permutation of them)."""
    hard = np.asarray(hard, dtype=bool)
    return np.repeat(np.arange(len(hard), dtype=np.int64), np.where(hard, int(repeats), 1))


def finetune_baseline(bundle: ModelBundle, layer: str, embedder: nn.Module, scale: float,
                      source: TrainingBatchSource, config: FinetuneConfig, baseline: Baseline,
                      progress: Callable[[Progress], None] | None = None, cancel: threading.Event | None = None,
                      validation: ValidationSet | None = None) -> tuple[nn.Module, Selection, dict]:
    """Fine-tune a copy of ``bundle.module`` as ``baseline`` says, otherwise exactly as the control of
    :func:`plint_core.finetune.finetune_pair` with the same arguments (``config.lam`` and ``config.embed_on`` are
    not used: a baseline has no embedding term; the embedding's distance is only reported in progress).

    Returns ``(model, selection, info)`` on the CPU; ``info`` holds ``n_hard`` (oversampling: the hard training
    points found), ``rows_per_pass`` (rows drawn per pass over the training points) and, with ``classweight``,
    ``class_weight`` (the weight of each class, :func:`inverse_frequency_weights`). With ``relabel`` and
    ``drop_flagged`` ``source`` carries the flags' labels and rows already (:func:`flag_rows`); the loss is the
    control's.
    """
    labels = np.asarray(source.labels)
    if baseline.kind in FLAG_KINDS:  # the rows and labels are the flags' already (plint_core.pipeline.run_baseline)
        info = {"n_hard": None, "rows_per_pass": int(len(labels))}
        model, selection = finetune_one(bundle, layer, embedder, scale, source, config, run=baseline.kind, lam=0.0,
                                        progress=progress, cancel=cancel, validation=validation)
        return model, selection, info
    if baseline.kind == "classweight":
        weight = inverse_frequency_weights(labels, len(bundle.spec.classes))
        info = {"n_hard": None, "rows_per_pass": int(len(labels)), "class_weight": [float(w) for w in weight]}
        model, selection = finetune_one(bundle, layer, embedder, scale, source, config, run=baseline.kind, lam=0.0,
                                        class_weight=weight, progress=progress, cancel=cancel,
                                        validation=validation)
        return model, selection, info
    check_pair(baseline.pair, len(bundle.spec.classes))
    missing = [k for k in baseline.pair if not (labels == k).any()]
    if missing:
        raise PlintError(f"class {missing[0]} of the pair has no training points to "
                         f"{'weight' if baseline.kind == 'upweight' else 'oversample'}")
    weight, rows, info = None, None, {"n_hard": None, "rows_per_pass": int(len(labels))}
    if baseline.kind == "upweight":
        if baseline.weight != 1.0:
            weight = class_weights(len(bundle.spec.classes), baseline.pair, baseline.weight)
    else:
        margins = softmax_margins(bundle, source.images, labels, device=resolve_device(config.device), amp=config.amp)
        hard = hard_examples(margins, labels, baseline.pair, baseline.margin)
        info["n_hard"] = int(hard.sum())
        if baseline.repeats > 1 and hard.any():
            rows = oversampled_rows(hard, baseline.repeats)
            info["rows_per_pass"] = int(len(rows))
    model, selection = finetune_one(bundle, layer, embedder, scale, source, config, run=baseline.kind, lam=0.0,
                                    class_weight=weight, rows=rows, progress=progress, cancel=cancel,
                                    validation=validation)
    return model, selection, info


def flag_rows(baseline: Baseline, ids: np.ndarray, labels: np.ndarray, n_classes: int
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """What a ``relabel`` or ``drop_flagged`` baseline changes in a training split of sample ``ids`` and ``labels``:
    ``(labels to train on, None)`` or ``(None, rows to leave out)``; ``(None, None)`` for the other kinds.

    Raises :class:`PlintError` where a flag names an image that is not in the split, or a class the model does not
    have (flags of other data)."""
    if baseline.kind not in FLAG_KINDS:
        return None, None
    ids = np.asarray(ids, dtype=np.int64)
    flagged = np.asarray([i for i, _ in baseline.relabel] if baseline.kind == "relabel" else baseline.drop,
                         dtype=np.int64)
    order = np.argsort(ids)
    at = np.searchsorted(ids[order], flagged).clip(0, len(ids) - 1)
    found = ids[order][at] == flagged
    if not found.all():
        raise PlintError(f"flagged image {int(flagged[~found][0])} is not a training image of this data: the "
                         "flags belong to other data")
    rows = order[at]
    if baseline.kind == "drop_flagged":
        return None, np.sort(rows)
    new = np.array(labels, dtype=np.int64, copy=True)
    classes = np.asarray([k for _, k in baseline.relabel], dtype=np.int64)
    if classes.max() >= n_classes:
        raise PlintError(f"a suggested class lies outside the model's classes 0..{n_classes - 1}")
    new[rows] = classes
    return new, None
