"""torchvision classification architectures, built by name without downloading weights.

A lab's model usually is one of these with its own head (``num_classes``) and
sometimes its own stem (a 1-channel first convolution for grayscale images, as
in the paper's ultrasound case). :func:`build_torchvision` builds that variant;
:func:`infer_from_state` reads both numbers off a ``state_dict``.

torchvision is imported only when one of these functions runs (it takes
seconds to import).
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from ..errors import PlintError

# Auxiliary heads exist only in training graphs of these models; plint builds them
# without (a forward pass must return plain logits) and drops their weights.
_AUX = {"inception_v3": ("AuxLogits.",), "googlenet": ("aux1.", "aux2.")}


@lru_cache(maxsize=1)
def classification_architectures() -> tuple[str, ...]:
    """Names of torchvision's classification models (``resnet18``, ``densenet121``, …), sorted."""
    import torchvision.models as tvm

    return tuple(sorted(tvm.list_models(module=tvm)))


def is_torchvision_arch(name: str) -> bool:
    return name in classification_architectures()


def build_torchvision(name: str, num_classes: int, in_channels: int = 3, **kwargs) -> nn.Module:
    """torchvision model ``name`` with random weights, ``num_classes`` outputs and ``in_channels`` inputs.

    ``kwargs`` go to the model's constructor (e.g. ``dropout``).
    """
    import torchvision.models as tvm

    if not is_torchvision_arch(name):
        raise PlintError(f"{name!r} is not a torchvision classification model: choose one of "
                         f"{', '.join(classification_architectures()[:8])}, …")
    kwargs.update(weights=None, num_classes=int(num_classes))
    if name in _AUX:
        kwargs.update(aux_logits=False, init_weights=False)
    try:
        model = tvm.get_model(name, **kwargs)
    except TypeError as exc:  # an arch_kwargs key the constructor does not take
        raise PlintError(f"cannot build {name!r} with {sorted(kwargs)}: {exc}") from exc
    if in_channels != 3:
        _replace_stem(model, int(in_channels))
    return model


def drop_aux_weights(name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the auxiliary-head weights that plint's build of ``name`` lacks."""
    prefixes = _AUX.get(name, ())
    return {k: v for k, v in state.items() if not k.startswith(prefixes)} if prefixes else state


def infer_from_state(name: str, state: dict[str, torch.Tensor]) -> tuple[int | None, int | None]:
    """``(in_channels, num_outputs)`` as stored in ``state`` for architecture ``name`` (``None`` if absent)."""
    with torch.device("meta"):  # only names and shapes are needed: allocate nothing
        reference = build_torchvision(name, 2)
    stem = _stem_name(reference) + ".weight"
    head = _head_name(reference)
    in_ch = int(state[stem].shape[1]) if stem in state and state[stem].ndim == 4 else None
    n_out = int(state[head].shape[0]) if head in state and state[head].ndim >= 2 else None
    return in_ch, n_out


def _stem_name(model: nn.Module) -> str:
    # In every torchvision classifier the first Conv2d registered is the stem.
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            return name
    raise PlintError(f"{type(model).__name__} has no convolution to adapt to other input channels")


def _head_name(model: nn.Module) -> str:
    # The last parameter of rank >= 2 is the classification head's weight.
    return [n for n, p in model.named_parameters() if p.ndim >= 2][-1]


def _replace_stem(model: nn.Module, in_channels: int) -> None:
    name = _stem_name(model)
    old: nn.Conv2d = model.get_submodule(name)
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                    old.groups, old.bias is not None, old.padding_mode)
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
