"""A trained flow classifier as a folder: preprocessing, network weights and label names.

The folder contains two files and needs no pickle to load:

- ``classifier.json``: task, label names, column layout, the fitted
  preprocessing (fill values, mean, scale) and the network's config
  (``_target_`` plus keyword arguments). A network trained on the 19
  attack classes for the binary or category task (``model.fine_labels``)
  also lists those classes as ``fine_class_names``.
- ``weights.safetensors``: the network's state dict.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from iomt_ids.data.errors import DataError
from iomt_ids.data.preprocessing import FeaturePreprocessor
from iomt_ids.data.schema import task_label_of

CONFIG_FILE = "classifier.json"
WEIGHTS_FILE = "weights.safetensors"

# Only networks of this package are built from a saved config.
_ALLOWED_TARGET_PREFIX = "iomt_ids.models."


def build_network(net_config: dict, n_features: int, n_classes: int) -> nn.Module:
    """Instantiate the network class named by ``net_config['_target_']``."""
    target = net_config["_target_"]
    if not target.startswith(_ALLOWED_TARGET_PREFIX):
        raise ValueError(f"network {target!r} is not a class under {_ALLOWED_TARGET_PREFIX}")
    module_name, class_name = target.rsplit(".", 1)
    network_class = getattr(importlib.import_module(module_name), class_name)
    kwargs = {key: value for key, value in net_config.items() if key != "_target_"}
    for key, value in kwargs.items():
        if isinstance(value, list):
            kwargs[key] = tuple(value)
    return network_class(n_features=n_features, n_classes=n_classes, **kwargs)


def label_grouping(fine_class_names: list[str], class_names: list[str], task: str) -> np.ndarray:
    """Return the float32 (n_fine, n_labels) 0/1 matrix that sums attack-class probabilities per task label.

    Raises ValueError when a fine class's task label is not in ``class_names``.
    """
    grouping = np.zeros((len(fine_class_names), len(class_names)), dtype=np.float32)
    for row, fine_class in enumerate(fine_class_names):
        label = task_label_of(fine_class, task)
        if label not in class_names:
            raise ValueError(f"class {fine_class!r} belongs to {task} label {label!r}, which is missing from "
                             f"the model's labels {class_names}")
        grouping[row, class_names.index(label)] = 1.0
    return grouping


@dataclass
class FlowClassifier:
    """Turns raw feature columns into class probabilities for one task."""

    task: str
    class_names: list[str]
    layout: str
    preprocessor: FeaturePreprocessor
    net_config: dict
    network: nn.Module
    # The attack classes the network outputs when it was trained on them for a coarser task; None
    # when it outputs ``class_names`` directly. Their probabilities are summed per task label.
    fine_class_names: list[str] | None = None
    # An ONNX Runtime session that replaces the PyTorch forward pass; see ``use_onnxruntime``.
    onnx_session: object | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._grouping = None
        if self.fine_class_names is not None:
            self._grouping = label_grouping(self.fine_class_names, self.class_names, self.task)

    @property
    def columns(self) -> list[str]:
        return self.preprocessor.columns

    def feature_array(self, flows: pd.DataFrame) -> np.ndarray:
        """Select the model's columns from raw flows as float32, in training order."""
        missing = [column for column in self.columns if column not in flows.columns]
        if missing:
            raise DataError(
                f"input lacks column(s) {', '.join(repr(c) for c in missing)} of the {self.layout} "
                f"layout this model was trained on. Use files of the {self.layout} layout."
            )
        return flows[self.columns].to_numpy(dtype=np.float64).astype(np.float32)

    @torch.inference_mode()
    def probabilities(self, features: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Clean, scale and classify raw features, float (n_flows, n_features) in ``columns`` order.

        Returns float32 (n_flows, n_classes) probabilities, columns in
        ``class_names`` order. Batches of ``batch_size`` flows bound the
        memory of the network's activations.
        """
        scaled = self.preprocessor.transform(features)
        self.network.eval()
        device = next(self.network.parameters()).device
        chunks = []
        for start in range(0, len(scaled), batch_size):
            if self.onnx_session is not None:
                logits = torch.from_numpy(self.onnx_session.run(None, {"flows": scaled[start:start + batch_size]})[0])
            else:
                logits = self.network(torch.from_numpy(scaled[start:start + batch_size]).to(device))
            probabilities = torch.softmax(logits, dim=1).cpu().numpy()
            if self._grouping is not None:
                probabilities = probabilities @ self._grouping
            chunks.append(probabilities)
        if not chunks:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return np.concatenate(chunks)

    def use_onnxruntime(self, threads: int | None = None) -> None:
        """Run the network with ONNX Runtime (CPU) instead of PyTorch, from now on.

        The network is exported to ONNX in memory from the loaded weights, so
        the saved classifier is unchanged. ``threads`` sets ONNX Runtime's
        intra-op threads (default: ``torch.get_num_threads()``). Raises
        ImportError naming the packages when onnxruntime or onnx is missing:
        they are optional and not needed to load or serve a model.
        """
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(
                f"the onnxruntime engine needs the onnxruntime and onnx packages ({error}). Install "
                f"them with: pip install -r benchmarks/requirements.txt"
            ) from None

        import io

        buffer = io.BytesIO()
        example = torch.zeros(2, len(self.columns))
        self.network.eval()
        torch.onnx.export(self.network.cpu(), example, buffer, input_names=["flows"], output_names=["logits"],
                          dynamic_axes={"flows": {0: "n_flows"}}, dynamo=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.onnx_session = onnxruntime.InferenceSession(buffer.getvalue(), options,
                                                         providers=["CPUExecutionProvider"])

    def predict_proba(self, flows: pd.DataFrame, batch_size: int = 8192) -> np.ndarray:
        """Return class probabilities, float32 (n_flows, n_classes), columns in ``class_names`` order."""
        return self.probabilities(self.feature_array(flows), batch_size)

    def predict(self, flows: pd.DataFrame) -> pd.DataFrame:
        """Return the predicted class, its probability and every class probability per flow."""
        probabilities = self.predict_proba(flows)
        best = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, dtype=int)
        result = pd.DataFrame({
            "predicted_class": np.asarray(self.class_names, dtype=object)[best],
            "probability": probabilities[np.arange(len(best)), best].astype(np.float64),
        })
        for index, name in enumerate(self.class_names):
            result[f"probability_{name}"] = probabilities[:, index].astype(np.float64)
        return result

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "task": self.task,
            "class_names": list(self.class_names),
            "layout": self.layout,
            "preprocessing": self.preprocessor.to_dict(),
            "network": self.net_config,
        }
        if self.fine_class_names is not None:
            config["fine_class_names"] = list(self.fine_class_names)
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        state = {key: value.detach().cpu().contiguous() for key, value in self.network.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "FlowClassifier":
        folder = Path(folder)
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path} not found: {folder} is not a saved flow classifier")
        config = json.loads(config_path.read_text())
        preprocessor = FeaturePreprocessor.from_dict(config["preprocessing"])
        fine_class_names = config.get("fine_class_names")
        n_outputs = len(fine_class_names if fine_class_names is not None else config["class_names"])
        network = build_network(config["network"], len(preprocessor.columns), n_outputs)
        network.load_state_dict(load_file(str(folder / WEIGHTS_FILE), device=device))
        network.to(device).eval()
        return cls(
            task=config["task"],
            class_names=list(config["class_names"]),
            layout=config["layout"],
            preprocessor=preprocessor,
            net_config=config["network"],
            network=network,
            fine_class_names=None if fine_class_names is None else list(fine_class_names),
        )
