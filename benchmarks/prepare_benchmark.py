"""Time the ingest stage beside two plain CSV readers on one raw-data folder.

Each approach runs in a fresh Python process, so its peak resident memory
(``ru_maxrss`` of that process) is its own:

- ``ingest``: the project's ingest stage (read, validate, account, remove
  duplicates, write parquet), with the duplicate mode given by ``--duplicates``.
- ``pandas``: ``pandas.read_csv`` per file, then one ``pandas.concat``: reading
  only, no validation, no output file.
- ``polars``: ``polars.read_csv`` per file, then one ``polars.concat``: reading
  only, the same way.

The approaches run in turn, ``--repeat`` rounds, and each figure is the median
over rounds. Results go to ``--out`` as JSON and are printed as a Markdown table.

Usage::

    .venv/bin/python benchmarks/prepare_benchmark.py /tmp/iomt-release --repeat 3 \
        --out docs/benchmarks/prepare.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

APPROACHES = ("ingest", "pandas", "polars")

# Runs inside the child process: argv[1] is the approach, argv[2] the raw folder,
# argv[3] a scratch folder, argv[4] the duplicate mode. Prints one JSON line.
CHILD = r'''
import glob, json, os, resource, sys, time

approach, raw_dir, scratch, duplicates = sys.argv[1:5]
files = sorted(glob.glob(os.path.join(raw_dir, "**", "*.csv"), recursive=True))
started = time.perf_counter()

if approach == "ingest":
    from iomt_ids.data.ingest import ingest
    report = ingest(raw_dir, os.path.join(scratch, "flows.parquet"), duplicates=duplicates)
    rows = report.totals()["rows_read"]
elif approach == "pandas":
    import pandas as pd
    frame = pd.concat([pd.read_csv(path) for path in files], ignore_index=True)
    rows = len(frame)
elif approach == "polars":
    import polars as pl
    frame = pl.concat([pl.read_csv(path) for path in files])
    rows = frame.height
else:
    raise SystemExit(f"unknown approach {approach}")

seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
# ru_maxrss is in KiB on Linux.
print(json.dumps({"rows": rows, "seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_rss_bytes": usage.ru_maxrss * 1024}))
'''


def run_child(approach: str, raw_dir: Path, scratch: Path, duplicates: str) -> dict:
    """Run one approach in a fresh interpreter and return its measurements."""
    result = subprocess.run([sys.executable, "-c", CHILD, approach, str(raw_dir), str(scratch), duplicates],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{approach} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine() -> dict:
    """Describe the CPU, core count and memory of this machine."""
    model = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except FileNotFoundError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu_model": model, "cores": len(os.sched_getaffinity(0)), "memory_gib": round(memory / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def versions() -> dict:
    found = {}
    for name in ("pyarrow", "pandas", "polars", "numpy"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            found[name] = None
    return found


def summarise(runs: list[dict], csv_bytes: int) -> dict:
    seconds = statistics.median(run["seconds"] for run in runs)
    rows = runs[0]["rows"]
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(statistics.median(run["cpu_seconds"] for run in runs), 2),
        "rows_per_second": round(rows / seconds),
        "mb_per_second": round(csv_bytes / 1e6 / seconds, 1),
        "peak_rss_gib": round(max(run["peak_rss_bytes"] for run in runs) / 2**30, 2),
        "runs_seconds": [round(run["seconds"], 2) for run in runs],
    }


def markdown(results: dict) -> str:
    lines = ["| approach | rows | seconds (median) | CPU seconds | rows/s | MB/s | peak RSS (GiB) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for approach, figures in results["approaches"].items():
        lines.append(f"| {approach} | {figures['rows']:,} | {figures['seconds']} | {figures['cpu_seconds']} | "
                     f"{figures['rows_per_second']:,} | {figures['mb_per_second']} | {figures['peak_rss_gib']} |")
    checks = results["checks"]
    lines.append("")
    lines.append(f"ingest / pandas time: {checks['ingest_vs_pandas']}; ingest / polars time: "
                 f"{checks['ingest_vs_polars']}; load average before/after: {results['load_average']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw_dir", type=Path, help="raw-data folder with train/ and test/")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all approaches (default 1)")
    parser.add_argument("--duplicates", default="float32", choices=("none", "exact", "float32"),
                        help="duplicate mode of the ingest run (default float32, the project default)")
    parser.add_argument("--approaches", nargs="+", default=list(APPROACHES), choices=APPROACHES)
    parser.add_argument("--scratch", type=Path, default=None,
                        help="folder for the ingest output (default: beside raw_dir)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write the results to")
    args = parser.parse_args(argv)

    files = sorted(args.raw_dir.rglob("*.csv"))
    csv_bytes = sum(path.stat().st_size for path in files)
    scratch = args.scratch or args.raw_dir.parent / f"{args.raw_dir.name}-scratch"
    scratch.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {approach: [] for approach in args.approaches}
    for round_index in range(args.repeat):
        for approach in args.approaches:
            measured = run_child(approach, args.raw_dir, scratch, args.duplicates)
            runs[approach].append(measured)
            print(f"round {round_index + 1}: {approach} {measured['seconds']:.1f} s, "
                  f"peak RSS {measured['peak_rss_bytes'] / 2**30:.2f} GiB", file=sys.stderr)
    (scratch / "flows.parquet").unlink(missing_ok=True)

    approaches = {approach: summarise(measured, csv_bytes) for approach, measured in runs.items()}
    seconds = {approach: figures["seconds"] for approach, figures in approaches.items()}
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "raw_dir": str(args.raw_dir),
        "files": len(files),
        "csv_bytes": csv_bytes,
        "duplicates": args.duplicates,
        "machine": machine(),
        "versions": versions(),
        "load_average": [round(value, 1) for value in (*load_before[:1], *os.getloadavg()[:1])],
        "approaches": approaches,
        "checks": {
            "ingest_vs_pandas": round(seconds["ingest"] / seconds["pandas"], 2)
            if {"ingest", "pandas"} <= seconds.keys() else None,
            "ingest_vs_polars": round(seconds["ingest"] / seconds["polars"], 2)
            if {"ingest", "polars"} <= seconds.keys() else None,
        },
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
