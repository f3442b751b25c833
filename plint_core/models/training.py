"""Training plint's CNN on a data set (``python -m plint_core train``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data.dataset import Dataset
from ..data.images import Images
from ..data.loader import batch_loader, iterate
from ..data.transforms import ModelInput
from ..device import resolve_device
from ..errors import PlintError
from ..validation import held_out_slice
from .architectures import build_model
from .spec import PLINT_CNN, ModelBundle, ModelSpec
from .weights import state_fingerprint


@dataclass(frozen=True)
class TrainConfig:
    """Supervised training of the CNN: ``epochs`` passes, Adam at ``lr``, ``batch_size`` images a step."""

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 128
    seed: int = 0
    width: int = 32
    hidden: int = 128
    device: str = "auto"



def channel_statistics(images: Images, batch_size: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of ``images`` in ``[0, 1]``, read batch by batch."""
    total = sq = None
    count = 0
    for start in range(0, len(images), batch_size):
        x = images.to_unit(images.stored(np.arange(start, min(start + batch_size, len(images))))).double()
        s, q = x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3))
        total, sq = (s, q) if total is None else (total + s, sq + q)
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt()
    return tuple(float(m) for m in mean), tuple(float(v) for v in std)


def train_classifier(data: Dataset, config: TrainConfig = TrainConfig(),
                     progress: Callable[[int, float], None] | None = None) -> ModelBundle:
    """Train plint's CNN on ``data.train`` with cross-entropy; returns the bundle.

    A data set without a ``val`` split is trained without its validation slice
    (:func:`plint_core.validation.held_out_slice`), on which fine-tuning runs choose their checkpoints.

    ``progress(epoch, mean_loss)`` is called after every epoch. Normalisation
    statistics (per-channel mean and std) come from the training split. Images
    are read and converted batch by batch (:mod:`plint_core.data.loader`).
    """
    if config.epochs < 1:
        raise PlintError(f"epochs must be at least 1, got {config.epochs}")
    device = resolve_device(config.device)
    if data.val is None and len(held := held_out_slice(data.train.labels)):
        data = data.with_splits(train=data.train.subset(np.setdiff1d(np.arange(len(data.train)), held)))
    images = data.train.images
    mean, std = channel_statistics(images)
    spec = ModelSpec(PLINT_CNN, data.class_names, data.input_shape, mean, tuple(max(s, 1e-3) for s in std),
                     {"width": config.width, "hidden": config.hidden})
    torch.manual_seed(config.seed)
    module = build_model(spec).to(device)
    bundle = ModelBundle(module, spec, "", "trained")
    convert = ModelInput(images.divisor, images.target, spec.mean, spec.std, device)
    gen = torch.Generator().manual_seed(config.seed)
    loader = batch_loader(images, config.batch_size, device, generator=gen,
                          labels=np.asarray(data.train.labels, dtype=np.int64))
    opt = torch.optim.Adam(module.parameters(), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    for epoch in range(config.epochs):
        total = 0.0
        for batch in iterate(loader):
            y = batch["labels"].to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module(convert(batch["images"])), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
        if progress is not None:
            progress(epoch + 1, total / len(images))
    module.eval().cpu()
    bundle.fingerprint = state_fingerprint(module)
    return bundle
