"""LightningModule wiring a flow classifier network to loss, metrics and optimizer."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score


SCHEDULERS = (None, "plateau", "cosine", "onecycle")


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
    With ``label_groups`` the network is trained on finer labels than it is
    scored on: ``label_groups[i]`` is the scored label of fine label i, the
    loss uses the fine labels, and the metrics use the summed probabilities
    of each scored label. ``n_classes`` counts the scored labels.
    """

    def __init__(self, net: nn.Module, n_classes: int, lr: float = 1e-3, weight_decay: float = 0.0,
                 class_weights: torch.Tensor | None = None, scheduler: str | None = None,
                 max_epochs: int | None = None, label_groups: torch.Tensor | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "class_weights", "label_groups"])
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {scheduler!r}; expected one of {SCHEDULERS}")
        if scheduler == "cosine" and not max_epochs:
            raise ValueError("the cosine schedule needs max_epochs")
        self.net = net
        # The weights rescale each class's share of the loss (balanced: n_flows / (n_classes * n_class_flows)).
        self.loss = nn.CrossEntropyLoss(weight=class_weights)
        if label_groups is not None:
            # A buffer, so it moves to the network's device with it.
            self.register_buffer("label_groups", label_groups.long(), persistent=False)
        else:
            self.label_groups = None
        self.train_metrics = _split_metrics(n_classes, "train_")
        self.val_metrics = _split_metrics(n_classes, "val_")
        self.test_metrics = _split_metrics(n_classes, "test_")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, metrics: MetricCollection, loss_name: str) -> torch.Tensor:
        features, labels = batch
        logits = self(features)
        loss = self.loss(logits, labels)
        if self.label_groups is None:
            metrics.update(logits, labels)
        else:
            grouped = torch.zeros(len(labels), self.hparams.n_classes, device=logits.device, dtype=logits.dtype)
            grouped.index_add_(1, self.label_groups, torch.softmax(logits, dim=1))
            metrics.update(grouped, self.label_groups[labels])
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

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "plateau":
            # Halve the learning rate after two epochs without a gain in validation macro-F1.
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=2)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": plateau, "monitor": "val_f1_macro", "interval": "epoch"}}
        if self.hparams.scheduler == "cosine":
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.hparams.max_epochs)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "epoch"}}
        if self.hparams.scheduler == "onecycle":
            # Rise to lr over the first 30% of the steps (OneCycleLR's default), then anneal towards zero.
            onecycle = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=self.hparams.lr, total_steps=int(self.trainer.estimated_stepping_batches))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": onecycle, "interval": "step"}}
        return optimizer
