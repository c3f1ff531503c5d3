"""Stage ``train``: fit one task's network on the train split, tracked in MLflow.

The run logs the composed config, the data and split reports, per-epoch
metrics and the model (MLflow pyfunc from code, with signature and input
example). The trained classifier is saved to ``<models_dir>/<task>/`` and
its MLflow run id and model URI to ``<models_dir>/<task>/run.json``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.models import infer_signature
from omegaconf import DictConfig, OmegaConf

from iomt_ids.config import ConfigError, check_values
from iomt_ids.data.batches import TensorBatches
from iomt_ids.data.prepared import encode, feature_columns, present_labels, read_split, task_targets
from iomt_ids.data.preprocessing import FeaturePreprocessor
from iomt_ids.data.schema import layout_containing, task_label_of
from iomt_ids.models.callbacks import BestEpochWeights
from iomt_ids.models.lit_module import FlowClassifierModule
from iomt_ids.models.ple_cnn import PiecewiseLinearEncoding, tree_bin_edges
from iomt_ids.pipeline import ingest as ingest_stage
from iomt_ids.pipeline import prepare as prepare_stage
from iomt_ids.pipeline.tracking import setup_mlflow, tracking_uri
from iomt_ids.serving.flow_classifier import FlowClassifier, build_network

logger = logging.getLogger(__name__)

# Lightning attaches its own console handlers at import. Its records also reach
# the root handler that the command line sets up, so these are dropped to
# avoid printing every Lightning line twice.
for _name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(_name).handlers.clear()

PYFUNC_CODE = Path(__file__).resolve().parents[1] / "serving" / "mlflow_model.py"
RUN_FILE = "run.json"


# Packages a served model needs besides this project's own.
_SERVING_PACKAGES = ("torch", "numpy", "pandas", "safetensors", "mlflow")


@dataclass
class TrainResult:
    """A finished training run; ``model_uri`` and ``model_dir`` are None when nothing was saved."""

    run_id: str
    model_uri: str | None
    val_f1_macro: float
    model_dir: Path | None
    classifier: FlowClassifier | None = None


def model_dir(cfg: DictConfig, task: str) -> Path:
    return Path(cfg.paths.models_dir) / task


def _flatten(config: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _log_inputs(cfg: DictConfig, task: str, split_report: Path, data_reports: tuple[Path, ...]) -> None:
    config = OmegaConf.to_container(cfg, resolve=True)
    mlflow.log_params({**_flatten(config), "task": task})
    mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
    for path in (split_report, *data_reports):
        if path.is_file():
            mlflow.log_artifact(str(path), "data")


def _tensors(flows, columns, preprocessor, targets, class_names) -> tuple[torch.Tensor, torch.Tensor]:
    features = preprocessor.transform(flows[columns].to_numpy(dtype=np.float32))
    return torch.from_numpy(features), torch.from_numpy(encode(targets, class_names))


def _final_val_f1(trainer: L.Trainer) -> float:
    """Return the validation macro-F1 of the weights the trainer ends with."""
    for callback in trainer.callbacks:
        if isinstance(callback, BestEpochWeights) and callback.best_score is not None:
            return callback.best_score
    return float(trainer.callback_metrics["val_f1_macro"])


def _log_model(classifier: FlowClassifier, folder: Path, example) -> str:
    signature = infer_signature(example, classifier.predict(example))
    requirements = [f"{name}=={version(name)}" for name in _SERVING_PACKAGES] + [f"iomt-ids=={version('iomt-ids')}"]
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_CODE),
        artifacts={"classifier": str(folder)},
        signature=signature,
        input_example=example,
        pip_requirements=requirements,
    )
    return info.model_uri


def balanced_class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Return n_flows / (n_classes * n_class_flows) per class; 0 for a class without flows."""
    counts = torch.bincount(labels, minlength=n_classes).double()
    weights = torch.where(counts > 0, len(labels) / (n_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights.float()


def _selection_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Return early stopping and best-epoch selection on validation macro-F1, as configured."""
    selected: list[L.Callback] = []
    patience = cfg.model.get("early_stopping_patience")
    if patience:
        selected.append(EarlyStopping(monitor="val_f1_macro", mode="max", patience=int(patience)))
    if cfg.model.get("keep_best_epoch", False):
        selected.append(BestEpochWeights(monitor="val_f1_macro"))
    return selected


def _initial_bins(cfg: DictConfig, network: torch.nn.Module, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
    """Place the encoding's bins at decision-tree thresholds of the training split when model.bin_init is tree."""
    if cfg.model.get("bin_init", "uniform") == "uniform":
        return
    encoding = getattr(network, "embedding", None)
    if not isinstance(encoding, PiecewiseLinearEncoding):
        raise ConfigError(f"model.bin_init=tree needs a network with a piecewise-linear encoding (the ple_cnn "
                          f"variants), but model {cfg.model.name!r} has none; set model.bin_init=uniform")
    edges = tree_bin_edges(train_x.numpy(), train_y.numpy(), encoding.slope.shape[1], seed=cfg.seed)
    encoding.place_edges(torch.from_numpy(edges))


def train_task(cfg: DictConfig, task: str, *, callbacks: Sequence[L.Callback] = (), save: bool = True,
               nested: bool = False) -> TrainResult:
    """Train the configured network for one task; return the run, model URI and val macro-F1.

    Reads only the train and validation splits: the test split is for the
    evaluate stage. ``callbacks`` are added to the Lightning trainer (a
    pruning callback of a sweep, say). With ``save=False`` the classifier is
    neither written to ``<models_dir>/<task>`` nor logged as an MLflow model.
    ``nested=True`` opens the run as a child of the active MLflow run.
    """
    # A config built in code has not passed load_params or compose_config, which check the same rules.
    check_values(cfg, "the training config")
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)

    train_flows = read_split(prepare_stage.split_path(cfg, "train"))
    val_flows = read_split(prepare_stage.split_path(cfg, "val"))
    columns = feature_columns(train_flows)
    train_targets = task_targets(train_flows, task)
    val_targets = task_targets(val_flows, task)
    class_names = present_labels(task, train_targets, val_targets)
    missing_from_train = sorted(set(class_names) - set(train_targets.unique()))
    if missing_from_train:
        logger.warning("%s: classes %s have validation flows but no training flows", task, missing_from_train)

    # With model.fine_labels, the binary and category networks learn the 19 attack classes and are
    # scored on the sums of their probabilities per task label.
    fine_labels = cfg.model.get("fine_labels", False)
    fine_class_names = None
    label_groups = None
    if fine_labels and task != "attack":
        train_targets = task_targets(train_flows, "attack")
        val_targets = task_targets(val_flows, "attack")
        fine_class_names = present_labels("attack", train_targets, val_targets)
        label_groups = torch.tensor([class_names.index(task_label_of(name, task)) for name in fine_class_names])
    output_names = fine_class_names or class_names

    preprocessor = FeaturePreprocessor.fit(train_flows[columns].to_numpy(dtype=np.float32), columns,
                                           transform=cfg.model.get("transform", "standard"))
    train_x, train_y = _tensors(train_flows, columns, preprocessor, train_targets, output_names)
    val_x, val_y = _tensors(val_flows, columns, preprocessor, val_targets, output_names)

    imbalance = cfg.model.get("imbalance", "none")
    net_config = OmegaConf.to_container(cfg.model.net, resolve=True)
    network = build_network(net_config, n_features=len(columns), n_classes=len(output_names))
    _initial_bins(cfg, network, train_x, train_y)
    module = FlowClassifierModule(
        network, n_classes=len(class_names), lr=cfg.model.optimizer.lr,
        weight_decay=cfg.model.optimizer.get("weight_decay", 0.0),
        class_weights=balanced_class_weights(train_y, len(output_names)) if imbalance == "class_weights" else None,
        scheduler=cfg.model.get("scheduler"), max_epochs=cfg.trainer.max_epochs, label_groups=label_groups,
    )
    batch_size = int(cfg.model.batch_size)
    train_batches = TensorBatches(train_x, train_y, batch_size, shuffle=True, seed=cfg.seed,
                                  balanced=imbalance == "balanced_sampling")
    val_batches = TensorBatches(val_x, val_y, batch_size=max(batch_size, 4096))
    callbacks = [*callbacks, *_selection_callbacks(cfg)]

    setup_mlflow(cfg)
    layout = layout_containing(columns)
    folder = model_dir(cfg, task)

    with mlflow.start_run(run_name=f"{task}-{cfg.model.name}", nested=nested) as run:
        mlflow.set_tags({"task": task, "model": cfg.model.name, "stage": "train"})
        _log_inputs(cfg, task, prepare_stage.split_report_path(cfg), ingest_stage.data_report_paths(cfg))
        mlflow.log_params({"n_features": len(columns), "n_classes": len(class_names),
                           "n_network_outputs": len(output_names),
                           "n_train_flows": len(train_y), "n_val_flows": len(val_y)})

        with tempfile.TemporaryDirectory() as scratch:
            trainer = L.Trainer(
                **OmegaConf.to_container(cfg.trainer, resolve=True),
                logger=MLFlowLogger(experiment_name=cfg.mlflow.experiment_name,
                                    tracking_uri=tracking_uri(cfg), run_id=run.info.run_id),
                callbacks=list(callbacks),
                enable_checkpointing=False,
                enable_model_summary=False,
                enable_progress_bar=False,
                default_root_dir=scratch,
            )
            trainer.fit(module, train_dataloaders=train_batches, val_dataloaders=val_batches)
        val_f1_macro = _final_val_f1(trainer)
        mlflow.log_metrics({"selected_val_f1_macro": val_f1_macro, "epochs_trained": trainer.current_epoch})

        network.cpu().eval()
        classifier = FlowClassifier(task=task, class_names=class_names, layout=layout,
                                    preprocessor=preprocessor, net_config=net_config, network=network,
                                    fine_class_names=fine_class_names)
        if not save:
            logger.info("%s: trained %s in %.0f s, val macro-F1 %.4f, MLflow run %s (model not saved)", task,
                        cfg.model.name, time.perf_counter() - started, val_f1_macro, run.info.run_id)
            return TrainResult(run.info.run_id, None, val_f1_macro, None, classifier)

        if folder.exists():
            for stale in folder.iterdir():
                stale.unlink()
        classifier.save(folder)
        model_uri = _log_model(classifier, folder, val_flows[columns].head(5).reset_index(drop=True))

    (folder / RUN_FILE).write_text(json.dumps({"run_id": run.info.run_id, "model_uri": model_uri}, indent=2) + "\n")
    logger.info("%s: trained %s in %.0f s, val macro-F1 %.4f, MLflow run %s, model %s", task,
                cfg.model.name, time.perf_counter() - started, val_f1_macro, run.info.run_id, model_uri)
    return TrainResult(run.info.run_id, model_uri, val_f1_macro, folder, classifier)
