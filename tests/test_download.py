"""Tests for iomt_ids.data.download against a real HTTP server on 127.0.0.1.

The server serves a temporary copy of a few sample CSV files as Apache-style
listings. Its handler supports Range requests and has two switches:
``ignore_ranges`` responds to every request with the whole file (200), and
``cut_after`` sends the full Content-Length but closes the connection after
that many body bytes, which looks like an interrupted transfer to the client.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from iomt_ids.data.download import (
    DATASET_PAGE_URL,
    LOCK_FILE_NAME,
    DownloadError,
    FileIntegrityError,
    download_release,
    list_remote_files,
    listed_class,
    verify_lock,
)

SAMPLE_TEST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ciciomt2024-v2-sample" / "test"

# The smallest sample files, plus two that differ only in a trailing digit of the class.
TEST_FILES = (
    "Recon-Ping_Sweep_test.pcap.csv",
    "Recon-VulScan_test.pcap.csv",
    "TCP_IP-DDoS-ICMP1_test.pcap.csv",
    "TCP_IP-DDoS-ICMP2_test.pcap.csv",
)
# Train-split names served with the bytes of a test-split sample file.
TRAIN_COPIES = {
    "Recon-Ping_Sweep_train.pcap.csv": "Recon-Ping_Sweep_test.pcap.csv",
    "TCP_IP-DDoS-ICMP3_train.pcap.csv": "TCP_IP-DDoS-ICMP1_test.pcap.csv",
}
ALL_FILES = sorted(f"train/{name}" for name in TRAIN_COPIES) + sorted(f"test/{name}" for name in TEST_FILES)
URL_PREFIX = "/CSV/"
RANGE_HEADER = re.compile(r"bytes=(\d+)-")


class DatasetServer(ThreadingHTTPServer):
    """HTTP server on a free 127.0.0.1 port that serves ``root`` under ``/CSV/``."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), RangeRequestHandler)
        self.root = root
        self.ignore_ranges = False
        self.cut_after: int | None = None
        self.requests: list[tuple[str, str | None]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}{URL_PREFIX.rstrip('/')}"

    def file_requests(self) -> list[tuple[str, str | None]]:
        """Return the (path, Range header) of every request for a CSV file."""
        return [(path, range_header) for path, range_header in self.requests if path.endswith(".csv")]


