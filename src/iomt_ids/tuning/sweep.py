"""Run (or resume, or join) an Optuna study over a search space, tracked in MLflow.

Rerunning the same sweep resumes its study: finished trials are kept and a
trial whose worker died is marked failed once its heartbeat is older than the
grace period. Several workers, on one machine or many, join one study when
they share its storage URL and study name.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import optuna
from optuna.trial import FrozenTrial, TrialState

from iomt_ids.config import compose_config
from iomt_ids.data.schema import TASKS
from iomt_ids.pipeline.tracking import setup_mlflow
from iomt_ids.tuning import DEFAULT_STORAGE
from iomt_ids.tuning import study as studies
from iomt_ids.tuning.experiment import write_best_experiment
from iomt_ids.tuning.objective import SurplusTrial, SweepObjective, tag_trial_run
from iomt_ids.tuning.report import log_study, parent_run_id
from iomt_ids.tuning.space import SearchSpace, check_keys, load_space

logger = logging.getLogger(__name__)


@dataclass
class SweepSettings:
    """What to sweep and how. ``n_trials`` counts finished trials of the whole study, over all workers."""

    task: str
    space: str
    n_trials: int | None = 20
    timeout_s: float | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    overrides: Sequence[str] = field(default_factory=tuple)
    config_dir: Path = Path("conf")
    heartbeat_interval_s: int = 10
    grace_period_s: int = 30
    write_experiment: bool = True


@dataclass
class SweepResult:
    """A sweep's outcome. ``best_*`` and ``experiment_path`` are None without a completed trial."""

    study_name: str
    parent_run_id: str
    n_complete: int
    n_pruned: int
    n_failed: int
    best_number: int | None
    best_value: float | None
    best_params: dict | None
    experiment_path: Path | None


def default_study_name(task: str, space: str) -> str:
    return f"{task}-{space}"


def shadowed_overrides(space: SearchSpace, overrides: Sequence[str]) -> list[str]:
    """Return the overrides whose key the search space samples, since each trial replaces their value."""
    sampled = {param.key for param in space.params}
    return [override for override in overrides if override.split("=", 1)[0].lstrip("+~") in sampled]


def run_sweep(settings: SweepSettings) -> SweepResult:
    """Create or resume the study and run trials until it has ``n_trials`` or ``timeout_s`` passes.

    Raises ValueError for invalid settings and SearchSpaceError for a search
    space that does not fit the config, both before any trial runs.
    """
    _check_settings(settings)
    config_dir = Path(settings.config_dir)
    space = load_space(config_dir, settings.space)
    base = compose_config([*space.overrides, *settings.overrides], config_dir)
    check_keys(space, base)
    shadowed = shadowed_overrides(space, settings.overrides)
    if shadowed:
        logger.warning("the search space %s samples these keys, so the overrides have no effect on trials: %s. "
                       "Edit conf/hparams_search/%s.yaml to fix a value.", settings.space, " ".join(shadowed),
                       settings.space)
    name = settings.study_name or default_study_name(settings.task, settings.space)
    seed = int(base.seed if settings.seed is None else settings.seed)

    # MLflow first, so a stale trial marked failed below also gets its run marked.
    setup_mlflow(base)
    storage = studies.open_storage(settings.storage, heartbeat_interval=settings.heartbeat_interval_s,
                                   grace_period=settings.grace_period_s, stale_trial_callback=_mark_stale_run)
    pruner = studies.make_pruner(settings.pruner, int(base.trainer.max_epochs))
    study, created = studies.create_or_load(name, storage, studies.make_sampler(settings.sampler, seed), pruner)
    _check_same_sweep(study, created, settings)
    _fail_stale_trials(study)

    # A resumed study draws from seed + (trials so far), so it does not replay
    # the random start-up draws of the earlier run.
    existing = len(study.get_trials(deepcopy=False))
    study.sampler = studies.make_sampler(settings.sampler, seed + existing)
    logger.info("study %s in %s: %s, %d trials so far; sampler %s (seed %d), pruner %s", name,
                studies.display_url(settings.storage), "created" if created else "resumed", existing,
                settings.sampler, seed + existing, settings.pruner)

    tags = {"optuna.study_name": name, "optuna.storage": studies.display_url(settings.storage),
            "task": settings.task, "search_space": settings.space, "stage": "sweep"}
    parent_id = parent_run_id(study, created, tags)
    objective = SweepObjective(settings.task, space, settings.overrides, config_dir, settings.n_trials)

    started = time.perf_counter()
    interrupted = False
    with mlflow.start_run(run_id=parent_id):
        mlflow.set_tags({"sampler": settings.sampler, "pruner": settings.pruner, "seed": str(seed)})
        mlflow.log_dict(space.as_dict(), "optuna/search_space.json")
        try:
            _optimize(study, objective, settings)
        except KeyboardInterrupt:
            interrupted = True
            logger.warning("study %s interrupted; rerun the same command to resume it", name)
        finally:
            _fail_stale_trials(study)
            log_study(study)
    logger.info("study %s: this worker ran for %.0f s", name, time.perf_counter() - started)

    result = _result(study, parent_id)
    if result.best_number is not None and settings.write_experiment:
        result.experiment_path = write_best_experiment(study.best_trial, study_name=name, task=settings.task,
                                                       space_name=settings.space, config_dir=config_dir)
    if interrupted:
        raise KeyboardInterrupt
    return result


