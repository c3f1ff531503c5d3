"""MLflow set-up shared by the stages: tracking store, experiment and registry names."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import mlflow
from omegaconf import DictConfig

logger = logging.getLogger(__name__)


def tracking_uri(cfg: DictConfig) -> str:
    """Return MLFLOW_TRACKING_URI when set, else the project's sqlite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.mlflow.tracking_uri


def setup_mlflow(cfg: DictConfig) -> str:
    """Point MLflow at the tracking store and select the experiment; return its id.

    With the default sqlite store, the database folder is created and the
    experiment's artifacts go to ``mlflow.artifact_dir`` in the project.
    """
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)

    name = cfg.mlflow.experiment_name
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return experiment.experiment_id

    artifact_location = None
    if uri.startswith("sqlite:") and cfg.mlflow.artifact_dir:
        artifact_location = Path(cfg.mlflow.artifact_dir).resolve().as_uri()
    experiment_id = mlflow.create_experiment(name, artifact_location=artifact_location)
    logger.info("created MLflow experiment %r (id %s) in %s", name, experiment_id, uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def registered_model_name(cfg: DictConfig, task: str) -> str:
    return f"{cfg.registry.model_name_prefix}-{task}"
