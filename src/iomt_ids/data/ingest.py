"""Read the raw CICIoMT2024 CSV files into one validated parquet dataset.

Input is a raw-data folder laid out like the release: ``<raw>/train/**.csv``
and ``<raw>/test/**.csv`` (either may be absent, ``.csv.gz`` is read too).
Output is one parquet file with float32 feature columns, the labels of the
three tasks, and the source file and split of every flow, plus an
:class:`IngestReport` that accounts for every row read.

Policy for cells, applied per file:

- ``inf``, ``-inf``, ``Infinity``, ``NaN`` and empty cells are kept as IEEE
  values in the parquet and counted per file and column; so are finite values
  that overflow float32 (they become ``inf``). Counts cover every row read,
  duplicates dropped later included. The fitted preprocessing of a
  model replaces them, the same way at training and prediction time.
- A cell that is not a number stops ingestion with an error naming the file,
  the line, the column and the value. Nothing is quarantined silently.
- A line that repeats the header (two files concatenated) is dropped and
  counted as ``repeated_header``. A last line with too few fields (a
  truncated download) is dropped and counted as ``truncated_last_line``.
  A short or long line anywhere else is an error naming the line.
- Blank lines below the header are skipped and not counted as rows, but a
  blank line above it is an error. A file of blank lines only is reported as
  empty, and a header-only file has no rows. Both get a warning.

Policy for rows and columns, applied across files:

- ``duplicates`` (``none``, ``exact`` or ``float32``) drops a row equal to an
  earlier row of the same split and class, counted as ``duplicate``. Test rows
  equal to a kept train row are counted per class (``rows_equal_to_train``)
  but kept, so the official test split stays whole.
- ``drop_columns`` leaves named feature columns out of the parquet file.
  Columns with one value in every kept row are always reported, and left out
  too with ``drop_constant_columns``.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from iomt_ids.data.duplicates import DUPLICATE_MODES, RowHasher, SeenRows
from iomt_ids.data.errors import DataError
from iomt_ids.data.ingest_report import FileReport, IngestReport
from iomt_ids.data.schema import LAYOUTS, binary_of, category_of, class_from_file_name, is_csv_name

logger = logging.getLogger(__name__)

SPLIT_FOLDERS: tuple[str, ...] = ("train", "test")

# File names that one warning lists before it counts the rest.
_MAX_NAMES_LOGGED = 10

# pyarrow reads these texts as missing values; they are counted as NaN.
_NULL_TEXTS: tuple[str, ...] = tuple(pacsv.ConvertOptions().null_values)


@dataclass(frozen=True)
class RawFile:
    """One CSV file of the raw-data folder, with the split and class given by its path."""

    path: Path
    split: str
    class_name: str


def discover_files(raw_dir: Path) -> list[RawFile]:
    """List the CSV files under ``raw_dir/train`` and ``raw_dir/test``, nested folders included.

    Raises DataError when the folder contains no CSV file at all, or when a CSV
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

    outside = _csv_files_outside_splits(raw_dir)
    if outside:
        names = ", ".join(path.relative_to(raw_dir).as_posix() for path in outside[:_MAX_NAMES_LOGGED])
        if len(outside) > _MAX_NAMES_LOGGED:
            names += f" and {len(outside) - _MAX_NAMES_LOGGED} more"
        logger.warning(
            "%s: ignoring %d CSV file(s) outside its train/ and test/ folders: %s. Move them into "
            "%s/train/ or %s/test/ to ingest them.", raw_dir, len(outside), names, raw_dir, raw_dir,
        )

    if not files:
        raise DataError(
            f"no CSV files found under {raw_dir}/train/ or {raw_dir}/test/. Place the "
            f"CICIoMT2024 files there (names like 'Benign_train.pcap.csv', '.csv.gz' works too)."
        )
    return files


def _csv_files_outside_splits(raw_dir: Path) -> list[Path]:
    """List the CSV files under ``raw_dir`` that are in neither its train/ nor its test/ folder."""
    return sorted(
        path for path in raw_dir.rglob("*")
        if path.is_file() and is_csv_name(path) and path.relative_to(raw_dir).parts[0] not in SPLIT_FOLDERS
    )


