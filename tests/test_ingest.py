"""Tests for iomt_ids.data.ingest on small CSV files written to tmp_path.

Every case writes real files (plain, gzip, binary) into a raw-data folder and
reads the real parquet output back. A case either ingests, and then the rows,
their values and the row accounting are checked, or it raises DataError, and
then each fact that the message must contain gets its own assert.
"""

from __future__ import annotations

import gzip
import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iomt_ids.data.errors import DataError
from iomt_ids.data.ingest import IngestReport, ingest
from iomt_ids.data.schema import CLASSES, V1_COLUMNS, V2_COLUMNS

LABEL_COLUMNS = ["class", "category", "binary", "source_file", "source_split"]

# Written out here instead of calling schema.category_of, so that the test checks the mapping.
CATEGORY_OF = {
    "Benign": "Benign",
    "ARP_Spoofing": "Spoofing",
    "MQTT-DDoS-Connect_Flood": "MQTT",
    "MQTT-DDoS-Publish_Flood": "MQTT",
    "MQTT-DoS-Connect_Flood": "MQTT",
    "MQTT-DoS-Publish_Flood": "MQTT",
    "MQTT-Malformed_Data": "MQTT",
    "Recon-OS_Scan": "Recon",
    "Recon-Ping_Sweep": "Recon",
    "Recon-Port_Scan": "Recon",
    "Recon-VulScan": "Recon",
    "TCP_IP-DDoS-ICMP": "DDoS",
    "TCP_IP-DDoS-SYN": "DDoS",
    "TCP_IP-DDoS-TCP": "DDoS",
    "TCP_IP-DDoS-UDP": "DDoS",
    "TCP_IP-DoS-ICMP": "DoS",
    "TCP_IP-DoS-SYN": "DoS",
    "TCP_IP-DoS-TCP": "DoS",
    "TCP_IP-DoS-UDP": "DoS",
}

# Cell text -> the kind under which the report counts it.
NONFINITE_KINDS = {
    "inf": "pos_inf",
    "-inf": "neg_inf",
    "": "nan",
    "NaN": "nan",
    "Infinity": "pos_inf",
    "1e+308": "float32_overflow",
}


# --- helpers that write raw files


def cell(row: int, column: int) -> str:
    """Return the text of a good cell. Every value is exact in float32 and unique in its file."""
    return str(row * 64 + column + 0.5)


def value(row: int, column: str, columns: tuple[str, ...] = V2_COLUMNS) -> float:
    """Return the float that a good cell of ``column`` contains in data row ``row``."""
    return float(cell(row, columns.index(column)))


def good_row(row: int, columns: tuple[str, ...]) -> list[str]:
    return [cell(row, index) for index in range(len(columns))]


def csv_text(header: list[str] | tuple[str, ...], rows: list[list[str]], newline: str = "\n") -> str:
    """Join a header and rows into CSV text that ends with a line end."""
    lines = [",".join(header)] + [",".join(row) for row in rows]
    return newline.join(lines) + newline


def good_csv(n_rows: int, columns: tuple[str, ...] = V2_COLUMNS) -> str:
    return csv_text(columns, [good_row(row, columns) for row in range(n_rows)])


def write_raw(raw_dir: Path, name: str, content: str | bytes, split: str = "train") -> Path:
    """Write one raw file under ``raw_dir/split``, where ``name`` may contain subfolders."""
    path = raw_dir / split / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes(data)
    return path


def run_ingest(raw_dir: Path, layout: str = "auto", **options) -> tuple[IngestReport, pd.DataFrame]:
    """Ingest ``raw_dir`` into a parquet file beside it and read the output back.

    Duplicate removal is float32 (the project default) unless ``options`` set another mode,
    so that every case also checks that duplicate removal keeps the row accounting whole.
    """
    out_path = raw_dir.parent / f"{raw_dir.name}.parquet"
    report = ingest(raw_dir, out_path, layout=layout, **{"duplicates": "float32", **options})
    return report, pq.read_table(out_path).to_pandas()


def ingest_error(raw_dir: Path) -> str:
    """Ingest ``raw_dir``, expecting DataError, and return its message."""
    with pytest.raises(DataError) as excinfo:
        ingest(raw_dir, raw_dir.parent / "out.parquet")
    return str(excinfo.value)


