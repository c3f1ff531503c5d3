"""Batch prediction and capture evaluation on real CSV files written to tmp_path.

The fast cases use a classifier with a fitted preprocessing and untrained
weights, saved to a folder: they check reading, row accounting, output and
errors, which do not depend on what the network learnt. The slow cases train,
evaluate and promote a model with the real pipeline and load the champion
from a real MLflow sqlite store.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch

from iomt_ids import cli
from iomt_ids.data.errors import DataError
from iomt_ids.data.preprocessing import FeaturePreprocessor
from iomt_ids.data.prepared import NON_FEATURE_COLUMNS, read_split
from iomt_ids.data.schema import V1_COLUMNS, V2_COLUMNS
from iomt_ids.models.published_cnn import PublishedCNN
from iomt_ids.metrics import classification_metrics
from iomt_ids.serving.commands import format_metrics, format_summary
from iomt_ids.serving.flow_classifier import FlowClassifier
from iomt_ids.serving.predict import _line_blocks, load_classifier, predict_captures
from promoted import CHAMPION_URI, promote_category_model

CLASS_NAMES = ["Benign", "Spoofing", "MQTT", "Recon", "DDoS", "DoS"]


# --- helpers


def untrained_classifier(columns: tuple[str, ...] = V2_COLUMNS, seed: int = 0) -> FlowClassifier:
    """Build a category classifier with random weights and a preprocessing fitted on random flows."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    preprocessor = FeaturePreprocessor.fit(rng.normal(size=(200, len(columns))).astype(np.float32), list(columns))
    net_config = {"_target_": "iomt_ids.models.published_cnn.PublishedCNN"}
    network = PublishedCNN(n_features=len(columns), n_classes=len(CLASS_NAMES)).eval()
    layout = "v2" if columns == V2_COLUMNS else "v1"
    return FlowClassifier("category", list(CLASS_NAMES), layout, preprocessor, net_config, network)


def row_text(values) -> str:
    return ",".join(str(v) for v in values)


