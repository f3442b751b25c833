"""Device resolution: ``auto`` picks CUDA when it is available, else the CPU."""
from __future__ import annotations

import torch

from .errors import PlintError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name`` (``auto``, ``cpu`` or ``cuda``)."""
    if name not in DEVICE_CHOICES:
        raise PlintError(f"unknown device {name!r}: use one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PlintError("device 'cuda' was asked for but no CUDA GPU is available: use --device cpu or auto")
    return torch.device(name)
