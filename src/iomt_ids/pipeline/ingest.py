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


def run(cfg: DictConfig) -> IngestReport:
    report = ingest(Path(cfg.data.raw_dir), Path(cfg.paths.ingested), layout=cfg.data.layout)

    summary_path, files_path = data_report_paths(cfg)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    # The metrics file keeps totals only, so `dvc metrics show` stays readable;
    # the per-file, per-class and per-column counts are in the full report.
    nonfinite = sum(sum(kinds.values()) for kinds in report.nonfinite_per_column().values())
    summary = {"layout": report.layout, "files": len(report.files), **report.totals(), "nonfinite_cells": nonfinite}
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    files_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    logger.info("wrote %s and %s", summary_path, files_path)
    return report