def write_csv(path: Path, header, rows: list[str], trailing_newline: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join([",".join(header), *rows]) + ("\n" if trailing_newline else "")
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def random_rows(n: int, n_columns: int = len(V2_COLUMNS), seed: int = 1) -> list[str]:
    values = np.random.default_rng(seed).normal(size=(n, n_columns)).astype(np.float32)
    return [row_text(row) for row in values]


def with_cells(rows: list[str], changes: list[tuple[int, str, str]], columns=V2_COLUMNS) -> list[str]:
    """Return ``rows`` with the cell of each (row index, column, text) change replaced by its text."""
    cells = [row.split(",") for row in rows]
    for row, column, text in changes:
        cells[row][columns.index(column)] = text
    return [",".join(row) for row in cells]


def predict_error(classifier: FlowClassifier, input_path: Path) -> str:
    """Predict ``input_path``, expecting DataError, and return its message."""
    with pytest.raises(DataError) as error:
        predict_captures(classifier, input_path)
    return str(error.value)


def expected_predictions(classifier: FlowClassifier, rows: list[str], columns=V2_COLUMNS) -> pd.DataFrame:
    """Predict rows through the DataFrame API, the reference for the streamed command."""
    values = [[float(cell) if cell else np.nan for cell in row.split(",")] for row in rows]
    return classifier.predict(pd.DataFrame(values, columns=list(columns)))


@pytest.fixture
def classifier() -> FlowClassifier:
    return untrained_classifier()


# --- fast cases: reading, output, accounting, errors


def test_predict_writes_row_per_flow(tmp_path, classifier):
    rows = random_rows(50)
    write_csv(tmp_path / "in" / "capture.csv", V2_COLUMNS, rows)
    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")

    written = pd.read_csv(tmp_path / "out.csv")
    expected = expected_predictions(classifier, rows)
    assert summary.n_flows == 50
    assert list(written.columns) == ["source_file", "row", "predicted_class", "probability"]
    assert (written["source_file"] == "capture.csv").all()
    assert list(written["row"]) == list(range(1, 51))
    assert list(written["predicted_class"]) == list(expected["predicted_class"])
    np.testing.assert_allclose(written["probability"], expected["probability"], rtol=1e-5)


def test_all_probabilities_parquet(tmp_path, classifier):
    rows = random_rows(30)
    write_csv(tmp_path / "in" / "capture.csv", V2_COLUMNS, rows)
    predict_captures(classifier, tmp_path / "in", tmp_path / "out.parquet", all_probabilities=True)

    written = pq.read_table(tmp_path / "out.parquet").to_pandas()
    expected = expected_predictions(classifier, rows)
    probability_columns = [f"probability_{name}" for name in CLASS_NAMES]
    assert list(written.columns[4:]) == probability_columns
    np.testing.assert_allclose(written[probability_columns].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(written[probability_columns], expected[probability_columns], rtol=1e-5, atol=1e-7)


def test_small_blocks_same_predictions(tmp_path, classifier):
    rows = random_rows(2000)
    write_csv(tmp_path / "in" / "capture.csv", V2_COLUMNS, rows)
    predict_captures(classifier, tmp_path / "in", tmp_path / "whole.csv")
    predict_captures(classifier, tmp_path / "in", tmp_path / "blocks.csv", block_size=4096)

    whole = pd.read_csv(tmp_path / "whole.csv")
    blocks = pd.read_csv(tmp_path / "blocks.csv")
    pd.testing.assert_frame_equal(whole, blocks)


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize("block_size", [100, 3000])
def test_line_blocks_keep_every_row(tmp_path, classifier, line_end, suffix, block_size):
    # 100 bytes is shorter than one row (about 400 bytes), and 3,000 bytes contain several rows.
    rows = random_rows(40)
    text = line_end.join([",".join(V2_COLUMNS), *rows, "", ""])
    path = tmp_path / "in" / f"capture{suffix}"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(text.encode()) if suffix.endswith(".gz") else text.encode())

    blocks = list(_line_blocks(path, block_size))
    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv", block_size=block_size)

    # A "\r\n" may be cut in two, which leaves an empty line that pyarrow skips.
    assert [line for line in b"".join(blocks).decode().splitlines() if line] == rows
    assert all(block.endswith((b"\n", b"\r")) for block in blocks)
    assert len(blocks) > 1
    assert summary.n_flows == 40
    written = pd.read_csv(tmp_path / "out.csv")
    assert list(written["row"]) == list(range(1, 41))
    assert list(written["predicted_class"]) == list(expected_predictions(classifier, rows)["predicted_class"])


def test_line_blocks_last_line_without_end(tmp_path):
    path = write_csv(tmp_path / "capture.csv", ["a", "b"], ["1,2", "3,4"], trailing_newline=False)
    assert list(_line_blocks(path, 4)) == [b"1,2\n", b"3,4"]


def test_folder_nested_gzip_shuffled(tmp_path, classifier):
    rows = random_rows(20)
    shuffled = list(reversed(V2_COLUMNS))
    shuffled_rows = [row_text(list(reversed(row.split(",")))) for row in rows]
    write_csv(tmp_path / "in" / "a" / "first.csv.gz", V2_COLUMNS, rows)
    write_csv(tmp_path / "in" / "b" / "second.csv", shuffled, shuffled_rows)
    write_csv(tmp_path / "in" / "notes.txt", ["not", "a", "capture"], [])
    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")

    written = pd.read_csv(tmp_path / "out.csv")
    first = written[written["source_file"] == "a/first.csv.gz"]
    second = written[written["source_file"] == "b/second.csv"]
    assert summary.n_flows == 40
    assert list(first["predicted_class"]) == list(second["predicted_class"])
    np.testing.assert_allclose(first["probability"], second["probability"], rtol=1e-6)


def test_single_file_input(tmp_path, classifier):
    path = write_csv(tmp_path / "night.csv", V2_COLUMNS, random_rows(5))
    summary = predict_captures(classifier, path, tmp_path / "out.csv")
    written = pd.read_csv(tmp_path / "out.csv")
    assert summary.n_flows == 5
    assert set(written["source_file"]) == {"night.csv"}


def test_missing_columns_named(tmp_path, classifier):
    write_csv(tmp_path / "in" / "old.csv", V1_COLUMNS, random_rows(3, len(V1_COLUMNS)))
    with pytest.raises(DataError) as error:
        predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")
    assert "'Time_To_Live'" in str(error.value)
    assert "old.csv" in str(error.value)
    assert not (tmp_path / "out.csv").exists()


def test_v1_file_v2_model_layouts_named(tmp_path, classifier):
    write_csv(tmp_path / "in" / "old.csv", V1_COLUMNS, random_rows(3, len(V1_COLUMNS)))
    message = predict_error(classifier, tmp_path / "in")

    assert "The file has the v1 layout (45 columns)" in message
    assert "the model expects the v2 layout (39 columns)" in message
    assert "Pass a model trained on v1 files (--model)" in message
    assert "convert the file to the v2 layout" in message


def test_v2_file_v1_model_layouts_named(tmp_path):
    write_csv(tmp_path / "in" / "new.csv", V2_COLUMNS, random_rows(3))
    message = predict_error(untrained_classifier(V1_COLUMNS), tmp_path / "in")

    assert "missing column(s) 'Duration', 'Srate', 'Drate', 'Magnitue', 'Radius', 'Covariance', 'Weight'" in message
    assert "The file has the v2 layout (39 columns)" in message
    assert "the model expects the v1 layout (45 columns)" in message
    assert "Pass a model trained on v2 files (--model)" in message


def test_incomplete_header_no_layout_named(tmp_path, classifier):
    columns = [column for column in V2_COLUMNS if column != "IAT"]
    write_csv(tmp_path / "in" / "cut.csv", columns, random_rows(3, len(columns)))
    message = predict_error(classifier, tmp_path / "in")

    assert "missing column(s) 'IAT'" in message
    assert "neither every column of the v1 layout" in message
    assert "the model expects the v2 layout" in message


def test_extra_column_ignored(tmp_path, classifier, caplog):
    rows = random_rows(4)
    write_csv(tmp_path / "in" / "capture.csv", (*V2_COLUMNS, "Label"), [row + ",x" for row in rows])
    predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")
    written = pd.read_csv(tmp_path / "out.csv")
    assert list(written["predicted_class"]) == list(expected_predictions(classifier, rows)["predicted_class"])
    assert "Label" in caplog.text


def test_nonfinite_cells_filled_counted(tmp_path, classifier):
    damaged = with_cells(random_rows(4), [(0, "Rate", "inf"), (1, "Rate", "-inf"), (2, "Std", ""), (3, "Std", "NaN")])
    write_csv(tmp_path / "in" / "capture.csv", V2_COLUMNS, damaged)
    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")

    report = summary.files[0]
    written = pd.read_csv(tmp_path / "out.csv")
    assert report.nonfinite == {"Rate": {"pos_inf": 1, "neg_inf": 1}, "Std": {"nan": 2}}
    assert report.rows_kept == 4
    assert list(written["predicted_class"]) == list(expected_predictions(classifier, damaged)["predicted_class"])


def test_summary_counts_nonfinite_per_kind(tmp_path, classifier):
    changes = [(0, "Rate", "inf"), (1, "Rate", "inf"), (2, "Rate", "-inf"), (3, "Std", ""), (4, "Std", "NaN")]
    write_csv(tmp_path / "in" / "a.csv", V2_COLUMNS, with_cells(random_rows(5), changes))
    write_csv(tmp_path / "in" / "b.csv", V2_COLUMNS, with_cells(random_rows(3), [(0, "Std", "")]))
    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")

    nonfinite_line = format_summary(summary).splitlines()[1]
    assert "pos_inf 2, neg_inf 1, nan 3;" in nonfinite_line
    assert "top columns: Rate 3, Std 3" in nonfinite_line


def test_summary_names_top_columns(tmp_path, classifier):
    # Column k gets k + 1 NaN cells, so "Max" has the fewest and "Rate" the most.
    columns = ["Rate", "Std", "IAT", "Variance", "Number", "Tot sum", "Max"]
    changes = [(row, column, "") for k, column in enumerate(reversed(columns)) for row in range(k + 1)]
    write_csv(tmp_path / "in" / "capture.csv", V2_COLUMNS, with_cells(random_rows(7), changes))
    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")

    nonfinite_line = format_summary(summary).splitlines()[1]
    assert "nan 28;" in nonfinite_line
    assert "top columns: Rate 7, Std 6, IAT 5, Variance 4, Number 3 and 2 more column(s)" in nonfinite_line
    assert "Max" not in nonfinite_line


def test_summary_without_nonfinite_cells(tmp_path, classifier):
    write_csv(tmp_path / "in" / "capture.csv", V2_COLUMNS, random_rows(3))
    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")

    assert format_summary(summary).splitlines()[1] == "non-finite cells: none"


def test_cli_predict_prints_nonfinite(tmp_path, classifier, capsys):
    classifier.save(tmp_path / "model")
    write_csv(tmp_path / "in" / "capture.csv", V2_COLUMNS, with_cells(random_rows(2), [(1, "IAT", "-inf")]))
    code = cli.main(["--params", str(tmp_path / "none.yaml"), "predict", str(tmp_path / "in"),
                     "--model", str(tmp_path / "model"), "--output", str(tmp_path / "out.csv"), "--no-progress"])

    printed = capsys.readouterr().out
    assert code == 0
    assert "neg_inf 1; top columns: IAT 1" in printed


def test_repeated_header_dropped_counted(tmp_path, classifier):
    rows = random_rows(600)
    joined = rows[:300] + [",".join(V2_COLUMNS)] + rows[300:]
    write_csv(tmp_path / "in" / "joined.csv", V2_COLUMNS, joined)
    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv", block_size=4096)

    report = summary.files[0]
    written = pd.read_csv(tmp_path / "out.csv")
    assert report.rows_dropped == {"repeated_header": 1}
    # The file name names no class, and the whole-file reader needs none.
    assert report.class_name == ""
    assert report.rows_read == 601
    assert report.rows_kept == 600
    assert list(written["row"]) == list(range(1, 601))
    assert list(written["predicted_class"]) == list(expected_predictions(classifier, rows)["predicted_class"])


def test_truncated_last_line_dropped(tmp_path, classifier):
    rows = random_rows(10)
    truncated = rows + [",".join(rows[0].split(",")[:5])]
    write_csv(tmp_path / "in" / "cut.csv", V2_COLUMNS, truncated, trailing_newline=False)
    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")

    report = summary.files[0]
    assert report.rows_dropped == {"truncated_last_line": 1}
    assert report.rows_kept == 10
    assert summary.n_flows == 10


def test_bad_cell_error_leaves_no_output(tmp_path, classifier):
    cells = [row.split(",") for row in random_rows(5)]
    cells[3][V2_COLUMNS.index("IAT")] = "12:00"
    write_csv(tmp_path / "in" / "bad.csv", V2_COLUMNS, [",".join(row) for row in cells])
    with pytest.raises(DataError) as error:
        predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")
    assert "line 5" in str(error.value)
    assert "'IAT'" in str(error.value)
    assert not (tmp_path / "out.csv").exists()
    assert not (tmp_path / "out.csv.partial").exists()


@pytest.mark.parametrize("damage", ["truncated", "flipped_byte"])
def test_damaged_gzip_error(tmp_path, classifier, damage):
    text = "\n".join([",".join(V2_COLUMNS), *random_rows(300)]) + "\n"
    data = bytearray(gzip.compress(text.encode()))
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    path = tmp_path / "in" / "capture.csv.gz"
    path.parent.mkdir()
    path.write_bytes(bytes(data))

    message = predict_error(classifier, tmp_path / "in")

    assert message.startswith(f"{path}: damaged gzip data")
    assert "Copy the file again" in message
    assert not (tmp_path / "in" / "out.csv.partial").exists()


def test_upper_case_gzip_irregular_lines(tmp_path, classifier):
    rows = random_rows(20)
    text = "\n".join([",".join(V2_COLUMNS), *rows[:10], ",".join(V2_COLUMNS), *rows[10:]]) + "\n"
    path = tmp_path / "in" / "CAPTURE.CSV.GZ"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(text.encode()))

    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")

    written = pd.read_csv(tmp_path / "out.csv")
    assert summary.n_flows == 20
    assert summary.files[0].rows_dropped == {"repeated_header": 1}
    assert list(written["predicted_class"]) == list(expected_predictions(classifier, rows)["predicted_class"])


