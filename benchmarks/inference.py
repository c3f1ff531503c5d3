"""Measure inference speed: each CNN variant alone, the batch command end to end, and tree baselines.

Three parts, printed as Markdown tables and written as JSON:

1. Model only. Every network of ``conf/model/*.yaml`` runs on real
   preprocessed v2 rows (39 features, 19 classes), in flows/s against batch
   size. Weights are random because speed does not depend on their values.
   Engines: PyTorch eager in ``torch.inference_mode``, TorchScript (frozen and
   optimised for inference), ``torch.compile`` and, where installed, ONNX Runtime.
2. Tree baselines. LightGBM (200 rounds) and a random forest (100 trees)
   trained on the v2 sample (attack task), predicting the same rows.
3. End to end. ``iomt-ids predict`` logic (``predict_captures``) from a CSV
   of repeated real rows to a predictions CSV, in a child process per run so
   that peak RSS is per run, for two input sizes to show memory flat in input
   size. ``--layout v1`` uses the 45-column files of the v1 partial release;
   ``v2`` the v2 sample.

Usage::

    .venv/bin/python benchmarks/inference.py --shared-data ../shared/data --out /tmp/inference.json

The CSV files are built under ``--work-dir`` (default: a temporary folder)
and deleted afterwards. Figures depend on the CPU and on other load: the
script records the load average before and after every part.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from iomt_ids.data.preprocessing import FeaturePreprocessor  # noqa: E402
from iomt_ids.data.schema import LAYOUTS  # noqa: E402
from iomt_ids.serving.flow_classifier import FlowClassifier, build_network  # noqa: E402

N_CLASSES = 19
BATCH_SIZES = (256, 1024, 4096, 8192, 16384)
# Each measurement repeats the call for at least this long, and the best of REPEATS is kept:
# the best run is the one least disturbed by other processes on the machine.
MIN_SECONDS = 0.5
REPEATS = 3


# --- machine and data


def machine_description() -> dict:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def cpu_seconds() -> float:
    """Return CPU seconds used by this process and its finished children (joblib workers, for one)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def read_rows(folder: Path, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Read every CSV under ``folder`` with the ingestion code; return float32 features and class names."""
    from iomt_ids.data.ingest import discover_files, read_header, read_raw_file

    features, classes = [], []
    for raw_file in discover_files(folder):
        header = read_header(raw_file.path)
        table, _ = read_raw_file(raw_file, header, layout, folder)
        features.append(np.column_stack([table.column(c).to_numpy() for c in LAYOUTS[layout]]))
        classes.append(np.full(table.num_rows, raw_file.class_name, dtype=object))
    return np.concatenate(features), np.concatenate(classes)


def repeat_to(values: np.ndarray, n_rows: int) -> np.ndarray:
    return np.resize(values, (n_rows, *values.shape[1:]))


# --- part 1: model only


def timed_throughput(predict: Callable[[np.ndarray], object], batch: np.ndarray) -> tuple[float, float]:
    """Return the best flows/s of REPEATS timed loops of ``predict(batch)``, by wall clock and by CPU time.

    The second figure is flows per CPU-second of this process. Times the
    number of cores it uses, it estimates the wall-clock rate on an idle
    machine, and it is less disturbed than the wall clock by other processes.
    """
    predict(batch)
    best_wall, best_cpu = 0.0, 0.0
    for _ in range(REPEATS):
        started, cpu_started = time.perf_counter(), time.process_time()
        done = 0
        while time.perf_counter() - started < MIN_SECONDS:
            predict(batch)
            done += len(batch)
        best_wall = max(best_wall, done / (time.perf_counter() - started))
        best_cpu = max(best_cpu, done / max(time.process_time() - cpu_started, 1e-9))
    return best_wall, best_cpu


def torch_engines(network: torch.nn.Module, n_features: int, use_compile: bool) -> dict[str, Callable]:
    """Return predict functions (numpy in, probabilities out) for the PyTorch ways of running a network."""
    network.eval()

    def runner(module) -> Callable:
        @torch.inference_mode()
        def predict(batch: np.ndarray):
            return torch.softmax(module(torch.from_numpy(batch)), dim=1).numpy()
        return predict

    engines = {"eager": runner(network)}
    with torch.inference_mode():
        frozen = torch.jit.freeze(torch.jit.script(network))
        engines["torchscript"] = runner(torch.jit.optimize_for_inference(frozen))
    if use_compile:
        engines["torch.compile"] = runner(torch.compile(network, dynamic=False))
    onnx_session = onnxruntime_session(network, n_features)
    if onnx_session is not None:
        def predict_onnx(batch: np.ndarray):
            logits = onnx_session.run(None, {"flows": batch})[0]
            return torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        engines["onnxruntime"] = predict_onnx
    return engines


def onnxruntime_session(network: torch.nn.Module, n_features: int):
    """Export the network to ONNX in memory and open an ONNX Runtime session, or None without onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return None
    buffer = io.BytesIO()
    torch.onnx.export(network, torch.zeros(8, n_features), buffer, input_names=["flows"], output_names=["logits"],
                      dynamic_axes={"flows": {0: "n_flows"}}, dynamo=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def onnxruntime_installed() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def model_configs() -> dict[str, dict]:
    """Return every conf/model file's config by model name."""
    from omegaconf import OmegaConf

    configs = {}
    for path in sorted((ROOT / "conf" / "model").glob("*.yaml")):
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        configs[config.get("name", path.stem)] = config
    return configs


def benchmark_models(scaled: np.ndarray, use_compile: bool) -> list[dict]:
    results = []
    for name, config in model_configs().items():
        torch.manual_seed(0)
        network = build_network(config["net"], scaled.shape[1], N_CLASSES)
        # torch.compile takes minutes per network on 2 cores, so only the published CNN gets it.
        engines = torch_engines(network, scaled.shape[1], use_compile and name == "published_cnn")
        for engine, predict in engines.items():
            for batch_size in BATCH_SIZES:
                batch = np.ascontiguousarray(scaled[:batch_size])
                flows_per_s, flows_per_cpu_s = timed_throughput(predict, batch)
                results.append({"model": name, "engine": engine, "batch_size": batch_size,
                                "flows_per_s": round(flows_per_s), "flows_per_cpu_s": round(flows_per_cpu_s),
                                "load_average": load_average()})
                print(f"model-only {name:16s} {engine:14s} batch {batch_size:6d}: {flows_per_s:12,.0f} flows/s, "
                      f"{flows_per_cpu_s:12,.0f} flows per CPU-second", flush=True)
    return results


# --- part 2: tree baselines


def benchmark_trees(features: np.ndarray, classes: np.ndarray, scaled_rows: np.ndarray) -> list[dict]:
    import lightgbm
    from sklearn.ensemble import RandomForestClassifier

    n_jobs = torch.get_num_threads()
    baselines = {
        "random forest, 100 trees": RandomForestClassifier(n_estimators=100, n_jobs=n_jobs, random_state=0),
        "LightGBM, 200 rounds": lightgbm.LGBMClassifier(n_estimators=200, n_jobs=n_jobs, verbose=-1, random_state=0),
    }
    results = []
    for name, model in baselines.items():
        model.fit(features, classes)
        started, cpu_started = time.perf_counter(), cpu_seconds()
        model.predict_proba(scaled_rows)
        flows_per_s = len(scaled_rows) / (time.perf_counter() - started)
        flows_per_cpu_s = len(scaled_rows) / (cpu_seconds() - cpu_started)
        results.append({"model": name, "rows": len(scaled_rows), "flows_per_s": round(flows_per_s),
                        "flows_per_cpu_s": round(flows_per_cpu_s), "load_average": load_average()})
        print(f"baseline {name:26s}: {flows_per_s:12,.0f} flows/s, {flows_per_cpu_s:12,.0f} flows per CPU-second "
              f"on {len(scaled_rows):,} rows", flush=True)
    return results


# --- part 3: end to end


def write_big_csv(path: Path, features: np.ndarray, layout: str, n_rows: int) -> None:
    """Write ``n_rows`` rows, the real rows repeated, as a release-style CSV."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = LAYOUTS[layout]
    chunk = 200_000
    with pacsv.CSVWriter(str(path), pa.schema([(c, pa.float32()) for c in columns]),
                         write_options=pacsv.WriteOptions(quoting_style="none")) as writer:
        for start in range(0, n_rows, chunk):
            rows = repeat_to(np.roll(features, -start, axis=0), min(chunk, n_rows - start))
            writer.write_table(pa.table({c: rows[:, i] for i, c in enumerate(columns)}))


def peak_rss_kib() -> int:
    """Return this process's peak resident set size in KiB.

    VmHWM of /proc/self/status is used rather than getrusage: Linux carries
    ru_maxrss over from the parent across fork and exec, so a child started by
    a large parent would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kib() -> int:
    """Return this process's resident set size now (VmRSS), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """Record this process's RSS every ``interval`` seconds in a background thread."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.samples_kib: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples_kib.append(current_rss_kib())
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def median_of_second_half_mib(self) -> float:
        """Return the median RSS of the samples in the second half of the run: the plateau, once warm."""
        half = self.samples_kib[len(self.samples_kib) // 2:] or [0]
        return float(np.median(half)) / 1024


def run_end_to_end_child(args: argparse.Namespace) -> None:
    """Predict one folder in this child process and print flows/s, peak RSS and plateau RSS as JSON."""
    from iomt_ids.serving.predict import predict_captures

    torch.set_num_threads(args.threads)
    classifier = FlowClassifier.load(args.model)
    if args.engine == "onnxruntime":
        classifier.use_onnxruntime(args.threads)
    cpu_started = time.process_time()
    with RssSampler() as sampler:
        summary = predict_captures(classifier, args.input, args.output)
    flows_per_cpu_s = summary.n_flows / (time.process_time() - cpu_started)
    peak_rss_mib = peak_rss_kib() / 1024
    print(json.dumps({"flows": summary.n_flows, "seconds": summary.seconds, "flows_per_s": summary.flows_per_second,
                      "flows_per_cpu_s": flows_per_cpu_s, "peak_rss_mib": peak_rss_mib,
                      "plateau_rss_mib": sampler.median_of_second_half_mib()}))


def benchmark_end_to_end(features: np.ndarray, layout: str, sizes: list[int], work_dir: Path,
                         model_folder: Path, threads: int, engines: list[str], repeat: int = 1) -> list[dict]:
    results = []
    for n_rows in sizes:
        folder = work_dir / f"e2e-{layout}-{n_rows}"
        folder.mkdir()
        # Named like the release's largest test capture.
        write_big_csv(folder / "TCP_IP-DDoS-UDP1_test.pcap.csv", features, layout, n_rows)
        size_mb = (folder / "TCP_IP-DDoS-UDP1_test.pcap.csv").stat().st_size / 1e6
        for engine in engines:
            results.append(run_end_to_end(folder, layout, n_rows, size_mb, work_dir, model_folder, threads, engine,
                                          repeat))
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    return results


def run_end_to_end(folder: Path, layout: str, n_rows: int, size_mb: float, work_dir: Path, model_folder: Path,
                   threads: int, engine: str, repeat: int = 1) -> dict:
    """Predict one folder in ``repeat`` child processes; return the run with the median flows/s and every run's figure."""
    output = work_dir / f"predictions-{layout}-{n_rows}.csv"
    runs = []
    for _ in range(repeat):
        completed = subprocess.run(
            [sys.executable, __file__, "--end-to-end-child", "--model", str(model_folder), "--input", str(folder),
             "--output", str(output), "--threads", str(threads), "--engine", engine],
            check=True, capture_output=True, text=True,
        )
        runs.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    runs.sort(key=lambda run: run["flows_per_s"])
    measured = runs[len(runs) // 2]
    result = {"layout": layout, "engine": engine, "rows": n_rows, "csv_mb": round(size_mb), **measured,
              "flows_per_s_runs": [round(run["flows_per_s"]) for run in runs],
              "peak_rss_mib_runs": [round(run["peak_rss_mib"]) for run in runs],
              "load_average": load_average()}
    print(f"end-to-end {layout} {engine} {n_rows:,} rows ({size_mb:,.0f} MB): "
          f"{measured['flows_per_s']:,.0f} flows/s, {measured['flows_per_cpu_s']:,.0f} flows per CPU-second, "
          f"peak RSS {measured['peak_rss_mib']:,.0f} MiB, plateau RSS {measured['plateau_rss_mib']:,.0f} MiB",
          flush=True)
    output.unlink()
    return result


def fit_classifier(features: np.ndarray, layout: str, model: str = "published_cnn") -> FlowClassifier:
    """Build an untrained classifier of a conf/model variant whose preprocessing is fitted on ``features``."""
    columns = list(LAYOUTS[layout])
    config = model_configs()[model]
    preprocessor = FeaturePreprocessor.fit(features, columns, config.get("transform", "standard"))
    net_config = config["net"]
    torch.manual_seed(0)
    network = build_network(net_config, len(columns), N_CLASSES).eval()
    from iomt_ids.data.schema import CLASSES

    return FlowClassifier("attack", list(CLASSES), layout, preprocessor, net_config, network)


# --- report


def markdown_tables(record: dict) -> str:
    """Render the figures of a run as Markdown tables (flows/s by wall clock, then per CPU-second)."""
    lines = []
    models = record.get("model_only", [])
    if models:
        lines += ["| model | engine | " + " | ".join(f"batch {size}" for size in BATCH_SIZES) + " |",
                  "| --- | --- | " + " | ".join("---:" for _ in BATCH_SIZES) + " |"]
        keys = sorted({(row["model"], row["engine"]) for row in models}, key=lambda key: (key[0], key[1]))
        for model, engine in keys:
            cells = {row["batch_size"]: row for row in models if (row["model"], row["engine"]) == (model, engine)}
            lines.append(f"| {model} | {engine} | " + " | ".join(
                f"{cells[size]['flows_per_s']:,} ({cells[size]['flows_per_cpu_s']:,})" if size in cells else "-"
                for size in BATCH_SIZES) + " |")
        lines.append("")
    if record.get("trees"):
        lines += ["| baseline | rows | flows/s | flows per CPU-second |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {row['model']} | {row['rows']:,} | {row['flows_per_s']:,} | {row['flows_per_cpu_s']:,} |"
                  for row in record["trees"]]
        lines.append("")
    if record.get("end_to_end"):
        lines += [f"End to end with `{record.get('e2e_model', 'published_cnn')}`:", ""]
        lines += ["| layout | engine | rows | CSV MB | flows/s (median) | flows/s (all runs) | flows per CPU-second "
                  "| peak RSS MiB | plateau RSS MiB |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {row['layout']} | {row['engine']} | {row['rows']:,} | {row['csv_mb']:,} | "
                  f"{row['flows_per_s']:,.0f} | "
                  f"{', '.join(f'{value:,}' for value in row.get('flows_per_s_runs', [round(row['flows_per_s'])]))} | "
                  f"{row['flows_per_cpu_s']:,.0f} | {row['peak_rss_mib']:,.0f} | "
                  f"{row.get('plateau_rss_mib', float('nan')):,.0f} |"
                  for row in record["end_to_end"]]
    return "\n".join(lines)


# --- entry point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data",
                        help="folder holding ciciomt2024-v2-sample/ and ciciomt2024-v1-partial/")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for every figure")
    parser.add_argument("--work-dir", type=Path, default=None, help="folder for the big CSV files (default: temporary)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--e2e-rows", type=int, nargs="+", default=[400_000, 1_600_000],
                        help="rows of the end-to-end input files, one run each")
    parser.add_argument("--layouts", nargs="+", default=["v1", "v2"], help="layouts of the end-to-end runs")
    parser.add_argument("--e2e-repeat", type=int, default=5,
                        help="child processes per end-to-end run; the median flows/s is reported")
    parser.add_argument("--e2e-model", default="published_cnn", choices=sorted(model_configs()),
                        help="conf/model variant that the end-to-end runs use (default: published_cnn)")
    parser.add_argument("--e2e-engines", nargs="+", default=None, choices=("torch", "onnxruntime"),
                        help="engines of the end-to-end runs (default: torch, and onnxruntime when installed)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (it compiles for minutes)")
    parser.add_argument("--parts", nargs="+", default=["models", "trees", "end-to-end"],
                        choices=["models", "trees", "end-to-end"], help="parts to run")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="print the Markdown tables of a JSON file written by --out, and exit")
    parser.add_argument("--end-to-end-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="torch", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.end_to_end_child:
        run_end_to_end_child(args)
        return
    if args.markdown:
        print(markdown_tables(json.loads(args.markdown.read_text())))
        return

    torch.set_num_threads(args.threads)
    record = {"machine": machine_description(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "load_average_start": load_average()}
    v2_features, v2_classes = read_rows(args.shared_data / "ciciomt2024-v2-sample", "v2")
    v2_classifier = fit_classifier(v2_features, "v2")
    scaled = v2_classifier.preprocessor.transform(repeat_to(v2_features, max(BATCH_SIZES)))

    if "models" in args.parts:
        record["model_only"] = benchmark_models(scaled, use_compile=not args.no_compile)
    if "trees" in args.parts:
        cleaned = v2_classifier.preprocessor.clean(v2_features)
        rows = v2_classifier.preprocessor.clean(repeat_to(v2_features, 131_072))
        record["trees"] = benchmark_trees(cleaned, v2_classes, rows)
    if "end-to-end" in args.parts:
        engines = args.e2e_engines or ["torch"] + (["onnxruntime"] if onnxruntime_installed() else [])
        with tempfile.TemporaryDirectory(prefix="iomt-bench-", dir=args.work_dir) as work:
            work_dir = Path(work)
            record["end_to_end"] = []
            record["e2e_model"] = args.e2e_model
            for layout in args.layouts:
                folder = "ciciomt2024-v1-partial" if layout == "v1" else "ciciomt2024-v2-sample"
                features = v2_features if layout == "v2" else read_rows(args.shared_data / folder, "v1")[0]
                classifier = fit_classifier(features, layout, args.e2e_model)
                classifier.save(work_dir / f"model-{layout}")
                record["end_to_end"] += benchmark_end_to_end(features, layout, args.e2e_rows, work_dir,
                                                             work_dir / f"model-{layout}", args.threads, engines,
                                                             args.e2e_repeat)

    record["load_average_end"] = load_average()
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(markdown_tables(record))


if __name__ == "__main__":
    main()
