"""The ``predict`` and ``evaluate-captures`` commands: resolve the model, run, print and save reports."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from iomt_ids.data.errors import DataError
from iomt_ids.data.ingest import IngestReport
from iomt_ids.data.ingest_report import NONFINITE_KINDS, FileReport
from iomt_ids.serving.predict import DEFAULT_BLOCK_SIZE, PredictionSummary, default_model_uri, \
    load_classifier, predict_captures

DEFAULT_TASK = "attack"

# Maximum number of columns or files that one line of the summary names.
SUMMARY_MAX_NAMES = 5


def _project_settings(args: argparse.Namespace) -> tuple[str | None, str]:
    """Return (tracking URI, registered model name prefix) from the environment and params.yaml.

    MLFLOW_TRACKING_URI wins over params.yaml, as in the pipeline stages.
    Without a params.yaml (outside the project) MLflow's own default applies.
    """
    prefix = "iomt-ids"
    uri = None
    if Path(args.params).is_file():
        from iomt_ids.config import load_params

        cfg = load_params(args.params, args.overrides)
        uri = cfg.mlflow.tracking_uri
        prefix = cfg.registry.model_name_prefix
    return os.environ.get("MLFLOW_TRACKING_URI") or uri, prefix


def run_prediction(args: argparse.Namespace, evaluate: bool) -> int:
    """Run ``predict`` (``evaluate=False``) or ``evaluate-captures`` from parsed arguments."""
    tracking_uri, prefix = _project_settings(args)
    if tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
    # MLflow's download bar would interleave with the prediction bar.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    model_uri = args.model or default_model_uri(args.task or DEFAULT_TASK, prefix)
    classifier = load_classifier(model_uri)
    if args.task and classifier.task != args.task:
        raise DataError(
            f"{model_uri} is a model of the {classifier.task} task but --task is {args.task}. Drop --task or "
            f"pass a {args.task} model."
        )

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.engine == "onnxruntime":
        try:
            classifier.use_onnxruntime(args.threads)
        except ImportError as error:
            raise DataError(str(error)) from None

    summary = predict_captures(
        classifier, args.input, args.output,
        model_uri=model_uri,
        output_format=args.output_format,
        all_probabilities=args.all_probabilities,
        evaluate=evaluate,
        block_size=args.block_size or DEFAULT_BLOCK_SIZE,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    print(format_summary(summary))
    if evaluate:
        print(format_metrics(summary.metrics))
        write_reports(summary, classifier.layout, args.input, Path(args.report_dir))
    return 0


def format_summary(summary: PredictionSummary) -> str:
    """Render the flow count, timing, row accounting, non-finite cells and files without flows of a run."""
    report = IngestReport(layout="", files=summary.files)
    totals = report.totals()
    rows = (
        f"{summary.model_uri} ({summary.task}): {summary.n_flows} flows of {len(summary.files)} file(s) "
        f"in {summary.seconds:.1f} s ({summary.flows_per_second:,.0f} flows/s); rows read "
        f"{totals['rows_read']}, kept {totals['rows_kept']}, dropped {totals['rows_dropped']}"
    )
    lines = [rows, format_nonfinite(report.nonfinite_per_column())]

    without_flows = [_file_without_flows(file_report) for file_report in summary.files if not file_report.rows_kept]
    if without_flows:
        lines.append(f"{len(without_flows)} file(s) without flows: {_join_names(without_flows, 'file(s)')}")
    return "\n".join(lines)


def _file_without_flows(report: FileReport) -> str:
    """Describe a file that gave no flows: its name and the reason."""
    if report.empty:
        return f"{report.file} (empty)"
    if not report.rows_read:
        return f"{report.file} (header line only)"
    return f"{report.file} (all {report.rows_read} rows dropped)"


def _join_names(names: list[str], noun: str) -> str:
    """Join the first SUMMARY_MAX_NAMES names, and count the rest as ``and N more <noun>``."""
    text = ", ".join(names[:SUMMARY_MAX_NAMES])
    if len(names) > SUMMARY_MAX_NAMES:
        text += f" and {len(names) - SUMMARY_MAX_NAMES} more {noun}"
    return text


def format_nonfinite(per_column: dict[str, dict[str, int]]) -> str:
    """Render non-finite cell counts as one line: the total per kind, then the top columns by count."""
    if not per_column:
        return "non-finite cells: none"

    per_kind = {kind: sum(counts.get(kind, 0) for counts in per_column.values()) for kind in NONFINITE_KINDS}
    kinds = ", ".join(f"{kind} {count}" for kind, count in per_kind.items() if count)

    column_totals = sorted(per_column.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    top = _join_names([f"{column} {sum(counts.values())}" for column, counts in column_totals], "column(s)")
    return f"non-finite cells, filled by the model's preprocessing: {kinds}; top columns: {top}"


def format_metrics(metrics: dict) -> str:
    """Render the per-class scores, the averages and the confusion matrix as text tables."""
    per_class = pd.DataFrame(metrics["per_class"]).T[["precision", "recall", "f1", "support"]]
    per_class["support"] = per_class["support"].astype(int)

    summary = metrics["summary"]
    averages = pd.DataFrame(
        {metric: [summary[f"{metric}_macro"], summary[f"{metric}_weighted"]] for metric in ("precision", "recall", "f1")},
        index=["macro", "weighted"],
    )
    matrix = pd.DataFrame(metrics["confusion_matrix"], index=metrics["labels"], columns=metrics["labels"])

    # Like the evaluate stage, macro averages run over every class seen as truth or as prediction.
    predicted_only = [label for label, scores in metrics["per_class"].items() if scores["support"] == 0]
    note = []
    if predicted_only:
        note = [f"note: {len(predicted_only)} predicted class(es) have no true flows in these files "
                f"({', '.join(predicted_only)}); macro averages count each of them as F1 0."]

    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.4f}".format):
        return "\n\n".join([
            f"accuracy {summary['accuracy']:.4f} on {summary['n_flows']} flows",
            averages.to_string(),
            *note,
            per_class.to_string(),
            "confusion matrix (rows: true class, columns: predicted class)\n" + matrix.to_string(),
        ])


def write_reports(summary: PredictionSummary, layout: str, input_path: Path, report_dir: Path) -> None:
    """Write the metrics in the evaluate stage's file formats, plus the row accounting per file."""
    report_dir.mkdir(parents=True, exist_ok=True)
    metrics = summary.metrics
    (report_dir / "metrics.json").write_text(json.dumps(metrics["summary"], indent=2) + "\n")
    (report_dir / "per_class.json").write_text(json.dumps(metrics["per_class"], indent=2) + "\n")
    (report_dir / "confusion_matrix.json").write_text(
        json.dumps({"labels": metrics["labels"], "matrix": metrics["confusion_matrix"]}) + "\n")
    accounting = {"model_uri": summary.model_uri, "task": summary.task, "input": str(input_path),
                  **IngestReport(layout=layout, files=summary.files).to_dict()}
    (report_dir / "files.json").write_text(json.dumps(accounting, indent=2) + "\n")