def is_gzip_name(path: Path) -> bool:
    """Return whether the file name ends in .gz, in any letter case, which marks gzip content."""
    return path.name.lower().endswith(".gz")


def open_input_stream(path: Path) -> pa.NativeFile:
    """Open a CSV file for pyarrow, decompressing a .gz name in any letter case.

    pyarrow's own detection does not recognise an upper-case ``.GZ``.
    """
    return pa.input_stream(str(path), compression="gzip" if is_gzip_name(path) else None)


@contextmanager
def gzip_errors_as_data_errors(path: Path) -> Iterator[None]:
    """Turn the OSError of damaged gzip data (cut short or failing its check) into a DataError."""
    try:
        yield
    except OSError as error:
        if not is_gzip_name(path):
            raise
        raise DataError(f"{path}: damaged gzip data ({error}), for example a copy cut short. Copy the "
                        f"file again from its source.") from None


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if is_gzip_name(path) else open(path, "rb")
    # utf-8-sig drops a byte-order mark; newline="" lets csv handle CRLF.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _starts_with_gzip_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"\x1f\x8b"
    except OSError:
        return False


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
        if not is_gzip_name(path) and _starts_with_gzip_magic(path):
            raise DataError(f"{path}: gzip-compressed, but its name does not end in .gz. Rename it to "
                            f"{path.name}.gz.") from None
        raise DataError(
            f"{path}: not a readable UTF-8 CSV file ({error}). Replace it with the CSV file "
            f"of the release or remove it from the input folder."
        ) from None

    if later_text:
        raise DataError(
            f"{path}, line 1: blank line where the header belongs. Delete the blank line(s) "
            f"above the header."
        )
    if not first_line.strip():
        return None
    if "\x00" in first_line:
        raise DataError(f"{path}: binary content, not a CSV file. Remove it from the input folder.")
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

    with gzip_errors_as_data_errors(path), open_input_stream(path) as stream:
        table = pacsv.read_csv(
            stream,
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
                f"release or remove it from the input folder."
            ) from None

    # A repeated header or a bad cell: read text, so the caller can tell them apart.
    try:
        table, invalid_rows = _read_csv(path, header, columns, pa.string())
    except pa.ArrowInvalid as error:
        raise DataError(
            f"{path}: not readable as UTF-8 CSV ({error}). Replace it with the CSV file of the "
            f"release or remove it from the input folder."
        ) from None
    return table, invalid_rows, True


def has_data_rows(path: Path) -> bool:
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


def _read_validated(raw_file: RawFile, header: list[str], layout: str, raw_dir: Path) -> tuple[pa.Table, FileReport]:
    """Read the layout columns of one raw file as float64 after applying the line policy.

    The report has the dropped lines; ``rows_read`` and ``rows_kept`` are left to the caller.
    """
    path = raw_file.path
    columns = LAYOUTS[layout]
    report = FileReport(
        file=path.relative_to(raw_dir).as_posix(), split=raw_file.split, class_name=raw_file.class_name
    )

    if has_data_rows(path):
        table, invalid_rows, is_text = _read_table(path, header, columns)
    else:
        # pyarrow cannot skip the header of a header-only file that lacks a final line end.
        table = pa.table({column: pa.array([], type=pa.float64()) for column in columns})
        invalid_rows, is_text = [], False

    # Field counts first: a skipped line above a bad cell would shift its line number.
    _check_field_counts(path, header, invalid_rows, report)
    if is_text:
        table = _parse_text(path, table, columns, report)
    return table, report


@dataclass
class _LoadedFile:
    """One raw file read and converted, before duplicate removal and writing."""

    raw_file: RawFile
    report: FileReport
    # float32 values of each feature column, in output order.
    features: dict[str, np.ndarray]
    # uint64 hash of every row (see iomt_ids.data.duplicates), or None in duplicates mode "none".
    hashes: np.ndarray | None
    # Per feature column: its one value when every row has it, else None. Empty for a file without rows.
    single_values: dict[str, float | None]