def _optimize(study: optuna.Study, objective: SweepObjective, settings: SweepSettings) -> None:
    def stop_when_full(study: optuna.Study, trial: FrozenTrial) -> None:
        if settings.n_trials is not None and studies.count_trials(study) >= settings.n_trials:
            study.stop()

    if settings.n_trials is not None and studies.count_trials(study) >= settings.n_trials:
        logger.info("study %s already has %d finished trials; nothing to run", study.study_name, settings.n_trials)
        return
    # n_trials is enforced by stop_when_full across all workers, not by optimize,
    # which would count only this worker's trials.
    study.optimize(objective, timeout=settings.timeout_s, callbacks=[stop_when_full], catch=(SurplusTrial,),
                   gc_after_trial=False)


def _check_settings(settings: SweepSettings) -> None:
    if settings.task not in TASKS:
        raise ValueError(f"unknown task {settings.task!r}; expected one of {TASKS}")
    if settings.n_trials is None and settings.timeout_s is None:
        raise ValueError("set a trial count (--n-trials), a time budget (--timeout), or both")
    if settings.n_trials is not None and settings.n_trials < 1:
        raise ValueError(f"--n-trials must be at least 1, got {settings.n_trials}")
    if settings.timeout_s is not None and settings.timeout_s <= 0:
        raise ValueError(f"--timeout must be positive seconds, got {settings.timeout_s}")
    if settings.sampler not in studies.SAMPLERS:
        raise ValueError(f"unknown sampler {settings.sampler!r}; expected one of {studies.SAMPLERS}")
    if settings.pruner not in studies.PRUNERS:
        raise ValueError(f"unknown pruner {settings.pruner!r}; expected one of {studies.PRUNERS}")
    if settings.grace_period_s <= settings.heartbeat_interval_s:
        raise ValueError(f"the grace period ({settings.grace_period_s} s) must exceed the heartbeat interval "
                         f"({settings.heartbeat_interval_s} s), or live trials would be marked failed")


def _check_same_sweep(study: optuna.Study, created: bool, settings: SweepSettings) -> None:
    """Record the task and search space on a new study, and reject a resume with other ones."""
    if created:
        study.set_user_attr("task", settings.task)
        study.set_user_attr("search_space", settings.space)
        return
    for key, value in (("task", settings.task), ("search_space", settings.space)):
        stored = study.user_attrs.get(key)
        if stored is not None and stored != value:
            raise ValueError(f"study {study.study_name!r} was created for {key} {stored!r}, not {value!r}; "
                             "pass the original value or another --study-name")


def _fail_stale_trials(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        # Optuna 5.0 still marks fail_stale_trials experimental, though it exists since 2.9.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _mark_stale_run(study: optuna.Study, trial: FrozenTrial) -> None:
    """Mark the MLflow run of a trial whose worker died (stale heartbeat) as failed.

    The run may already be FINISHED when the worker died after training but
    before Optuna stored the value. The trial's result is lost either way, so
    the run is marked FAILED to match the trial.
    """
    logger.warning("study %s: trial %d lost its worker and is marked failed", study.study_name, trial.number)
    tag_trial_run(trial.user_attrs.get("mlflow_run_id"), study.study_name, trial.number, "FAIL", status="FAILED")


def _result(study: optuna.Study, parent_id: str) -> SweepResult:
    trials = study.get_trials(deepcopy=False)
    completed = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    best = study.best_trial if completed else None
    return SweepResult(
        study_name=study.study_name,
        parent_run_id=parent_id,
        n_complete=len(completed),
        n_pruned=sum(trial.state == TrialState.PRUNED for trial in trials),
        n_failed=sum(trial.state == TrialState.FAIL for trial in trials),
        best_number=best.number if best else None,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else None,
        experiment_path=None,
    )
