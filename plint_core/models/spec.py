"""What a classifier is to plint: its :class:`ModelSpec` (the JSON sidecar) and the :class:`ModelBundle`.

A model on disk is two files: the weights (``MODEL.pt``, a plain ``state_dict``
read with ``torch.load(weights_only=True)``, or ``MODEL.safetensors``) and a
sidecar ``MODEL.json`` (:class:`ModelSpec`: architecture, class names, input
shape and normalisation). ``demo`` names the CNN shipped in ``data/``, trained
on digits by::

    python -m plint_core train --data digits --out data/demo_cnn.pt --epochs 40 --seed 0
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.dataset import Dataset
from ..errors import PlintError

DEMO = "demo"

DEMO_WEIGHTS = Path(__file__).resolve().parents[2] / "data" / "demo_cnn.pt"

PLINT_CNN = "plint-cnn"



@dataclass(frozen=True)
class ModelSpec:
    """What the sidecar JSON holds about a model.

    ``mean``/``std`` are per-channel, applied to images in ``[0, 1]``.
    """

    arch: str
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    arch_kwargs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(classes=list(self.classes), input_shape=list(self.input_shape), mean=list(self.mean), std=list(self.std))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        try:
            return cls(str(d["arch"]), tuple(str(c) for c in d["classes"]), tuple(int(s) for s in d["input_shape"]),
                       tuple(float(m) for m in d["mean"]), tuple(float(s) for s in d["std"]), dict(d.get("arch_kwargs", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise PlintError(f"model sidecar is incomplete or malformed ({exc!r}): it needs arch, classes, input_shape, mean, std") from exc



@dataclass
class ModelBundle:
    """A classifier with its spec; ``fingerprint`` identifies its weights for run keys."""

    module: nn.Module
    spec: ModelSpec
    fingerprint: str
    source: str = ""

    def preprocess(self, images01: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """Images in ``[0, 1]`` (``[N, C, H, W]``) → normalised float tensor on ``device``."""
        x = torch.as_tensor(images01, dtype=torch.float32, device=device)
        mean = torch.tensor(self.spec.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.spec.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        return (x - mean) / std

    def check_data(self, data: Dataset) -> None:
        """Raise a :class:`PlintError` if ``data`` does not fit this model."""
        if data.n_classes != len(self.spec.classes):
            raise PlintError(f"the model has {len(self.spec.classes)} outputs but the data has {data.n_classes} classes: "
                             "use a model trained on this data (plint_core train)")
        if tuple(data.input_shape) != tuple(self.spec.input_shape):
            raise PlintError(f"the model expects images of shape {tuple(self.spec.input_shape)} (C, H, W) but the data has "
                             f"{tuple(data.input_shape)}: use a model trained on this data (plint_core train)")



def sidecar_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")
