"""Bringing images to a model's input: resize to its height × width, convert grayscale ↔ RGB.

Images stay in ``[0, 1]``; the model's normalisation is applied later by
:meth:`plint_core.models.spec.ModelBundle.preprocess`. Resizing is bilinear with
antialiasing (like PIL's and torchvision's ``Resize``) and stretches: the aspect
ratio follows the model's input, as torchvision's ``Resize((h, w))`` does.
RGB → grayscale uses ITU-R 601 luma weights, as PIL's ``convert("L")``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PlintError
from .dataset import Dataset, Split

LUMA = (0.299, 0.587, 0.114)

_CHUNK = 256  # images resized per call, to bound the temporary memory



def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """``images`` (``[N, C, H, W]``) with ``channels`` channels: 1 → 3 repeats, 3 → 1 takes luma."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return np.ascontiguousarray(np.repeat(images, 3, axis=1))
    if have == 3 and channels == 1:
        luma = np.asarray(LUMA, dtype=np.float32).reshape(1, 3, 1, 1)
        return np.clip((images * luma).sum(axis=1, keepdims=True, dtype=np.float32), 0.0, 1.0)
    raise PlintError(f"the model takes {channels}-channel images but the data has {have} channels: plint converts "
                     "only between grayscale (1) and RGB (3)")



def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``images`` (float32 ``[N, C, H, W]`` in ``[0, 1]``) resized to ``size`` = (height, width)."""
    if tuple(images.shape[2:]) == tuple(size):
        return images
    out = np.empty((images.shape[0], images.shape[1], *size), dtype=np.float32)
    for start in range(0, len(images), _CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + _CHUNK], dtype=np.float32))
        y = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        out[start:start + _CHUNK] = y.clamp_(0.0, 1.0).numpy()
    return out



def fit_to_shape(data: Dataset, input_shape: tuple[int, int, int]) -> Dataset:
    """``data`` with every split's images converted to ``input_shape`` = (channels, height, width)."""
    if tuple(data.input_shape) == tuple(input_shape):
        return data
    channels, height, width = input_shape

    def fit(split: Split | None) -> Split | None:
        if split is None:
            return None
        return replace(split, images=resize_images(convert_channels(split.images, channels), (height, width)))

    return replace(data, train=fit(data.train), test=fit(data.test), val=fit(data.val))



def describe_fit(before: tuple[int, ...], after: tuple[int, ...]) -> str:
    """A note for the user: how the images were changed to fit the model (``""`` if they were not)."""
    if tuple(before) == tuple(after):
        return ""
    return (f"images converted from {_shape_text(before)} to the model's input {_shape_text(after)} "
            "(channels×height×width)")



def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(v) for v in shape)
