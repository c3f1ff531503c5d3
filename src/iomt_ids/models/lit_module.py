"""LightningModule wiring a flow classifier network to loss, metrics and optimizer."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score


def _split_metrics(n_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes=n_classes, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes=n_classes, average="macro"),
            "f1_weighted": MulticlassF1Score(num_classes=n_classes, average="weighted"),
        },
        prefix=prefix,
    )


class FlowClassifierModule(L.LightningModule):
    """Cross-entropy training with accuracy, macro-F1 and weighted-F1 per split.

    Metrics are logged per epoch as ``train_*``, ``val_*`` and ``test_*``.
    """

    def __init__(self, net: nn.Module, n_classes: int, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.loss = nn.CrossEntropyLoss()
        self.train_metrics = _split_metrics(n_classes, "train_")
        self.val_metrics = _split_metrics(n_classes, "val_")
        self.test_metrics = _split_metrics(n_classes, "test_")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, metrics: MetricCollection, loss_name: str) -> torch.Tensor:
        features, labels = batch
        logits = self(features)
        loss = self.loss(logits, labels)
        metrics.update(logits, labels)
        self.log(loss_name, loss, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, self.train_metrics, "train_loss")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, self.val_metrics, "val_loss")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, self.test_metrics, "test_loss")

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute())
        self.val_metrics.reset()

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
