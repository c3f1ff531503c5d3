"""Batch prediction on raw flow CSV files, streamed block by block.

Input is one CSV file or a folder of them (nested folders, ``.csv.gz`` and
either column layout). Output is one row per flow: ``source_file``, ``row``
(1-based position of the flow among the file's kept data rows),
``predicted_class``, ``probability`` and, on request, ``probability_<class>``
for every class, written as CSV or parquet.

Files are read in blocks of whole lines, and pyarrow parses one block at a time
without reading ahead, so memory follows the block size and not the input size.
The cell policy and the row accounting are those of ingestion
(``iomt_ids.data.ingest``): ``inf``, ``-inf``, NaN, empty
cells and float32 overflows are kept, counted per file and column, and
replaced by the model's fitted preprocessing. When the stream meets any other
line (a repeated header, a cell that is not a number, a wrong field count),
the whole file is read again by ``ingest.read_raw_file``. That reader drops and
counts repeated headers and a truncated last line, and raises DataError on the
rest. Flows already predicted from the file are not predicted twice.

When file names carry the official class names, the predictions are also
scored against them (``evaluate=True``), with the metrics of the evaluate stage.
"""

from __future__ import annotations

import ctypes
import logging
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from iomt_ids.data import ingest
from iomt_ids.data.errors import DataError
from iomt_ids.data.schema import LAYOUTS, class_from_file_name, is_csv_name, layout_containing, task_label_of, \
    task_labels
from iomt_ids.metrics import classification_metrics
from iomt_ids.serving.flow_classifier import CONFIG_FILE, FlowClassifier

logger = logging.getLogger(__name__)

# Bytes of CSV text read and parsed per block. One block becomes one batch of
# flows, so this bounds the memory of a batch: a 4 MiB block of v1 rows (about
# 190 bytes each) is about 22,000 flows. Blocks are cut at line ends and parsed
# one at a time. pyarrow's streaming reader (open_csv) read up to about 45 blocks
# ahead on background threads, with or without use_threads, so its memory grew with
# the file up to about 180 MiB (docs/benchmarks/inference.md).
DEFAULT_BLOCK_SIZE = 4 << 20

# Flows per forward pass. The activations of the published CNN take about
# 20 KB per flow (an estimate from the layer sizes), so 1,024 flows take about 20 MB.
# On the 2-core benchmark machine the published CNN was fastest at 256 to 1,024 flows.
DEFAULT_BATCH_SIZE = 1024

OUTPUT_FORMATS: tuple[str, ...] = ("csv", "parquet")


def heap_trimmer() -> Callable[[], object]:
    """Return a function that returns freed heap memory to the OS: glibc's ``malloc_trim(0)``, else a no-op.

    PyTorch frees each batch's activations, but glibc keeps much of that memory
    in its arenas. On 6.4 million flows, trimming after every block lowered
    peak RSS by about 65 MiB and the median RSS by about 75 MiB.
    """
    if not sys.platform.startswith("linux"):
        return lambda: None
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # another C library, such as musl, has no malloc_trim
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


def default_model_uri(task: str, model_name_prefix: str = "iomt-ids") -> str:
    """Return the registry URI of a task's champion, ``models:/<prefix>-<task>@champion``."""
    task_labels(task)  # raises on an unknown task
    return f"models:/{model_name_prefix}-{task}@champion"


