"""Stage ``evaluate``: score one task's trained classifier on the test split.

Writes ``<reports>/<task>/metrics.json`` (DVC metrics), the per-class report,
the confusion matrix (JSON and PNG, DVC plots), and last of all
``evaluation.json``, the record that the promote stage trusts. Everything is
also logged to the training run in MLflow.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import numpy as np
from matplotlib.figure import Figure
from omegaconf import DictConfig

from iomt_ids.data.fingerprint import fingerprint_flows
from iomt_ids.data.prepared import read_split, task_targets
from iomt_ids.data.schema import task_labels
from iomt_ids.metrics import classification_metrics
from iomt_ids.pipeline import prepare as prepare_stage
from iomt_ids.pipeline.tracking import setup_mlflow
from iomt_ids.pipeline.train import RUN_FILE, model_dir
from iomt_ids.serving.flow_classifier import FlowClassifier

logger = logging.getLogger(__name__)

EVALUATION_FILE = "evaluation.json"


def reports_dir(cfg: DictConfig, task: str) -> Path:
    return Path(cfg.paths.reports_dir) / task


def plot_confusion(matrix: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    """Save a row-normalised confusion matrix (recall per true class) as a PNG."""
    counts = np.asarray(matrix, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)

    size = max(4.0, 0.45 * len(labels) + 2)
    # A bare Figure renders with Agg and needs no pyplot state or display.
    figure = Figure(figsize=(size + 1, size))
    axes = figure.add_subplot()
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if counts[i, j]:
                axes.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=5,
                          color="white" if normalised[i, j] > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def score_predictions(flows, predicted_class, task: str) -> dict:
    """Score predicted labels against the task's labels of ``flows``.

    Averages run over the labels that occur in the test data or in the
    predictions: a class among the model's labels that is neither in the test data nor predicted does
    not pull the macro average down, while a wrongly predicted one does.
    """
    y_true = task_targets(flows, task).to_numpy(dtype=object)
    y_pred = np.asarray(predicted_class, dtype=object)
    present = set(y_true) | set(y_pred)
    labels = [label for label in task_labels(task) if label in present]
    return classification_metrics(y_true, y_pred, labels)


def evaluate_classifier(classifier: FlowClassifier, flows, task: str) -> dict:
    """Score a classifier on labelled flows."""
    probabilities = classifier.predict_proba(flows)
    predicted = np.asarray(classifier.class_names, dtype=object)[probabilities.argmax(axis=1)]
    return score_predictions(flows, predicted, task)


def run(cfg: DictConfig, task: str) -> dict:
    folder = model_dir(cfg, task)
    run_info = json.loads((folder / RUN_FILE).read_text())
    classifier = FlowClassifier.load(folder)
    test_flows = read_split(prepare_stage.split_path(cfg, "test"))

    results = evaluate_classifier(classifier, test_flows, task)
    summary = results["summary"]
    fingerprint = fingerprint_flows(test_flows, classifier.columns, "class")

    out = reports_dir(cfg, task)
    out.mkdir(parents=True, exist_ok=True)
    evaluation_path = out / EVALUATION_FILE
    evaluation_path.unlink(missing_ok=True)

    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "per_class.json").write_text(json.dumps(results["per_class"], indent=2) + "\n")
    (out / "confusion_matrix.json").write_text(
        json.dumps({"labels": results["labels"], "matrix": results["confusion_matrix"]}) + "\n")
    plot_confusion(np.asarray(results["confusion_matrix"]), results["labels"],
                   f"{task}: test confusion matrix", out / "confusion_matrix.png")

    setup_mlflow(cfg)
    with mlflow.start_run(run_id=run_info["run_id"]):
        mlflow.log_metrics({f"test_{name}": value for name, value in summary.items()})
        mlflow.log_metrics({f"test_f1_{label}": scores["f1"] for label, scores in results["per_class"].items()})
        mlflow.set_tag("test_fingerprint", fingerprint)
        for name in ("metrics.json", "per_class.json", "confusion_matrix.json", "confusion_matrix.png"):
            mlflow.log_artifact(str(out / name), "evaluation")

    evaluation = {
        "status": "complete",
        "task": task,
        "run_id": run_info["run_id"],
        "model_uri": run_info["model_uri"],
        "test_fingerprint": fingerprint,
        "f1_macro": summary["f1_macro"],
    }
    # Written last, and atomically: an interrupted evaluation leaves no record to promote from.
    partial = evaluation_path.with_suffix(".tmp")
    partial.write_text(json.dumps(evaluation, indent=2) + "\n")
    partial.replace(evaluation_path)

    logger.info("%s: test accuracy %.4f, macro-F1 %.4f, weighted-F1 %.4f on %d flows", task,
                summary["accuracy"], summary["f1_macro"], summary["f1_weighted"], summary["n_flows"])
    return results