def assert_accounting(report: IngestReport) -> None:
    """Check rows_read == rows_kept + rows_dropped for every file and for the totals."""
    for file_report in report.files:
        dropped = sum(file_report.rows_dropped.values())
        assert file_report.rows_read == file_report.rows_kept + dropped, file_report.file

    totals = report.totals()
    assert totals["rows_read"] == totals["rows_kept"] + totals["rows_dropped"]
    by_reason = sum(count for key, count in totals.items() if key.startswith("rows_dropped_"))
    assert totals["rows_dropped"] == by_reason


# --- a good file


def test_ingest_v2_rows_and_values(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, "Benign_train.pcap.csv", good_csv(3))

    report, table = run_ingest(raw)

    assert len(table) == 3
    assert report.files[0].rows_read == 3
    assert report.files[0].rows_kept == 3
    assert report.files[0].rows_dropped == {}
    assert_accounting(report)
    assert list(table.columns) == list(V2_COLUMNS) + LABEL_COLUMNS
    assert all(table[column].dtype == np.float32 for column in V2_COLUMNS)
    assert table["Rate"].tolist() == [value(row, "Rate") for row in range(3)]
    assert table["Variance"].tolist() == [value(row, "Variance") for row in range(3)]
    assert set(table["source_file"]) == {"train/Benign_train.pcap.csv"}
    assert set(table["source_split"]) == {"train"}


# --- file names


def test_unknown_class_name_error(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, "Benign_train.pcap.csv", good_csv(2))
    write_raw(raw, "Mirai-Botnet_train.pcap.csv", good_csv(2))

    message = ingest_error(raw)

    assert "Mirai-Botnet_train.pcap.csv" in message
    assert "Known classes" in message
    for class_name in CLASSES:
        assert class_name in message, class_name
    assert "Rename the file" in message


# --- layouts


def test_mixed_layouts_error(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, "Benign_train.pcap.csv", good_csv(2, V1_COLUMNS))
    write_raw(raw, "ARP_Spoofing_test.pcap.csv", good_csv(2, V2_COLUMNS), split="test")

    message = ingest_error(raw)

    assert "Benign_train.pcap.csv" in message
    assert "ARP_Spoofing_test.pcap.csv" in message
    assert "v1 layout" in message
    assert "v2 layout" in message
    assert "Use files of one release" in message


def test_layout_mismatch_error(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, "Benign_train.pcap.csv", good_csv(2, V2_COLUMNS))

    with pytest.raises(DataError) as excinfo:
        ingest(raw, tmp_path / "out.parquet", layout="v1")
    message = str(excinfo.value)

    assert "Benign_train.pcap.csv" in message
    assert "v2 layout" in message
    assert "Set data.layout" in message


@pytest.mark.parametrize(("layout", "columns"), [("v1", V1_COLUMNS), ("v2", V2_COLUMNS)])
def test_layout_detected(tmp_path, layout, columns):
    raw = tmp_path / "raw"
    write_raw(raw, "Benign_train.pcap.csv", good_csv(2, columns))

    report, table = run_ingest(raw)

    assert report.layout == layout
    assert list(table.columns) == list(columns) + LABEL_COLUMNS
    assert len(table) == 2


# --- missing and extra columns


def test_missing_column_error(tmp_path):
    raw = tmp_path / "raw"
    columns = tuple(column for column in V2_COLUMNS if column != "Rate")
    path = write_raw(raw, "Benign_train.pcap.csv", good_csv(2, columns))

    message = ingest_error(raw)

    assert str(path) in message
    assert "'Rate'" in message
    assert "Restore the file" in message


def test_extra_column_warns_and_dropped(tmp_path, caplog):
    raw = tmp_path / "raw"
    header = list(V2_COLUMNS) + ["Label"]
    rows = [good_row(row, V2_COLUMNS) + ["Benign"] for row in range(2)]
    path = write_raw(raw, "Benign_train.pcap.csv", csv_text(header, rows))

    with caplog.at_level(logging.WARNING, logger="iomt_ids.data.ingest"):
        report, table = run_ingest(raw)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(path) in text and "Label" in text for text in warnings), warnings
    assert "Label" not in table.columns
    assert report.files[0].extra_columns == ["Label"]
    assert len(table) == 2