def load_classifier(model_uri: str) -> FlowClassifier:
    """Load the flow classifier of an MLflow model URI, or of a local classifier folder.

    ``model_uri`` is any URI MLflow resolves (``models:/<name>@<alias>``,
    ``models:/<name>/<version>``, ``runs:/<run id>/model``, a model folder) or a
    folder written by ``FlowClassifier.save``. The MLflow model is downloaded
    and only its ``classifier`` artifact is read (JSON and safetensors), so
    nothing is unpickled and the pyfunc wrapper is not run.
    """
    local = Path(model_uri)
    if (local / CONFIG_FILE).is_file():
        return FlowClassifier.load(local)
    # A URI (models:/, runs:/, file://, s3://) goes to MLflow, and anything else is a local path.
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", model_uri):
        if not local.exists():
            raise DataError(f"model {model_uri} not found: pass an existing classifier folder, an MLflow model "
                            f"folder or a URI such as models:/iomt-ids-attack@champion.")
        if not (local / "MLmodel").is_file():
            raise DataError(f"{model_uri} is neither a saved flow classifier (no {CONFIG_FILE}) nor an MLflow "
                            f"model (no MLmodel file). Pass the folder that contains one of them.")

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="iomt-ids-model-") as download_dir:
        try:
            model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=download_dir))
        except (MlflowException, OSError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(
                f"cannot load model {model_uri!r} from tracking store {mlflow.get_tracking_uri()}: {message}. "
                f"Run from the project folder (or set MLFLOW_TRACKING_URI), and check the name, version or "
                f"alias with `make ui`."
            ) from None
        model = Model.load(str(model_dir))
        artifacts = model.flavors.get("python_function", {}).get("artifacts", {})
        if "classifier" not in artifacts:
            raise DataError(
                f"{model_uri} is not an iomt-ids flow classifier: its MLmodel has no 'classifier' "
                f"artifact. Pass a model registered by the promote stage."
            )
        classifier = FlowClassifier.load(model_dir / artifacts["classifier"]["path"])
    logger.info("loaded %s: %s task, %s layout, %d classes", model_uri, classifier.task,
                classifier.layout, len(classifier.class_names))
    return classifier


def find_capture_files(input_path: Path) -> list[Path]:
    """List the CSV files (``.csv`` or ``.csv.gz``) of a file or folder, nested folders included."""
    input_path = Path(input_path)
    if input_path.is_file():
        return [input_path]
    if not input_path.is_dir():
        raise DataError(f"input {input_path} not found. Pass a CSV file or a folder of CSV files.")
    files = sorted(path for path in input_path.rglob("*") if path.is_file() and is_csv_name(path))
    if not files:
        raise DataError(f"no CSV files found under {input_path} ('.csv' or '.csv.gz').")
    return files


@dataclass
class PredictionSummary:
    """Outcome of a batch prediction: row accounting per file, flow count, timing and optional scores."""

    model_uri: str
    task: str
    files: list[ingest.FileReport]
    n_flows: int
    seconds: float
    metrics: dict | None = None

    @property
    def flows_per_second(self) -> float:
        return self.n_flows / self.seconds if self.seconds > 0 else 0.0


class _Confusion:
    """Confusion counts over ``names`` (the task's labels), so scoring needs no memory per flow."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.counts = np.zeros((len(names), len(names)), dtype=np.int64)

    def add(self, true_label: str, predicted: np.ndarray) -> None:
        self.counts[self.names.index(true_label)] += np.bincount(predicted, minlength=len(self.names))

    def metrics(self) -> dict:
        """Score like the evaluate stage: averages over labels seen as truth or as prediction."""
        true_index, predicted_index = np.nonzero(self.counts)
        names = np.asarray(self.names, dtype=object)
        present = set(names[true_index]) | set(names[predicted_index])
        labels = [label for label in self.names if label in present]
        return classification_metrics(names[true_index], names[predicted_index], labels,
                                      counts=self.counts[true_index, predicted_index])


class PredictionWriter:
    """Appends prediction batches to a CSV or parquet file, written under a temporary name."""

    def __init__(self, path: Path, output_format: str, schema: pa.Schema) -> None:
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output format {output_format!r} is invalid; expected one of {OUTPUT_FORMATS}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.path.with_name(self.path.name + ".partial")
        if output_format == "csv":
            self._writer = pacsv.CSVWriter(str(self.partial), schema)
        else:
            self._writer = pq.ParquetWriter(str(self.partial), schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def commit(self) -> None:
        self._writer.close()
        self.partial.replace(self.path)

    def discard(self) -> None:
        self._writer.close()
        self.partial.unlink(missing_ok=True)


def output_format_of(path: Path, output_format: str | None = None) -> str:
    """Return the output format: ``output_format`` when given, else from the file suffix."""
    suffix = Path(path).suffix.lower()
    by_suffix = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}.get(suffix)
    if output_format:
        if by_suffix and by_suffix != output_format:
            raise DataError(f"--format {output_format} does not match the {suffix} suffix of {path}: rename the "
                            f"file or drop --format.")
        return output_format
    if by_suffix:
        return by_suffix
    raise DataError(f"output format of {path} is unknown: name the file .csv or .parquet, or pass --format.")


def prediction_schema(class_names: list[str], all_probabilities: bool) -> pa.Schema:
    fields = [
        pa.field("source_file", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("predicted_class", pa.string()),
        pa.field("probability", pa.float32()),
    ]
    if all_probabilities:
        fields += [pa.field(f"probability_{name}", pa.float32()) for name in class_names]
    return pa.schema(fields)


def _count_nonfinite(report: ingest.FileReport, columns: list[str], values64: np.ndarray,
                     values32: np.ndarray) -> None:
    """Add one batch's non-finite cells to the report, per column, with ingestion's counters."""
    # A finite float32 value was a finite float64 value in float32 range, so nothing is counted.
    if np.isfinite(values32).all():
        return
    kinds = {
        "pos_inf": np.isposinf(values64).sum(axis=0),
        "neg_inf": np.isneginf(values64).sum(axis=0),
        "nan": np.isnan(values64).sum(axis=0),
        "float32_overflow": (np.isfinite(values64) & ~np.isfinite(values32)).sum(axis=0),
    }
    for kind, per_column in kinds.items():
        for index in np.flatnonzero(per_column):
            counts = report.nonfinite.setdefault(columns[index], {})
            counts[kind] = counts.get(kind, 0) + int(per_column[index])


class _NeedsFullRead(Exception):
    """The stream met a line that ingestion's whole-file reader must judge."""


def _line_blocks(path: Path, block_size: int) -> Iterator[bytes]:
    """Yield the bytes of ``path`` after its header line in blocks of whole lines.

    A block contains about ``block_size`` bytes, more when a line is longer. A
    ``.gz`` name is decompressed, as ingestion does.
    """
    with ingest.gzip_errors_as_data_errors(path), ingest.open_input_stream(path) as stream:
        pending = b""
        header_left = True
        while chunk := stream.read(block_size):
            pending += chunk
            if header_left:
                ends = [index for index in (pending.find(b"\n"), pending.find(b"\r")) if index >= 0]
                if not ends:
                    continue
                pending, header_left = pending[min(ends) + 1:], False
            # pyarrow also ends a line at a lone "\r". A "\r\n" cut in two leaves an empty line, which it skips.
            cut = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
            if cut:
                yield pending[:cut]
                pending = pending[cut:]
        if pending and not header_left:
            yield pending


def _stream_features(path: Path, header: list[str], columns: list[str], report: ingest.FileReport,
                     block_size: int) -> Iterator[np.ndarray]:
    """Yield float32 (n_flows, n_features) blocks of a clean file, columns in ``columns`` order.

    Raises ``_NeedsFullRead`` at the first line the stream cannot take as is.
    """
    invalid_rows: list = []

    def keep_invalid(row) -> str:
        invalid_rows.append(row)
        return "skip"

    read_options = pacsv.ReadOptions(column_names=header)
    parse_options = pacsv.ParseOptions(invalid_row_handler=keep_invalid)
    convert_options = pacsv.ConvertOptions(
        include_columns=columns,
        column_types={column: pa.float64() for column in columns},
        strings_can_be_null=True,
    )
    try:
        for text in _line_blocks(path, block_size):
            # A block of empty lines gives a table without rows, and a line of spaces is an invalid row.
            table = pacsv.read_csv(pa.py_buffer(text), read_options=read_options, parse_options=parse_options,
                                   convert_options=convert_options)
            if invalid_rows:
                raise _NeedsFullRead()
            if not table.num_rows:
                continue
            values64 = np.column_stack([table.column(column).to_numpy() for column in columns])
            # Overflow to inf is expected here and counted as float32_overflow.
            with np.errstate(over="ignore"):
                values32 = values64.astype(np.float32)
            _count_nonfinite(report, columns, values64, values32)
            report.rows_read += table.num_rows
            report.rows_kept += table.num_rows
            yield values32
    except pa.ArrowInvalid:
        raise _NeedsFullRead() from None


def _read_whole_file(path: Path, header: list[str], columns: list[str], class_name: str | None,
                     ) -> tuple[np.ndarray, ingest.FileReport]:
    """Read a file with ingestion's reader, which applies its policy to the lines the stream rejected."""
    layout, _ = ingest.detect_layout(path, header)
    raw_file = ingest.RawFile(path=path, split="", class_name=class_name or "")
    values, report = ingest.read_raw_features(raw_file, header, layout, path.parent)
    if not report.rows_kept:
        return np.zeros((0, len(columns)), dtype=np.float32), report
    return np.column_stack([values[column] for column in columns]).astype(np.float32, copy=False), report


def _missing_columns_error(path: Path, header: list[str], columns: list[str], missing: list[str]) -> DataError:
    """Build the error for a file that lacks some of the model's columns, naming both layouts."""
    names = ", ".join(repr(column) for column in missing)
    model_layout = layout_containing(columns)
    file_layouts = [name for name, layout_columns in LAYOUTS.items() if set(layout_columns) <= set(header)]

    # A header with every column of a layout lacks model columns only when the model has the other layout.
    if file_layouts:
        file_layout = file_layouts[0]
        return DataError(
            f"{path}: missing column(s) {names} that the model was trained on. The file has the "
            f"{file_layout} layout ({len(LAYOUTS[file_layout])} columns) but the model expects the "
            f"{model_layout} layout ({len(LAYOUTS[model_layout])} columns). Pass a model trained on "
            f"{file_layout} files (--model), or convert the file to the {model_layout} layout by adding "
            f"the missing column(s) under these names."
        )
    return DataError(
        f"{path}: missing column(s) {names} that the model was trained on. The header has neither "
        f"every column of the v1 layout ({len(LAYOUTS['v1'])} columns) nor of the v2 layout "
        f"({len(LAYOUTS['v2'])} columns), and the model expects the {model_layout} layout. Restore "
        f"the missing column(s) from the original capture file."
    )


def iter_capture(path: Path, name: str, columns: list[str], class_name: str | None,
                 block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[tuple[np.ndarray, ingest.FileReport]]:
    """Yield (raw float32 feature block, the file's report so far) for one capture file.

    Raises DataError naming the missing columns when the header lacks one of
    ``columns``, and on the lines ingestion rejects.
    """
    # Captures belong to no train/test split, so their rows count under "input" in the reports.
    report = ingest.FileReport(file=name, split="input", class_name=class_name or "")
    no_flows = np.zeros((0, len(columns)), dtype=np.float32)
    header = ingest.read_header(path)
    if header is None:
        logger.warning("%s: empty file, no flows to predict. Replace it with the complete capture "
                       "file or remove it.", path)
        report.empty = True
        yield no_flows, report
        return

    missing = [column for column in columns if column not in header]
    if missing:
        raise _missing_columns_error(path, header, columns, missing)
    report.extra_columns = [column for column in header if column not in columns]
    if report.extra_columns:
        logger.warning("%s: ignoring column(s) the model does not use: %s", path, ", ".join(report.extra_columns))
    if not ingest.has_data_rows(path):
        logger.warning("%s: header line only, no flows to predict. Replace it with the complete capture "
                       "file or remove it.", path)
        yield no_flows, report
        return

    done = 0
    try:
        for block in _stream_features(path, header, columns, report, block_size):
            done += len(block)
            yield block, report
        if not done:
            yield no_flows, report
    except _NeedsFullRead:
        logger.info("%s: irregular lines, reading the whole file with the ingestion rules", path)
        features, full_report = _read_whole_file(path, header, columns, class_name)
        full_report.file, full_report.split, full_report.class_name = name, "", class_name or ""
        full_report.extra_columns = report.extra_columns
        # The flows before the first irregular line were yielded already.
        yield features[done:], full_report


def predict_captures(classifier: FlowClassifier, input_path: Path, output_path: Path | None = None, *,
                     model_uri: str = "", output_format: str | None = None, all_probabilities: bool = False,
                     evaluate: bool = False, block_size: int = DEFAULT_BLOCK_SIZE,
                     batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False) -> PredictionSummary:
    """Predict every flow of a CSV file or folder; optionally write them and score them.

    ``output_path`` (CSV or parquet, see ``output_format_of``) receives one
    row per flow; None writes nothing, which makes sense with
    ``evaluate=True``. With ``evaluate=True`` every file name must name an
    official class (``Benign_test.pcap.csv``), and the summary carries the
    metrics of ``iomt_ids.metrics.classification_metrics``. On any error the
    partial output is removed.
    """
    started = time.perf_counter()
    input_path = Path(input_path)
    files = find_capture_files(input_path)
    root = input_path if input_path.is_dir() else input_path.parent

    class_names: dict[Path, str | None] = {}
    unnamed: list[Path] = []
    first_error: ValueError | None = None
    for path in files:
        try:
            class_names[path] = class_from_file_name(path)
        except ValueError as error:
            class_names[path] = None
            unnamed.append(path)
            first_error = first_error or error
    if evaluate and unnamed:
        others = ""
        if len(unnamed) > 1:
            others = (f" {len(unnamed) - 1} more file(s) name no known class either: "
                      f"{', '.join(path.name for path in unnamed[1:4])}{', ...' if len(unnamed) > 4 else ''}.")
        raise DataError(f"cannot evaluate: {first_error}.{others}")

    labels = _Confusion(task_labels(classifier.task)) if evaluate else None
    label_index = np.asarray([labels.names.index(name) for name in classifier.class_names]) if labels else None
    writer = None
    if output_path is not None:
        schema = prediction_schema(classifier.class_names, all_probabilities)
        writer = PredictionWriter(output_path, output_format_of(output_path, output_format), schema)
    class_array = pa.array(classifier.class_names, type=pa.string())

    reports: list[ingest.FileReport] = []
    n_flows = 0
    trim_heap = heap_trimmer()
    bar = _progress_bar(progress)
    try:
        for path in files:
            name = path.relative_to(root).as_posix()
            report = None
            flows_in_file = 0
            for block, report in iter_capture(path, name, classifier.columns, class_names[path], block_size):
                if not len(block):
                    continue
                probabilities = classifier.probabilities(block, batch_size)
                best = probabilities.argmax(axis=1)
                if writer is not None:
                    writer.write(_prediction_batch(name, flows_in_file, best, probabilities, class_array,
                                                   classifier.class_names, all_probabilities))
                if labels is not None:
                    labels.add(task_label_of(class_names[path], classifier.task), label_index[best])
                flows_in_file += len(block)
                n_flows += len(block)
                trim_heap()
                if bar is not None:
                    bar.update(len(block))
            reports.append(report)
            logger.info("%s: read %d, kept %d, dropped %s", name, report.rows_read, report.rows_kept,
                        report.rows_dropped or 0)
        if writer is not None:
            writer.commit()
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        if bar is not None:
            bar.close()

    if labels is not None and n_flows == 0:
        raise DataError(f"no flows to evaluate in {input_path}: every file is empty or has a header line only.")
    seconds = time.perf_counter() - started
    summary = PredictionSummary(model_uri=model_uri, task=classifier.task, files=reports, n_flows=n_flows,
                                seconds=seconds, metrics=labels.metrics() if labels else None)
    logger.info("predicted %d flows of %d file(s) in %.1f s (%.0f flows/s)", n_flows, len(files), seconds,
                summary.flows_per_second)
    return summary


def _prediction_batch(name: str, first_row: int, best: np.ndarray, probabilities: np.ndarray,
                      class_array: pa.Array, class_names: list[str], all_probabilities: bool) -> pa.RecordBatch:
    """Build the output rows of one block; ``first_row`` flows of the file came before it."""
    n = len(best)
    columns = {
        "source_file": pa.repeat(name, n),
        "row": pa.array(np.arange(first_row + 1, first_row + n + 1, dtype=np.int64)),
        "predicted_class": class_array.take(pa.array(best)),
        "probability": pa.array(np.take_along_axis(probabilities, best[:, None], axis=1)[:, 0]),
    }
    if all_probabilities:
        for index, class_name in enumerate(class_names):
            columns[f"probability_{class_name}"] = pa.array(np.ascontiguousarray(probabilities[:, index]))
    return pa.RecordBatch.from_pydict(columns)


def _progress_bar(enabled: bool):
    """Return a tqdm bar counting flows, or None when disabled."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit=" flows", unit_scale=True, desc="predict", smoothing=0.1)
