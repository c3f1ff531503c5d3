"""Tests for duplicate removal and the feature policy of ingestion, and the ingest stage's reports.

Every case writes real CSV files into a raw-data folder, runs the real ingest
and reads the parquet output and the report back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from iomt_ids.data.duplicates import RowHasher, SeenRows
from iomt_ids.data.errors import DataError
from iomt_ids.data.ingest import IngestReport, ingest
from iomt_ids.data.schema import V1_COLUMNS, V2_COLUMNS
from iomt_ids.pipeline import ingest as ingest_stage


def row(index: int, columns: tuple[str, ...] = V2_COLUMNS) -> list[str]:
    """Return the cells of a good row; rows with different indices differ in every column."""
    return [str(index * 64 + column + 0.5) for column in range(len(columns))]


def write_csv(raw_dir: Path, relative: str, rows: list[list[str]], columns: tuple[str, ...] = V2_COLUMNS) -> None:
    path = raw_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(columns)] + [",".join(cells) for cells in rows]
    path.write_text("\n".join(lines) + "\n")


def run(raw_dir: Path, **options) -> tuple[IngestReport, dict[str, np.ndarray]]:
    out_path = raw_dir.parent / "flows.parquet"
    report = ingest(raw_dir, out_path, **options)
    table = pq.read_table(out_path)
    return report, {name: table.column(name).to_numpy() for name in table.column_names}


def assert_accounting(report: IngestReport) -> None:
    for file_report in report.files:
        assert file_report.rows_read == file_report.rows_kept + sum(file_report.rows_dropped.values())
    totals = report.totals()
    assert totals["rows_read"] == totals["rows_kept"] + totals["rows_dropped"]


# --- duplicate modes


def float32_twins() -> list[list[str]]:
    """Two rows that differ as read but are equal after the float32 cast, and a third, distinct row."""
    first, second = row(0), row(0)
    second[3] = "0.5000000001"
    first[3] = "0.5"
    return [first, second, row(1)]


@pytest.mark.parametrize(("mode", "kept"), [("none", 3), ("exact", 3), ("float32", 2)])
def test_float32_twins_per_mode(tmp_path, mode, kept):
    raw = tmp_path / "raw"
    write_csv(raw, "train/Benign_train.pcap.csv", float32_twins())

    report, _ = run(raw, duplicates=mode)

    assert report.files[0].rows_kept == kept
    assert report.files[0].rows_dropped.get("duplicate", 0) == 3 - kept
    assert report.duplicates == mode
    assert_accounting(report)


@pytest.mark.parametrize("mode", ["exact", "float32"])
def test_equal_rows_dropped_per_mode(tmp_path, mode):
    raw = tmp_path / "raw"
    write_csv(raw, "train/Benign_train.pcap.csv", [row(0), row(1), row(0), row(0)])

    report, table = run(raw, duplicates=mode)

    assert report.files[0].rows_dropped == {"duplicate": 2}
    assert report.files[0].rows_kept == 2
    assert table["Rate"].tolist() == [float(row(0)[3]), float(row(1)[3])]
    assert_accounting(report)


def test_duplicates_across_captures_dropped(tmp_path):
    raw = tmp_path / "raw"
    write_csv(raw, "train/TCP_IP-DoS-SYN1_train.pcap.csv", [row(0), row(1)])
    write_csv(raw, "train/TCP_IP-DoS-SYN2_train.pcap.csv", [row(1), row(2)])

    report, _ = run(raw, duplicates="float32")

    assert [file.rows_kept for file in report.files] == [2, 1]
    assert report.files[1].rows_dropped == {"duplicate": 1}
    assert report.dropped_per_class("duplicate") == {"TCP_IP-DoS-SYN": {"train": 1}}
    assert report.summary()["duplicates"]["rows_dropped_per_class"] == {"TCP_IP-DoS-SYN": {"train": 1}}


def test_equal_rows_other_class_kept(tmp_path):
    raw = tmp_path / "raw"
    write_csv(raw, "train/Benign_train.pcap.csv", [row(0)])
    write_csv(raw, "train/ARP_Spoofing_train.pcap.csv", [row(0)])

    report, table = run(raw, duplicates="float32")

    assert len(table["Rate"]) == 2
    assert report.totals()["rows_dropped"] == 0


def test_test_rows_in_train_counted_kept(tmp_path):
    raw = tmp_path / "raw"
    write_csv(raw, "train/Benign_train.pcap.csv", [row(0), row(1)])
    write_csv(raw, "train/ARP_Spoofing_train.pcap.csv", [row(5)])
    write_csv(raw, "test/Benign_test.pcap.csv", [row(1), row(2), row(5)])

    report, table = run(raw, duplicates="float32")

    test_file = next(file for file in report.files if file.split == "test")
    assert test_file.rows_kept == 3
    assert test_file.rows_equal_to_train == 2
    overlap = report.train_test_overlap()
    assert overlap == {"test_rows": 3, "test_rows_equal_to_train": 2, "per_class": {"Benign": 2}}
    assert len(table["Rate"]) == 6


def test_overlap_unchecked_without_train(tmp_path):
    raw = tmp_path / "raw"
    write_csv(raw, "test/Benign_test.pcap.csv", [row(0)])

    report, _ = run(raw, duplicates="float32")

    assert report.train_test_overlap() is None
    assert report.files[0].rows_equal_to_train is None


def test_overlap_unchecked_mode_none(tmp_path):
    raw = tmp_path / "raw"
    write_csv(raw, "train/Benign_train.pcap.csv", [row(0)])
    write_csv(raw, "test/Benign_test.pcap.csv", [row(0)])

    report, _ = run(raw, duplicates="none")

    assert report.train_test_overlap() is None


def test_negative_zero_and_nan_rows_equal(tmp_path):
    raw = tmp_path / "raw"
    first, second = row(0), row(0)
    first[2], second[2] = "0.0", "-0.0"
    first[4], second[4] = "NaN", ""
    write_csv(raw, "train/Benign_train.pcap.csv", [first, second])

    report, _ = run(raw, duplicates="exact")

    assert report.files[0].rows_dropped == {"duplicate": 1}
    # Non-finite cells are counted over the rows read, the dropped duplicate included.
    assert report.files[0].nonfinite == {V2_COLUMNS[4]: {"nan": 2}}


def test_unknown_duplicate_mode_error(tmp_path):
    raw = tmp_path / "raw"
    write_csv(raw, "train/Benign_train.pcap.csv", [row(0)])

    with pytest.raises(DataError) as excinfo:
        run(raw, duplicates="rows")

    assert "'rows'" in str(excinfo.value)
    assert "none, exact, float32" in str(excinfo.value)


def test_row_hasher_column_order_matters():
    a = np.array([1.0, 2.0], dtype=np.float32)
    b = np.array([2.0, 1.0], dtype=np.float32)

    forward, backward = RowHasher(2), RowHasher(2)
    forward.update(a)
    forward.update(b)
    backward.update(b)
    backward.update(a)

    assert forward.digest()[0] != backward.digest()[0]
    assert forward.digest()[0] == backward.digest()[1]


def test_seen_rows_keeps_first_occurrence():
    seen = SeenRows()
    hashes = np.array([7, 3, 7, 9, 3], dtype=np.uint64)

    keep = seen.keep_first("train", "Benign", hashes)
    again = seen.keep_first("train", "Benign", np.array([9, 11], dtype=np.uint64))

    assert keep.tolist() == [True, True, False, True, False]
    assert again.tolist() == [False, True]
    assert seen.count_in_train(np.array([3, 4, 11], dtype=np.uint64)) == 2


# --- feature policy


def test_drop_columns_left_out(tmp_path):
    raw = tmp_path / "raw"
    write_csv(raw, "train/Benign_train.pcap.csv", [row(0, V1_COLUMNS), row(1, V1_COLUMNS)], V1_COLUMNS)

    report, table = run(raw, drop_columns=["IAT", "Drate"])

    assert "IAT" not in table
    assert "Drate" not in table
    assert "Rate" in table
    assert report.dropped_columns == ["Drate", "IAT"]
    assert report.feature_policy()["dropped_columns"] == ["Drate", "IAT"]


def test_drop_unknown_column_error(tmp_path):
    raw = tmp_path / "raw"
    write_csv(raw, "train/Benign_train.pcap.csv", [row(0)])

    with pytest.raises(DataError) as excinfo:
        run(raw, drop_columns=["Duration"])

    assert "'Duration'" in str(excinfo.value)
    assert "v2 layout" in str(excinfo.value)


def test_constant_columns_reported_kept(tmp_path):
    raw = tmp_path / "raw"
    rows = [row(0), row(1), row(2)]
    for cells in rows:
        cells[V2_COLUMNS.index("Telnet")] = "0.0"
    write_csv(raw, "train/Benign_train.pcap.csv", rows[:2])
    write_csv(raw, "test/Benign_test.pcap.csv", rows[2:])

    report, table = run(raw)

    assert report.constant_columns == ["Telnet"]
    assert report.constant_columns_dropped is False
    assert "Telnet" in table


def test_constant_columns_dropped(tmp_path):
    raw = tmp_path / "raw"
    rows = [row(0), row(1)]
    for cells in rows:
        cells[V2_COLUMNS.index("Telnet")] = "0.0"
    write_csv(raw, "train/Benign_train.pcap.csv", rows)

    report, table = run(raw, drop_constant_columns=True)

    assert "Telnet" not in table
    assert len(table["Rate"]) == 2
    assert report.constant_columns_dropped is True


def test_column_constant_per_file_only_kept(tmp_path):
    raw = tmp_path / "raw"
    first, second = row(0), row(1)
    first[V2_COLUMNS.index("Telnet")] = "0.0"
    second[V2_COLUMNS.index("Telnet")] = "1.0"
    write_csv(raw, "train/Benign_train.pcap.csv", [first])
    write_csv(raw, "train/ARP_Spoofing_train.pcap.csv", [second])

    report, table = run(raw, drop_constant_columns=True)

    assert "Telnet" in table
    assert report.constant_columns == []


# --- the stage's reports


def stage_config(tmp_path: Path, **data) -> OmegaConf:
    return OmegaConf.create({
        "data": {"raw_dir": str(tmp_path / "raw"), "layout": "auto", "duplicates": "float32",
                 "drop_columns": [], "drop_constant_columns": False, **data},
        "paths": {"ingested": str(tmp_path / "interim" / "flows.parquet"), "reports_dir": str(tmp_path / "reports")},
    })


def test_stage_metrics_totals(tmp_path):
    write_csv(tmp_path / "raw", "train/Benign_train.pcap.csv", [row(0), row(0), row(1)])
    write_csv(tmp_path / "raw", "test/Benign_test.pcap.csv", [row(1), row(2)])

    ingest_stage.run(stage_config(tmp_path, drop_columns=["IAT"]))
    summary = json.loads((tmp_path / "reports" / "data" / "ingest_summary.json").read_text())
    full = json.loads((tmp_path / "reports" / "data" / "ingest_files.json").read_text())

    assert summary["rows_read"] == 5
    assert summary["rows_kept"] == 4
    assert summary["rows_dropped_duplicate"] == 1
    assert summary["duplicates"] == "float32"
    assert summary["test_rows_equal_to_train"] == 1
    assert summary["columns_dropped"] == 1
    assert full["summary"]["feature_policy"]["dropped_columns"] == ["IAT"]
    assert full["summary"]["duplicates"]["train_test_overlap"]["per_class"] == {"Benign": 1}
