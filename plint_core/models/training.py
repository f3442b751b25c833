"""Training plint's CNN on a data set (``python -m plint_core train``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..data.dataset import Dataset
from ..device import resolve_device
from ..errors import PlintError
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



def train_classifier(data: Dataset, config: TrainConfig = TrainConfig(),
                     progress: Callable[[int, float], None] | None = None) -> ModelBundle:
    """Train plint's CNN on ``data.train`` with cross-entropy; returns the bundle.

    ``progress(epoch, mean_loss)`` is called after every epoch. Normalisation
    statistics (per-channel mean and std) come from the training split.
    """
    if config.epochs < 1:
        raise PlintError(f"epochs must be at least 1, got {config.epochs}")
    device = resolve_device(config.device)
    imgs = data.train.images
    mean = tuple(float(m) for m in imgs.mean(axis=(0, 2, 3)))
    std = tuple(max(float(s), 1e-3) for s in imgs.std(axis=(0, 2, 3)))
    spec = ModelSpec(PLINT_CNN, data.class_names, data.input_shape, mean, std,
                     {"width": config.width, "hidden": config.hidden})
    torch.manual_seed(config.seed)
    module = build_model(spec).to(device)
    bundle = ModelBundle(module, spec, "", "trained")
    x = bundle.preprocess(imgs, device)
    y = torch.as_tensor(data.train.labels, device=device)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(module.parameters(), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(y), generator=gen).to(device)
        total = 0.0
        for start in range(0, len(y), config.batch_size):
            rows = order[start:start + config.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module(x[rows]), y[rows])
            loss.backward()
            opt.step()
            total += loss.item() * len(rows)
        if progress is not None:
            progress(epoch + 1, total / len(y))
    module.eval().cpu()
    bundle.fingerprint = state_fingerprint(module)
    return bundle