def _single_value(values: np.ndarray) -> float | None:
    """Return the value every element of a non-empty array equals, or None (NaN never counts as one value)."""
    first = values[0]
    if np.isnan(first) or not (values == first).all():
        return None
    return float(first)


def _load_file(raw_file: RawFile, header: list[str] | None, layout: str, raw_dir: Path,
               columns: tuple[str, ...], duplicates: str) -> _LoadedFile:
    """Read, validate and convert one raw file, and hash its rows unless ``duplicates`` is "none".

    A None header marks an empty file. Runs in worker threads: it touches no shared state.
    """
    if header is None:
        logger.warning("%s: empty file, so class %s gets no flows from this file. Replace it with the "
                       "release file or remove it.", raw_file.path, raw_file.class_name)
        report = FileReport(file=raw_file.path.relative_to(raw_dir).as_posix(), split=raw_file.split,
                            class_name=raw_file.class_name, empty=True)
        return _LoadedFile(raw_file, report, {}, None, {})

    table, report = _read_validated(raw_file, header, layout, raw_dir)
    report.extra_columns = [column for column in header if column not in LAYOUTS[layout]]
    n_rows = table.num_rows
    hasher = RowHasher(n_rows) if duplicates != "none" else None

    features: dict[str, np.ndarray] = {}
    single_values: dict[str, float | None] = {}
    for column in columns:
        values64 = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.float64)
        # Overflow to inf is expected here and counted as float32_overflow.
        with np.errstate(over="ignore"):
            values32 = values64.astype(np.float32)

        # Every kind counted (inf, NaN, float32 overflow) is non-finite in float32, so most columns stop here.
        if not np.isfinite(values32).all():
            report.nonfinite[column] = _count_nonfinite(values64, values32)
        if hasher is not None:
            hasher.update(values32 if duplicates == "float32" else values64)
        if n_rows:
            single_values[column] = _single_value(values32)
        features[column] = values32

    report.rows_kept = n_rows
    report.rows_read = n_rows + sum(report.rows_dropped.values())
    hashes = hasher.digest() if hasher is not None else None
    return _LoadedFile(raw_file, report, features, hashes, single_values)


def _output_table(loaded: _LoadedFile, keep: np.ndarray | None) -> pa.Table:
    """Return the float32 features and label columns of the rows in ``keep`` (all rows when None)."""
    features = {column: values if keep is None else values[keep] for column, values in loaded.features.items()}
    n_rows = len(next(iter(features.values()))) if features else 0
    class_name = loaded.raw_file.class_name
    return pa.table({
        **{column: pa.array(values, type=pa.float32()) for column, values in features.items()},
        "class": _constant(class_name, n_rows),
        "category": _constant(category_of(class_name), n_rows),
        "binary": _constant(binary_of(class_name), n_rows),
        "source_file": _constant(loaded.report.file, n_rows),
        "source_split": _constant(loaded.raw_file.split, n_rows),
    })


def read_raw_file(raw_file: RawFile, header: list[str], layout: str, raw_dir: Path) -> tuple[pa.Table, FileReport]:
    """Read one raw file into a table of float32 features and label columns, with its report."""
    loaded = _load_file(raw_file, header, layout, raw_dir, LAYOUTS[layout], duplicates="none")
    return _output_table(loaded, keep=None), loaded.report


def read_raw_features(raw_file: RawFile, header: list[str], layout: str,
                      raw_dir: Path) -> tuple[dict[str, np.ndarray], FileReport]:
    """Read one raw file's float32 feature columns by name, with its report; no label columns.

    Unlike ``read_raw_file`` this needs no class, so ``raw_file.class_name``
    may be empty (an unlabelled capture).
    """
    loaded = _load_file(raw_file, header, layout, raw_dir, LAYOUTS[layout], duplicates="none")
    return loaded.features, loaded.report


