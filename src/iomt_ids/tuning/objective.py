"""The sweep objective: compose a trial's config with Hydra and train it with the pipeline's ``train_task``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient

from iomt_ids.config import compose_config
from iomt_ids.pipeline.train import train_task
from iomt_ids.tuning.pruning import TrialPruning
from iomt_ids.tuning.space import SearchSpace, to_override
from iomt_ids.tuning.study import COUNTED_STATES, count_trials

logger = logging.getLogger(__name__)


class SurplusTrial(Exception):
    """A trial created after the study already held the requested number of trials."""


class SweepObjective:
    """Callable objective: returns the trial's last-epoch validation macro-F1 on ``task``.

    Each trial composes ``conf/`` with the space's overrides, the sweep's fixed
    overrides and the sampled values (in that order, so sampled values win),
    then trains without saving the model, as an MLflow run nested in the
    study's parent run. Only the train and validation splits are read.
    """

    def __init__(self, task: str, space: SearchSpace, fixed_overrides: Sequence[str], config_dir: Path,
                 n_trials: int | None) -> None:
        self.task = task
        self.space = space
        self.fixed_overrides = tuple(fixed_overrides)
        self.config_dir = Path(config_dir)
        self.n_trials = n_trials

    def trial_overrides(self, values: dict) -> list[str]:
        """Return every Hydra override of a trial whose sampled values are ``values``."""
        sampled = [to_override(key, value) for key, value in values.items()]
        return [*self.space.overrides, *self.fixed_overrides, *sampled]

    def __call__(self, trial: optuna.trial.Trial) -> float:
        # Workers count trials before they ask for one, but two can ask at once.
        # Then the trial numbered later gives its slot back without training.
        if self.n_trials is not None and count_trials(trial.study, COUNTED_STATES, before=trial.number) >= self.n_trials:
            trial.set_user_attr("surplus", True)
            trial.study.stop()
            raise SurplusTrial(f"trial {trial.number} not run: the study already has {self.n_trials} trials")

        values = self.space.suggest(trial)
        overrides = self.trial_overrides(values)
        trial.set_user_attr("overrides", overrides)
        cfg = compose_config(overrides, self.config_dir)
        logger.info("trial %d: %s", trial.number, " ".join(to_override(key, value) for key, value in values.items()))

        pruning = TrialPruning(trial)
        try:
            result = train_task(cfg, self.task, callbacks=[pruning], save=False, nested=True)
        except SystemExit as error:
            # On Ctrl-C Lightning shuts the trainer down and calls sys.exit(1).
            # Optuna marks a trial failed only on Exception or KeyboardInterrupt,
            # so re-raise as KeyboardInterrupt to stop the sweep with the trial failed.
            tag_trial_run(trial.user_attrs.get("mlflow_run_id"), trial.study.study_name, trial.number, "FAIL",
                          status="KILLED")
            raise KeyboardInterrupt from error
        except optuna.TrialPruned:
            logger.info("trial %d pruned at epoch %s", trial.number, pruning.pruned_at_epoch)
            tag_trial_run(trial.user_attrs.get("mlflow_run_id"), trial.study.study_name, trial.number, "PRUNED",
                          status="KILLED")
            raise
        except Exception:
            tag_trial_run(trial.user_attrs.get("mlflow_run_id"), trial.study.study_name, trial.number, "FAIL",
                          status="FAILED")
            raise

        trial.set_user_attr("mlflow_run_id", result.run_id)
        tag_trial_run(result.run_id, trial.study.study_name, trial.number, "COMPLETE")
        return result.val_f1_macro


def tag_trial_run(run_id: str | None, study_name: str, trial_number: int, state: str,
                  status: str | None = None) -> None:
    """Tag a trial's MLflow run with the study, trial number and Optuna state, and set its status if given.

    A pruned trial's run ends as FAILED when the pruning exception leaves
    ``train_task``, so ``status="KILLED"`` marks it as stopped on purpose.
    """
    if not run_id:
        return
    client = MlflowClient()
    client.set_tag(run_id, "mlflow.runName", f"trial-{trial_number}")
    client.set_tag(run_id, "optuna.study_name", study_name)
    client.set_tag(run_id, "optuna.trial_number", str(trial_number))
    client.set_tag(run_id, "optuna.trial_state", state)
    if status is not None:
        client.set_terminated(run_id, status=status)