@pytest.mark.parametrize("block_is_file", [False, True], ids=["default_block", "block_of_file_size"])
def test_spaces_line_error_any_block_size(tmp_path, classifier, block_is_file):
    path = write_csv(tmp_path / "in" / "capture.csv", V2_COLUMNS, random_rows(5))
    # A block as long as the clean file leaves the line of spaces alone in the last block.
    block_size = path.stat().st_size if block_is_file else 4 << 20
    with path.open("a") as handle:
        handle.write("   \n")

    with pytest.raises(DataError) as error:
        predict_captures(classifier, tmp_path / "in", block_size=block_size)

    assert "line 7" in str(error.value)


def test_empty_file_reported(tmp_path, classifier, caplog):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.csv").write_text("")
    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")

    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert summary.files[0].empty
    assert summary.n_flows == 0
    assert pd.read_csv(tmp_path / "out.csv").empty
    assert any("empty.csv: empty file" in message for message in warnings)
    assert format_summary(summary).splitlines()[2] == "1 file(s) without flows: empty.csv (empty)"


@pytest.mark.parametrize("line_end", ["\n", ""], ids=["line_end", "no_line_end"])
def test_header_only_file_reported(tmp_path, classifier, caplog, line_end):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "header.csv").write_text(",".join(V2_COLUMNS) + line_end)
    write_csv(tmp_path / "in" / "good.csv", V2_COLUMNS, random_rows(3))
    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")

    header_only = next(report for report in summary.files if report.file == "header.csv")
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert summary.n_flows == 3
    assert header_only.rows_read == 0
    assert not header_only.empty
    assert any("header.csv: header line only" in message for message in warnings)
    assert format_summary(summary).splitlines()[2] == "1 file(s) without flows: header.csv (header line only)"


