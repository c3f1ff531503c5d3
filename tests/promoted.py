"""A category model trained, evaluated and promoted by the real pipeline in a temporary project."""

from __future__ import annotations

from pathlib import Path

from iomt_ids.config import compose_config
from synthetic import write_raw_folder

ROOT = Path(__file__).resolve().parents[1]
TASK = "category"
CHAMPION_URI = f"models:/iomt-ids-{TASK}@champion"


def project_config(base: Path):
    """Compose the real conf/ with every path under ``base``, a sqlite MLflow store and two epochs."""
    return compose_config([
        f"data.raw_dir={base}/raw",
        f"paths.ingested={base}/interim/flows.parquet",
        f"paths.prepared_dir={base}/prepared",
        f"paths.models_dir={base}/models",
        f"paths.reports_dir={base}/reports",
        f"mlflow.tracking_uri=sqlite:///{base}/mlflow.db",
        f"mlflow.artifact_dir={base}/artifacts",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "model.batch_size=64",
    ], config_dir=ROOT / "conf")


def promote_category_model(base: Path):
    """Write a synthetic raw folder under ``base`` and run every stage for the category task.

    Returns the composed config. The caller must unset MLFLOW_TRACKING_URI first.
    """
    from iomt_ids.pipeline import evaluate, ingest, prepare, promote, train

    write_raw_folder(base / "raw")
    cfg = project_config(base)
    ingest.run(cfg)
    prepare.run(cfg)
    train.train_task(cfg, TASK)
    evaluate.run(cfg, TASK)
    promote.promote(cfg, TASK)
    return cfg