class RangeRequestHandler(BaseHTTPRequestHandler):
    """GET handler with directory listings, single open-ended byte ranges and the test switches."""

    server: DatasetServer

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Range")))
        path = unquote(urlsplit(self.path).path)
        if not path.startswith(URL_PREFIX):
            self.send_error(404)
            return

        target = self.server.root / path.removeprefix(URL_PREFIX)
        if path.endswith("/") and target.is_dir():
            self._send_body(200, _listing_page(target, path).encode(), "text/html; charset=utf-8")
        elif target.is_file():
            self._send_file(target.read_bytes())
        else:
            self.send_error(404)

    def _send_file(self, data: bytes) -> None:
        match = RANGE_HEADER.fullmatch(self.headers.get("Range", ""))
        if match is None or self.server.ignore_ranges:
            self._send_body(200, data, "text/csv")
            return

        start = int(match.group(1))
        if start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_body(206, data[start:], "text/csv", f"bytes {start}-{len(data) - 1}/{len(data)}")

    def _send_body(self, status: int, body: bytes, content_type: str, content_range: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if content_range is not None:
            self.send_header("Content-Range", content_range)
        self.end_headers()

        # Closing after part of the body, with the full Content-Length already sent, simulates a dropped transfer.
        if self.server.cut_after is not None and content_type == "text/csv":
            self.wfile.write(body[: self.server.cut_after])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the server quiet so that test output shows only failures."""


def _listing_page(folder: Path, url_path: str) -> str:
    """Build an Apache-style index page with sort, parent-folder and child links."""
    links = [
        '<a href="?C=N;O=D">Name</a>',
        '<a href="?C=M;O=A">Last modified</a>',
        f'<a href="{URL_PREFIX}">Parent Directory</a>',
    ]
    for child in sorted(folder.iterdir()):
        href = quote(child.name) + ("/" if child.is_dir() else "")
        links.append(f'<a href="{href}">{html.escape(child.name)}</a>')
    rows = "\n".join(links)
    return f"<html><head><title>Index of {url_path}</title></head><body><pre>\n{rows}\n</pre></body></html>\n"


@contextlib.contextmanager
def _running_server(root: Path) -> Iterator[DatasetServer]:
    server = DatasetServer(root)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def served_dir(tmp_path: Path) -> Path:
    """Folder with ``train/`` and ``test/`` copies of sample files, plus links the client must ignore."""
    if not SAMPLE_TEST_DIR.is_dir():
        pytest.skip(
            f"Sample data folder not found: {SAMPLE_TEST_DIR}. Place the CICIoMT2024 sample beside the repository."
        )

    served = tmp_path / "served"
    (served / "train").mkdir(parents=True)
    (served / "test" / "archive").mkdir(parents=True)
    for name in TEST_FILES:
        shutil.copyfile(SAMPLE_TEST_DIR / name, served / "test" / name)
    for train_name, test_name in TRAIN_COPIES.items():
        shutil.copyfile(SAMPLE_TEST_DIR / test_name, served / "train" / train_name)

    # A non-CSV file and a CSV in a subfolder appear in the listing but are not dataset files.
    (served / "test" / "README.txt").write_text("not a dataset file\n")
    (served / "test" / "archive" / "Old_test.pcap.csv").write_text("a,b\n1,2\n")
    return served


@pytest.fixture
def server(served_dir: Path) -> Iterator[DatasetServer]:
    with _running_server(served_dir) as running:
        yield running


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    return tmp_path / "raw"


def _read_lock(raw_dir: Path) -> dict:
    return json.loads((raw_dir / LOCK_FILE_NAME).read_text())


def _free_port() -> int:
    """Return a 127.0.0.1 port that had nothing listening when it was checked."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("TCP_IP-DDoS-ICMP3_train.pcap.csv", "TCP_IP-DDoS-ICMP"),
        ("TCP_IP-DDoS-ICMP12_test.pcap.csv", "TCP_IP-DDoS-ICMP"),
        ("Benign_test.pcap.csv", "Benign"),
        ("MQTT-DDoS-Connect_Flood_train.pcap.csv", "MQTT-DDoS-Connect_Flood"),
        ("Recon-Ping_Sweep_test.pcap.csv.gz", "Recon-Ping_Sweep"),
        ("extra7.csv", None),
        ("Benign-old_test.pcap.csv", None),
    ],
)
def test_listed_class_cases(name: str, expected: str | None) -> None:
    assert listed_class(name) == expected


def test_unknown_names_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    served = tmp_path / "served"
    (served / "test").mkdir(parents=True)
    (served / "test" / "Benign_test.pcap.csv").write_text("a\n1\n")
    (served / "test" / "summary_test.csv").write_text("a\n1\n")

    with _running_server(served) as running:
        report = download_release(tmp_path / "raw", running.base_url, splits=["test"], timeout=5, progress=False)

    assert report.fetched == ["test/Benign_test.pcap.csv"]
    assert not (tmp_path / "raw" / "test" / "summary_test.csv").exists()
    assert "summary_test.csv" in caplog.text


def test_only_unknown_names_fails_clearly(tmp_path: Path) -> None:
    served = tmp_path / "served"
    (served / "test").mkdir(parents=True)
    (served / "test" / "summary_test.csv").write_text("a\n1\n")

    with _running_server(served) as running, pytest.raises(DownloadError) as caught:
        download_release(tmp_path / "raw", running.base_url, splits=["test"], timeout=5, progress=False)

    message = str(caught.value)
    assert f"{running.base_url}/test/" in message
    assert "none is named like a release file" in message
    assert DATASET_PAGE_URL in message


def test_list_remote_files_filters_links(tmp_path: Path) -> None:
    served = tmp_path / "served"
    (served / "test" / "archive").mkdir(parents=True)
    for name in ("Benign extra_test.pcap.csv", "ARP_Spoofing_test.pcap.csv", "Zipped_test.pcap.csv.gz", "notes.txt"):
        (served / "test" / name).write_text("a\n")
    (served / "test" / "archive" / "Old_test.pcap.csv").write_text("a\n")

    with _running_server(served) as running:
        names = list_remote_files(running.base_url, "test", timeout=5)

    assert names == ["ARP_Spoofing_test.pcap.csv", "Benign extra_test.pcap.csv", "Zipped_test.pcap.csv.gz"]


