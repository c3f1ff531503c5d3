"""Read the raw CICIoMT2024 CSV files into one validated parquet dataset.

Input is a raw-data folder laid out like the release: ``<raw>/train/**.csv``
and ``<raw>/test/**.csv`` (either may be absent, ``.csv.gz`` is read too).
Output is one parquet file with float32 feature columns, the labels of the
three tasks, and the source file and split of every flow, plus an
:class:`IngestReport` that accounts for every row read.

Policy for cells, applied per file:

- ``inf``, ``-inf``, ``Infinity``, ``NaN`` and empty cells are kept as IEEE
  values in the parquet and counted per file and column; so are finite values
  that overflow float32 (they become ``inf``). The fitted preprocessing of a
  model replaces them, the same way at training and prediction time.
- A cell that is not a number stops ingestion with an error naming the file,
  the line, the column and the value. Nothing is quarantined silently.
- A line that repeats the header (two files concatenated) is dropped and
  counted as ``repeated_header``. A last line with too few fields (a
  truncated download) is dropped and counted as ``truncated_last_line``.
  A short or long line anywhere else is an error naming the line.
- Blank lines below the header are skipped and not counted as rows, but a
  blank line above it is an error. A file of blank lines only is reported as
  empty, and a header-only file has no rows.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from iomt_ids.data.errors import DataError
from iomt_ids.data.schema import LAYOUTS, binary_of, category_of, class_from_file_name, is_csv_name

logger = logging.getLogger(__name__)

SPLIT_FOLDERS: tuple[str, ...] = ("train", "test")

# pyarrow reads these texts as missing values; they are counted as NaN.
_NULL_TEXTS: tuple[str, ...] = tuple(pacsv.ConvertOptions().null_values)


@dataclass(frozen=True)
class RawFile:
    """One CSV file of the raw-data folder, with what its location says about it."""

    path: Path
    split: str
    class_name: str


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


@dataclass
class IngestReport:
    """What ingestion did to every row, per file, class and split."""

    layout: str
    files: list[FileReport]

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

    def summary(self) -> dict:
        """Return the numbers that DVC shows as metrics (nested dicts of numbers)."""
        return {
            "files": len(self.files),
            **self.totals(),
            "rows_kept_per_class": self.rows_per_class(),
            "nonfinite_cells": self.nonfinite_per_column(),
        }

    def to_dict(self) -> dict:
        return {
            "layout": self.layout,
            "summary": self.summary(),
            "files": [vars(report) for report in self.files],
        }


def discover_files(raw_dir: Path) -> list[RawFile]:
    """List the CSV files under ``raw_dir/train`` and ``raw_dir/test``, nested folders included.

    Raises DataError when the folder holds no CSV file at all, or when a CSV
    file's name matches no class.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(
            f"raw-data folder {raw_dir} not found. Download the CICIoMT2024 CSV files "
            f"(https://www.unb.ca/cic/datasets/iomt-dataset-2024.html) and place them under "
            f"{raw_dir}/train/ and {raw_dir}/test/, or set data.raw_dir."
        )

    files: list[RawFile] = []
    for split in SPLIT_FOLDERS:
        folder = raw_dir / split
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and is_csv_name(p)):
            try:
                class_name = class_from_file_name(path)
            except ValueError as error:
                raise DataError(str(error)) from None
            files.append(RawFile(path=path, split=split, class_name=class_name))

    if not files:
        raise DataError(
            f"no CSV files found under {raw_dir}/train/ or {raw_dir}/test/. Place the "
            f"CICIoMT2024 files there (names like 'Benign_train.pcap.csv', '.csv.gz' works too)."
        )
    return files


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    # utf-8-sig drops a byte-order mark; newline="" lets csv handle CRLF.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def read_header(path: Path) -> list[str] | None:
    """Return the column names of a CSV file, stripped of spaces, or None for an empty file.

    A file counts as empty when it contains only blank lines.
    """
    try:
        with _open_text(path) as handle:
            first_line = handle.readline()
            later_text = ""
            if not first_line.strip():
                later_text = next((line for line in handle if line.strip()), "")
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError) as error:
        raise DataError(
            f"{path}: not a readable UTF-8 CSV file ({error}). Replace it with the CSV file "
            f"of the release or remove it from the raw-data folder."
        ) from None

    if later_text:
        raise DataError(
            f"{path}, line 1: blank line where the header belongs. Delete the blank line(s) "
            f"above the header."
        )
    if not first_line.strip():
        return None
    if "\x00" in first_line:
        raise DataError(f"{path}: binary content, not a CSV file. Remove it from the raw-data folder.")
    return [name.strip() for name in next(csv.reader([first_line]))]


