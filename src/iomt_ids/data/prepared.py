"""Read the prepared splits back: feature columns and the labels of a task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from iomt_ids.data.errors import DataError
from iomt_ids.data.schema import LABEL_COLUMNS, task_labels

# Columns of the prepared parquet files that are not features.
NON_FEATURE_COLUMNS: frozenset[str] = frozenset({"class", "category", "binary", "source_file", "source_split"})


def read_split(path: Path) -> pd.DataFrame:
    """Read one prepared split; labels come back as plain strings."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found. Run the ingest and prepare stages first (dvc repro prepare).")
    flows = pq.read_table(path).to_pandas()
    for column in NON_FEATURE_COLUMNS & set(flows.columns):
        flows[column] = flows[column].astype(str)
    return flows


def feature_columns(flows: pd.DataFrame) -> list[str]:
    return [column for column in flows.columns if column not in NON_FEATURE_COLUMNS]


def task_targets(flows: pd.DataFrame, task: str) -> pd.Series:
    """Return the label of every flow for a task (class, category or Benign/Attack)."""
    task_labels(task)  # raises on an unknown task
    return flows[LABEL_COLUMNS[task]]


def present_labels(task: str, *label_series: pd.Series) -> list[str]:
    """Return the task's labels that occur in any of the series, in report order.

    Raises DataError when fewer than two labels occur, since no classifier
    can be trained then (a binary task without Benign flows, for example).
    """
    seen: set[str] = set()
    for series in label_series:
        seen.update(series.unique())
    labels = [label for label in task_labels(task) if label in seen]
    if len(labels) < 2:
        raise DataError(
            f"the {task} task needs flows of at least two labels, but the training data has "
            f"only {labels or 'none'}. Add raw files of other classes (the binary task needs "
            f"Benign files)."
        )
    return labels


def encode(labels: pd.Series, class_names: list[str]) -> np.ndarray:
    """Map label strings to indices of ``class_names``; int64."""
    index = {name: i for i, name in enumerate(class_names)}
    codes = labels.map(index)
    if codes.isna().any():
        unknown = sorted(set(labels[codes.isna()]))
        raise DataError(f"labels {unknown} are not among the model's classes {class_names}")
    # A writable copy: torch.from_numpy warns on the read-only arrays of copy-on-write pandas.
    return np.array(codes.to_numpy(dtype=np.int64), copy=True)
