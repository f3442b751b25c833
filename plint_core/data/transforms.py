"""Bringing a batch of stored images to a model's input, one batch at a time.

The steps, in order (:func:`to_unit`, then :class:`ModelInput`):

1. divide by the source's divisor (255 for ``uint8``) → float32 in ``[0, 1]``;
2. convert channels: grayscale → RGB repeats the channel; RGB → grayscale
   takes ITU-R 601 luma, as PIL's ``convert("L")``;
3. resize to the model's height × width: bilinear with antialiasing (like
   PIL's and torchvision's ``Resize((h, w))``), stretching to the model's aspect
   ratio, clamped to ``[0, 1]``;
4. normalise with the model's per-channel mean/std, ``(x - mean) / std``;
5. on CUDA, for convolutional models, the ``channels_last`` memory format.

Nothing here holds more than one batch: a split is converted as it is read,
on the device that runs the model (the GPU does its own resizing).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import PlintError

LUMA = (0.299, 0.587, 0.114)


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``x`` (float ``[N, C, H, W]``) with ``channels`` channels: 1 → 3 repeats, 3 → 1 takes luma."""
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        luma = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * luma).sum(1, keepdim=True).clamp_(0.0, 1.0)
    raise PlintError(f"the model takes {channels}-channel images but the data has {have} channels: plint converts "
                     "only between grayscale (1) and RGB (3)")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x`` (float ``[N, C, H, W]`` in ``[0, 1]``) resized to ``size`` = (height, width), bilinear, antialiased."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)


def to_unit(batch: torch.Tensor, divisor: float, target: tuple[int, int, int] | None) -> torch.Tensor:
    """A stored batch as float32 in ``[0, 1]``, converted to ``target`` = (C, H, W) if given."""
    x = batch.float() if batch.dtype != torch.float32 else batch
    if divisor != 1.0:
        x = x / divisor
    if target is not None:
        x = resize(convert_channels(x, target[0]), target[1:])
    return x


@dataclass(frozen=True)
class ModelInput:
    """Stored batches → the model's normalised input on ``device`` (see the module's steps).

    ``channels_last`` asks for that memory format (faster convolutions on
    CUDA with tensor cores).
    """

    divisor: float
    target: tuple[int, int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device
    channels_last: bool = False

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = to_unit(batch.to(self.device, non_blocking=True), self.divisor, self.target)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        x = (x - mean) / std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