def test_summary_names_files_without_flows(tmp_path, classifier):
    (tmp_path / "in").mkdir()
    for index in range(7):
        (tmp_path / "in" / f"empty{index}.csv").write_text("")
    summary = predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv")

    line = format_summary(summary).splitlines()[2]
    assert line.startswith("7 file(s) without flows: empty0.csv (empty), ")
    assert line.endswith("empty4.csv (empty) and 2 more file(s)")


def test_cli_predict_prints_files_without_flows(tmp_path, classifier, capsys):
    classifier.save(tmp_path / "model")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.csv").write_text("")
    (tmp_path / "in" / "header.csv").write_text(",".join(V2_COLUMNS) + "\n")
    write_csv(tmp_path / "in" / "good.csv", V2_COLUMNS, random_rows(2))
    code = cli.main(["--params", str(tmp_path / "none.yaml"), "predict", str(tmp_path / "in"),
                     "--model", str(tmp_path / "model"), "--output", str(tmp_path / "out.csv"), "--no-progress"])

    printed = capsys.readouterr().out
    assert code == 0
    assert "2 flows of 3 file(s)" in printed
    assert "2 file(s) without flows: empty.csv (empty), header.csv (header line only)" in printed


def test_evaluate_needs_class_names(tmp_path, classifier):
    write_csv(tmp_path / "in" / "night.csv", V2_COLUMNS, random_rows(3))
    with pytest.raises(DataError, match="matches no known class"):
        predict_captures(classifier, tmp_path / "in", evaluate=True)


