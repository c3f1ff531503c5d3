"""The stages end to end on a small synthetic release: real parquet, real MLflow sqlite store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from iomt_ids.data.prepared import read_split
from iomt_ids.pipeline import evaluate, prepare, promote, train
from iomt_ids.serving.flow_classifier import FlowClassifier
from synthetic import prepared_project, project_config

ROOT = Path(__file__).resolve().parents[1]
TASK = "category"
MODEL_NAME = f"iomt-ids-{TASK}"

pytestmark = pytest.mark.slow


def train_evaluate_promote(cfg) -> promote.PromotionDecision:
    train.train_task(cfg, TASK)
    evaluate.run(cfg, TASK)
    return promote.promote(cfg, TASK)


@pytest.fixture(scope="module")
def base_project(tmp_path_factory):
    """A project whose first model is trained, evaluated and promoted."""
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = tmp_path_factory.mktemp("base")
    cfg = prepared_project(base)
    decision = train_evaluate_promote(cfg)
    yield base, decision
    mp.undo()


@pytest.fixture
def project(base_project, tmp_path, monkeypatch):
    """A private copy of the base project, so each test changes its own registry."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    base, _ = base_project
    copy = tmp_path / "project"
    shutil.copytree(base, copy)
    return copy


def versions(cfg) -> list[str]:
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    return sorted(str(v.version) for v in MlflowClient().search_model_versions(f"name='{MODEL_NAME}'"))


def alias_version(cfg, alias: str) -> str:
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    return str(MlflowClient().get_model_version_by_alias(MODEL_NAME, alias).version)


def test_first_version_becomes_champion(base_project):
    _, decision = base_project
    assert decision.alias == "champion"
    assert decision.version == "1"
    assert decision.reason == "no champion yet"


def test_evaluation_writes_macro_and_weighted(project):
    metrics = json.loads((project / "reports" / TASK / "metrics.json").read_text())
    for key in ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_weighted"):
        assert 0.0 <= metrics[key] <= 1.0, key
    per_class = json.loads((project / "reports" / TASK / "per_class.json").read_text())
    assert set(per_class) == {"Benign", "Spoofing", "MQTT", "Recon", "DoS"}
    assert (project / "reports" / TASK / "confusion_matrix.png").stat().st_size > 0


def test_run_logs_config_epochs_and_reports(project):
    cfg = project_config(project)
    run_id = json.loads((project / "models" / TASK / "run.json").read_text())["run_id"]
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params["model.name"] == "published_cnn"
    assert len(client.get_metric_history(run_id, "val_f1_macro")) == 2
    assert "test_f1_macro" in run.data.metrics
    artifacts = {a.path for folder in ("config", "data", "evaluation") for a in client.list_artifacts(run_id, folder)}
    assert "config/config.yaml" in artifacts
    assert "data/ingest_files.json" in artifacts
    assert "evaluation/confusion_matrix.png" in artifacts


def test_champion_predicts_like_saved_classifier(project):
    cfg = project_config(project)
    test_flows = read_split(project / "prepared" / "test.parquet")
    local = FlowClassifier.load(project / "models" / TASK)
    raw_columns = test_flows[local.columns]

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    served = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion").predict(raw_columns)
    expected = local.predict(raw_columns)
    assert list(served["predicted_class"]) == list(expected["predicted_class"])
    np.testing.assert_allclose(served["probability"], expected["probability"], rtol=1e-6)


def test_rerun_registers_nothing(project):
    cfg = project_config(project)
    decision = promote.promote(cfg, TASK)
    assert not decision.newly_registered
    assert versions(cfg) == ["1"]


def test_equal_score_gets_challenger(project):
    cfg = project_config(project)
    first = json.loads((project / "reports" / TASK / "metrics.json").read_text())["f1_macro"]
    decision = train_evaluate_promote(cfg)
    assert decision.new_f1_macro == pytest.approx(first)
    assert decision.alias == "challenger"
    assert alias_version(cfg, "champion") == "1"


def test_better_score_moves_champion(project):
    # A negative margin makes any score good enough, so the newer model must win.
    cfg = project_config(project, "registry.min_improvement=-0.5")
    decision = train_evaluate_promote(cfg)
    assert decision.alias == "champion"
    assert alias_version(cfg, "champion") == "2"


def test_worse_score_gets_challenger(project):
    # lr=0 leaves the network at its random initialisation: a worse model.
    cfg = project_config(project, "model.optimizer.lr=0.0")
    decision = train_evaluate_promote(cfg)
    assert decision.new_f1_macro < decision.champion_f1_macro
    assert decision.alias == "challenger"
    assert alias_version(cfg, "champion") == "1"


def test_missing_evaluation_promotes_nothing(project):
    cfg = project_config(project)
    train.train_task(cfg, TASK)
    (project / "reports" / TASK / "evaluation.json").unlink()
    with pytest.raises(promote.PromotionError, match="did not complete"):
        promote.promote(cfg, TASK)
    assert versions(cfg) == ["1"]


def test_stale_evaluation_promotes_nothing(project):
    # A new training run whose evaluation never ran: the record is the old run's.
    cfg = project_config(project)
    train.train_task(cfg, TASK)
    with pytest.raises(promote.PromotionError, match="rerun the evaluate stage"):
        promote.promote(cfg, TASK)
    assert versions(cfg) == ["1"]
    assert alias_version(cfg, "champion") == "1"


def test_incomplete_evaluation_promotes_nothing(project):
    cfg = project_config(project)
    (project / "reports" / TASK / "evaluation.json").write_text('{"status": "compl')
    with pytest.raises(promote.PromotionError, match="not valid JSON"):
        promote.promote(cfg, TASK)
    assert versions(cfg) == ["1"]


def test_champion_rescored_on_new_test_data(project):
    cfg = project_config(project, "data.split.seed=7")
    prepare.run(cfg)
    decision = train_evaluate_promote(cfg)
    assert "scored again on the current test data" in decision.reason
    assert decision.champion_f1_macro is not None


def test_margin_rule():
    assert promote.beats_champion(0.80, None, 0.0)
    assert promote.beats_champion(0.81, 0.80, 0.0)
    assert not promote.beats_champion(0.80, 0.80, 0.0)
    assert not promote.beats_champion(0.79, 0.80, 0.0)
    assert not promote.beats_champion(0.805, 0.80, 0.01)


def test_prediction_rejects_other_layout(project):
    local = FlowClassifier.load(project / "models" / TASK)
    flows = pd.DataFrame({"Header_Length": [1.0], "Duration": [2.0]})
    with pytest.raises(ValueError, match="Time_To_Live"):
        local.predict(flows)
