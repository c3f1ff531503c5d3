"""Download the CICIoMT2024 WiFi and MQTT attack CSV files into a raw-data folder.

The dataset's web server publishes each split as an Apache-style directory
listing of ``*.pcap.csv`` files. :func:`download_release` mirrors the chosen
splits into ``<raw_dir>/<split>/``, resumes partial files with HTTP Range
requests, and records the size and SHA-256 of every downloaded file in a JSON
lock file. Later runs skip files that still match the lock and raise
:class:`FileIntegrityError` for files that changed on disk.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

from tqdm import tqdm

from iomt_ids.data.schema import class_from_file_name

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://cicresearch.ca/IOTDataset/CICIoMT2024/Dataset/WiFI_and_MQTT/attacks/CSV"
DATASET_PAGE_URL = "https://www.unb.ca/cic/datasets/iomt-dataset-2024.html"
DEFAULT_SPLITS = ("train", "test")
LOCK_FILE_NAME = "download.lock.json"
PART_SUFFIX = ".part"

LOCK_FORMAT_VERSION = 1
_CHUNK_BYTES = 1024 * 1024
_USER_AGENT = "iomt-ids-downloader/0.1"
_CSV_SUFFIXES = (".csv", ".csv.gz")

# Matches "bytes 100-199/200" and "bytes 100-199/*".
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadError(RuntimeError):
    """Failure to list or fetch a file from the dataset server, or an unusable lock file."""


class FileIntegrityError(DownloadError):
    """File whose size or SHA-256 differs from the lock file or from the server's Content-Length."""


@dataclass(frozen=True)
class LockEntry:
    """Lock-file record of one downloaded file. ``size`` is in bytes."""

    split: str
    name: str
    url: str
    size: int
    sha256: str

    @property
    def relative_path(self) -> str:
        """Path of the file relative to the raw-data folder, such as ``test/Benign_test.pcap.csv``."""
        return f"{self.split}/{self.name}"


@dataclass
class DownloadReport:
    """Outcome of one :func:`download_release` run.

    File lists hold paths relative to the raw-data folder (``<split>/<name>``).
    ``resumed`` is a subset of ``fetched``. ``bytes_fetched`` counts the bytes
    received in this run, so a resumed file adds only its remainder.
    """

    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    bytes_fetched: int = 0

    @property
    def up_to_date(self) -> bool:
        """True when the run fetched nothing because every selected file was already complete."""
        return not self.fetched

    def to_dict(self) -> dict[str, object]:
        """Return the report as a JSON-serialisable dict, including ``up_to_date``."""
        report = asdict(self)
        report["up_to_date"] = self.up_to_date
        return report


@dataclass(frozen=True)
class _RemoteFile:
    split: str
    name: str
    url: str

    @property
    def relative_path(self) -> str:
        return f"{self.split}/{self.name}"


@dataclass(frozen=True)
class _Transfer:
    bytes_received: int
    resumed: bool


class _RangeNotSatisfiable(Exception):
    """Raised internally when the server responds with 416 to a resume request."""


