"""A 1D CNN that first embeds every feature into its own vector."""

from __future__ import annotations

import torch
from torch import nn

from iomt_ids.models.residual_cnn import ResidualBlock, dense_head


class FeatureEmbedding(nn.Module):
    """Map feature j's scalar x_j to x_j * w_j + b_j, a vector of ``dim`` values per feature.

    Each feature gets its own weights, so the convolutions that follow see
    channels whose meaning depends on the feature, not one shared scale.
    Input (batch, n_features); output (batch, dim, n_features).
    """

    def __init__(self, n_features: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_features, dim) * 0.1)
        self.bias = nn.Parameter(torch.zeros(n_features, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedded = x.unsqueeze(-1) * self.weight + self.bias
        return torch.relu(embedded).transpose(1, 2)


class EmbeddingCNN(nn.Module):
    """Per-feature embedding, residual conv blocks, then a dense head.

    Input: float32 (batch, n_features). Output: logits (batch, n_classes).
    """

    def __init__(self, n_features: int, n_classes: int, embedding_dim: int = 16, channels: int = 64,
                 n_blocks: int = 2, kernel_size: int = 3, hidden_units: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the sequence length, got {kernel_size}")
        self.embedding = FeatureEmbedding(n_features, embedding_dim)
        self.projection = nn.Sequential(
            nn.Conv1d(embedding_dim, channels, kernel_size=1, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*[ResidualBlock(channels, kernel_size, dropout) for _ in range(n_blocks)])
        self.head = dense_head(channels * n_features, hidden_units, n_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.projection(self.embedding(x))))
