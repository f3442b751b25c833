"""The classifier C: plint's small CNN, its JSON sidecar, training, saving and loading.

A model on disk is two files: the weights (``MODEL.pt``, a plain ``state_dict``
read with ``torch.load(weights_only=True)``, or ``MODEL.safetensors``) and a
sidecar ``MODEL.json`` (:class:`ModelSpec`: architecture, class names, input
shape and normalisation). ``demo`` names the CNN shipped in ``data/``, trained
on digits by::

    python -m plint_core train --data digits --out data/demo_cnn.pt --epochs 40 --seed 0
"""
from __future__ import annotations

import hashlib
import pickle
import warnings

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .atomic import write_atomic, write_json_atomic
from .data import Dataset
from .device import resolve_device
from .errors import PlintError

DEMO = "demo"
DEMO_WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "demo_cnn.pt"
PLINT_CNN = "plint-cnn"


class SmallCNN(nn.Module):
    """Two conv blocks and two linear layers; any input size (adaptive pooling to 4×4).

    Layer names (for the latent-layer picker): ``conv1``, ``conv2``, ``fc1``
    (hidden features, ``hidden`` units after ReLU in ``act3``) and ``logits``.
    """

    def __init__(self, in_channels: int, n_classes: int, width: int = 32, hidden: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.act1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, ceil_mode=True)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.act2 = nn.ReLU()
        self.pool2 = nn.AdaptiveAvgPool2d(4)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(2 * width * 16, hidden)
        self.act3 = nn.ReLU()
        self.logits = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.pool2(self.act2(self.conv2(x)))
        return self.logits(self.act3(self.fc1(self.flatten(x))))


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


def build_model(spec: ModelSpec) -> nn.Module:
    """Instantiate the architecture named in ``spec`` (untrained): plint's CNN or a torchvision classifier."""
    if spec.arch == PLINT_CNN:
        return SmallCNN(spec.input_shape[0], len(spec.classes), **spec.arch_kwargs)
    from .torchvision_models import build_torchvision, is_torchvision_arch

    if is_torchvision_arch(spec.arch):
        return build_torchvision(spec.arch, len(spec.classes), spec.input_shape[0], **spec.arch_kwargs)
    raise PlintError(f"unknown architecture {spec.arch!r}: use {PLINT_CNN!r} or a torchvision classification model "
                     "such as 'resnet18'")


def state_fingerprint(module: nn.Module) -> str:
    """SHA-256 over a module's parameters and buffers, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


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


def sidecar_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_model(bundle: ModelBundle, path: str | Path) -> Path:
    """Write ``path`` (``.pt`` state_dict or ``.safetensors``) and its ``.json`` sidecar, atomically."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in bundle.module.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        write_atomic(path, lambda p: save_file(state, str(p)))
    elif path.suffix in (".pt", ".pth"):
        write_atomic(path, lambda p: torch.save(state, p))
    else:
        raise PlintError(f"model output {path.name!r} must end in .pt, .pth or .safetensors")
    write_json_atomic(sidecar_path(path), bundle.spec.to_dict())
    return path


def load_model(src: str | Path) -> ModelBundle:
    """Load ``demo``, a model written by :func:`save_model`, or any model file with a complete sidecar.

    Never executes code from the file; see :func:`plint_core.model_sources.load_classifier`
    for stating what a sidecar lacks.
    """
    from .model_sources import load_classifier

    return load_classifier(src)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise PlintError(f"cannot read {path.name!r} as safetensors ({exc}): the file is corrupt or truncated") from exc
    if path.suffix.lower() not in (".pt", ".pth", ".ckpt", ".bin"):
        raise PlintError(f"unsupported model file type {path.suffix!r}: use .pt/.pth (state_dict) or .safetensors")
    try:
        with warnings.catch_warnings():  # a plain-pickle file would add a protocol warning to the one-line error
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise PlintError(f"refused to load {path.name!r}: it holds Python objects that could run code (a whole model "
                         "saved with torch.save?); save model.state_dict(), safetensors or TorchScript instead") from exc
    except Exception as exc:  # a damaged file makes the (safe) weights-only unpickler fail in many ways
        raise PlintError(f"cannot read weights {path.name!r}: the file is corrupt or truncated ({type(exc).__name__})") from exc
    state = _unwrap_checkpoint(state)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PlintError(f"{path.name!r} is not a state_dict (a mapping of names to tensors)")
    return state


def _unwrap_checkpoint(obj: object) -> object:
    """The state_dict inside a training checkpoint (``{"state_dict": ...}``), without DataParallel's ``module.``."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


