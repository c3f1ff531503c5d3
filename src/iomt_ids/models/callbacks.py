"""Lightning callbacks for checkpoint selection on validation macro-F1."""

from __future__ import annotations

import copy
import logging

import lightning as L

logger = logging.getLogger(__name__)


class BestEpochWeights(L.Callback):
    """Keep the weights of the epoch with the best ``monitor`` value and restore them after fit.

    The copy stays in memory (the networks here are a few MB), so no
    checkpoint file is written.
    """

    def __init__(self, monitor: str = "val_f1_macro") -> None:
        self.monitor = monitor
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._best_state: dict | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self._best_state = copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._best_state is not None:
            pl_module.load_state_dict(self._best_state)
            logger.info("restored the weights of epoch %d (%s %.4f)", self.best_epoch, self.monitor, self.best_score)