def test_evaluate_counts_every_unnamed_file(tmp_path, classifier):
    for name in ("day.csv", "night.csv", "Benign_test.pcap.csv"):
        write_csv(tmp_path / "in" / name, V2_COLUMNS, random_rows(3))
    with pytest.raises(DataError) as error:
        predict_captures(classifier, tmp_path / "in", evaluate=True)
    message = str(error.value)
    assert "day.csv: the file name matches no known class" in message
    assert "1 more file(s) name no known class either: night.csv." in message
    assert "Benign_test" not in message


def test_evaluate_counts_per_class(tmp_path, classifier):
    write_csv(tmp_path / "in" / "Benign_test.pcap.csv", V2_COLUMNS, random_rows(7, seed=2))
    write_csv(tmp_path / "in" / "MQTT-DoS-Connect_Flood3_test.pcap.csv", V2_COLUMNS, random_rows(5, seed=3))
    summary = predict_captures(classifier, tmp_path / "in", evaluate=True)

    support = {label: scores["support"] for label, scores in summary.metrics["per_class"].items()}
    assert support["Benign"] == 7
    assert support["MQTT"] == 5
    assert summary.metrics["summary"]["n_flows"] == 12
    assert np.asarray(summary.metrics["confusion_matrix"]).sum() == 12


