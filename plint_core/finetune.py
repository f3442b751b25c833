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
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from .device import resolve_device
from .errors import PlintError, RunCancelled
from .latents import capture
from .models.spec import ModelBundle


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters shared by the PLI run and its control.

    lam: weight of the embedding term, in [0, 1] (default 0.1, the paper's).
    epochs: passes over the training split (default 40).
    lr: Adam learning rate (default 1e-3).
    batch_size: images per step (default 32).
    seed: seeds the initial shuffle and every batch order (default 0).
    device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``; not part of a run's key.
    """

    lam: float = 0.1
    epochs: int = 40
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise PlintError(f"lam is {self.lam}: it must lie in [0, 1] (0.1 is the paper's)")
        if not (isinstance(self.epochs, int) and 1 <= self.epochs <= 1000):
            raise PlintError(f"epochs is {self.epochs}: give a whole number from 1 to 1000")
        if not (self.lr > 0 and self.lr < 1):
            raise PlintError(f"learning rate is {self.lr}: it must lie in (0, 1), e.g. 1e-3")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise PlintError(f"batch size is {self.batch_size}: it must be a positive whole number")

    def key_dict(self) -> dict:
        """The fields that determine a run's result (all but ``device``)."""
        d = asdict(self)
        d.pop("device")
        return d


@dataclass(frozen=True)
class Progress:
    """One report from a fine-tuning loop; ``run`` is ``"pli"`` or ``"control"``."""

    run: str
    epoch: int
    epochs: int
    step: int
    steps: int
    ce: float
    embed: float
    loss: float

    @property
    def fraction(self) -> float:
        """Share of this run done, 0..1."""
        return ((self.epoch - 1) * self.steps + self.step) / (self.epochs * self.steps)


@dataclass(frozen=True)
class TrainingBatchSource:
    """Training images in ``[0, 1]``, their labels and embedding targets ``y'`` (row-aligned)."""

    images01: np.ndarray
    labels: np.ndarray
    targets: np.ndarray


def finetune_pair(bundle: ModelBundle, layer: str, embedder: nn.Module, scale: float, source: TrainingBatchSource,
                  config: FinetuneConfig, progress: Callable[[Progress], None] | None = None,
                  cancel: threading.Event | None = None) -> tuple[nn.Module, nn.Module]:
    """Fine-tune a PLI copy and a control copy of ``bundle.module``; returns ``(pli, control)`` on the CPU.

    ``progress`` is called after every step; setting ``cancel`` makes the
    loop raise :class:`RunCancelled` at the next step.
    """
    if scale <= 0 or not np.isfinite(scale):
        raise PlintError(f"embedding scale is {scale}: fit the embedding before fine-tuning")
    pli = _train(bundle, layer, embedder, scale, source, config, config.lam, "pli", progress, cancel)
    control = _train(bundle, layer, embedder, scale, source, config, 0.0, "control", progress, cancel)
    return pli, control


def _train(bundle: ModelBundle, layer: str, embedder: nn.Module, scale: float, source: TrainingBatchSource,
           config: FinetuneConfig, lam: float, run: str, progress: Callable[[Progress], None] | None,
           cancel: threading.Event | None) -> nn.Module:
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = copy.deepcopy(bundle.module).to(device).train()
    frozen = embedder.to(device).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    x_all = bundle.preprocess(source.images01, device)
    y_all = torch.as_tensor(source.labels, device=device)
    t_all = torch.as_tensor(source.targets, dtype=torch.float32, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    n = len(y_all)
    steps = (n + config.batch_size - 1) // config.batch_size
    ce_fn = nn.CrossEntropyLoss()
    with capture(model, layer) as box:
        for epoch in range(1, config.epochs + 1):
            order = torch.randperm(n, generator=gen).to(device)
            for step in range(1, steps + 1):
                if cancel is not None and cancel.is_set():
                    raise RunCancelled(f"{run} run cancelled in epoch {epoch}")
                rows = order[(step - 1) * config.batch_size: step * config.batch_size]
                logits = model(x_all[rows])
                ce = ce_fn(logits, y_all[rows])
                if lam > 0:
                    embed = ((frozen(box["out"]) - t_all[rows]) ** 2).sum(1).mean() / scale ** 2
                    loss = (1 - lam) * ce + lam * embed
                else:
                    with torch.no_grad():
                        embed = ((frozen(box["out"]) - t_all[rows]) ** 2).sum(1).mean() / scale ** 2
                    loss = ce
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if progress is not None:
                    progress(Progress(run, epoch, config.epochs, step, steps, ce.item(), embed.item(), loss.item()))
    frozen.cpu()
    return model.eval().cpu()