# --- non-finite cells


@pytest.mark.parametrize("text", list(NONFINITE_KINDS))
def test_nonfinite_cell_kept_counted(tmp_path, text):
    raw = tmp_path / "raw"
    rows = [good_row(row, V2_COLUMNS) for row in range(3)]
    rows[1][V2_COLUMNS.index("Rate")] = text
    write_raw(raw, "Benign_train.pcap.csv", csv_text(V2_COLUMNS, rows))

    report, table = run_ingest(raw)

    assert len(table) == 3
    assert report.files[0].nonfinite == {"Rate": {NONFINITE_KINDS[text]: 1}}
    assert_accounting(report)
    rate = table["Rate"].to_numpy()
    if NONFINITE_KINDS[text] == "nan":
        assert np.isnan(rate[1])
    elif text == "-inf":
        assert np.isneginf(rate[1])
    else:
        assert np.isposinf(rate[1])
    assert np.isfinite(rate[[0, 2]]).all()


def test_nonfinite_counted_per_file_column(tmp_path):
    raw = tmp_path / "raw"
    first = [good_row(row, V2_COLUMNS) for row in range(4)]
    first[0][V2_COLUMNS.index("Rate")] = "inf"
    first[2][V2_COLUMNS.index("Rate")] = "Infinity"
    first[3][V2_COLUMNS.index("Std")] = ""
    second = [good_row(row, V2_COLUMNS) for row in range(2)]
    second[1][V2_COLUMNS.index("IAT")] = "-inf"
    write_raw(raw, "Benign_train.pcap.csv", csv_text(V2_COLUMNS, first))
    write_raw(raw, "ARP_Spoofing_train.pcap.csv", csv_text(V2_COLUMNS, second))

    report, _ = run_ingest(raw)
    per_file = {file_report.file: file_report.nonfinite for file_report in report.files}

    assert per_file["train/Benign_train.pcap.csv"] == {"Rate": {"pos_inf": 2}, "Std": {"nan": 1}}
    assert per_file["train/ARP_Spoofing_train.pcap.csv"] == {"IAT": {"neg_inf": 1}}
    assert report.nonfinite_per_column()["Rate"] == {"pos_inf": 2}


# --- a cell that is not a number


@pytest.mark.parametrize(
    ("lines_above", "line"),
    [
        ([], 4),
        ([""], 5),  # pyarrow skips blank lines, but the line number counts them
        (["<header>"], 5),  # a repeated header sends the file through the text reader
    ],
    ids=["plain", "blank_line_above", "header_above"],
)
def test_non_numeric_cell_error(tmp_path, lines_above, line):
    raw = tmp_path / "raw"
    rows = [good_row(row, V2_COLUMNS) for row in range(3)]
    rows[2][V2_COLUMNS.index("Tot sum")] = "abc"
    text_rows = [",".join(row) for row in rows]
    above = [",".join(V2_COLUMNS) if entry == "<header>" else entry for entry in lines_above]
    lines = [",".join(V2_COLUMNS), text_rows[0]] + above + text_rows[1:]
    path = write_raw(raw, "Benign_train.pcap.csv", "\n".join(lines) + "\n")

    message = ingest_error(raw)

    assert str(path) in message
    assert f"line {line}," in message
    assert "'Tot sum'" in message
    assert "'abc'" in message
    assert "Fix or delete that line" in message


# --- encodings, line ends and odd files


def test_bom_read(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, "Benign_train.pcap.csv", "\ufeff" + good_csv(2))

    report, table = run_ingest(raw)

    assert report.layout == "v2"
    assert table["Header_Length"].tolist() == [value(0, "Header_Length"), value(1, "Header_Length")]


def test_crlf_read(tmp_path):
    raw = tmp_path / "raw"
    rows = [good_row(row, V2_COLUMNS) for row in range(2)]
    write_raw(raw, "Benign_train.pcap.csv", csv_text(V2_COLUMNS, rows, newline="\r\n"))

    report, table = run_ingest(raw)

    assert len(table) == 2
    assert table["Variance"].tolist() == [value(0, "Variance"), value(1, "Variance")]
    assert_accounting(report)