def test_onnxruntime_engine_same_predictions(tmp_path, classifier):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    rows = random_rows(300)
    write_csv(tmp_path / "in" / "capture.csv", V2_COLUMNS, rows)
    predict_captures(classifier, tmp_path / "in", tmp_path / "torch.csv", all_probabilities=True)
    classifier.use_onnxruntime(threads=1)
    predict_captures(classifier, tmp_path / "in", tmp_path / "onnx.csv", all_probabilities=True)

    by_torch = pd.read_csv(tmp_path / "torch.csv")
    by_onnx = pd.read_csv(tmp_path / "onnx.csv")
    probability_columns = [f"probability_{name}" for name in CLASS_NAMES]
    assert list(by_onnx["predicted_class"]) == list(by_torch["predicted_class"])
    np.testing.assert_allclose(by_onnx[probability_columns], by_torch[probability_columns], rtol=1e-4, atol=1e-6)


def test_saved_folder_loads_as_model_uri(tmp_path, classifier):
    classifier.save(tmp_path / "model")
    loaded = load_classifier(str(tmp_path / "model"))
    assert loaded.columns == classifier.columns
    assert loaded.class_names == classifier.class_names


def test_missing_model_folder_one_line_error(tmp_path):
    with pytest.raises(DataError) as error:
        load_classifier(str(tmp_path / "no-such-model"))
    assert "no-such-model not found" in str(error.value)
    assert "\n" not in str(error.value)


def test_folder_without_model_files_error(tmp_path):
    (tmp_path / "captures").mkdir()
    with pytest.raises(DataError) as error:
        load_classifier(str(tmp_path / "captures"))
    assert "neither a saved flow classifier" in str(error.value)
    assert "no MLmodel file" in str(error.value)


def test_unknown_registered_model_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(DataError, match="no-such-model"):
        load_classifier("models:/no-such-model@champion")


def test_cli_predict_missing_columns_exit_code(tmp_path, classifier, capsys):
    classifier.save(tmp_path / "model")
    write_csv(tmp_path / "in" / "old.csv", V1_COLUMNS, random_rows(3, len(V1_COLUMNS)))
    code = cli.main(["--params", str(tmp_path / "none.yaml"), "predict", str(tmp_path / "in"),
                     "--model", str(tmp_path / "model"), "--output", str(tmp_path / "out.csv")])
    assert code == 2
    assert not (tmp_path / "out.csv").exists()


# --- slow cases: a champion trained and promoted by the real pipeline


