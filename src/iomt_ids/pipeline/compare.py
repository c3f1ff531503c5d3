"""Stages ``compare_cnn``, ``compare_baseline`` and ``compare``: every model, one harness.

Each CNN variant and baseline trains on the same prepared splits for every
task and seed of ``comparison.seeds`` and is scored on the test split with
the same metric code as the evaluate stage. Every (model, task, seed) is one
MLflow run in the ``comparison.experiment_name`` experiment. The report
stage gathers the results into a markdown table and plots whose headline
figures are the mean and standard deviation over seeds.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import mlflow
import numpy as np
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from iomt_ids.data.prepared import feature_columns, read_split, task_targets
from iomt_ids.data.preprocessing import FeaturePreprocessor
from iomt_ids.data.schema import task_labels
from iomt_ids.models.baselines import build_estimator, stratified_sample
from iomt_ids.pipeline import prepare as prepare_stage
from iomt_ids.pipeline.evaluate import evaluate_classifier, score_predictions
from iomt_ids.pipeline.tracking import setup_mlflow

logger = logging.getLogger(__name__)

CONF_DIR = Path("conf")
# The attack classes that published reproductions of the CNN score worst on.
HARD_CLASSES = ("Recon-OS_Scan", "Recon-VulScan", "MQTT-DDoS-Publish_Flood", "ARP_Spoofing")


def comparison_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.reports_dir) / "comparison"


def result_path(cfg: DictConfig, name: str) -> Path:
    return comparison_dir(cfg) / "models" / f"{name}.json"


def _comparison_config(cfg: DictConfig, seed: int) -> DictConfig:
    run_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    run_cfg.seed = seed
    run_cfg.mlflow.experiment_name = cfg.comparison.experiment_name
    return run_cfg


def _record(results: dict) -> dict:
    return {
        "summary": results["summary"],
        "per_class_f1": {label: scores["f1"] for label, scores in results["per_class"].items()},
    }


def _write(cfg: DictConfig, name: str, kind: str, results: dict) -> Path:
    path = result_path(cfg, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": name, "kind": kind, "tasks": results}, indent=2) + "\n")
    return path


def run_cnn(cfg: DictConfig, name: str, conf_dir: Path = CONF_DIR) -> Path:
    """Train and test the CNN variant ``conf/model/<name>.yaml`` for every task and seed.

    Each variant trains for ``comparison.max_epochs`` epochs when that is set,
    else for its own ``max_epochs``, else for ``trainer.max_epochs``.
    """
    from iomt_ids.pipeline.train import train_task

    model_config = OmegaConf.load(conf_dir / "model" / f"{name}.yaml")
    test_flows = read_split(prepare_stage.split_path(cfg, "test"))
    results: dict = {}
    for task in cfg.tasks:
        for seed in cfg.comparison.seeds:
            run_cfg = _comparison_config(cfg, seed)
            run_cfg.model = model_config
            run_cfg.trainer.max_epochs = int(cfg.comparison.get("max_epochs") or model_config.get("max_epochs")
                                             or cfg.trainer.max_epochs)
            trained = train_task(run_cfg, task, save=False)
            scores = evaluate_classifier(trained.classifier, test_flows, task)
            with mlflow.start_run(run_id=trained.run_id):
                mlflow.set_tags({"comparison": "cnn", "seed": seed})
                mlflow.log_metrics({f"test_{key}": value for key, value in scores["summary"].items()})
            results.setdefault(task, {})[str(seed)] = _record(scores)
            logger.info("%s %s seed %d: test macro-F1 %.4f", name, task, seed, scores["summary"]["f1_macro"])
    return _write(cfg, name, "cnn", results)


def run_baseline(cfg: DictConfig, name: str, conf_dir: Path = CONF_DIR) -> Path:
    """Train and test the baseline ``conf/baseline/<name>.yaml`` for every task and seed."""
    baseline_config = OmegaConf.load(conf_dir / "baseline" / f"{name}.yaml")
    train_flows = read_split(prepare_stage.split_path(cfg, "train"))
    test_flows = read_split(prepare_stage.split_path(cfg, "test"))
    columns = feature_columns(train_flows)
    preprocessor = FeaturePreprocessor.fit(train_flows[columns].to_numpy(dtype=np.float32), columns)
    # Tree ensembles get cleaned but unscaled features: standardising columns with
    # extreme outliers squeezes their typical values together in float32, which
    # cost LightGBM most of its attack-task macro-F1 (0.81 to 0.14 in one test).
    prepare_features = preprocessor.transform if baseline_config.get("scaled", True) else preprocessor.clean
    train_x = prepare_features(train_flows[columns].to_numpy(dtype=np.float32))
    test_x = prepare_features(test_flows[columns].to_numpy(dtype=np.float32))

    results: dict = {}
    for task in cfg.tasks:
        train_y = task_targets(train_flows, task).to_numpy(dtype=object)
        for seed in cfg.comparison.seeds:
            rows = stratified_sample(train_y, cfg.comparison.baseline_max_train_flows, seed)
            estimator = build_estimator(baseline_config.estimator, seed)
            setup_mlflow(_comparison_config(cfg, seed))
            with mlflow.start_run(run_name=f"{task}-{name}-seed{seed}"):
                started = time.perf_counter()
                estimator.fit(train_x[rows], train_y[rows].astype(str))
                fit_seconds = time.perf_counter() - started
                scores = score_predictions(test_flows, estimator.predict(test_x), task)
                mlflow.set_tags({"comparison": "baseline", "task": task, "model": name, "seed": seed})
                mlflow.log_params({"model": name, "task": task, "seed": seed, "n_train_flows": len(rows),
                                   **{f"estimator.{k}": v for k, v in baseline_config.estimator.items()}})
                mlflow.log_metrics({"fit_seconds": fit_seconds,
                                    **{f"test_{key}": value for key, value in scores["summary"].items()}})
            results.setdefault(task, {})[str(seed)] = _record(scores)
            logger.info("%s %s seed %d: test macro-F1 %.4f (fit %.0f s)", name, task, seed,
                        scores["summary"]["f1_macro"], fit_seconds)
    return _write(cfg, name, "baseline", results)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def summarise(results: list[dict], tasks: list[str]) -> dict:
    """Return mean and std over seeds of each model's test metrics, per task, plus attack per-class F1."""
    summary: dict = {}
    for result in results:
        model = summary.setdefault(result["model"], {"kind": result["kind"]})
        for task in tasks:
            runs = list(result["tasks"].get(task, {}).values())
            if not runs:
                continue
            entry = model.setdefault(task, {"n_seeds": len(runs)})
            for metric in ("f1_macro", "f1_weighted", "accuracy"):
                entry[f"{metric}_mean"], entry[f"{metric}_std"] = _mean_std([r["summary"][metric] for r in runs])
            labels = runs[0]["per_class_f1"].keys()
            entry["per_class_f1_mean"] = {label: float(np.mean([r["per_class_f1"].get(label, 0.0) for r in runs]))
                                          for label in labels}
    return summary


