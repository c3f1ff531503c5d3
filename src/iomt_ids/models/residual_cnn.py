"""A residual 1D CNN over the feature vector, with batch norm and dropout."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """Two same-padded Conv1d + BatchNorm layers with a skip connection."""

    def __init__(self, channels: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size, padding=padding, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv1d(channels, channels, kernel_size, padding=padding, bias=False),
            nn.BatchNorm1d(channels),
        )
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x + self.body(x))


def dense_head(n_inputs: int, hidden_units: int, n_classes: int, dropout: float) -> nn.Sequential:
    """Build flatten, dropout, Dense(hidden_units) + ReLU, dropout, Dense(n_classes)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(n_inputs, hidden_units),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_units, n_classes),
    )


class ResidualCNN(nn.Module):
    """Conv stem, ``n_blocks`` residual blocks, then a dense head on the flattened sequence.

    The sequence keeps its length (same padding, no pooling), so the head sees
    every feature position. Input: float32 (batch, n_features). Output: logits
    (batch, n_classes).
    """

    def __init__(self, n_features: int, n_classes: int, channels: int = 64, n_blocks: int = 3,
                 kernel_size: int = 3, hidden_units: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the sequence length, got {kernel_size}")
        self.stem = nn.Sequential(
            nn.Conv1d(1, channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*[ResidualBlock(channels, kernel_size, dropout) for _ in range(n_blocks)])
        self.head = dense_head(channels * n_features, hidden_units, n_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x.unsqueeze(1))))