def detect_layout(path: Path, header: list[str]) -> tuple[str, list[str]]:
    """Match a header to a layout by column names and return (layout, extra columns).

    Raises DataError naming the missing columns when no layout is complete.
    """
    present = set(header)
    best = max(LAYOUTS, key=lambda name: len(present & set(LAYOUTS[name])))
    missing = [column for column in LAYOUTS[best] if column not in present]

    if len(missing) == len(LAYOUTS[best]):
        shown = ",".join(header[:6])
        raise DataError(
            f"{path}: the first line ({shown!r}...) is not a CICIoMT2024 header. Expected the "
            f"45-column (v1) or 39-column (v2) layout starting with 'Header_Length,Protocol Type'. "
            f"Replace the file with the CSV of the release or remove it."
        )
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} of the {best} "
            f"layout ({len(LAYOUTS[best])} columns). Restore the file from the release; "
            f"columns are matched by name, so their order does not matter."
        )
    extra = [column for column in header if column not in LAYOUTS[best]]
    return best, extra


def _read_csv(
    path: Path, header: list[str], columns: tuple[str, ...], column_type: pa.DataType
) -> tuple[pa.Table, list]:
    """Read the layout columns as one Arrow type, and collect the lines with a wrong field count."""
    invalid_rows: list = []

    def keep_invalid(row) -> str:
        invalid_rows.append(row)
        return "skip"

    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(skip_rows=1, column_names=header),
        parse_options=pacsv.ParseOptions(invalid_row_handler=keep_invalid),
        convert_options=pacsv.ConvertOptions(
            include_columns=list(columns),
            column_types={column: column_type for column in columns},
            strings_can_be_null=True,
        ),
    )
    return table, invalid_rows


def _read_table(path: Path, header: list[str], columns: tuple[str, ...]) -> tuple[pa.Table, list, bool]:
    """Read the layout columns as float64, or as text when some cell is not a number.

    Returns (table, lines with a wrong field count, whether the table is text).
    """
    try:
        table, invalid_rows = _read_csv(path, header, columns, pa.float64())
        return table, invalid_rows, False
    except pa.ArrowInvalid as error:
        if "conversion error" not in str(error):
            raise DataError(
                f"{path}: not readable as CSV ({error}). Replace it with the CSV file of the "
                f"release or remove it from the raw-data folder."
            ) from None

    # A repeated header or a bad cell: read text, so the caller can tell them apart.
    try:
        table, invalid_rows = _read_csv(path, header, columns, pa.string())
    except pa.ArrowInvalid as error:
        raise DataError(
            f"{path}: not readable as UTF-8 CSV ({error}). Replace it with the CSV file of the "
            f"release or remove it from the raw-data folder."
        ) from None
    return table, invalid_rows, True


def _has_rows(path: Path) -> bool:
    """Tell whether a non-blank line follows the header line."""
    with _open_text(path) as handle:
        handle.readline()
        return any(line.strip() for line in handle)


def _last_line(path: Path) -> str:
    with _open_text(path) as handle:
        last = ""
        for line in handle:
            if line.strip():
                last = line
    return last.rstrip("\r\n")


def _locate_bad_line(path: Path, n_fields: int) -> tuple[int, int]:
    """Return (line number, field count) of the first line whose field count is wrong."""
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        for row in reader:
            if row and len(row) != n_fields:
                return reader.line_num, len(row)
    return -1, -1


def _line_of_row(path: Path, row_index: int) -> int:
    """Return the line number of data row ``row_index`` (0-based, header not counted).

    pyarrow skips blank lines, so the row index alone is off by one per blank line above.
    """
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        index = -1  # the first non-blank line is the header
        for row in reader:
            if not row:
                continue
            if index == row_index:
                return reader.line_num
            index += 1
    return -1


