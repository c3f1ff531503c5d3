"""Mini-batches sliced from in-memory tensors, with no per-row Python work."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class TensorBatches:
    """Iterate over (features, labels) batches of tensors already in memory.

    Each epoch draws one permutation (when ``shuffle``) and yields slices of
    it, which is much faster than a DataLoader that indexes and collates one
    row at a time. The permutations come from one generator seeded once with
    ``seed``, so a run is repeatable and other seeds give other orders.
    With ``balanced``, each epoch instead draws ``len(labels)`` rows with
    replacement so that every class is equally likely (balanced sampling).
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 shuffle: bool = False, seed: int = 0, balanced: bool = False) -> None:
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.features = features
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.balanced = balanced
        self._generator = torch.Generator().manual_seed(seed)
        if balanced:
            # Each row is drawn with probability 1 / (n_classes * its class size): classes equally likely.
            counts = torch.bincount(labels)
            present = int((counts > 0).sum())
            self._row_weights = 1.0 / (present * counts[labels].double())

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n_rows = len(self.labels)
        if self.balanced:
            order = torch.multinomial(self._row_weights, n_rows, replacement=True, generator=self._generator)
        elif self.shuffle:
            order = torch.randperm(n_rows, generator=self._generator)
        else:
            order = None

        for start in range(0, n_rows, self.batch_size):
            if order is None:
                yield self.features[start:start + self.batch_size], self.labels[start:start + self.batch_size]
            else:
                index = order[start:start + self.batch_size]
                yield self.features[index], self.labels[index]