def test_header_spaces_stripped(tmp_path):
    raw = tmp_path / "raw"
    header = [f"  {column} " for column in V2_COLUMNS]
    rows = [good_row(row, V2_COLUMNS) for row in range(2)]
    write_raw(raw, "Benign_train.pcap.csv", csv_text(header, rows))

    report, table = run_ingest(raw)

    assert report.layout == "v2"
    assert list(table.columns) == list(V2_COLUMNS) + LABEL_COLUMNS
    assert table["Tot sum"].tolist() == [value(0, "Tot sum"), value(1, "Tot sum")]


def test_gzip_read(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, "Benign_train.pcap.csv.gz", gzip.compress(good_csv(3).encode()))

    report, table = run_ingest(raw)

    assert len(table) == 3
    assert report.files[0].file == "train/Benign_train.pcap.csv.gz"
    assert table["Rate"].iloc[2] == value(2, "Rate")


def test_nested_folders_read(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, "wifi/day1/Benign_train.pcap.csv", good_csv(2))
    write_raw(raw, "mqtt/MQTT-Malformed_Data_test.pcap.csv", good_csv(3), split="test")

    report, table = run_ingest(raw)

    assert len(table) == 5
    assert sorted(file_report.file for file_report in report.files) == [
        "test/mqtt/MQTT-Malformed_Data_test.pcap.csv",
        "train/wifi/day1/Benign_train.pcap.csv",
    ]
    assert set(table.loc[table["class"] == "Benign", "source_split"]) == {"train"}
    assert set(table.loc[table["class"] == "MQTT-Malformed_Data", "source_split"]) == {"test"}


def test_empty_file_reported(tmp_path, caplog):
    raw = tmp_path / "raw"
    write_raw(raw, "Benign_train.pcap.csv", good_csv(2))
    path = write_raw(raw, "ARP_Spoofing_train.pcap.csv", b"")

    with caplog.at_level(logging.WARNING, logger="iomt_ids.data.ingest"):
        report, table = run_ingest(raw)
    empty = next(r for r in report.files if r.class_name == "ARP_Spoofing")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    assert warnings == [f"{path}: empty file, so class ARP_Spoofing gets no flows from this file. "
                        f"Replace it with the release file or remove it."]
    assert empty.empty
    assert empty.rows_read == 0
    assert empty.rows_kept == 0
    assert len(table) == 2
    assert_accounting(report)


