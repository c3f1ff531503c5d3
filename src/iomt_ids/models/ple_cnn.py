"""A 1D CNN over per-feature piecewise-linear encodings of the flow features.

Tree ensembles split each feature at learned thresholds, which suits these
heavy-tailed flow statistics. A convolution over raw scaled values has no
such handle. The piecewise-linear encoding (PLE) gives it one: each
feature becomes ``n_bins`` values, bin t holding how far the feature has
advanced through the t-th interval of its range (0 below it, 1 above it,
linear inside). The interval edges are learned per feature. A per-feature
projection maps the bins to ``embedding_dim`` channels, and the layers of
``EmbeddingCNN`` (residual convolutions along the feature axis) follow.

The edges start evenly spaced, or, with ``tree_bin_edges``, where a decision
tree fitted on each feature alone splits the training classes.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from sklearn.tree import DecisionTreeClassifier
from torch import nn

from iomt_ids.models.embedding_cnn import EmbeddingCNN

logger = logging.getLogger(__name__)

# A rank uniform on [0, 1], standardised, spans [-sqrt(3), sqrt(3)].
_QUANTILE_HALF_RANGE = math.sqrt(3.0)
# tree_bin_edges fits its trees on at most this many flows. At this cap, 39 features took about 1 s on 2 CPU cores.
TREE_MAX_FLOWS = 200_000


class PiecewiseLinearEncoding(nn.Module):
    """Encode feature j's value x_j as clamp(x_j * w_jt + b_jt, 0, 1) for bins t, then project.

    The edges start evenly spaced over [-sqrt(3), sqrt(3)], the range of a
    standardised quantile rank (``model.transform: quantile``), and are
    trained with the rest of the network. Input (batch, n_features); output
    (batch, dim, n_features).
    """

    def __init__(self, n_features: int, n_bins: int, dim: int) -> None:
        super().__init__()
        if n_bins < 1:
            raise ValueError(f"n_bins must be at least 1, got {n_bins}")
        # Bin t covers [lo + t * width, lo + (t + 1) * width]: slope 1 / width, offset -(lo / width + t).
        width = 2 * _QUANTILE_HALF_RANGE / n_bins
        offsets = _QUANTILE_HALF_RANGE / width - torch.arange(n_bins, dtype=torch.float32)
        self.slope = nn.Parameter(torch.full((n_features, n_bins), 1.0 / width))
        self.offset = nn.Parameter(offsets.repeat(n_features, 1))
        self.projection = nn.Parameter(torch.randn(n_features, n_bins, dim) / math.sqrt(n_bins))
        self.bias = nn.Parameter(torch.zeros(n_features, dim))

    def place_edges(self, edges: torch.Tensor) -> None:
        """Move the bins so that bin t of feature j spans ``edges[j, t]`` to ``edges[j, t + 1]``.

        ``edges`` has shape (n_features, n_bins + 1) and increases along each
        row. The edges stay trainable parameters.
        """
        expected = (self.slope.shape[0], self.slope.shape[1] + 1)
        if tuple(edges.shape) != expected:
            raise ValueError(f"edges must have shape (n_features, n_bins + 1) = {expected}, got {tuple(edges.shape)}")
        widths = edges.diff(dim=1)
        if not bool((widths > 0).all()):
            raise ValueError("edges must increase strictly along each feature")
        with torch.no_grad():
            self.slope.copy_(1.0 / widths)
            self.offset.copy_(-edges[:, :-1] / widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            bins = torch.clamp(x.unsqueeze(-1) * self.slope + self.offset, 0.0, 1.0)
            embedded = torch.einsum("bft,ftd->bfd", bins, self.projection) + self.bias
            return torch.relu(embedded).transpose(1, 2)
        # Without autograd the same values are computed in place, because a fresh (batch, features,
        # bins) tensor per step costs more than the arithmetic. In place, the encoding alone ran 4.7
        # times as fast at batch 1,024 on 2 CPU cores (docs/benchmarks/inference.md).
        bins = torch.addcmul(self.offset, x.unsqueeze(-1), self.slope).clamp_(0.0, 1.0)
        embedded = torch.einsum("bft,ftd->bfd", bins, self.projection)
        embedded += self.bias
        return embedded.relu_().transpose(1, 2)


class PLECNN(EmbeddingCNN):
    """``EmbeddingCNN`` with the piecewise-linear encoding in place of the linear embedding.

    Input: float32 (batch, n_features). Output: logits (batch, n_classes).
    """

    def __init__(self, n_features: int, n_classes: int, n_bins: int = 16, embedding_dim: int = 16,
                 channels: int = 32, n_blocks: int = 2, kernel_size: int = 3, hidden_units: int = 256,
                 dropout: float = 0.1) -> None:
        super().__init__(n_features, n_classes, embedding_dim=embedding_dim, channels=channels,
                         n_blocks=n_blocks, kernel_size=kernel_size, hidden_units=hidden_units, dropout=dropout)
        self.embedding = PiecewiseLinearEncoding(n_features, n_bins, embedding_dim)


def tree_bin_edges(features: np.ndarray, labels: np.ndarray, n_bins: int, *, min_flows_per_bin: int = 20,
                   max_flows: int = TREE_MAX_FLOWS, seed: int = 0) -> np.ndarray:
    """Return bin edges per feature at the thresholds of a decision tree fitted on that feature alone.

    ``features`` is float32 (n_flows, n_features), transformed as the
    network's input; ``labels`` gives a class index per flow. Each
    feature's bins span the range of its training values, which for a
    standardised quantile rank with many ties reaches well beyond
    [-sqrt(3), sqrt(3)]. The tree has at most ``n_bins`` leaves of at least
    ``min_flows_per_bin`` flows, so its thresholds mark where the class mix
    changes along the feature. A feature whose tree finds fewer than
    ``n_bins - 1`` thresholds (a feature with few distinct values, say)
    gets the rest by halving its widest bin until it has ``n_bins``, and a
    constant feature gets even bins over [-sqrt(3), sqrt(3)]. Trees see a
    random sample of at most ``max_flows`` flows, which bounds the time on
    the full dataset.

    Returns float32 (n_features, n_bins + 1), strictly increasing along each
    row, for ``PiecewiseLinearEncoding.place_edges``.
    """
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features must be (n_flows, n_features) with one label per flow, got features "
                         f"{features.shape} and {len(labels)} labels")
    if len(features) > max_flows:
        rows = np.sort(np.random.default_rng(seed).choice(len(features), size=max_flows, replace=False))
        features, labels = features[rows], labels[rows]

    edges = []
    tree_edge_counts = []
    for column in features.astype(np.float32).T:
        low, high = column.min(), column.max()
        inner = np.empty(0, dtype=np.float32)
        if low == high:
            low, high = np.float32(-_QUANTILE_HALF_RANGE), np.float32(_QUANTILE_HALF_RANGE)
        elif n_bins > 1:
            tree = DecisionTreeClassifier(max_leaf_nodes=n_bins, min_samples_leaf=min_flows_per_bin,
                                          random_state=seed)
            tree.fit(column.reshape(-1, 1), labels)
            # Leaves have feature index -2, and every other node splits the one feature at its threshold.
            # Rounding to float32 first keeps the returned edges distinct.
            inner = np.unique(tree.tree_.threshold[tree.tree_.feature >= 0].astype(np.float32))
            inner = inner[(inner > low) & (inner < high)]
        tree_edge_counts.append(len(inner))

        feature_edges = np.concatenate([[low], inner, [high]]).astype(np.float64)
        while len(feature_edges) < n_bins + 1:
            widest = int(np.argmax(np.diff(feature_edges)))
            middle = (feature_edges[widest] + feature_edges[widest + 1]) / 2
            feature_edges = np.insert(feature_edges, widest + 1, middle)
        edges.append(feature_edges)

    logger.info("decision trees on %d flows placed a median of %d of %d inner bin edges per feature, and %d of "
                "%d features had no split, so their bins were halved evenly", len(features),
                int(np.median(tree_edge_counts)), n_bins - 1, sum(count == 0 for count in tree_edge_counts),
                len(tree_edge_counts))
    return np.stack(edges).astype(np.float32)
