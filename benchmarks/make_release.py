"""Build a release-sized raw-data folder in the 45-column (v1) layout from real rows.

The folder has the shape of the CICIoMT2024 v1 release: 51 files in ``train/``
and 21 in ``test/``, named like the official files, with the release's row
count per class and split (8,775,013 rows, about 2.6 GB of CSV). Every row is a
real v1 row of the partial release, repeated. The ``Header_Length`` cell is
replaced by the row's index within its file, so no two rows of a class are
equal, even after a float32 cast. Duplicate detection then keeps every row.
That is the worst case for its memory and for the parquet writer.

Usage::

    .venv/bin/python benchmarks/make_release.py /tmp/iomt-release \
        --source ../shared/data/ciciomt2024-v1-partial
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

# Rows per class in the v1 release, as (train, test). The test column sums to
# the release's 1,614,182 test rows. The train figures of TRAIN_CONFIRMED are
# row counts of real release files or documented facts. The other train figures
# are estimates, scaled below so that the train column sums to the release's
# 7,160,831 train rows.
ROWS_PER_CLASS: dict[str, tuple[int, int]] = {
    "Benign": (192_732, 37_607),
    "ARP_Spoofing": (16_047, 1_744),
    "MQTT-DDoS-Connect_Flood": (173_036, 41_916),
    "MQTT-DDoS-Publish_Flood": (27_623, 8_416),
    "MQTT-DoS-Connect_Flood": (12_773, 3_131),
    "MQTT-DoS-Publish_Flood": (44_376, 8_505),
    "MQTT-Malformed_Data": (5_130, 1_747),
    "Recon-OS_Scan": (16_832, 3_834),
    "Recon-Ping_Sweep": (740, 186),
    "Recon-Port_Scan": (83_981, 22_622),
    "Recon-VulScan": (2_173, 1_034),
    "TCP_IP-DDoS-ICMP": (1_887_175, 349_699),
    "TCP_IP-DDoS-SYN": (804_465, 172_397),
    "TCP_IP-DDoS-TCP": (802_761, 182_598),
    "TCP_IP-DDoS-UDP": (1_635_956, 362_070),
    "TCP_IP-DoS-ICMP": (514_724, 98_432),
    "TCP_IP-DoS-SYN": (441_903, 98_595),
    "TCP_IP-DoS-TCP": (380_384, 82_096),
    "TCP_IP-DoS-UDP": (566_950, 137_553),
}
TRAIN_CONFIRMED = {"MQTT-DoS-Connect_Flood", "MQTT-Malformed_Data", "Recon-Ping_Sweep", "Recon-VulScan",
                   "TCP_IP-DDoS-UDP"}
TRAIN_ROWS = 7_160_831
TEST_ROWS = 1_614_182

# Captures (files) per class and split: 51 train and 21 test files in all, as in the release.
TRAIN_CAPTURES = {name: (5 if name.startswith("TCP_IP-") else 1) for name in ROWS_PER_CLASS}
TEST_CAPTURES = {"TCP_IP-DDoS-ICMP": 2, "TCP_IP-DDoS-UDP": 2}


def train_rows_per_class() -> dict[str, int]:
    """Return the train rows per class, with the estimated classes scaled to the release total."""
    confirmed = sum(ROWS_PER_CLASS[name][0] for name in TRAIN_CONFIRMED)
    estimated = sum(rows for name, (rows, _) in ROWS_PER_CLASS.items() if name not in TRAIN_CONFIRMED)
    factor = (TRAIN_ROWS - confirmed) / estimated

    counts = {name: (rows if name in TRAIN_CONFIRMED else round(rows * factor))
              for name, (rows, _) in ROWS_PER_CLASS.items()}
    # Rounding leaves a few rows over or under: the largest class absorbs them.
    counts["TCP_IP-DDoS-ICMP"] += TRAIN_ROWS - sum(counts.values())
    return counts


def file_plan() -> list[tuple[str, str, int]]:
    """Return (split, file name, rows) for every file of the release-sized folder."""
    plan = []
    for split, per_class, captures in (
        ("train", train_rows_per_class(), TRAIN_CAPTURES),
        ("test", {name: rows for name, (_, rows) in ROWS_PER_CLASS.items()}, TEST_CAPTURES),
    ):
        for class_name, rows in per_class.items():
            n_files = captures.get(class_name, 1)
            for capture in range(n_files):
                suffix = str(capture + 1) if n_files > 1 else ""
                share = rows // n_files + (1 if capture < rows % n_files else 0)
                plan.append((split, f"{class_name}{suffix}_{split}.pcap.csv", share))
    return plan


def read_source_rows(source: Path) -> tuple[str, list[str]]:
    """Return the header and every data line (without ``Header_Length``) of the v1 source files."""
    header = None
    rows: list[str] = []
    for path in sorted(source.rglob("*.csv")):
        lines = path.read_text(encoding="utf-8").splitlines()
        if header is None:
            header = lines[0]
        if lines[0] != header:
            raise SystemExit(f"{path}: header differs from the other source files; use v1 files only.")
        # Drop the first field; write_file puts the row index there.
        rows.extend(line[line.index(","):] for line in lines[1:] if line.strip())
    if header is None or not rows:
        raise SystemExit(f"no v1 CSV rows found under {source}")
    if not header.startswith("Header_Length,"):
        raise SystemExit(f"{source}: the first column is not Header_Length, so this is not the v1 layout.")
    return header, rows


def write_file(path: Path, header: str, source_rows: list[str], n_rows: int, offset: int) -> int:
    """Write ``n_rows`` rows cycling through the source rows from ``offset``; return the bytes written."""
    block = 100_000
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(header + "\n")
        for start in range(0, n_rows, block):
            stop = min(start + block, n_rows)
            lines = [f"{index}{source_rows[(offset + index) % len(source_rows)]}\n" for index in range(start, stop)]
            handle.writelines(lines)
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to create; it gets train/ and test/")
    parser.add_argument("--source", type=Path, default=Path("../shared/data/ciciomt2024-v1-partial"),
                        help="folder of real v1 CSV files to repeat")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the release's rows to write (default 1.0, the full size)")
    parser.add_argument("--force", action="store_true", help="replace out_dir when it exists")
    args = parser.parse_args(argv)

    if args.out_dir.exists():
        if not args.force:
            raise SystemExit(f"{args.out_dir} exists; pass --force to replace it.")
        shutil.rmtree(args.out_dir)

    header, source_rows = read_source_rows(args.source)
    started = time.perf_counter()
    total_rows = total_bytes = 0
    for index, (split, name, rows) in enumerate(file_plan()):
        rows = max(1, round(rows * args.scale))
        folder = args.out_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        total_bytes += write_file(folder / name, header, source_rows, rows, offset=index * 7919)
        total_rows += rows

    print(f"wrote {len(file_plan())} files, {total_rows:,} rows, {total_bytes / 1e9:.2f} GB to "
          f"{args.out_dir} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