def test_truncated_gzip_error(tmp_path):
    raw = tmp_path / "raw"
    data = gzip.compress(good_csv(2000).encode())
    path = write_raw(raw, "Benign_train.pcap.csv.gz", data[: len(data) // 2])

    message = ingest_error(raw)

    assert message.startswith(f"{path}: damaged gzip data")
    assert "Copy the file again" in message


def test_only_empty_files_error(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, "Benign_train.pcap.csv", b"")

    message = ingest_error(raw)

    assert str(raw) in message
    assert "empty" in message
    assert "Download the files again" in message


@pytest.mark.parametrize("line_end", ["\n", ""], ids=["line_end", "no_line_end"])
def test_header_only_file(tmp_path, caplog, line_end):
    raw = tmp_path / "raw"
    path = write_raw(raw, "Benign_train.pcap.csv", ",".join(V2_COLUMNS) + line_end)

    with caplog.at_level(logging.WARNING, logger="iomt_ids.data.ingest"):
        report, table = run_ingest(raw)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(table) == 0
    assert report.files[0].rows_read == 0
    assert not report.files[0].empty
    assert len(warnings) == 1
    assert f"{path}: header line only" in warnings[0]
    assert "class Benign gets no flows" in warnings[0]


def test_blank_first_line_error(tmp_path):
    raw = tmp_path / "raw"
    path = write_raw(raw, "Benign_train.pcap.csv", "\n" + good_csv(2))

    message = ingest_error(raw)

    assert str(path) in message
    assert "line 1" in message
    assert "Delete the blank line" in message


def test_truncated_last_line_dropped(tmp_path):
    raw = tmp_path / "raw"
    cut = ",".join(good_row(3, V2_COLUMNS)[:7])[:-2]  # ends inside the 7th field, no line end
    write_raw(raw, "Benign_train.pcap.csv", good_csv(3) + cut)

    report, table = run_ingest(raw)

    assert len(table) == 3
    assert report.files[0].rows_read == 4
    assert report.files[0].rows_dropped == {"truncated_last_line": 1}
    assert report.totals()["rows_dropped_truncated_last_line"] == 1
    assert_accounting(report)


@pytest.mark.parametrize("n_fields", [5, len(V2_COLUMNS) + 1], ids=["short", "long"])
def test_bad_field_count_middle_error(tmp_path, n_fields):
    raw = tmp_path / "raw"
    rows = [good_row(row, V2_COLUMNS) for row in range(4)]
    rows[1] = (rows[1] + ["1.0"])[:n_fields]
    path = write_raw(raw, "Benign_train.pcap.csv", csv_text(V2_COLUMNS, rows))

    message = ingest_error(raw)

    assert str(path) in message
    assert "line 3:" in message
    assert f"{n_fields} fields" in message
    assert "Repair or delete that line" in message


def test_long_last_line_error(tmp_path):
    # Only a line with too few fields can be a cut-off download.
    raw = tmp_path / "raw"
    rows = [good_row(row, V2_COLUMNS) for row in range(3)]
    rows[2].append("1.0")
    path = write_raw(raw, "Benign_train.pcap.csv", csv_text(V2_COLUMNS, rows))

    message = ingest_error(raw)

    assert str(path) in message
    assert "line 4:" in message
    assert f"{len(V2_COLUMNS) + 1} fields" in message


@pytest.mark.parametrize("bom", ["", "\ufeff"], ids=["plain", "bom"])
def test_repeated_header_dropped(tmp_path, bom):
    raw = tmp_path / "raw"
    first = bom + good_csv(2)
    second = bom + csv_text(V2_COLUMNS, [good_row(row, V2_COLUMNS) for row in range(2, 5)])
    write_raw(raw, "Benign_train.pcap.csv", first + second)

    report, table = run_ingest(raw)

    assert len(table) == 5
    assert report.files[0].rows_read == 6
    assert report.files[0].rows_dropped == {"repeated_header": 1}
    assert report.totals()["rows_dropped_repeated_header"] == 1
    assert table["Rate"].tolist() == [value(row, "Rate") for row in range(5)]
    assert_accounting(report)


def test_repeated_header_truncated_last(tmp_path):
    # Both drop reasons in one file: the text reader must count the cut line too.
    raw = tmp_path / "raw"
    cut = ",".join(good_row(9, V2_COLUMNS)[:3])
    write_raw(raw, "Benign_train.pcap.csv", good_csv(2) + good_csv(2) + cut)

    # The joined copies repeat the same rows, which this case keeps.
    report, table = run_ingest(raw, duplicates="none")

    assert len(table) == 4
    assert report.files[0].rows_dropped == {"repeated_header": 1, "truncated_last_line": 1}
    assert_accounting(report)


def test_repeated_header_short_line_error(tmp_path):
    raw = tmp_path / "raw"
    rows = [good_row(row, V2_COLUMNS) for row in range(3)]
    rows[1] = rows[1][:5]
    path = write_raw(raw, "Benign_train.pcap.csv", good_csv(1) + csv_text(V2_COLUMNS, rows))

    message = ingest_error(raw)

    assert str(path) in message
    assert "line 5:" in message


def test_quoted_numbers_read(tmp_path):
    raw = tmp_path / "raw"
    rows = [[f'"{text}"' for text in good_row(row, V2_COLUMNS)] for row in range(2)]
    rows[1][V2_COLUMNS.index("Rate")] = '"inf"'
    write_raw(raw, "Benign_train.pcap.csv", csv_text(V2_COLUMNS, rows))

    report, table = run_ingest(raw)

    assert table["Header_Length"].tolist() == [value(0, "Header_Length"), value(1, "Header_Length")]
    assert report.files[0].nonfinite == {"Rate": {"pos_inf": 1}}


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01\x02\x03\x04\n\x05\x06",
        bytes(range(128, 256)) * 8,
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    ],
    ids=["nul_bytes", "high_bytes", "png"],
)
def test_binary_file_error(tmp_path, content):
    raw = tmp_path / "raw"
    path = write_raw(raw, "Benign_train.pcap.csv", content)

    message = ingest_error(raw)

    assert str(path) in message
    assert "not a" in message
    assert "remove it from the input folder" in message.lower()