def _constant(value: str, n_rows: int) -> pa.DictionaryArray:
    """Return a dictionary-encoded column repeating one string, without a per-row list."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n_rows, dtype=np.int32)), pa.array([value]))


LABEL_COLUMNS: tuple[str, ...] = ("class", "category", "binary", "source_file", "source_split")


def output_schema(layout: str, columns: tuple[str, ...] | None = None) -> pa.Schema:
    """Return the parquet schema of the ingested dataset: feature ``columns`` (default: the layout's) and labels."""
    label = pa.dictionary(pa.int32(), pa.string())
    columns = LAYOUTS[layout] if columns is None else columns
    return pa.schema(
        [pa.field(column, pa.float32()) for column in columns]
        + [pa.field(name, label) for name in LABEL_COLUMNS]
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


def feature_columns(layout: str, drop_columns: Iterable[str] = ()) -> tuple[str, ...]:
    """Return the layout's feature columns without ``drop_columns``.

    Raises DataError for a name that is not a column of the layout, or when no column would remain.
    """
    drop = list(drop_columns)
    unknown = [name for name in drop if name not in LAYOUTS[layout]]
    if unknown:
        raise DataError(
            f"data.drop_columns names {', '.join(repr(c) for c in unknown)}, which the {layout} layout "
            f"does not have. Use exact column names of that layout: {', '.join(LAYOUTS[layout])}."
        )
    kept = tuple(column for column in LAYOUTS[layout] if column not in drop)
    if not kept:
        raise DataError("data.drop_columns names every feature column; keep at least one.")
    return kept


# Raw CSV bytes that worker threads may read ahead of the parquet writer. A file
# takes roughly twice its CSV size in memory while it is converted (an estimate
# from the 45-column layout), so this bounds the extra memory to about 0.5 GB.
# A larger file is still read, alone.
_READ_AHEAD_BYTES = 256 * 1024 * 1024


def _load_in_background(raw_files: list[RawFile], load) -> Iterator[_LoadedFile]:
    """Yield ``load(raw_file)`` for every file in order, reading the next files in worker threads."""
    workers = max(1, min(4, os.cpu_count() or 1))
    pending: deque[tuple[Future, int]] = deque()
    bytes_ahead = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest-read") as pool:
        try:
            for raw_file in raw_files:
                size = raw_file.path.stat().st_size
                while pending and (len(pending) >= workers or bytes_ahead + size > _READ_AHEAD_BYTES):
                    future, done_size = pending.popleft()
                    bytes_ahead -= done_size
                    yield future.result()
                pending.append((pool.submit(load, raw_file), size))
                bytes_ahead += size

            while pending:
                future, _ = pending.popleft()
                yield future.result()
        finally:
            # After an error, files not yet started are not read at all.
            for future, _ in pending:
                future.cancel()


def _remove_duplicates(loaded: _LoadedFile, seen: SeenRows, check_overlap: bool) -> np.ndarray | None:
    """Count the duplicate rows of a loaded file in its report and return the mask of rows to keep.

    Returns None when every row is kept.
    """
    report = loaded.report
    if loaded.hashes is None:
        return None

    keep = seen.keep_first(report.split, report.class_name, loaded.hashes)
    n_duplicates = int(keep.size - keep.sum())
    if n_duplicates:
        report.rows_dropped["duplicate"] = n_duplicates
        report.rows_kept -= n_duplicates
    if check_overlap and report.split == "test":
        report.rows_equal_to_train = seen.count_in_train(loaded.hashes[keep])
    return keep if n_duplicates else None


def _merge_single_values(single_values: dict[str, float | None], loaded: _LoadedFile) -> None:
    for column, value in loaded.single_values.items():
        if column not in single_values:
            single_values[column] = value
        elif single_values[column] != value:
            single_values[column] = None


def _drop_parquet_columns(path: Path, columns: list[str]) -> None:
    """Rewrite a parquet file without ``columns``, one row group at a time."""
    source = pq.ParquetFile(path)
    keep = [name for name in source.schema_arrow.names if name not in columns]
    rewritten = path.with_suffix(".columns.tmp")
    try:
        schema = pa.schema([source.schema_arrow.field(name) for name in keep])
        with pq.ParquetWriter(rewritten, schema, use_dictionary=list(LABEL_COLUMNS)) as writer:
            for index in range(source.num_row_groups):
                writer.write_table(source.read_row_group(index, columns=keep))
        rewritten.replace(path)
    finally:
        rewritten.unlink(missing_ok=True)


def ingest(raw_dir: Path, out_path: Path, layout: str = "auto", duplicates: str = "none",
           drop_columns: Iterable[str] = (), drop_constant_columns: bool = False) -> IngestReport:
    """Validate every raw file and write their flows to one parquet file.

    ``duplicates`` is "none", "exact" or "float32" (see the module docstring).
    ``drop_columns`` names feature columns to leave out. ``drop_constant_columns``
    also leaves out the columns with one value in every kept row, at the cost of
    a rewrite of the parquet file. Files are read a few at a time and written one
    at a time, so memory follows the largest file, not the release; duplicate
    removal adds 8 bytes per kept flow. Raises DataError on input that cannot be used.
    """
    started = time.perf_counter()
    if duplicates not in DUPLICATE_MODES:
        raise DataError(f"data.duplicates is {duplicates!r}; set it to one of {', '.join(DUPLICATE_MODES)}.")
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
    columns = feature_columns(found_layout, drop_columns)

    seen = SeenRows() if duplicates != "none" else None
    # discover_files lists every train file before the first test file, so the
    # train rows are all known when the overlap of a test file is counted.
    check_overlap = seen is not None and {raw_file.split for raw_file in raw_files} == set(SPLIT_FOLDERS)
    single_values: dict[str, float | None] = {}

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_suffix(".tmp")
    reports: list[FileReport] = []

    def load(raw_file: RawFile) -> _LoadedFile:
        return _load_file(raw_file, headers.get(raw_file), found_layout, raw_dir, columns, duplicates)

    # The finally clause removes the partial file that a failed run leaves behind.
    try:
        # Float features rarely repeat, so dictionary encoding them would only cost time.
        with pq.ParquetWriter(tmp_path, output_schema(found_layout, columns),
                              use_dictionary=list(LABEL_COLUMNS)) as writer:
            for loaded in _load_in_background(raw_files, load):
                report = loaded.report
                keep = _remove_duplicates(loaded, seen, check_overlap) if seen is not None else None
                if check_overlap and report.split == "test" and report.rows_equal_to_train is None:
                    report.rows_equal_to_train = 0
                table = _output_table(loaded, keep)
                if table.num_rows:
                    writer.write_table(table)
                _merge_single_values(single_values, loaded)
                if not report.empty and not report.rows_read:
                    logger.warning("%s: header line only, so class %s gets no flows from this file. Replace "
                                   "it with the release file or remove it.", loaded.raw_file.path, report.class_name)
                if not report.empty:
                    logger.info("%s: read %d, kept %d, dropped %s", report.file, report.rows_read,
                                report.rows_kept, report.rows_dropped or 0)
                reports.append(report)

        constant_columns = [column for column in columns if single_values.get(column) is not None] \
            if single_values else None
        if drop_constant_columns and constant_columns:
            _drop_parquet_columns(tmp_path, constant_columns)
        tmp_path.replace(out_path)
    finally:
        tmp_path.unlink(missing_ok=True)

    result = IngestReport(
        layout=found_layout, files=reports, duplicates=duplicates,
        dropped_columns=[column for column in LAYOUTS[found_layout] if column not in columns],
        constant_columns=constant_columns, constant_columns_dropped=bool(drop_constant_columns and constant_columns),
    )
    totals = result.totals()
    logger.info("ingest: %s layout, %d rows read, %d kept, %d dropped, in %.1f s", found_layout,
                totals["rows_read"], totals["rows_kept"], totals["rows_dropped"],
                time.perf_counter() - started)
    if constant_columns:
        logger.info("ingest: constant column(s) %s%s", ", ".join(constant_columns),
                    " left out" if drop_constant_columns else "")
    return result
