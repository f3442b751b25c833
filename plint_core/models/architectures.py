"""Building an (untrained) classifier by architecture name: plint's CNN or a torchvision model."""
from __future__ import annotations

from torch import nn

from ..errors import PlintError
from .cnn import SmallCNN
from .spec import PLINT_CNN, ModelSpec
from .torchvision_models import build_torchvision, is_torchvision_arch


def build_model(spec: ModelSpec) -> nn.Module:
    """Instantiate the architecture named in ``spec`` (untrained): plint's CNN or a torchvision classifier."""
    if spec.arch == PLINT_CNN:
        return SmallCNN(spec.input_shape[0], len(spec.classes), **spec.arch_kwargs)
    if is_torchvision_arch(spec.arch):
        return build_torchvision(spec.arch, len(spec.classes), spec.input_shape[0], **spec.arch_kwargs)
    raise PlintError(f"unknown architecture {spec.arch!r}: use {PLINT_CNN!r} or a torchvision classification model "
                     "such as 'resnet18'")