def test_binary_after_header_error(tmp_path):
    # The header check decodes only the first chunk of the file, so these bytes reach pyarrow.
    raw = tmp_path / "raw"
    content = good_csv(300).encode() + b"\xff\xfe," * (len(V2_COLUMNS) - 1) + b"1\n"
    path = write_raw(raw, "Benign_train.pcap.csv", content)

    message = ingest_error(raw)

    assert str(path) in message
    assert "UTF-8" in message


def test_fake_gzip_error(tmp_path):
    raw = tmp_path / "raw"
    path = write_raw(raw, "Benign_train.pcap.csv.gz", good_csv(2))

    message = ingest_error(raw)

    assert str(path) in message
    assert "not a readable UTF-8 CSV file" in message


def test_gzip_without_gz_suffix_error(tmp_path):
    raw = tmp_path / "raw"
    path = write_raw(raw, "Benign_train.pcap.csv", gzip.compress(good_csv(2).encode()))

    message = ingest_error(raw)

    assert str(path) in message
    assert "gzip-compressed" in message
    assert "Rename it to Benign_train.pcap.csv.gz" in message


def test_html_file_error(tmp_path):
    raw = tmp_path / "raw"
    page = "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n"
    path = write_raw(raw, "Benign_train.pcap.csv", page)

    message = ingest_error(raw)

    assert str(path) in message
    assert "'<!DOCTYPE html>'" in message
    assert "not a CICIoMT2024 header" in message
    assert "Replace the file" in message


def test_failed_ingest_leaves_no_file(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, "ARP_Spoofing_train.pcap.csv", good_csv(2))
    rows = [good_row(row, V2_COLUMNS) for row in range(2)]
    rows[1][0] = "abc"
    write_raw(raw, "Benign_train.pcap.csv", csv_text(V2_COLUMNS, rows))
    out_dir = tmp_path / "out"

    with pytest.raises(DataError):
        ingest(raw, out_dir / "ingested.parquet")

    assert list(out_dir.iterdir()) == []


def test_no_csv_files_error(tmp_path, caplog):
    raw = tmp_path / "raw"
    write_raw(raw, "README.txt", "not data\n")
    (raw / "Benign_train.pcap.csv").write_text(good_csv(2))  # outside train/ and test/

    with caplog.at_level(logging.WARNING, logger="iomt_ids.data.ingest"):
        message = ingest_error(raw)

    assert str(raw) in message
    assert "no CSV files found" in message
    assert "Place the" in message
    assert "Benign_train.pcap.csv. Move them into" in caplog.text


def test_files_outside_splits_warned(tmp_path, caplog):
    raw = tmp_path / "raw"
    write_raw(raw, "Benign_train.pcap.csv", good_csv(2))
    (raw / "ARP_Spoofing_train.pcap.csv").write_text(good_csv(3))
    write_raw(raw, "Recon-VulScan_train.pcap.csv", good_csv(3), split="Train")

    with caplog.at_level(logging.WARNING, logger="iomt_ids.data.ingest"):
        report, table = run_ingest(raw)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(table) == 2
    assert [r.class_name for r in report.files] == ["Benign"]
    assert len(warnings) == 1
    assert "ignoring 2 CSV file(s) outside its train/ and test/ folders" in warnings[0]
    assert "ARP_Spoofing_train.pcap.csv, Train/Recon-VulScan_train.pcap.csv" in warnings[0]
    assert f"Move them into {raw}/train/ or {raw}/test/" in warnings[0]


def test_many_files_outside_splits_counted(tmp_path, caplog):
    raw = tmp_path / "raw"
    write_raw(raw, "Benign_train.pcap.csv", good_csv(2))
    for index in range(12):
        (raw / f"Benign{index:02d}_train.pcap.csv").write_text(good_csv(1))

    with caplog.at_level(logging.WARNING, logger="iomt_ids.data.ingest"):
        run_ingest(raw)

    warning = next(r.getMessage() for r in caplog.records if "outside" in r.getMessage())
    assert "ignoring 12 CSV file(s)" in warning
    assert "Benign09_train.pcap.csv and 2 more." in warning
    assert "Benign10_train.pcap.csv" not in warning


