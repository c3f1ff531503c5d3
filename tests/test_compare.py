"""The comparison harness on a small synthetic release: CNN variants and baselines, one table."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from iomt_ids.models.baselines import stratified_sample
from iomt_ids.pipeline import compare, ingest, prepare
from synthetic import ROOT, project_config, write_raw_folder

import numpy as np

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = tmp_path_factory.mktemp("compare")
    write_raw_folder(base / "raw", rows_per_class=80)
    cfg = project_config(
        base, "tasks=[category,attack]", "comparison.seeds=[0,1]", "comparison.max_epochs=1",
        "comparison.cnn_models=[published_cnn,residual_cnn]",
        "comparison.baselines=[logistic_regression,random_forest]",
        "comparison.baseline_max_train_flows=200",
    )
    ingest.run(cfg)
    prepare.run(cfg)
    for name in cfg.comparison.cnn_models:
        compare.run_cnn(cfg, name, conf_dir=ROOT / "conf")
    for name in cfg.comparison.baselines:
        compare.run_baseline(cfg, name, conf_dir=ROOT / "conf")
    summary = compare.report(cfg)
    yield base, cfg, summary
    mp.undo()


def test_report_has_every_model_and_task(compared):
    _, cfg, summary = compared
    assert set(summary) == {"published_cnn", "residual_cnn", "logistic_regression", "random_forest"}
    for name, model in summary.items():
        assert model["category"]["n_seeds"] == 2, name
        assert model["attack"]["n_seeds"] == 2, name


def test_table_shows_macro_beside_weighted(compared):
    base, _, _ = compared
    table = (base / "reports" / "comparison" / "comparison.md").read_text()
    assert "| category macro-F1 | category weighted-F1 |" in table
    assert "±" in table
    assert "Recon-Port_Scan" in table


def test_metrics_file_has_mean_and_std(compared):
    base, _, _ = compared
    metrics = json.loads((base / "reports" / "comparison" / "comparison.json").read_text())
    entry = metrics["random_forest"]["attack"]
    assert 0.0 <= entry["f1_macro_mean"] <= 1.0
    assert entry["f1_macro_std"] >= 0.0


def test_every_run_is_in_mlflow(compared):
    _, cfg, _ = compared
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    experiment = mlflow.get_experiment_by_name(cfg.comparison.experiment_name)
    runs = MlflowClient().search_runs([experiment.experiment_id], max_results=1000)
    kinds = [run.data.tags.get("comparison") for run in runs]
    # 2 CNNs and 2 baselines, each for 2 tasks and 2 seeds, plus the report run.
    assert kinds.count("cnn") == 8
    assert kinds.count("baseline") == 8
    assert kinds.count("report") == 1
    # comparison.max_epochs=1 caps every variant, whatever its own max_epochs.
    cnn_runs = [run for run in runs if run.data.tags.get("comparison") == "cnn"]
    assert {run.data.params["trainer.max_epochs"] for run in cnn_runs} == {"1"}


def test_report_requires_every_model(compared, tmp_path):
    _, cfg, _ = compared
    cfg.paths.reports_dir = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="published_cnn"):
        compare.report(cfg)


def test_stratified_sample_keeps_rare_class():
    labels = np.array(["a"] * 990 + ["b"] * 10)
    rows = stratified_sample(labels, 100, seed=0)
    assert len(rows) == 100
    assert (labels[rows] == "b").sum() == 1


def test_stratified_sample_all_rows_when_small():
    labels = np.array(["a", "b", "b"])
    assert list(stratified_sample(labels, None, seed=0)) == [0, 1, 2]