def _check_field_counts(path: Path, header: list[str], invalid_rows: list, report: FileReport) -> None:
    """Drop and count a truncated last line, and raise DataError for any other line of the wrong length."""
    if not invalid_rows:
        return

    row = invalid_rows[0]
    is_short = row.actual_columns < len(header)
    if len(invalid_rows) == 1 and is_short and row.text.rstrip("\r\n") == _last_line(path):
        report.rows_dropped["truncated_last_line"] = 1
        logger.warning("%s: dropped a truncated last line with %d of %d fields",
                       path, row.actual_columns, len(header))
        return

    line, n_fields = _locate_bad_line(path, len(header))
    raise DataError(
        f"{path}, line {line}: {n_fields} fields where the header has {len(header)}. "
        f"Repair or delete that line; only a truncated last line is dropped automatically."
    )


def _parse_text(path: Path, table: pa.Table, columns: tuple[str, ...], report: FileReport) -> pa.Table:
    """Convert a text table to float64: drop repeated headers, raise DataError on the first bad cell."""
    strings = table.to_pandas()

    # Two files concatenated byte for byte leave the second byte-order mark before the header.
    is_header = np.ones(len(strings), dtype=bool)
    for column in columns:
        name = strings[column].str.replace("\ufeff", "", regex=False).str.strip()
        is_header &= name.eq(column).to_numpy(dtype=bool, na_value=False)
    if is_header.any():
        report.rows_dropped["repeated_header"] = int(is_header.sum())
        logger.warning("%s: dropped %d line(s) repeating the header", path, int(is_header.sum()))

    numbers = {}
    for column in columns:
        text = strings[column].str.strip()
        values = pd.to_numeric(text, errors="coerce")
        bad = (values.isna() & text.notna() & ~is_header).to_numpy(dtype=bool)
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}, line {_line_of_row(path, position)}, column {column!r}: "
                f"{strings[column].iloc[position]!r} is not a number. Fix or delete that line "
                f"(every feature must be numeric; inf, -inf, NaN and empty cells are accepted)."
            )
        numbers[column] = values.to_numpy(dtype=np.float64)[~is_header]

    return pa.table(numbers)


def _count_nonfinite(values64: np.ndarray, values32: np.ndarray) -> dict[str, int]:
    counts = {
        "pos_inf": int(np.isposinf(values64).sum()),
        "neg_inf": int(np.isneginf(values64).sum()),
        "nan": int(np.isnan(values64).sum()),
        "float32_overflow": int((np.isfinite(values64) & ~np.isfinite(values32)).sum()),
    }
    return {kind: count for kind, count in counts.items() if count}


def read_raw_file(raw_file: RawFile, header: list[str], layout: str, raw_dir: Path) -> tuple[pa.Table, FileReport]:
    """Read one raw file into a table of float32 features and label columns, with its report."""
    path = raw_file.path
    columns = LAYOUTS[layout]
    report = FileReport(
        file=path.relative_to(raw_dir).as_posix(), split=raw_file.split, class_name=raw_file.class_name
    )

    if _has_rows(path):
        table, invalid_rows, is_text = _read_table(path, header, columns)
    else:
        # pyarrow cannot skip the header of a header-only file that lacks a final line end.
        table = pa.table({column: pa.array([], type=pa.float64()) for column in columns})
        invalid_rows, is_text = [], False

    # Field counts first: a skipped line above a bad cell would shift its line number.
    _check_field_counts(path, header, invalid_rows, report)
    if is_text:
        table = _parse_text(path, table, columns, report)

    features = {}
    for column in columns:
        values64 = table.column(column).to_numpy(zero_copy_only=False)
        values64 = np.asarray(values64, dtype=np.float64)
        # Overflow to inf is expected here and counted as float32_overflow.
        with np.errstate(over="ignore"):
            values32 = values64.astype(np.float32)
        counts = _count_nonfinite(values64, values32)
        if counts:
            report.nonfinite[column] = counts
        features[column] = values32

    n_rows = table.num_rows
    report.rows_kept = n_rows
    report.rows_read = n_rows + sum(report.rows_dropped.values())

    class_name = raw_file.class_name
    out = pa.table({
        **{column: pa.array(values, type=pa.float32()) for column, values in features.items()},
        "class": _constant(class_name, n_rows),
        "category": _constant(category_of(class_name), n_rows),
        "binary": _constant(binary_of(class_name), n_rows),
        "source_file": _constant(report.file, n_rows),
        "source_split": _constant(raw_file.split, n_rows),
    })
    return out, report