class _LinkParser(HTMLParser):
    """Collect the ``href`` values of all ``<a>`` tags of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        for key, value in attrs:
            if key == "href" and value:
                self.hrefs.append(value)


def listed_class(name: str) -> str | None:
    """Return the class of a listed file name, or None when the name matches no class.

    The rule is ingestion's (:func:`iomt_ids.data.schema.class_from_file_name`):
    ``TCP_IP-DDoS-ICMP3_train.pcap.csv`` is class ``TCP_IP-DDoS-ICMP``.
    """
    try:
        return class_from_file_name(Path(name))
    except ValueError:
        return None


def list_remote_files(base_url: str, split: str, timeout: float = 30.0) -> list[str]:
    """Fetch the listing page ``<base_url>/<split>/`` and return its CSV file names.

    Only links to ``.csv`` or ``.csv.gz`` files directly inside the listed
    folder count, so parent-folder, subfolder, other-host and query links
    (such as Apache's sort links) are ignored. Names are URL-unquoted, unique
    and sorted. ``timeout`` is in seconds. Raises :class:`DownloadError` when
    the page cannot be fetched.
    """
    return _list_split(base_url, split, timeout, raw_dir=None)


def download_release(
    raw_dir: Path | str,
    base_url: str = DEFAULT_BASE_URL,
    splits: Sequence[str] = DEFAULT_SPLITS,
    classes: Sequence[str] | None = None,
    max_files: int | None = None,
    lock_path: Path | str | None = None,
    timeout: float = 30.0,
    progress: bool = True,
) -> DownloadReport:
    """Download the selected dataset CSV files into ``<raw_dir>/<split>/``.

    Listed files whose name matches no class are skipped with a warning,
    because ingestion rejects them. ``classes`` keeps only files of those
    classes (see :func:`listed_class`). ``max_files`` then keeps the first N
    names of each split in sorted order.
    Each file streams to ``<name>.part`` and is renamed when complete. An
    existing ``.part`` file is resumed with a Range request. The lock file
    (default ``<raw_dir>/download.lock.json``) is rewritten after every file.

    A present file that matches its lock entry is skipped. A present file
    without a lock entry cannot be verified, so it is fetched again and replaced.
    ``timeout`` is the socket timeout in seconds for each request, and there
    are no retries.

    Raises:
        ValueError: on an invalid ``splits``, ``classes`` or ``max_files``
            value, or a class that matches no listed file.
        FileIntegrityError: when a present file differs from its lock entry, or
            a finished download is larger than the server's Content-Length.
        DownloadError: when the server cannot be reached, responds with an HTTP
            error, or a transfer is interrupted. A partial file is kept for the
            next run to resume.
    """
    raw_dir = Path(raw_dir)
    lock_path = Path(lock_path) if lock_path is not None else raw_dir / LOCK_FILE_NAME
    _validate_selection(splits, classes, max_files)

    # List every split before fetching, so a bad URL fails before any transfer.
    listed = {split: _list_split(base_url, split, timeout, raw_dir) for split in splits}
    _check_listings_not_empty(base_url, listed, raw_dir)
    selected = _select_files(base_url, listed, classes, max_files)
    logger.info("Selected %d files from %s for %s", len(selected), base_url, raw_dir)

    entries = _read_lock(lock_path)
    report = DownloadReport()
    for remote in selected:
        _sync_file(remote, raw_dir, lock_path, entries, report, timeout, progress)

    _log_summary(report, raw_dir)
    return report


def verify_lock(raw_dir: Path | str, lock_path: Path | str | None = None) -> list[str]:
    """Recompute the SHA-256 of every file in the lock and return the changed ones.

    Returns the sorted relative paths (``<split>/<name>``) of files that are
    missing or whose size or SHA-256 differs from the lock. An empty list means
    every locked file is intact. Raises :class:`FileNotFoundError` when the lock
    file does not exist.
    """
    raw_dir = Path(raw_dir)
    lock_path = Path(lock_path) if lock_path is not None else raw_dir / LOCK_FILE_NAME
    if not lock_path.is_file():
        raise FileNotFoundError(
            f"Lock file not found: {lock_path}. Run the download first so that it records the files."
        )

    changed = []
    for key, entry in sorted(_read_lock(lock_path).items()):
        path = raw_dir / entry.split / entry.name
        if not path.is_file():
            logger.warning("Locked file is missing: %s", path)
            changed.append(key)
        elif path.stat().st_size != entry.size or file_sha256(path) != entry.sha256:
            logger.warning("Locked file changed on disk: %s", path)
            changed.append(key)
    return changed


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


# Listing and selection.


def _listing_url(base_url: str, split: str) -> str:
    return f"{base_url.rstrip('/')}/{quote(split)}/"


def _list_split(base_url: str, split: str, timeout: float, raw_dir: Path | None) -> list[str]:
    url = _listing_url(base_url, split)
    page = _fetch_text(url, timeout, raw_dir)
    names = _csv_names_from_listing(page, url)
    logger.debug("Listed %d CSV files at %s", len(names), url)
    return names


def _fetch_text(url: str, timeout: float, raw_dir: Path | None) -> str:
    try:
        with _open(url, timeout) as response:
            charset = response.headers.get_content_charset() or "utf-8"
            body = response.read()
    except (OSError, http.client.HTTPException) as error:
        # URLError and HTTPError are OSError subclasses, as are socket timeouts.
        raise _unreachable_error(url, error, raw_dir) from error
    return body.decode(charset, errors="replace")


def _csv_names_from_listing(page: str, listing_url: str) -> list[str]:
    parser = _LinkParser()
    parser.feed(page)
    parser.close()

    listing = urlsplit(listing_url)
    names = set()
    for href in parser.hrefs:
        target = urlsplit(urljoin(listing_url, href))
        if target.query or target.netloc != listing.netloc:
            continue

        folder, _, quoted_name = target.path.rpartition("/")
        if folder + "/" != listing.path:
            continue

        name = unquote(quoted_name)
        if _is_safe_csv_name(name):
            names.add(name)
    return sorted(names)


def _is_safe_csv_name(name: str) -> bool:
    # The name becomes a local path, so an unquoted "/" or ".." must not pass.
    if "/" in name or "\\" in name or name.startswith("."):
        return False
    return name.lower().endswith(_CSV_SUFFIXES)


def _validate_selection(
    splits: Sequence[str], classes: Sequence[str] | None, max_files: int | None
) -> None:
    if isinstance(splits, str) or not splits:
        raise ValueError(f"splits must be a non-empty list of split names such as ('train', 'test'), got {splits!r}.")
    for split in splits:
        if not split or "/" in split or "\\" in split or split in (".", ".."):
            raise ValueError(f"Invalid split name {split!r}: it must be a single folder name such as 'train'.")

    if classes is not None and (isinstance(classes, str) or not classes):
        raise ValueError(f"classes must be a non-empty list of class names or None for all, got {classes!r}.")
    if max_files is not None and max_files < 1:
        raise ValueError(f"max_files must be at least 1 or None for all files, got {max_files}.")


def _select_files(
    base_url: str,
    listed: dict[str, list[str]],
    classes: Sequence[str] | None,
    max_files: int | None,
) -> list[_RemoteFile]:
    if classes is not None:
        _check_classes_exist(listed, classes)

    selected = []
    for split, names in listed.items():
        unknown = [name for name in names if listed_class(name) is None]
        if unknown:
            logger.warning(
                "Skipped %d file(s) of %s whose names match no class, because ingestion would reject them: %s",
                len(unknown), _listing_url(base_url, split), ", ".join(unknown),
            )
        matching = [
            name for name in names
            if name not in unknown and (classes is None or listed_class(name) in classes)
        ]
        if max_files is not None:
            matching = matching[:max_files]

        listing_url = _listing_url(base_url, split)
        selected.extend(_RemoteFile(split, name, urljoin(listing_url, quote(name))) for name in matching)
    return selected


def _check_listings_not_empty(base_url: str, listed: dict[str, list[str]], raw_dir: Path) -> None:
    for split, names in listed.items():
        if not names:
            raise DownloadError(
                f"The listing page {_listing_url(base_url, split)} links no .csv or .csv.gz files. "
                "Check that the base URL points at the folder that contains the split folders. "
                + _manual_placement_hint(raw_dir)
            )
        if all(listed_class(name) is None for name in names):
            raise DownloadError(
                f"The listing page {_listing_url(base_url, split)} links {len(names)} CSV file(s), but none is "
                f"named like a release file ('<Class><capture digits>_<split>.pcap.csv', for example "
                f"'Benign_{split}.pcap.csv'). Check that the base URL points at the CICIoMT2024 CSV folder. "
                + _manual_placement_hint(raw_dir)
            )


def _check_classes_exist(listed: dict[str, list[str]], classes: Sequence[str]) -> None:
    available = {listed_class(name) for names in listed.values() for name in names} - {None}
    unknown = sorted(set(classes) - available)
    if unknown:
        raise ValueError(
            f"Unknown classes {unknown}: no listed file in splits {sorted(listed)} has them. "
            f"Available classes: {sorted(available)}."
        )


# Lock file.


def _read_lock(lock_path: Path) -> dict[str, LockEntry]:
    if not lock_path.is_file():
        return {}

    try:
        document = json.loads(lock_path.read_text(encoding="utf-8"))
        entries = {key: LockEntry(**record) for key, record in document["files"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise DownloadError(
            f"Lock file {lock_path} is invalid ({type(error).__name__}: {error}). "
            "Delete it and rerun the download. Files it listed are then fetched again."
        ) from error
    return entries


def _write_lock(lock_path: Path, entries: dict[str, LockEntry]) -> None:
    document = {
        "format_version": LOCK_FORMAT_VERSION,
        "files": {key: asdict(entry) for key, entry in entries.items()},
    }
    text = json.dumps(document, sort_keys=True, indent=2) + "\n"

    # Write a sibling file and rename it, so an interrupted write never leaves a truncated lock.
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = lock_path.with_name(lock_path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, lock_path)


# Per-file work.


def _sync_file(
    remote: _RemoteFile,
    raw_dir: Path,
    lock_path: Path,
    entries: dict[str, LockEntry],
    report: DownloadReport,
    timeout: float,
    progress: bool,
) -> None:
    """Skip, fetch or resume one file and record the outcome in ``report`` and the lock."""
    path = raw_dir / remote.split / remote.name
    entry = entries.get(remote.relative_path)
    if _is_complete(path, entry, lock_path):
        logger.info("Skipped %s: size and SHA-256 match the lock file", remote.relative_path)
        report.skipped.append(remote.relative_path)
        return

    if path.exists() and entry is None:
        logger.warning("%s is present but not in the lock file, so it is fetched again and replaced", path)

    part_path = path.with_name(path.name + PART_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    transfer = _fetch_to_part(remote.url, part_path, timeout, progress, raw_dir)
    os.replace(part_path, path)

    entries[remote.relative_path] = LockEntry(
        split=remote.split,
        name=remote.name,
        url=remote.url,
        size=path.stat().st_size,
        sha256=file_sha256(path),
    )
    _write_lock(lock_path, entries)

    report.fetched.append(remote.relative_path)
    report.bytes_fetched += transfer.bytes_received
    if transfer.resumed:
        report.resumed.append(remote.relative_path)
    logger.info(
        "Fetched %s (%d bytes received, %d bytes on disk%s)",
        remote.relative_path,
        transfer.bytes_received,
        entries[remote.relative_path].size,
        ", resumed" if transfer.resumed else "",
    )


def _is_complete(path: Path, entry: LockEntry | None, lock_path: Path) -> bool:
    """Return True when ``path`` matches its lock entry, and raise when it differs.

    A missing file or a file without a lock entry returns False, so it is fetched.
    """
    if entry is None or not path.is_file():
        return False

    size = path.stat().st_size
    sha256 = file_sha256(path)
    if size == entry.size and sha256 == entry.sha256:
        return True

    raise FileIntegrityError(
        f"{path} does not match the lock file {lock_path}: expected SHA-256 {entry.sha256} "
        f"({entry.size} bytes), found SHA-256 {sha256} ({size} bytes). The file changed after it "
        "was downloaded. Delete it and rerun the download to fetch it again."
    )


def _fetch_to_part(url: str, part_path: Path, timeout: float, progress: bool, raw_dir: Path) -> _Transfer:
    """Stream ``url`` into ``part_path``, resuming from its current size when it exists."""
    offset = part_path.stat().st_size if part_path.exists() else 0
    try:
        response = _open_for_fetch(url, offset, timeout, raw_dir)
    except _RangeNotSatisfiable:
        # 416 means the partial file is at least as long as the remote file. Without a server
        # checksum it may be complete or wrong, so it is fetched again.
        logger.warning(
            "Server rejected the Range request for %s at byte %d (416), so the download restarts from byte 0",
            url,
            offset,
        )
        part_path.unlink()
        offset = 0
        response = _open_for_fetch(url, offset, timeout, raw_dir)

    with response:
        start, total = _resume_point(response, url, offset)
        if offset:
            _log_resume_outcome(url, offset, start)
        received = _stream_to_file(response, part_path, start, total, url, raw_dir, progress)

    _check_received_size(part_path, total, url, raw_dir)
    return _Transfer(bytes_received=received, resumed=start > 0)


def _open(url: str, timeout: float, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, **(headers or {})})
    return urllib.request.urlopen(request, timeout=timeout)


def _open_for_fetch(url: str, offset: int, timeout: float, raw_dir: Path) -> http.client.HTTPResponse:
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        return _open(url, timeout, headers)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            raise _RangeNotSatisfiable from error
        raise _unreachable_error(url, error, raw_dir) from error
    except (OSError, http.client.HTTPException) as error:
        raise _unreachable_error(url, error, raw_dir) from error


def _resume_point(response: http.client.HTTPResponse, url: str, offset: int) -> tuple[int, int | None]:
    """Return the byte offset the response body starts at and the full file size.

    The size is None when the server sends neither Content-Range nor Content-Length.
    """
    if response.status != 206:
        length = response.headers.get("Content-Length")
        return 0, int(length) if length and length.isdigit() else None

    content_range = response.headers.get("Content-Range", "")
    match = _CONTENT_RANGE.match(content_range.strip())
    start = int(match.group(1)) if match else -1
    if start not in (0, offset):
        raise DownloadError(
            f"Server responded to the request for {url} from byte {offset} with an invalid Content-Range "
            f"{content_range!r}. Delete the partial file and rerun the download."
        )
    total = match.group(3)
    return start, int(total) if total.isdigit() else None


def _log_resume_outcome(url: str, offset: int, start: int) -> None:
    if start == offset:
        logger.info("Resuming %s from byte %d", url, offset)
    else:
        logger.warning("Server ignored the Range request for %s, so the download restarts from byte 0", url)


def _stream_to_file(
    response: http.client.HTTPResponse,
    part_path: Path,
    start: int,
    total: int | None,
    url: str,
    raw_dir: Path,
    progress: bool,
) -> int:
    """Append the response body to ``part_path`` from byte ``start`` and return the bytes received."""
    # Opening with "wb" at start 0 truncates a partial file the server would not resume.
    mode = "ab" if start else "wb"
    received = 0
    with part_path.open(mode) as output, tqdm(
        total=total,
        initial=start,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=part_path.name.removesuffix(PART_SUFFIX),
        disable=not progress,
        leave=False,
    ) as bar:
        while True:
            try:
                chunk = response.read(_CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as error:
                # Flush first so that the error message reports the bytes already on disk.
                output.flush()
                raise _interrupted_error(url, part_path, total, raw_dir, repr(error)) from error
            if not chunk:
                break
            output.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return received


def _check_received_size(part_path: Path, total: int | None, url: str, raw_dir: Path) -> None:
    # NOTE: without a Content-Length or Content-Range total, a truncated transfer is not detected here.
    if total is None:
        return

    size = part_path.stat().st_size
    if size < total:
        # http.client returns an empty read when the server closes early, so a short file means an interrupted transfer.
        raise _interrupted_error(url, part_path, total, raw_dir, "connection closed early")
    if size > total:
        raise FileIntegrityError(
            f"{part_path} has {size} bytes but the server reports {total} bytes for {url}. "
            f"Delete {part_path} and rerun the download."
        )


# Error messages.


def _manual_placement_hint(raw_dir: Path | None) -> str:
    train_dir = f"{raw_dir / 'train'}/" if raw_dir is not None else "<raw_dir>/train/"
    test_dir = f"{raw_dir / 'test'}/" if raw_dir is not None else "<raw_dir>/test/"
    return (
        f"To place the files by hand, download the CSV files from the official dataset page "
        f"{DATASET_PAGE_URL} and put them under {train_dir} and {test_dir}."
    )


def _unreachable_error(url: str, error: BaseException, raw_dir: Path | None) -> DownloadError:
    return DownloadError(
        f"Request to {url} failed: {error}. Check the network connection and the base URL. "
        + _manual_placement_hint(raw_dir)
    )


def _interrupted_error(
    url: str, part_path: Path, total: int | None, raw_dir: Path, cause: str
) -> DownloadError:
    size = part_path.stat().st_size if part_path.exists() else 0
    expected = f"{total}" if total is not None else "an unknown number of"
    return DownloadError(
        f"Transfer of {url} was interrupted after {size} of {expected} bytes ({cause}). "
        f"The partial file {part_path} is kept, so rerunning the download resumes it. "
        + _manual_placement_hint(raw_dir)
    )


def _log_summary(report: DownloadReport, raw_dir: Path) -> None:
    if report.up_to_date:
        logger.info(
            "All %d selected files in %s are already complete, so nothing was fetched", len(report.skipped), raw_dir
        )
        return
    logger.info(
        "Fetched %d files (%d resumed, %d bytes received) and skipped %d complete files in %s",
        len(report.fetched),
        len(report.resumed),
        report.bytes_fetched,
        len(report.skipped),
        raw_dir,
    )
