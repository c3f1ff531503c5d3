"""Command line of ``iomt-ids sweep``: arguments and the call into ``run_sweep``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from iomt_ids.data.schema import TASKS
from iomt_ids.tuning import DEFAULT_STORAGE

logger = logging.getLogger("iomt_ids")


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``iomt-ids sweep``. Hydra overrides follow as trailing ``key=value`` arguments."""
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--space", required=True,
                        help="search space: a file name (without .yaml) in <config-dir>/hparams_search")
    parser.add_argument("--n-trials", type=int, default=None,
                        help="finished trials the study should hold, counted over all workers (default: 20 "
                             "when --timeout is not given)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds after which this worker starts no new trial (default: no limit)")
    parser.add_argument("--sampler", choices=("tpe", "random"), default="tpe", help="Optuna sampler (default: tpe)")
    parser.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median",
                        help="Optuna pruner over validation macro-F1 per epoch (default: median)")
    parser.add_argument("--seed", type=int, default=None, help="sampler seed (default: the config's seed)")
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help=f"SQLAlchemy URL of the Optuna storage (default: {DEFAULT_STORAGE}); "
                             "a PostgreSQL URL lets workers on several machines share one study")
    parser.add_argument("--study-name", default=None, help="study to create or resume (default: <task>-<space>)")
    parser.add_argument("--config-dir", type=Path, default=Path("conf"), help="Hydra config folder (default: conf)")
    parser.add_argument("--heartbeat-interval", type=int, default=10,
                        help="seconds between a running trial's heartbeats (default: 10)")
    parser.add_argument("--grace-period", type=int, default=30,
                        help="seconds without heartbeat after which a running trial is marked failed "
                             "(default: 30)")
    parser.add_argument("--no-experiment", action="store_true",
                        help="do not write the best trial to <config-dir>/experiment/best_<study>.yaml")


def run_sweep_command(args: argparse.Namespace) -> int:
    """Run the sweep that the parsed arguments describe and return the process exit status."""
    from hydra.errors import HydraException

    from iomt_ids.data.errors import DataError
    from iomt_ids.tuning.space import SearchSpaceError
    from iomt_ids.tuning.sweep import SweepSettings, run_sweep

    n_trials = args.n_trials
    if n_trials is None and args.timeout is None:
        n_trials = 20
    settings = SweepSettings(
        task=args.task, space=args.space, n_trials=n_trials, timeout_s=args.timeout, sampler=args.sampler,
        pruner=args.pruner, seed=args.seed, storage=args.storage, study_name=args.study_name,
        overrides=tuple(args.overrides), config_dir=args.config_dir,
        heartbeat_interval_s=args.heartbeat_interval, grace_period_s=args.grace_period,
        write_experiment=not args.no_experiment,
    )
    try:
        result = run_sweep(settings)
    except (SearchSpaceError, ValueError, DataError, HydraException) as error:
        logger.error("%s", error)
        return 2
    except KeyboardInterrupt:
        return 130

    logger.info("study %s: %d complete, %d pruned, %d failed; MLflow parent run %s", result.study_name,
                result.n_complete, result.n_pruned, result.n_failed, result.parent_run_id)
    if result.best_number is not None:
        logger.info("best trial %d: val macro-F1 %.4f, %s", result.best_number, result.best_value, result.best_params)
    if result.experiment_path is not None:
        logger.info("retrain it through the pipeline: dvc exp run -S experiment=%s promote@%s",
                    result.experiment_path.stem, args.task)
    return 0