def _constant(value: str, n_rows: int) -> pa.DictionaryArray:
    """Return a dictionary-encoded column repeating one string, without a per-row list."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n_rows, dtype=np.int32)), pa.array([value]))


def output_schema(layout: str) -> pa.Schema:
    """Return the parquet schema of the ingested dataset for a layout."""
    label = pa.dictionary(pa.int32(), pa.string())
    return pa.schema(
        [pa.field(column, pa.float32()) for column in LAYOUTS[layout]]
        + [pa.field(name, label) for name in ("class", "category", "binary", "source_file", "source_split")]
    )


def _check_layouts(headers: dict[RawFile, list[str]], expected: str) -> str:
    layouts: dict[str, Path] = {}
    for raw_file, header in headers.items():
        layout, extra = detect_layout(raw_file.path, header)
        layouts.setdefault(layout, raw_file.path)
        if extra:
            logger.warning("%s: ignoring unexpected column(s) %s", raw_file.path, ", ".join(extra))

    if len(layouts) > 1:
        examples = "; ".join(f"{name} layout: {path}" for name, path in sorted(layouts.items()))
        raise DataError(
            f"the raw-data folder mixes column layouts ({examples}). Use files of one release "
            f"only: the 45-column v1 files or the 39-column v2 files."
        )
    found = next(iter(layouts))
    if expected != "auto" and found != expected:
        raise DataError(
            f"data.layout is {expected!r} but the files are in the {found} layout "
            f"(for example {layouts[found]}). Set data.layout to 'auto' or {found!r}."
        )
    return found


def _write_file(
    writer: pq.ParquetWriter, raw_file: RawFile, header: list[str] | None, layout: str, raw_dir: Path
) -> FileReport:
    """Append the rows of one raw file to the parquet output. A None header marks an empty file."""
    if header is None:
        logger.warning("%s: empty file, no rows", raw_file.path)
        return FileReport(
            file=raw_file.path.relative_to(raw_dir).as_posix(), split=raw_file.split,
            class_name=raw_file.class_name, empty=True,
        )

    table, report = read_raw_file(raw_file, header, layout, raw_dir)
    report.extra_columns = [c for c in header if c not in LAYOUTS[layout]]
    if table.num_rows:
        writer.write_table(table.cast(writer.schema))
    logger.info("%s: read %d, kept %d, dropped %s", report.file, report.rows_read,
                report.rows_kept, report.rows_dropped or 0)
    return report


def ingest(raw_dir: Path, out_path: Path, layout: str = "auto") -> IngestReport:
    """Validate every raw file and write their flows to one parquet file.

    Files are read and written one at a time, so memory follows the largest
    file, not the release. Raises DataError on input that cannot be used.
    """
    started = time.perf_counter()
    raw_dir = Path(raw_dir)
    raw_files = discover_files(raw_dir)
    logger.info("ingest: %d CSV file(s) under %s", len(raw_files), raw_dir)

    headers: dict[RawFile, list[str]] = {}
    for raw_file in raw_files:
        header = read_header(raw_file.path)
        if header is not None:
            headers[raw_file] = header
    if not headers:
        raise DataError(f"every CSV file under {raw_dir} is empty. Download the files again.")

    found_layout = _check_layouts(headers, layout)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_suffix(".tmp")
    reports: list[FileReport] = []

    # The finally clause removes the partial file that a failed run leaves behind.
    try:
        with pq.ParquetWriter(tmp_path, output_schema(found_layout)) as writer:
            for raw_file in raw_files:
                reports.append(_write_file(writer, raw_file, headers.get(raw_file), found_layout, raw_dir))
        tmp_path.replace(out_path)
    finally:
        tmp_path.unlink(missing_ok=True)

    result = IngestReport(layout=found_layout, files=reports)
    totals = result.totals()
    logger.info("ingest: %s layout, %d rows read, %d kept, %d dropped, in %.1f s", found_layout,
                totals["rows_read"], totals["rows_kept"], totals["rows_dropped"],
                time.perf_counter() - started)
    return result
