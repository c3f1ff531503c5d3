"""Optuna storage, study, sampler and pruner for a sweep.

Storage is any SQLAlchemy URL (sqlite file by default, PostgreSQL for a team).
Every worker sends a heartbeat for its running trial, so a trial whose worker
was killed is marked failed once its heartbeat is older than the grace period.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from iomt_ids.tuning import DEFAULT_STORAGE

logger = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")

# Trials that hold one of the requested trial slots: done, or running in some worker.
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def display_url(url: str) -> str:
    """Return the storage URL with any password masked, for logs and MLflow tags."""
    return make_url(url).render_as_string(hide_password=True)


def open_storage(url: str, *, heartbeat_interval: int, grace_period: int,
                 stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
                 attempts: int = 3) -> optuna.storages.RDBStorage:
    """Connect to (and on first use create) the Optuna tables behind ``url``.

    A sqlite file's folder is created, with a ``.gitignore`` so the study stays
    out of git. Workers that start at the same moment can race to create the
    tables, so a failed connection is retried ``attempts`` times, 1 s apart.
    """
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder / ".gitignore"
        if folder != Path(".") and not ignore.exists():
            ignore.write_text("# Optuna studies written by `iomt-ids sweep`.\n*\n")

    for attempt in range(1, attempts + 1):
        try:
            with warnings.catch_warnings():
                # Optuna 5.0 marks the heartbeat arguments experimental.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=stale_trial_callback,
                )
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
            if attempt == attempts:
                raise
            logger.warning("connecting to Optuna storage %s failed (attempt %d of %d): %s; retrying",
                           display_url(url), attempt, attempts, error)
            time.sleep(1.0)
    raise AssertionError("unreachable")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """Build the sampler: TPE (default) or random, seeded.

    ``constant_liar`` makes TPE treat other workers' running trials as poor
    results, so parallel workers do not all sample the same point.
    """
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; expected one of {SAMPLERS}")


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    """Build the pruner over epochs (0-based steps).

    Median: no pruning in the first 5 trials nor after the first epoch alone,
    because a network's first epoch predicts little about its last. Hyperband: brackets from 1 epoch
    up to ``max_epochs``.
    """
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 1))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; expected one of {PRUNERS}")


def create_or_load(name: str, storage: optuna.storages.RDBStorage, sampler: optuna.samplers.BaseSampler,
                   pruner: optuna.pruners.BasePruner) -> tuple[optuna.Study, bool]:
    """Create the maximising study ``name``, or load it when it exists. Return it and whether it is new.

    Exactly one of several workers that start together gets ``created=True``.
    """
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction="maximize", load_if_exists=False)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise ValueError(f"study {name!r} exists but minimises; choose another --study-name") from None
        return study, False


def count_trials(study: optuna.Study, states=COUNTED_STATES, *, before: int | None = None) -> int:
    """Count the study's trials in ``states``, only those numbered below ``before`` when given."""
    trials = study.get_trials(deepcopy=False, states=states)
    if before is not None:
        trials = [trial for trial in trials if trial.number < before]
    return len(trials)
