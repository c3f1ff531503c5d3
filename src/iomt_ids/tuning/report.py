"""The study's parent MLflow run: one per study, shared by every worker and every resume."""

from __future__ import annotations

import logging
import time
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

logger = logging.getLogger(__name__)

PARENT_RUN_ATTR = "mlflow_parent_run_id"


def parent_run_id(study: optuna.Study, created: bool, tags: dict[str, str], wait_s: float = 60.0) -> str:
    """Return the study's parent run id, creating the run when this worker created the study.

    The id is kept as a study user attribute. A worker that loaded a study
    created by another worker a moment ago waits up to ``wait_s`` seconds for
    the creator to store it, then creates the run itself.
    """
    deadline = time.monotonic() + (0.0 if created else wait_s)
    while True:
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if run_id:
            return run_id
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)

    with mlflow.start_run(run_name=f"sweep-{study.study_name}") as run:
        mlflow.set_tags(tags)
    study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
    logger.info("study %s: created MLflow parent run %s", study.study_name, run.info.run_id)
    return run.info.run_id


def log_study(study: optuna.Study) -> None:
    """Log trial counts, the best trial and the study plots to the active (parent) run.

    Best values go to tags and metrics rather than params, because MLflow
    params cannot change and a resumed study can find a better trial.
    """
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(trial.state == state for trial in trials) for state in TrialState}
    mlflow.log_metrics({f"n_trials_{state}": count for state, count in counts.items()})
    mlflow.log_text(study.trials_dataframe().to_csv(index=False), "optuna/trials.csv")

    completed = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if not completed:
        logger.warning("study %s has no completed trial yet: no best trial to log", study.study_name)
        return

    best = study.best_trial
    mlflow.log_metric("best_val_f1_macro", best.value)
    mlflow.set_tags({"best_trial_number": str(best.number),
                     "best_trial_run_id": best.user_attrs.get("mlflow_run_id", ""),
                     **{f"best.{key}": str(value) for key, value in best.params.items()}})
    mlflow.log_dict({"number": best.number, "val_f1_macro": best.value, "params": best.params,
                     "overrides": best.user_attrs.get("overrides", [])}, "optuna/best_trial.json")
    _log_plots(study, len(completed))


def _log_plots(study: optuna.Study, n_completed: int) -> None:
    from optuna.visualization import matplotlib as optuna_plots

    plots = {"optimization_history": optuna_plots.plot_optimization_history,
             "intermediate_values": optuna_plots.plot_intermediate_values}
    # Importances fit a random forest on the completed trials, which needs at least two.
    if n_completed >= 2:
        plots["param_importances"] = optuna_plots.plot_param_importances

    for name, plot in plots.items():
        with warnings.catch_warnings():
            # The matplotlib backend of optuna.visualization is marked experimental.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                axes = plot(study)
            except (ValueError, RuntimeError) as error:
                logger.warning("study %s: plot %s skipped: %s", study.study_name, name, error)
                continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        mlflow.log_figure(figure, f"optuna/{name}.png")
        plt.close(figure)