def test_files_in_splits_no_warning(tmp_path, caplog):
    raw = tmp_path / "raw"
    write_raw(raw, "Benign_train.pcap.csv", good_csv(2))
    write_raw(raw, "Benign_test.pcap.csv", good_csv(2), split="test")
    (raw / "download.lock.json").write_text("{}")

    with caplog.at_level(logging.WARNING, logger="iomt_ids.data.ingest"):
        run_ingest(raw)

    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == []


def test_missing_raw_folder_error(tmp_path):
    raw = tmp_path / "missing"

    message = ingest_error(raw)

    assert str(raw) in message
    assert "not found" in message
    assert "set data.raw_dir" in message


# --- columns matched by name


@pytest.mark.parametrize("columns", [V1_COLUMNS, V2_COLUMNS], ids=["v1", "v2"])
def test_shuffled_columns_same_output(tmp_path, columns):
    rows = [good_row(row, columns) for row in range(4)]
    rows[2][columns.index("Rate")] = "inf"
    order = list(range(len(columns)))
    random.Random(7).shuffle(order)
    shuffled_header = [columns[index] for index in order]
    shuffled_rows = [[row[index] for index in order] for row in rows]
    write_raw(tmp_path / "ordered", "Benign_train.pcap.csv", csv_text(columns, rows))
    write_raw(tmp_path / "shuffled", "Benign_train.pcap.csv", csv_text(shuffled_header, shuffled_rows))

    ordered_report, ordered = run_ingest(tmp_path / "ordered")
    shuffled_report, shuffled = run_ingest(tmp_path / "shuffled")

    assert shuffled_header != list(columns)
    pd.testing.assert_frame_equal(shuffled, ordered)
    assert shuffled_report.files[0].nonfinite == ordered_report.files[0].nonfinite


# --- labels from file names


def test_label_mapping_all_classes(tmp_path):
    raw = tmp_path / "raw"
    expected: dict[str, str] = {}
    for index, class_name in enumerate(CLASSES):
        expected[f"train/{class_name}_train.pcap.csv"] = class_name
        write_raw(raw, f"{class_name}_train.pcap.csv", good_csv(1 + index % 3))
    expected["test/TCP_IP-DDoS-UDP2_test.pcap.csv"] = "TCP_IP-DDoS-UDP"
    write_raw(raw, "TCP_IP-DDoS-UDP2_test.pcap.csv", good_csv(2), split="test")

    report, table = run_ingest(raw)
    labels = table.groupby("source_file", observed=True)[["class", "category", "binary"]].agg(set)

    assert sorted(labels.index) == sorted(expected)
    assert set(table["class"]) == set(CLASSES)
    for source_file, class_name in expected.items():
        assert labels.loc[source_file, "class"] == {class_name}, source_file
        assert labels.loc[source_file, "category"] == {CATEGORY_OF[class_name]}, source_file
        binary = "Benign" if class_name == "Benign" else "Attack"
        assert labels.loc[source_file, "binary"] == {binary}, source_file
    train_rows = 1 + CLASSES.index("TCP_IP-DDoS-UDP") % 3
    assert report.rows_per_class()["TCP_IP-DDoS-UDP"] == {"train": train_rows, "test": 2}


def test_numbered_capture_class(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, "TCP_IP-DDoS-ICMP3_train.pcap.csv", good_csv(2))

    report, table = run_ingest(raw)

    assert report.files[0].class_name == "TCP_IP-DDoS-ICMP"
    assert set(table["category"]) == {"DDoS"}
    assert set(table["binary"]) == {"Attack"}


# --- row accounting under random damage

LINE_KINDS = st.one_of(
    st.just(("good", None, None)),
    st.just(("header", None, None)),
    st.just(("duplicate", None, None)),
    st.tuples(
        st.just("nonfinite"),
        st.integers(0, len(V2_COLUMNS) - 1),
        st.sampled_from(sorted(NONFINITE_KINDS)),
    ),
)
RAW_FILE = st.tuples(
    st.lists(LINE_KINDS, max_size=12),
    st.none() | st.integers(1, len(V2_COLUMNS) - 1),  # fields left in a truncated last line
)


