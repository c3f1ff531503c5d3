"""Stage ``promote``: register the evaluated model and decide champion or challenger.

The new version becomes ``champion`` only when its test macro-F1 beats the
current champion's by more than ``registry.min_improvement``, both measured
on the same test data (same fingerprint). A champion scored on other test
data is scored again on the current test split before the comparison.
Otherwise the new version gets the ``challenger`` alias. Nothing is
registered unless the evaluate stage completed for this very model and
test split, and rerunning for an already registered run registers nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from iomt_ids.data.errors import DataError
from iomt_ids.data.fingerprint import fingerprint_flows
from iomt_ids.data.prepared import read_split
from iomt_ids.pipeline import prepare as prepare_stage
from iomt_ids.pipeline.evaluate import EVALUATION_FILE, reports_dir, score_predictions
from iomt_ids.pipeline.tracking import registered_model_name, setup_mlflow
from iomt_ids.pipeline.train import RUN_FILE, model_dir
from iomt_ids.serving.flow_classifier import FlowClassifier

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTION_FILE = "promotion.json"


class PromotionError(RuntimeError):
    """The evaluation to promote from is missing, incomplete or stale."""


@dataclass
class PromotionDecision:
    task: str
    model_name: str
    version: str
    alias: str
    reason: str
    new_f1_macro: float
    champion_version: str | None
    champion_f1_macro: float | None
    test_fingerprint: str
    newly_registered: bool


def beats_champion(new_score: float, champion_score: float | None, min_improvement: float) -> bool:
    """Tell whether a new score earns the champion alias: strictly above champion + margin."""
    if champion_score is None:
        return True
    return new_score > champion_score + min_improvement


def read_evaluation(cfg: DictConfig, task: str, test_fingerprint: str) -> dict:
    """Return the evaluate stage's record for the current model and test split.

    Raises PromotionError when the record is missing, incomplete, for another
    training run, or for other test data.
    """
    path = reports_dir(cfg, task) / EVALUATION_FILE
    if not path.is_file():
        raise PromotionError(f"{path} not found: the {task} evaluation did not complete, so nothing is promoted. "
                             f"Run the evaluate stage first (dvc repro evaluate@{task}).")
    try:
        evaluation = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PromotionError(f"{path} is not valid JSON ({error}); rerun the evaluate stage.") from None
    if evaluation.get("status") != "complete":
        raise PromotionError(f"{path} records status {evaluation.get('status')!r}, not 'complete'; "
                             f"rerun the evaluate stage.")

    run_info = json.loads((model_dir(cfg, task) / RUN_FILE).read_text())
    if evaluation.get("run_id") != run_info["run_id"]:
        raise PromotionError(f"{path} is for MLflow run {evaluation.get('run_id')}, but the trained model is "
                             f"from run {run_info['run_id']}; rerun the evaluate stage.")
    if evaluation.get("test_fingerprint") != test_fingerprint:
        raise PromotionError(f"{path} was computed on other test data than the current test split; "
                             f"rerun the evaluate stage.")
    return evaluation


def _version_for_run(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    for model_version in client.search_model_versions(f"name='{name}'"):
        if model_version.tags.get("run_id") == run_id:
            return model_version
    return None


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _rescore(model_uri: str, flows, task: str) -> float:
    """Return the macro-F1 of a registered model on labelled flows."""
    predictions = mlflow.pyfunc.load_model(model_uri).predict(flows)
    return score_predictions(flows, predictions["predicted_class"], task)["summary"]["f1_macro"]


def champion_score(client: MlflowClient, champion: ModelVersion, flows, task: str,
                   fingerprint: str) -> tuple[float | None, str]:
    """Return the champion's macro-F1 on the current test data, and how it was obtained."""
    if champion.tags.get("test_fingerprint") == fingerprint and "test_f1_macro" in champion.tags:
        return float(champion.tags["test_f1_macro"]), "recorded on the same test data"
    try:
        score = _rescore(f"models:/{champion.name}@{CHAMPION}", flows, task)
    except (DataError, MlflowException, KeyError, ValueError) as error:
        logger.warning("champion %s v%s cannot score the current test data: %s", champion.name,
                       champion.version, error)
        return None, f"champion cannot score the current test data ({error})"
    return score, "scored again on the current test data"


def promote(cfg: DictConfig, task: str) -> PromotionDecision:
    classifier = FlowClassifier.load(model_dir(cfg, task))
    test_flows = read_split(prepare_stage.split_path(cfg, "test"))
    fingerprint = fingerprint_flows(test_flows, classifier.columns, "class")
    evaluation = read_evaluation(cfg, task, fingerprint)
    new_score = float(evaluation["f1_macro"])

    setup_mlflow(cfg)
    client = MlflowClient()
    name = registered_model_name(cfg, task)
    run_id = evaluation["run_id"]

    model_version = _version_for_run(client, name, run_id)
    newly_registered = model_version is None
    if newly_registered:
        model_version = mlflow.register_model(
            evaluation["model_uri"], name,
            tags={"run_id": run_id, "task": task, "test_fingerprint": fingerprint,
                  "test_f1_macro": repr(new_score)},
        )
        logger.info("registered %s version %s from run %s", name, model_version.version, run_id)
    else:
        logger.info("run %s is already %s version %s: nothing new registered", run_id, name, model_version.version)

    champion = _champion(client, name)
    if champion is not None and champion.version == model_version.version:
        decision_alias, reason, champion_f1 = CHAMPION, "already the champion", new_score
    elif champion is None:
        decision_alias, reason, champion_f1 = CHAMPION, "no champion yet", None
    else:
        champion_f1, score_source = champion_score(client, champion, test_flows, task, fingerprint)
        margin = float(cfg.registry.min_improvement)
        if beats_champion(new_score, champion_f1, margin):
            decision_alias = CHAMPION
            reason = f"macro-F1 {new_score:.4f} beats champion v{champion.version} " + (
                f"({champion_f1:.4f}, {score_source}) by more than {margin}" if champion_f1 is not None else f"({score_source})")
        else:
            decision_alias = CHALLENGER
            reason = (f"macro-F1 {new_score:.4f} does not beat champion v{champion.version} "
                      f"({champion_f1:.4f}, {score_source}) by more than {margin}")

    client.set_registered_model_alias(name, decision_alias, model_version.version)
    client.set_model_version_tag(name, model_version.version, "promotion_decision", decision_alias)

    decision = PromotionDecision(
        task=task, model_name=name, version=str(model_version.version), alias=decision_alias, reason=reason,
        new_f1_macro=new_score, champion_version=None if champion is None else str(champion.version),
        champion_f1_macro=None if champion_f1 is None else float(champion_f1),
        test_fingerprint=fingerprint, newly_registered=newly_registered,
    )
    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags({"promotion_decision": decision_alias, "promotion_reason": reason,
                         "registered_model": f"{name}/{model_version.version}"})
        metrics = {"promotion_new_f1_macro": new_score}
        if champion_f1 is not None and np.isfinite(champion_f1):
            metrics["promotion_champion_f1_macro"] = float(champion_f1)
        mlflow.log_metrics(metrics)

    path = reports_dir(cfg, task) / PROMOTION_FILE
    path.write_text(json.dumps(asdict(decision), indent=2) + "\n")
    logger.info("%s: %s version %s is %s: %s", task, name, model_version.version, decision_alias, reason)
    return decision
