"""plint's own small CNN (architecture name ``plint-cnn``)."""
from __future__ import annotations

import torch
from torch import nn


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
