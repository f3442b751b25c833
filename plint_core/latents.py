"""Latent activations C_l(x): list a model's layers, extract a layer's output.

A layer is named by its module name (``model.named_modules()``: single layers
and the blocks that contain them); the default is the last module the forward
pass completes, which for a classifier is the layer that produces the logits
(for a two-class model, the last layer with more features: :func:`pick_default`).
Activations are flattened to ``[N, F]``. Submodules of a TorchScript model are
not offered: TorchScript does not run Python forward hooks.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .data.images import ArrayImages, Images
from .data.loader import batch_loader, iterate
from .data.transforms import ModelInput
from .device import autocast_dtype
from .errors import PlintError
from .models.exclusive import exclusive
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
    with exclusive(bundle.module):
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


def as_images(images: Images | np.ndarray) -> Images:
    """``images`` as an :class:`~plint_core.data.images.Images`; an array is taken as float ``[N, C, H, W]`` in ``[0, 1]``."""
    if isinstance(images, Images):
        return images
    array = np.asarray(images, dtype=np.float32)
    return ArrayImages(1.0, array=array if array.ndim == 4 else array.reshape(0, 1, 1, 1), layout="NCHW")


def inference_batch_size(input_shape: tuple[int, ...], device: torch.device) -> int:
    """Images per forward pass: about 16 MiB of float input on the CPU, 256 MiB on a GPU (8 to 1,024 images)."""
    per_image = 4 * int(np.prod(input_shape))
    budget = (256 << 20) if device.type == "cuda" else (16 << 20)
    return int(min(1024, max(8, budget // max(per_image, 1))))


def uses_convolutions(module: nn.Module) -> bool:
    """Whether ``module`` has 2-D convolutions (it then runs ``channels_last`` on CUDA)."""
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def model_input(bundle: ModelBundle, images: Images, device: torch.device, module: nn.Module | None = None) -> ModelInput:
    """The conversion of ``images``' stored batches to ``bundle``'s normalised input on ``device``."""
    module = bundle.module if module is None else module
    return ModelInput(images.divisor, images.target, bundle.spec.mean, bundle.spec.std, device,
                      channels_last=device.type == "cuda" and uses_convolutions(module))


def forward_pass(bundle: ModelBundle, images: Images | np.ndarray, layer: str | None, *,
                 device: torch.device | str = "cpu", amp: bool | None = None, batch_size: int | None = None,
                 workers: int | None = None, out: np.ndarray | None = None,
                 progress: Callable[[float], None] | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """One pass over ``images``: ``layer``'s activations (float32 ``[N, F]``, or ``None`` without a layer)
    and the predicted classes (int64 ``[N]``).

    Images are read and converted batch by batch (:func:`plint_core.data.loader.batch_loader`);
    activations are written into ``out`` (for example a memory-mapped ``.npy``)
    when given. Eval mode, ``no_grad``, autocast as :func:`plint_core.device.autocast_dtype`
    decides for ``amp``; activations are stored as float32.
    """
    images = as_images(images)
    device = torch.device(device)
    dtype = autocast_dtype(device, amp)
    with exclusive(bundle.module):
        latents, preds = _pass(bundle, images, layer, device, dtype, batch_size, workers, out, progress)
    if layer is not None and latents is None:
        latents = np.zeros((0, 0), np.float32)
    return latents, preds


def extract_latents(bundle: ModelBundle, images01: Images | np.ndarray, layer: str | None = None, *,
                    batch_size: int | None = None, device: torch.device | str = "cpu",
                    amp: bool | None = None) -> np.ndarray:
    """``layer``'s activations for ``images01`` (an :class:`Images` view, or ``[N, C, H, W]`` in ``[0, 1]``),
    float32 ``[N, F]``; see :func:`forward_pass`."""
    layer = resolve_layer(bundle, layer)
    latents, _ = forward_pass(bundle, images01, layer, device=device, amp=amp, batch_size=batch_size)
    return latents


def predict(bundle: ModelBundle, images01: Images | np.ndarray, *, batch_size: int | None = None,
            device: torch.device | str = "cpu", amp: bool | None = None) -> np.ndarray:
    """Predicted class index per image (int64 ``[N]``)."""
    return forward_pass(bundle, images01, None, device=device, amp=amp, batch_size=batch_size)[1]


def _pass(bundle: ModelBundle, images: Images, layer: str | None, device: torch.device, dtype: torch.dtype | None,
          batch_size: int | None, workers: int | None, latents: np.ndarray | None,
          progress: Callable[[float], None] | None) -> tuple[np.ndarray | None, np.ndarray]:
    """:func:`forward_pass`'s loop, with ``bundle.module`` held (:func:`~plint_core.models.exclusive.exclusive`)."""
    n = len(images)
    module = bundle.module.to(device).eval()
    if device.type == "cuda" and uses_convolutions(module):
        module = module.to(memory_format=torch.channels_last)
    convert = model_input(bundle, images, device, module)
    batch_size = batch_size or inference_batch_size(images.shape[1:], device)
    preds = np.empty(n, np.int64)
    try:
        with ExitStack() as stack:
            box = stack.enter_context(capture(module, layer)) if layer is not None else None
            stack.enter_context(torch.no_grad())
            if dtype is not None:
                stack.enter_context(torch.autocast(device.type, dtype=dtype))
            done = 0
            for batch in iterate(batch_loader(images, batch_size, device, workers=workers)):
                rows = batch["index"].numpy()
                logits = module(convert(batch["images"]))
                preds[rows] = logits.argmax(1).cpu().numpy()
                if box is not None:
                    act = box["out"].float().cpu().numpy()
                    if latents is None:
                        latents = np.empty((n, act.shape[1]), np.float32)
                    latents[rows] = act
                done += len(rows)
                if progress is not None:
                    progress(done / max(n, 1))
    finally:
        bundle.module.to(memory_format=torch.contiguous_format).cpu()
    return latents, preds
