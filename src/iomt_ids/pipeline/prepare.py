"""Stage ``prepare``: split the ingested flows into train, validation and test parquet files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
from omegaconf import DictConfig

from iomt_ids.data.split import SPLITS, SplitConfig, assign_splits, split_counts

logger = logging.getLogger(__name__)


def split_path(cfg: DictConfig, split: str) -> Path:
    return Path(cfg.paths.prepared_dir) / f"{split}.parquet"


def split_report_path(cfg: DictConfig) -> Path:
    return Path(cfg.paths.reports_dir) / "data" / "split.json"


def split_summary_path(cfg: DictConfig) -> Path:
    return Path(cfg.paths.reports_dir) / "data" / "split_summary.json"


def run(cfg: DictConfig) -> dict:
    config = SplitConfig(**cfg.data.split)
    table = pq.read_table(cfg.paths.ingested)
    labels = table.select(["class", "source_split"]).to_pandas()
    assigned, mode = assign_splits(labels, config)

    out_dir = Path(cfg.paths.prepared_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        rows = (assigned == split).nonzero()[0]
        pq.write_table(table.take(rows), split_path(cfg, split))
        logger.info("%s: %d flows", split_path(cfg, split), len(rows))

    report = {
        "mode": mode,
        "seed": config.seed,
        "val_fraction": config.val_fraction,
        "test_fraction": config.test_fraction if mode == "pooled" else None,
        "rows": {split: int((assigned == split).sum()) for split in SPLITS},
        "rows_per_class": split_counts(labels, assigned),
    }
    path = split_report_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    summary = {"split_mode": mode, **{f"{split}_flows": n for split, n in report["rows"].items()}}
    split_summary_path(cfg).write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("%s split (seed %d): %s", mode, config.seed, report["rows"])
    return report
