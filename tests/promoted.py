"""A category model trained, evaluated and promoted by the real pipeline in a temporary project."""

from __future__ import annotations

from pathlib import Path

from synthetic import project_config, write_raw_folder

TASK = "category"
CHAMPION_URI = f"models:/iomt-ids-{TASK}@champion"


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
