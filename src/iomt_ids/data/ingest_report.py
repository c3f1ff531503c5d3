"""Row accounting of ingestion: what happened to every row, per file, class and split.

``rows_read == rows_kept + sum(rows_dropped.values())`` holds for every file
and for the totals. Reasons for dropping a row are ``repeated_header``,
``truncated_last_line`` and ``duplicate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Kinds of non-finite cell, counted per file and column: ``inf``, ``-inf``,
# NaN or empty, and a finite value that overflows float32.
NONFINITE_KINDS: tuple[str, ...] = ("pos_inf", "neg_inf", "nan", "float32_overflow")


@dataclass
class FileReport:
    """Row accounting of one raw file: ``rows_read == rows_kept + sum(rows_dropped)``."""

    file: str
    split: str
    class_name: str
    rows_read: int = 0
    rows_kept: int = 0
    rows_dropped: dict[str, int] = field(default_factory=dict)
    nonfinite: dict[str, dict[str, int]] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)
    empty: bool = False
    # Kept rows of a test file that equal a kept train row, or None when not checked.
    rows_equal_to_train: int | None = None


@dataclass
class IngestReport:
    """What ingestion did to every row, per file, class and split."""

    layout: str
    files: list[FileReport]
    duplicates: str = "none"
    # Feature policy: columns left out by name, columns with one value in every
    # kept row (None when no row was kept), and whether those were left out too.
    dropped_columns: list[str] = field(default_factory=list)
    constant_columns: list[str] | None = None
    constant_columns_dropped: bool = False

    def totals(self) -> dict[str, int]:
        dropped: dict[str, int] = {}
        for report in self.files:
            for reason, count in report.rows_dropped.items():
                dropped[reason] = dropped.get(reason, 0) + count
        return {
            "rows_read": sum(r.rows_read for r in self.files),
            "rows_kept": sum(r.rows_kept for r in self.files),
            "rows_dropped": sum(dropped.values()),
            **{f"rows_dropped_{reason}": count for reason, count in sorted(dropped.items())},
        }

    def rows_per_class(self) -> dict[str, dict[str, int]]:
        """Return kept rows per class, then per split of the raw folder."""
        table: dict[str, dict[str, int]] = {}
        for report in self.files:
            per_split = table.setdefault(report.class_name, {})
            per_split[report.split] = per_split.get(report.split, 0) + report.rows_kept
        return table

    def nonfinite_per_column(self) -> dict[str, dict[str, int]]:
        """Return non-finite cell counts per column and kind, summed over files."""
        table: dict[str, dict[str, int]] = {}
        for report in self.files:
            for column, counts in report.nonfinite.items():
                total = table.setdefault(column, {})
                for kind, count in counts.items():
                    total[kind] = total.get(kind, 0) + count
        return table

    def dropped_per_class(self, reason: str) -> dict[str, dict[str, int]]:
        """Return the rows dropped for one reason per class, then per split, leaving out zeros."""
        table: dict[str, dict[str, int]] = {}
        for report in self.files:
            count = report.rows_dropped.get(reason, 0)
            if count:
                per_split = table.setdefault(report.class_name, {})
                per_split[report.split] = per_split.get(report.split, 0) + count
        return table

    def train_test_overlap(self) -> dict | None:
        """Return the kept test rows equal to a kept train row, in total and per class.

        None when the overlap was not checked: duplicates mode ``none``, or a
        raw folder without both a train and a test split.
        """
        checked = [report for report in self.files if report.rows_equal_to_train is not None]
        if not checked:
            return None
        per_class: dict[str, int] = {}
        for report in checked:
            per_class[report.class_name] = per_class.get(report.class_name, 0) + report.rows_equal_to_train
        return {
            "test_rows": sum(report.rows_kept for report in checked),
            "test_rows_equal_to_train": sum(per_class.values()),
            "per_class": per_class,
        }

    def feature_policy(self) -> dict:
        """Return the feature columns left out and why."""
        return {
            "dropped_columns": list(self.dropped_columns),
            "constant_columns": self.constant_columns,
            "constant_columns_dropped": self.constant_columns_dropped,
        }

    def summary(self) -> dict:
        """Return totals, per-class counts and the duplicate and feature policies of the run."""
        return {
            "files": len(self.files),
            **self.totals(),
            "rows_kept_per_class": self.rows_per_class(),
            "nonfinite_cells": self.nonfinite_per_column(),
            "duplicates": {
                "mode": self.duplicates,
                "rows_dropped_per_class": self.dropped_per_class("duplicate"),
                "train_test_overlap": self.train_test_overlap(),
            },
            "feature_policy": self.feature_policy(),
        }

    def to_dict(self) -> dict:
        return {
            "layout": self.layout,
            "summary": self.summary(),
            "files": [vars(report) for report in self.files],
        }