@pytest.mark.sample
def test_download_full_byte_identical(server: DatasetServer, served_dir: Path, raw_dir: Path) -> None:
    report = download_release(raw_dir, server.base_url, timeout=5, progress=True)

    assert sorted(report.fetched) == sorted(ALL_FILES)
    assert report.skipped == []
    assert report.resumed == []
    assert report.bytes_fetched == sum((served_dir / relative).stat().st_size for relative in ALL_FILES)
    for relative in ALL_FILES:
        assert (raw_dir / relative).read_bytes() == (served_dir / relative).read_bytes(), relative
    assert list(raw_dir.rglob("*.part")) == []
    assert not (raw_dir / "test" / "README.txt").exists()
    assert not (raw_dir / "test" / "archive").exists()


@pytest.mark.sample
def test_download_lock_records_files(server: DatasetServer, served_dir: Path, raw_dir: Path) -> None:
    download_release(raw_dir, server.base_url, timeout=5, progress=False)

    lock_text = (raw_dir / LOCK_FILE_NAME).read_text()
    lock = json.loads(lock_text)
    assert lock_text == json.dumps(lock, sort_keys=True, indent=2) + "\n"
    assert sorted(lock["files"]) == sorted(ALL_FILES)
    for relative in ALL_FILES:
        entry = lock["files"][relative]
        served_bytes = (served_dir / relative).read_bytes()
        split, name = relative.split("/")
        assert entry["split"] == split
        assert entry["name"] == name
        assert entry["url"] == f"{server.base_url}/{relative}"
        assert entry["size"] == len(served_bytes)
        assert entry["sha256"] == hashlib.sha256(served_bytes).hexdigest()