def markdown_table(summary: dict, tasks: list[str]) -> str:
    """Return the comparison as markdown: macro and weighted F1 per task, then hard attack classes."""
    header = "| model | kind | " + " | ".join(f"{task} macro-F1 | {task} weighted-F1" for task in tasks) + " |"
    lines = [header, "|" + " --- |" * (2 + 2 * len(tasks))]
    order = sorted(summary, key=lambda name: -summary[name].get(tasks[-1], {}).get("f1_macro_mean", 0.0))
    for name in order:
        cells = []
        for task in tasks:
            entry = summary[name].get(task)
            if entry is None:
                cells += ["-", "-"]
                continue
            cells.append(f"{entry['f1_macro_mean']:.4f} ± {entry['f1_macro_std']:.4f}")
            cells.append(f"{entry['f1_weighted_mean']:.4f} ± {entry['f1_weighted_std']:.4f}")
        lines.append(f"| {name} | {summary[name]['kind']} | " + " | ".join(cells) + " |")

    if "attack" in tasks:
        classes = list(task_labels("attack"))
        lines += ["", "Attack task, per-class F1 (mean over seeds):", "",
                  "| class | " + " | ".join(order) + " |", "|" + " --- |" * (1 + len(order))]
        for label in classes:
            values = [summary[name].get("attack", {}).get("per_class_f1_mean", {}).get(label) for name in order]
            if all(value is None for value in values):
                continue
            cells = ["-" if value is None else f"{value:.3f}" for value in values]
            marker = " *" if label in HARD_CLASSES else ""
            lines.append(f"| {label}{marker} | " + " | ".join(cells) + " |")
        lines += ["", "\\* classes that published reproductions of the CNN score worst on."]
    return "\n".join(lines) + "\n"


def plot_macro_f1(summary: dict, tasks: list[str], path: Path) -> None:
    """Save a grouped bar chart of macro-F1 (mean, std as error bar) per task and model."""
    names = list(summary)
    figure = Figure(figsize=(max(6.0, 1.2 * len(names) * len(tasks) / 2), 4.5))
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(names))
    for index, name in enumerate(names):
        means = [summary[name].get(task, {}).get("f1_macro_mean", 0.0) for task in tasks]
        stds = [summary[name].get(task, {}).get("f1_macro_std", 0.0) for task in tasks]
        positions = np.arange(len(tasks)) + index * width
        axes.bar(positions, means, width, yerr=stds, label=name, capsize=2)
    axes.set_xticks(np.arange(len(tasks)) + width * (len(names) - 1) / 2, tasks)
    axes.set_ylabel("test macro-F1 (mean over seeds)")
    axes.set_ylim(0, 1)
    axes.legend(fontsize=7, ncols=2, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def report(cfg: DictConfig) -> dict:
    """Gather every model's results into comparison.md, comparison.json and a plot."""
    names = [*cfg.comparison.cnn_models, *cfg.comparison.baselines]
    missing = [name for name in names if not result_path(cfg, name).is_file()]
    if missing:
        raise FileNotFoundError(f"no comparison results for {missing}; run dvc repro compare_cnn compare_baseline")
    results = [json.loads(result_path(cfg, name).read_text()) for name in names]
    tasks = list(cfg.tasks)
    summary = summarise(results, tasks)

    out = comparison_dir(cfg)
    table = markdown_table(summary, tasks)
    seeds = ", ".join(str(seed) for seed in cfg.comparison.seeds)
    (out / "comparison.md").write_text(
        f"# Model comparison\n\nTest split of the prepared data; mean ± standard deviation over seeds {seeds}.\n\n"
        + table)
    metrics = {name: {task: {key: value for key, value in entry.items()
                             if key.endswith(("_mean", "_std")) and not isinstance(value, dict)}
                      for task, entry in model.items() if task in tasks}
               for name, model in summary.items()}
    (out / "comparison.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_macro_f1(summary, tasks, out / "comparison_macro_f1.png")

    setup_mlflow(_comparison_config(cfg, cfg.seed))
    with mlflow.start_run(run_name="comparison-report"):
        mlflow.set_tag("comparison", "report")
        for name in ("comparison.md", "comparison.json", "comparison_macro_f1.png"):
            mlflow.log_artifact(str(out / name), "comparison")
    logger.info("wrote %s", out / "comparison.md")
    return summary
