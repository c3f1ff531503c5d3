"""Stage ``ingest``: raw CSV files to one validated parquet file and a data report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from iomt_ids.data.ingest import IngestReport, ingest

logger = logging.getLogger(__name__)


def data_report_paths(cfg: DictConfig) -> tuple[Path, Path]:
    """Return (summary metrics file, per-file report) of the ingest stage."""
    folder = Path(cfg.paths.reports_dir) / "data"
    return folder / "ingest_summary.json", folder / "ingest_files.json"


def metrics_summary(report: IngestReport) -> dict:
    """Return the totals that `dvc metrics show` lists: rows per reason, overlap, dropped columns.

    Per-file, per-class and per-column counts stay in the full report.
    """
    nonfinite = sum(sum(kinds.values()) for kinds in report.nonfinite_per_column().values())
    overlap = report.train_test_overlap()
    policy = report.feature_policy()
    dropped_columns = policy["dropped_columns"] + (policy["constant_columns"] or []
                                                   if policy["constant_columns_dropped"] else [])
    return {
        "layout": report.layout,
        "files": len(report.files),
        **report.totals(),
        "nonfinite_cells": nonfinite,
        "duplicates": report.duplicates,
        "test_rows_equal_to_train": overlap["test_rows_equal_to_train"] if overlap else None,
        "columns_dropped": len(dropped_columns),
        "constant_columns": len(policy["constant_columns"] or []),
    }


def run(cfg: DictConfig) -> IngestReport:
    report = ingest(
        Path(cfg.data.raw_dir),
        Path(cfg.paths.ingested),
        layout=cfg.data.layout,
        duplicates=cfg.data.duplicates,
        drop_columns=list(cfg.data.drop_columns),
        drop_constant_columns=bool(cfg.data.drop_constant_columns),
    )

    summary_path, files_path = data_report_paths(cfg)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(metrics_summary(report), indent=2) + "\n")
    files_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    logger.info("wrote %s and %s", summary_path, files_path)
    return report