@pytest.mark.sample
def test_second_run_fetches_nothing(server: DatasetServer, raw_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    download_release(raw_dir, server.base_url, timeout=5, progress=False)
    server.requests.clear()

    with caplog.at_level("INFO", logger="iomt_ids.data.download"):
        report = download_release(raw_dir, server.base_url, timeout=5, progress=False)

    assert report.fetched == []
    assert sorted(report.skipped) == sorted(ALL_FILES)
    assert report.bytes_fetched == 0
    assert report.up_to_date
    assert report.to_dict()["up_to_date"] is True
    assert server.file_requests() == []
    assert "nothing was fetched" in caplog.text


@pytest.mark.sample
def test_download_subset_by_class(server: DatasetServer, raw_dir: Path) -> None:
    report = download_release(raw_dir, server.base_url, classes=["TCP_IP-DDoS-ICMP"], timeout=5, progress=False)

    expected = [
        "train/TCP_IP-DDoS-ICMP3_train.pcap.csv",
        "test/TCP_IP-DDoS-ICMP1_test.pcap.csv",
        "test/TCP_IP-DDoS-ICMP2_test.pcap.csv",
    ]
    assert report.fetched == expected
    assert sorted(str(path.relative_to(raw_dir)) for path in raw_dir.rglob("*.csv")) == sorted(expected)


@pytest.mark.sample
def test_download_subset_max_files(server: DatasetServer, raw_dir: Path) -> None:
    report = download_release(raw_dir, server.base_url, max_files=1, timeout=5, progress=False)

    expected = ["train/Recon-Ping_Sweep_train.pcap.csv", "test/Recon-Ping_Sweep_test.pcap.csv"]
    assert report.fetched == expected
    assert sorted(str(path.relative_to(raw_dir)) for path in raw_dir.rglob("*.csv")) == sorted(expected)


@pytest.mark.sample
def test_download_unknown_class_rejected(server: DatasetServer, raw_dir: Path) -> None:
    with pytest.raises(ValueError) as caught:
        download_release(raw_dir, server.base_url, classes=["Benign"], timeout=5, progress=False)

    message = str(caught.value)
    assert "'Benign'" in message
    assert "Recon-VulScan" in message
    assert not raw_dir.exists()


@pytest.mark.sample
def test_interrupted_download_resumes(server: DatasetServer, served_dir: Path, raw_dir: Path) -> None:
    name = "Recon-Ping_Sweep_test.pcap.csv"
    served_bytes = (served_dir / "test" / name).read_bytes()
    part_path = raw_dir / "test" / f"{name}.part"

    server.cut_after = 10_000
    with pytest.raises(DownloadError) as caught:
        download_release(raw_dir, server.base_url, splits=["test"], max_files=1, timeout=5, progress=False)
    assert "interrupted after 10000 of" in str(caught.value)
    assert str(part_path) in str(caught.value)
    assert part_path.stat().st_size == 10_000
    assert not (raw_dir / "test" / name).exists()

    server.cut_after = None
    server.requests.clear()
    report = download_release(raw_dir, server.base_url, splits=["test"], max_files=1, timeout=5, progress=True)

    assert server.file_requests() == [(f"{URL_PREFIX}test/{name}", "bytes=10000-")]
    assert report.resumed == [f"test/{name}"]
    assert report.bytes_fetched == len(served_bytes) - 10_000
    assert (raw_dir / "test" / name).read_bytes() == served_bytes
    assert not part_path.exists()
    assert _read_lock(raw_dir)["files"][f"test/{name}"]["sha256"] == hashlib.sha256(served_bytes).hexdigest()


@pytest.mark.sample
def test_ignored_range_restarts_cleanly(server: DatasetServer, served_dir: Path, raw_dir: Path) -> None:
    name = "Recon-Ping_Sweep_test.pcap.csv"
    served_bytes = (served_dir / "test" / name).read_bytes()

    server.cut_after = 10_000
    with pytest.raises(DownloadError):
        download_release(raw_dir, server.base_url, splits=["test"], max_files=1, timeout=5, progress=False)

    server.cut_after = None
    server.ignore_ranges = True
    server.requests.clear()
    report = download_release(raw_dir, server.base_url, splits=["test"], max_files=1, timeout=5, progress=False)

    assert server.file_requests() == [(f"{URL_PREFIX}test/{name}", "bytes=10000-")]
    assert report.fetched == [f"test/{name}"]
    assert report.resumed == []
    assert report.bytes_fetched == len(served_bytes)
    assert (raw_dir / "test" / name).read_bytes() == served_bytes


@pytest.mark.sample
def test_unlocked_present_file_replaced(server: DatasetServer, served_dir: Path, raw_dir: Path) -> None:
    relative = "test/Recon-Ping_Sweep_test.pcap.csv"
    (raw_dir / "test").mkdir(parents=True)
    (raw_dir / relative).write_bytes(b"stale bytes from somewhere else\n")

    report = download_release(raw_dir, server.base_url, splits=["test"], max_files=1, timeout=5, progress=False)

    assert report.fetched == [relative]
    assert (raw_dir / relative).read_bytes() == (served_dir / relative).read_bytes()


@pytest.mark.sample
def test_verify_lock_detects_changes(server: DatasetServer, raw_dir: Path) -> None:
    download_release(raw_dir, server.base_url, timeout=5, progress=False)
    assert verify_lock(raw_dir) == []

    # Flipping one byte keeps the size, so only the SHA-256 can catch it.
    corrupted = raw_dir / "test" / "Recon-VulScan_test.pcap.csv"
    data = bytearray(corrupted.read_bytes())
    data[100] ^= 0x01
    corrupted.write_bytes(bytes(data))
    (raw_dir / "train" / "Recon-Ping_Sweep_train.pcap.csv").unlink()

    assert verify_lock(raw_dir) == ["test/Recon-VulScan_test.pcap.csv", "train/Recon-Ping_Sweep_train.pcap.csv"]


def test_verify_lock_missing_lock_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Run the download first"):
        verify_lock(tmp_path)


@pytest.mark.sample
def test_rerun_rejects_corrupted_file(server: DatasetServer, raw_dir: Path) -> None:
    download_release(raw_dir, server.base_url, timeout=5, progress=False)
    corrupted = raw_dir / "test" / "Recon-VulScan_test.pcap.csv"
    expected_sha256 = _read_lock(raw_dir)["files"]["test/Recon-VulScan_test.pcap.csv"]["sha256"]
    with corrupted.open("ab") as handle:
        handle.write(b"extra row\n")
    actual_sha256 = hashlib.sha256(corrupted.read_bytes()).hexdigest()

    with pytest.raises(FileIntegrityError) as caught:
        download_release(raw_dir, server.base_url, timeout=5, progress=False)

    message = str(caught.value)
    assert str(corrupted) in message
    assert expected_sha256 in message
    assert actual_sha256 in message
    assert "Delete it and rerun" in message


def test_unreachable_server_fails_fast(tmp_path: Path) -> None:
    base_url = f"http://127.0.0.1:{_free_port()}/CSV"
    raw_dir = tmp_path / "raw"

    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        download_release(raw_dir, base_url, timeout=2, progress=False)
    elapsed = time.monotonic() - started

    message = str(caught.value)
    assert elapsed < 5
    assert f"{base_url}/train/" in message
    assert DATASET_PAGE_URL in message
    assert f"{raw_dir / 'train'}/" in message
    assert f"{raw_dir / 'test'}/" in message


def test_missing_listing_fails_clearly(tmp_path: Path) -> None:
    served = tmp_path / "served"
    (served / "train").mkdir(parents=True)

    with _running_server(served) as running, pytest.raises(DownloadError) as caught:
        download_release(tmp_path / "raw", running.base_url, splits=["test"], timeout=5, progress=False)

    message = str(caught.value)
    assert f"{running.base_url}/test/" in message
    assert "404" in message
    assert DATASET_PAGE_URL in message


def test_empty_listing_fails_clearly(tmp_path: Path) -> None:
    served = tmp_path / "served"
    (served / "test").mkdir(parents=True)
    (served / "test" / "notes.txt").write_text("no CSV files here\n")

    with _running_server(served) as running, pytest.raises(DownloadError) as caught:
        download_release(tmp_path / "raw", running.base_url, splits=["test"], timeout=5, progress=False)

    assert "links no .csv or .csv.gz files" in str(caught.value)


@pytest.mark.sample
def test_unsatisfiable_range_restarts(server: DatasetServer, served_dir: Path, raw_dir: Path) -> None:
    name = "Recon-Ping_Sweep_test.pcap.csv"
    served_bytes = (served_dir / "test" / name).read_bytes()
    part_path = raw_dir / "test" / f"{name}.part"
    part_path.parent.mkdir(parents=True)
    part_path.write_bytes(served_bytes + b"bytes past the end of the served file")
    stale_size = part_path.stat().st_size

    report = download_release(raw_dir, server.base_url, splits=["test"], max_files=1, timeout=5, progress=False)

    assert [range_header for _, range_header in server.file_requests()] == [f"bytes={stale_size}-", None]
    assert report.resumed == []
    assert (raw_dir / "test" / name).read_bytes() == served_bytes


# --- the command line


PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.mark.sample
def test_cli_download_then_ingest(server: DatasetServer, raw_dir: Path, tmp_path: Path) -> None:
    from iomt_ids import cli

    code = cli.main(["--params", str(PARAMS), "download", "--base-url", server.base_url, f"data.raw_dir={raw_dir}"])
    ingested = cli.main(["--params", str(PARAMS), "ingest", f"data.raw_dir={raw_dir}",
                         f"paths.ingested={tmp_path / 'flows.parquet'}", f"paths.reports_dir={tmp_path / 'reports'}"])

    assert code == 0
    assert sorted(str(path.relative_to(raw_dir)) for path in raw_dir.rglob("*.csv")) == sorted(ALL_FILES)
    assert ingested == 0
    assert (tmp_path / "flows.parquet").is_file()


def test_cli_download_offline_fails_fast(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from iomt_ids import cli

    base_url = f"http://127.0.0.1:{_free_port()}/CSV"
    raw_dir = tmp_path / "raw"
    started = time.monotonic()
    code = cli.main(["--params", str(PARAMS), "download", "--base-url", base_url, f"data.raw_dir={raw_dir}"])

    assert code == 3
    assert time.monotonic() - started < 5
    assert f"{base_url}/train/" in caplog.text
    assert DATASET_PAGE_URL in caplog.text
    assert f"{raw_dir / 'train'}/" in caplog.text
