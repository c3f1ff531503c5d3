"""A small project in tmp_path for sweep tests: a copy of conf/, synthetic prepared splits, MLflow sqlite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from iomt_ids.config import compose_config
from iomt_ids.pipeline import ingest, prepare
from synthetic import write_raw_folder

ROOT = Path(__file__).resolve().parents[1]
TASK = "category"
SPACE = "published_cnn"


def path_overrides(base: Path, tracking_uri: str | None = None) -> list[str]:
    """Hydra overrides that move every path and the MLflow store under ``base`` and keep training short."""
    return [
        f"data.raw_dir={base}/raw",
        f"paths.ingested={base}/interim/flows.parquet",
        f"paths.prepared_dir={base}/prepared",
        f"paths.models_dir={base}/models",
        f"paths.reports_dir={base}/reports",
        f"mlflow.tracking_uri={tracking_uri or f'sqlite:///{base}/mlflow.db'}",
        f"mlflow.artifact_dir={base}/artifacts",
        "trainer.accelerator=cpu",
    ]


def make_project(base: Path, rows_per_class: int = 60) -> Path:
    """Copy conf/ to ``base/conf`` and write the prepared splits of a synthetic release under ``base``."""
    shutil.copytree(ROOT / "conf", base / "conf", ignore=shutil.ignore_patterns("best_*.yaml"))
    write_raw_folder(base / "raw", rows_per_class=rows_per_class)
    cfg = compose_config(path_overrides(base), config_dir=base / "conf")
    ingest.run(cfg)
    prepare.run(cfg)
    return base


def sweep_command(base: Path, *arguments: str, overrides: tuple[str, ...] = ("trainer.max_epochs=2",)) -> list[str]:
    """Return the ``iomt-ids sweep`` command line for the project at ``base``."""
    return [sys.executable, "-m", "iomt_ids", "sweep", "--task", TASK, "--space", SPACE,
            "--config-dir", str(base / "conf"), "--storage", f"sqlite:///{base}/sweeps/optuna.db",
            *arguments, *path_overrides(base), *overrides]


def sweep_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "DVC_NO_ANALYTICS": "1", **extra})
    return env


def run_sweep_process(base: Path, *arguments: str, env: dict | None = None,
                      timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(sweep_command(base, *arguments), cwd=base, env=env or sweep_env(),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"sweep failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result
