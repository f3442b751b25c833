"""Latent activations C_l(x): list a model's layers, extract a layer's output.

A layer is named by its module name (``model.named_modules()``: single layers
and the blocks that contain them); the default is the last module the forward
pass completes, which for a classifier is the layer that produces the logits
(for a two-class model, the last layer with more features: :func:`pick_default`).
Activations are flattened to ``[N, F]``. Submodules of a TorchScript model are
not offered: TorchScript does not run Python forward hooks.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .errors import PlintError
from .models.spec import ModelBundle


@dataclass(frozen=True)
class LayerInfo:
    """A candidate latent layer: module name, class name and output shape for one sample."""

    name: str
    kind: str
    output_shape: tuple[int, ...]

    @property
    def n_features(self) -> int:
        return int(np.prod(self.output_shape))


def _layer_modules(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in module.named_modules() if n and not isinstance(m, torch.jit.ScriptModule)]


def list_layers(bundle: ModelBundle) -> list[LayerInfo]:
    """Layers in the order the forward pass completes them, with their output shape for one sample."""
    shapes: dict[str, tuple[int, ...]] = {}
    order: list[str] = []
    hooks = []
    for name, mod in _layer_modules(bundle.module):
        def hook(_m, _i, out, name=name):
            if isinstance(out, torch.Tensor) and name not in shapes:
                shapes[name] = tuple(out.shape[1:])
                order.append(name)
        hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            bundle.module.eval()(torch.zeros((1, *bundle.spec.input_shape)))
    finally:
        for h in hooks:
            h.remove()
    kinds = dict((n, type(m).__name__) for n, m in _layer_modules(bundle.module))
    return [LayerInfo(n, kinds[n], shapes[n]) for n in order]


MIN_DEFAULT_FEATURES = 3
"""A default layer needs more features than this minus one: 2-class logits hold a single number's worth."""


def default_layer(bundle: ModelBundle) -> str:
    """The layer embedded when none is chosen: :func:`pick_default` of :func:`list_layers`."""
    return pick_default(list_layers(bundle))


def pick_default(layers: Sequence[LayerInfo]) -> str:
    """The last layer (the logits, the paper's choice), unless it has fewer than 3 features.

    A two-class model's logits differ by one number, so their map is a curve
    and an edit has nothing to steer; then the last layer with at least
    :data:`MIN_DEFAULT_FEATURES` features is taken (for plint's CNN: ``act3``,
    the 128 hidden units). On PneumoniaMNIST a PLI run covered 15 % of the
    move on the logits and about half of it on the hidden layer (bench/RESULTS.md).
    """
    wide = [info.name for info in layers if info.n_features >= MIN_DEFAULT_FEATURES]
    last = layers[-1]
    return last.name if last.n_features >= MIN_DEFAULT_FEATURES or not wide else wide[-1]


def resolve_layer(bundle: ModelBundle, layer: str | None) -> str:
    """``layer`` checked against the model's layers; ``None`` → :func:`default_layer`."""
    layers = list_layers(bundle)  # one forward pass
    if layer is None:
        return pick_default(layers)
    names = [info.name for info in layers]
    if layer not in names:
        note = getattr(bundle.module, "layer_note", "")  # e.g. why a TorchScript model offers only its output
        raise PlintError(f"unknown layer {layer!r}: this model's layers are {', '.join(names)}"
                         f"{'; ' + note if note else ''}")
    return layer


@contextmanager
def capture(module: nn.Module, layer: str) -> Iterator[dict[str, torch.Tensor]]:
    """While active, ``box["out"]`` holds ``layer``'s latest output, flattened, with its autograd graph."""
    box: dict[str, torch.Tensor] = {}
    target = dict(module.named_modules())[layer]
    handle = target.register_forward_hook(lambda _m, _i, out: box.__setitem__("out", out.flatten(1)))
    try:
        yield box
    finally:
        handle.remove()


def extract_latents(bundle: ModelBundle, images01: np.ndarray, layer: str | None = None, *,
                    batch_size: int = 1024, device: torch.device | str = "cpu") -> np.ndarray:
    """``layer``'s activations for ``images01`` (``[N, C, H, W]`` in ``[0, 1]``), float32 ``[N, F]``.

    Runs in eval mode under ``no_grad`` in batches of ``batch_size`` images.
    """
    layer = resolve_layer(bundle, layer)
    module = bundle.module.to(device).eval()
    chunks = []
    with capture(module, layer) as box, torch.no_grad():
        for start in range(0, len(images01), batch_size):
            module(bundle.preprocess(images01[start:start + batch_size], device))
            chunks.append(box["out"].float().cpu().numpy())
    module.cpu()
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def predict(bundle: ModelBundle, images01: np.ndarray, *, batch_size: int = 1024,
            device: torch.device | str = "cpu") -> np.ndarray:
    """Predicted class index per image (int64 ``[N]``)."""
    module = bundle.module.to(device).eval()
    preds = []
    with torch.no_grad():
        for start in range(0, len(images01), batch_size):
            preds.append(module(bundle.preprocess(images01[start:start + batch_size], device)).argmax(1).cpu().numpy())
    module.cpu()
    return np.concatenate(preds).astype(np.int64)
