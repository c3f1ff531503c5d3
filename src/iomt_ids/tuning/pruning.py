"""Lightning callback that reports validation macro-F1 to an Optuna trial and prunes it."""

from __future__ import annotations

import lightning as L
import optuna

MONITOR = "val_f1_macro"


class TrialPruning(L.Callback):
    """Report ``val_f1_macro`` after each validation epoch; raise TrialPruned when the pruner decides to stop the trial.

    The step reported to Optuna is the epoch number (0-based). The MLflow run id
    of the trial is stored as the trial's user attribute ``mlflow_run_id`` at
    fit start, so a pruned or killed trial can still be found in MLflow.
    """

    def __init__(self, trial: optuna.trial.Trial, monitor: str = MONITOR) -> None:
        super().__init__()
        self.trial = trial
        self.monitor = monitor
        self.pruned_at_epoch: int | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run_id = getattr(trainer.logger, "run_id", None)
        if run_id:
            self.trial.set_user_attr("mlflow_run_id", run_id)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The sanity check runs two validation batches before training, and its score means nothing.
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(f"pruning monitors {self.monitor!r}, which the module did not log; "
                           f"logged: {sorted(trainer.callback_metrics)}")

        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            self.pruned_at_epoch = epoch
            raise optuna.TrialPruned(f"trial {self.trial.number} pruned at epoch {epoch}: "
                                     f"{self.monitor} {float(value):.4f}")