def damaged_csv(lines: list[tuple], truncated_fields: int | None) -> str:
    """Write a v2 file with the given kinds of data lines, and optionally a cut-off last line."""
    text_lines = [",".join(V2_COLUMNS)]
    for row, (kind, column, cell_text) in enumerate(lines):
        if kind == "header":
            text_lines.append(",".join(V2_COLUMNS))
            continue
        if kind == "duplicate":
            # A copy of the line above, or of the header when there is no data line yet.
            text_lines.append(text_lines[-1])
            continue
        values = good_row(row, V2_COLUMNS)
        if kind == "nonfinite":
            values[column] = cell_text
        text_lines.append(",".join(values))
    text = "\n".join(text_lines) + "\n"
    if truncated_fields is not None:
        text += ",".join(good_row(99, V2_COLUMNS)[:truncated_fields])
    return text


def expected_counts(kinds: list[str], truncated_fields: int | None) -> dict[str, int]:
    """Return the rows a damaged file should keep and drop, per reason, under float32 duplicates.

    A "duplicate" line copies the line above it, so it repeats whatever that line was.
    """
    counts = {"kept": 0, "repeated_header": 0, "duplicate": 0,
              "truncated_last_line": int(truncated_fields is not None)}
    previous = "header"
    for kind in kinds:
        if kind == "duplicate":
            kind = "repeat_header" if previous == "header" else "repeat_row"
        if kind in ("header", "repeat_header"):
            counts["repeated_header"] += 1
            previous = "header"
        elif kind == "repeat_row":
            counts["duplicate"] += 1
        else:
            counts["kept"] += 1
            previous = "row"
    return counts


@settings(max_examples=30, deadline=None)
@given(files=st.lists(RAW_FILE, min_size=1, max_size=3))
def test_accounting_random_damage(tmp_path_factory, files):
    raw = tmp_path_factory.mktemp("damage") / "raw"
    expected = {}
    for index, (lines, truncated_fields) in enumerate(files):
        name = f"{CLASSES[index]}_train.pcap.csv"
        write_raw(raw, name, damaged_csv(lines, truncated_fields))
        expected[f"train/{name}"] = expected_counts([kind for kind, _, _ in lines], truncated_fields)

    report, table = run_ingest(raw)

    assert_accounting(report)
    for file_report in report.files:
        counts = expected[file_report.file]
        assert file_report.rows_kept == counts["kept"], file_report.file
        assert file_report.rows_dropped.get("repeated_header", 0) == counts["repeated_header"]
        assert file_report.rows_dropped.get("truncated_last_line", 0) == counts["truncated_last_line"]
        assert file_report.rows_dropped.get("duplicate", 0) == counts["duplicate"]
    assert len(table) == sum(counts["kept"] for counts in expected.values())
    assert report.totals()["rows_kept"] == len(table)


# --- the real rows


def real_folder(shared_data_dir: Path, name: str) -> Path:
    folder = shared_data_dir / name
    if not folder.is_dir():
        pytest.skip(f"real data folder {folder} not found")
    return folder


@pytest.mark.sample
def test_real_v2_sample(tmp_path, shared_data_dir):
    raw = real_folder(shared_data_dir, "ciciomt2024-v2-sample")

    report = ingest(raw, tmp_path / "v2.parquet", duplicates="none")
    table = pq.read_table(tmp_path / "v2.parquet", columns=["Rate", "class"]).to_pandas()

    assert report.layout == "v2"
    assert report.totals()["rows_kept"] == 68_853
    assert len(table) == 68_853
    assert set(table["class"]) == set(CLASSES)
    assert report.nonfinite_per_column()["Rate"]["pos_inf"] > 0
    assert np.isposinf(table["Rate"]).sum() == report.nonfinite_per_column()["Rate"]["pos_inf"]
    assert_accounting(report)


@pytest.mark.sample
def test_real_v1_partial(tmp_path, shared_data_dir):
    raw = real_folder(shared_data_dir, "ciciomt2024-v1-partial")

    report = ingest(raw, tmp_path / "v1.parquet", duplicates="none")
    table = pq.read_table(tmp_path / "v1.parquet", columns=["class", "source_split"]).to_pandas()

    assert report.layout == "v1"
    assert report.totals()["rows_kept"] == 49_413
    assert len(table) == 49_413
    assert set(table["source_split"]) == {"train", "test"}
    assert report.rows_per_class()["Recon-Ping_Sweep"] == {"train": 740, "test": 186}
    assert_accounting(report)
