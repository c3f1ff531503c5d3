"""The 1D CNN published for CICIoMT2024, as a plain PyTorch module."""

from __future__ import annotations

import torch
from torch import nn


class PublishedCNN(nn.Module):
    """Conv1d stack over the feature vector read as a one-channel sequence.

    With the defaults this is the published network: Conv1d(32, k=3) + ReLU +
    MaxPool(2), Conv1d(64, k=3) + ReLU + MaxPool(2), flatten, Dense(128) +
    ReLU, Dense(n_classes). Convolutions use no padding ("valid"), and the
    output is logits (softmax lives in the cross-entropy loss).

    Each block applies MaxPool before ReLU. ReLU is non-decreasing, so it
    commutes with taking a maximum and the output is the published order's,
    while ReLU runs on half as many values.

    Input: float32 (batch, n_features). Output: float32 (batch, n_classes).
    """

    def __init__(self, n_features: int, n_classes: int, conv_channels: tuple[int, ...] = (32, 64),
                 kernel_size: int = 3, pool_size: int = 2, hidden_units: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels, length = 1, n_features
        for out_channels in conv_channels:
            layers += [nn.Conv1d(in_channels, out_channels, kernel_size), nn.MaxPool1d(pool_size), nn.ReLU()]
            in_channels = out_channels
            length = (length - kernel_size + 1) // pool_size
        if length < 1:
            raise ValueError(
                f"{n_features} features are too few for {len(conv_channels)} conv blocks with "
                f"kernel_size={kernel_size} and pool_size={pool_size}"
            )
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * length, hidden_units),
            nn.ReLU(),
            nn.Linear(hidden_units, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.unsqueeze(1)))