@pytest.fixture(scope="module")
def champion_project(tmp_path_factory):
    """A project whose category model is trained, evaluated on its test split and promoted."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = tmp_path_factory.mktemp("promoted")
    cfg = promote_category_model(base)
    yield base, cfg
    monkeypatch.undo()


def write_split_as_captures(split_path: Path, folder: Path) -> None:
    """Write a prepared split back out as raw CSV files, one per class, named like test captures."""
    flows = read_split(split_path)
    features = [column for column in flows.columns if column not in NON_FEATURE_COLUMNS]
    (folder / "test").mkdir(parents=True)
    for class_name, rows in flows.groupby("class"):
        table = pa.Table.from_pandas(rows[features], preserve_index=False)
        pacsv.write_csv(table, folder / "test" / f"{class_name}_test.pcap.csv")


@pytest.mark.slow
def test_capture_metrics_match_evaluate_stage(champion_project, tmp_path):
    base, cfg = champion_project
    write_split_as_captures(base / "prepared" / "test.parquet", tmp_path / "captures")
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    classifier = load_classifier(CHAMPION_URI)
    summary = predict_captures(classifier, tmp_path / "captures", evaluate=True)

    stage_reports = base / "reports" / "category"
    assert summary.metrics["summary"] == json.loads((stage_reports / "metrics.json").read_text())
    assert summary.metrics["per_class"] == json.loads((stage_reports / "per_class.json").read_text())
    stage_matrix = json.loads((stage_reports / "confusion_matrix.json").read_text())
    assert summary.metrics["confusion_matrix"] == stage_matrix["matrix"]
    assert summary.metrics["labels"] == stage_matrix["labels"]


@pytest.mark.slow
def test_cli_evaluate_captures_reports(champion_project, tmp_path, monkeypatch, capsys):
    base, cfg = champion_project
    write_split_as_captures(base / "prepared" / "test.parquet", tmp_path / "captures")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cfg.mlflow.tracking_uri)
    code = cli.main(["--params", str(tmp_path / "none.yaml"), "evaluate-captures", str(tmp_path / "captures"),
                     "--task", "category", "--report-dir", str(tmp_path / "report"),
                     "--output", str(tmp_path / "predictions.parquet"), "--no-progress"])

    printed = capsys.readouterr().out
    stage_metrics = json.loads((base / "reports" / "category" / "metrics.json").read_text())
    assert code == 0
    assert json.loads((tmp_path / "report" / "metrics.json").read_text()) == stage_metrics
    assert f"accuracy {stage_metrics['accuracy']:.4f}" in printed
    assert "confusion matrix" in printed
    files = json.loads((tmp_path / "report" / "files.json").read_text())
    assert files["summary"]["rows_kept"] == stage_metrics["n_flows"]
    assert pq.read_table(tmp_path / "predictions.parquet").num_rows == stage_metrics["n_flows"]


@pytest.mark.slow
def test_champion_task_mismatch_error(champion_project, tmp_path, monkeypatch):
    base, cfg = champion_project
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cfg.mlflow.tracking_uri)
    shutil.copytree(base / "raw", tmp_path / "raw")
    code = cli.main(["--params", str(tmp_path / "none.yaml"), "predict", str(tmp_path / "raw"),
                     "--model", CHAMPION_URI, "--task", "attack",
                     "--output", str(tmp_path / "out.csv")])
    assert code == 2


def test_heap_trimmer_calls_glibc():
    import platform

    from iomt_ids.serving.predict import heap_trimmer

    trim = heap_trimmer()

    # glibc's malloc_trim returns 1 when it released memory and 0 when there was none to release.
    # With another C library the trimmer does nothing and returns None.
    expected = (0, 1) if platform.libc_ver()[0] == "glibc" else (None,)
    assert trim() in expected
    assert trim() in expected


def test_evaluate_without_flows_error(tmp_path, classifier):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "Benign_test.pcap.csv").write_text(",".join(V2_COLUMNS) + "\n")
    with pytest.raises(DataError, match="no flows to evaluate"):
        predict_captures(classifier, tmp_path / "in", evaluate=True)


def test_format_conflicting_with_suffix_error(tmp_path, classifier):
    write_csv(tmp_path / "in" / "capture.csv", V2_COLUMNS, random_rows(3))
    with pytest.raises(DataError, match="--format parquet does not match the .csv suffix"):
        predict_captures(classifier, tmp_path / "in", tmp_path / "out.csv", output_format="parquet")
    assert not (tmp_path / "out.csv").exists()


def test_metrics_note_names_predicted_only_classes():
    metrics = classification_metrics(["a", "a", "a"], ["a", "b", "a"], ["a", "b"])
    printed = format_metrics(metrics)
    assert "1 predicted class(es) have no true flows in these files (b)" in printed


def test_metrics_without_predicted_only_classes_no_note():
    metrics = classification_metrics(["a", "b"], ["a", "b"], ["a", "b"])
    assert "no true flows" not in format_metrics(metrics)
