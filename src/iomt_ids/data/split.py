"""Split the ingested flows into train, validation and test sets.

Two modes, chosen from the raw folder:

- ``official``: the release has both ``train/`` and ``test/`` files. The test
  set is the official test files; validation is carved from the official
  train files, stratified by class.
- ``pooled``: only one of the two folders has files. All rows are pooled and
  split stratified by class into train, validation and test. Rows of one file
  come from one capture, so this within-capture split gives optimistic scores
  compared with the official capture-level split. A warning is logged.

Stratification is by the 19 attack classes, so the three tasks share one split.
A class with too few rows to give validation (and, in pooled mode, test) a row
stays in train, with a warning naming it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from iomt_ids.data.errors import DataError

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of the pooled rows (pooled mode) or of train rows (validation only)."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1 or not 0 < self.test_fraction < 1:
            raise ValueError(
                f"split fractions must lie in (0, 1), got val_fraction={self.val_fraction}, "
                f"test_fraction={self.test_fraction}"
            )
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1 to leave training rows, "
                f"got {self.val_fraction} + {self.test_fraction}"
            )


def _stratified_take(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Return a boolean mask taking round(fraction * n) rows of every class, at least one.

    A class of a single row stays out of the taken part, so training keeps
    at least one example of it.
    """
    taken = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) < 2:
            continue
        n_taken = min(max(1, round(fraction * len(rows))), len(rows) - 1)
        taken[rng.choice(rows, size=n_taken, replace=False)] = True
    return taken


def _warn_classes_missing_from(labels: np.ndarray, assigned: np.ndarray, splits: tuple[str, ...],
                               source: str) -> None:
    """Warn about every class whose rows are too few to put one in each of ``splits``."""
    names = {"val": "validation", "test": "test"}
    for label in np.unique(labels):
        in_class = labels == label
        missing = " and ".join(names[split] for split in splits if not (assigned[in_class] == split).any())
        if missing:
            logger.warning(
                "class %s has %d row(s) from the %s folder, too few to put one in %s, so %s scores leave "
                "the class out. Rows are counted after ingestion drops duplicates (data.duplicates). Add "
                "capture files of this class to the raw-data folder.",
                label, int(in_class.sum()), source, missing, missing,
            )


def assign_splits(flows: pd.DataFrame, config: SplitConfig) -> tuple[np.ndarray, str]:
    """Return the split name of every row (an array of 'train', 'val', 'test') and the mode.

    ``flows`` needs the columns ``class`` and ``source_split`` (the raw folder,
    'train' or 'test'). The result depends only on the rows and the seed.
    """
    if flows.empty:
        raise DataError("no flows to split: every raw file was empty or fully dropped.")

    rng = np.random.default_rng(config.seed)
    labels = flows["class"].astype(str).to_numpy()
    source = flows["source_split"].astype(str).to_numpy()
    assigned = np.full(len(flows), "train", dtype=object)

    if {"train", "test"} <= set(source):
        mode = "official"
        assigned[source == "test"] = "test"
        train_rows = np.flatnonzero(source == "train")
        val_mask = _stratified_take(labels[train_rows], config.val_fraction, rng)
        assigned[train_rows[val_mask]] = "val"
        _warn_classes_missing_from(labels[train_rows], assigned[train_rows], ("val",), "train")
        return assigned, mode

    mode = "pooled"
    logger.warning(
        "only the %s folder has files: splitting its rows stratified by class into train, "
        "validation and test. Rows of one file come from one capture, so test scores from "
        "this split are optimistic compared with the official capture-level split.",
        source[0],
    )
    test_mask = _stratified_take(labels, config.test_fraction, rng)
    assigned[test_mask] = "test"
    rest = np.flatnonzero(~test_mask)
    # The validation fraction is of all rows, so rescale it to the rows left.
    val_share = config.val_fraction / (1 - config.test_fraction)
    val_mask = _stratified_take(labels[rest], val_share, rng)
    assigned[rest[val_mask]] = "val"
    _warn_classes_missing_from(labels, assigned, ("val", "test"), source[0])
    return assigned, mode


def split_counts(flows: pd.DataFrame, assigned: np.ndarray) -> dict[str, dict[str, int]]:
    """Return rows per split, then per class."""
    table = pd.crosstab(flows["class"].astype(str).to_numpy(), assigned)
    return {
        split: {cls: int(n) for cls, n in table[split].items() if n}
        for split in SPLITS if split in table.columns
    }
