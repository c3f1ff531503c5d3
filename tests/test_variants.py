"""Tests for the CNN variants of conf/model/ and the training options they set."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from iomt_ids.config import ConfigError
from iomt_ids.data.schema import LAYOUTS
from iomt_ids.models.ple_cnn import PLECNN, PiecewiseLinearEncoding, tree_bin_edges
from iomt_ids.pipeline import train
from iomt_ids.serving.flow_classifier import FlowClassifier, build_network
from synthetic import prepared_project, project_config

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = sorted(path.stem for path in (ROOT / "conf" / "model").glob("*.yaml"))


def net_config(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{name}.yaml").net)


def test_ple_cnn_is_a_variant():
    assert {"published_cnn", "residual_cnn", "embedding_cnn", "ple_cnn"} <= set(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize(("layout", "n_classes"), [("v2", 19), ("v1", 6), ("v2", 2)])
def test_variant_maps_flows_to_logits(name, layout, n_classes):
    n_features = len(LAYOUTS[layout])
    network = build_network(net_config(name), n_features, n_classes).eval()

    logits = network(torch.randn(7, n_features))

    assert logits.shape == (7, n_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_learns_every_parameter(name):
    network = build_network(net_config(name), 39, 5)
    features, labels = torch.randn(32, 39), torch.randint(0, 5, (32,))

    torch.nn.functional.cross_entropy(network(features), labels).backward()

    no_gradient = [key for key, parameter in network.named_parameters()
                   if parameter.grad is None or not parameter.grad.abs().sum() > 0]
    assert no_gradient == []


def test_encoding_same_without_autograd():
    torch.manual_seed(0)
    encoding = PiecewiseLinearEncoding(n_features=5, n_bins=8, dim=4)
    features = torch.randn(64, 5) * 2

    with_autograd = encoding(features)
    with torch.inference_mode():
        in_place = encoding(features)

    assert with_autograd.requires_grad
    torch.testing.assert_close(in_place, with_autograd.detach(), rtol=1e-5, atol=1e-6)


def encoded_bins(encoding: PiecewiseLinearEncoding, value: float) -> list[float]:
    """Return the bin values of ``value`` for the encoding's first feature."""
    x = torch.tensor([[value]])
    return torch.clamp(x.unsqueeze(-1) * encoding.slope + encoding.offset, 0, 1)[0, 0].tolist()


def test_encoding_starts_with_even_bins():
    encoding = PiecewiseLinearEncoding(n_features=1, n_bins=4, dim=1)
    half_range = math.sqrt(3.0)
    width = 2 * half_range / 4

    assert encoded_bins(encoding, -half_range - 1) == [0, 0, 0, 0]
    assert encoded_bins(encoding, half_range + 1) == [1, 1, 1, 1]
    # Halfway through the second bin: the first is full, the second half full, the rest empty.
    assert encoded_bins(encoding, -half_range + 1.5 * width) == pytest.approx([1, 0.5, 0, 0], abs=1e-6)


def test_encoding_separates_values_in_one_bin():
    torch.manual_seed(0)
    encoding = PiecewiseLinearEncoding(n_features=3, n_bins=8, dim=4)

    low, high = encoding(torch.tensor([[0.10, 0.0, 0.0]])), encoding(torch.tensor([[0.12, 0.0, 0.0]]))

    assert low.shape == (1, 4, 3)
    assert not torch.equal(low[:, :, 0], high[:, :, 0])
    assert torch.equal(low[:, :, 1:], high[:, :, 1:])


def test_place_edges_moves_bins():
    encoding = PiecewiseLinearEncoding(n_features=1, n_bins=2, dim=1)

    encoding.place_edges(torch.tensor([[-1.0, 0.0, 2.0]]))

    assert encoded_bins(encoding, -1.0) == pytest.approx([0, 0])
    assert encoded_bins(encoding, 0.0) == pytest.approx([1, 0])
    assert encoded_bins(encoding, 1.0) == pytest.approx([1, 0.5])


def test_place_edges_rejects_unordered_edges():
    encoding = PiecewiseLinearEncoding(n_features=1, n_bins=2, dim=1)

    with pytest.raises(ValueError, match="edges must increase strictly"):
        encoding.place_edges(torch.tensor([[0.0, -1.0, 2.0]]))


def test_place_edges_rejects_wrong_shape():
    encoding = PiecewiseLinearEncoding(n_features=2, n_bins=2, dim=1)

    with pytest.raises(ValueError, match=r"\(n_features, n_bins \+ 1\) = \(2, 3\), got \(1, 3\)"):
        encoding.place_edges(torch.tensor([[-1.0, 0.0, 2.0]]))


def test_tree_edges_split_where_class_changes():
    values = np.linspace(-1.5, 1.5, 400, dtype=np.float32)
    labels = (values > 0.5).astype(np.int64)

    edges = tree_bin_edges(values.reshape(-1, 1), labels, n_bins=2)

    assert edges.shape == (1, 3)
    assert edges[0, 1] == pytest.approx(0.5, abs=0.01)


def test_tree_edges_span_training_values():
    # Standardised ranks of a feature with many ties reach far beyond [-sqrt(3), sqrt(3)].
    values = np.linspace(-6.0, 0.5, 400, dtype=np.float32)
    labels = (values > -4.0).astype(np.int64)

    edges = tree_bin_edges(values.reshape(-1, 1), labels, n_bins=2)

    assert edges[0, 0] == pytest.approx(-6.0)
    assert edges[0, 1] == pytest.approx(-4.0, abs=0.02)
    assert edges[0, 2] == pytest.approx(0.5)


def test_tree_edges_constant_feature_even():
    # A constant feature gives the tree nothing to split, so its bins are halved into even widths.
    features = np.zeros((100, 1), dtype=np.float32)
    labels = np.arange(100) % 2

    edges = tree_bin_edges(features, labels, n_bins=4)

    half_range = math.sqrt(3.0)
    assert edges[0] == pytest.approx([-half_range, -half_range / 2, 0.0, half_range / 2, half_range], abs=1e-6)


def test_tree_edges_halve_bins_without_split(caplog):
    # 100 flows cannot fill two leaves of at least 60 flows, so the tree has no split.
    values = np.linspace(0.0, 1.0, 100, dtype=np.float32)
    labels = (values > 0.5).astype(np.int64)

    with caplog.at_level("INFO", logger="iomt_ids.models.ple_cnn"):
        edges = tree_bin_edges(values.reshape(-1, 1), labels, n_bins=4, min_flows_per_bin=60)

    assert edges[0] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert "1 of 1 features had no split, so their bins were halved evenly" in caplog.text


def test_tree_edges_increase_per_feature():
    rng = np.random.default_rng(0)
    features = rng.uniform(-1.7, 1.7, size=(2_000, 3)).astype(np.float32)
    labels = rng.integers(0, 4, size=2_000)

    edges = tree_bin_edges(features, labels, n_bins=16, max_flows=500)

    assert edges.shape == (3, 17)
    assert (np.diff(edges, axis=1) > 0).all()


def test_tree_edges_reject_label_count_mismatch():
    with pytest.raises(ValueError, match="got features \\(10, 2\\) and 9 labels"):
        tree_bin_edges(np.zeros((10, 2), dtype=np.float32), np.zeros(9, dtype=np.int64), n_bins=4)


def test_ple_cnn_rejects_even_kernel():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        PLECNN(n_features=39, n_classes=2, kernel_size=4)


@pytest.fixture(scope="module")
def variants_project(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = tmp_path_factory.mktemp("variants")
    prepared_project(base)
    yield base
    mp.undo()


@pytest.mark.slow
@pytest.mark.parametrize(("model", "overrides"), [
    ("ple_cnn", ()),
    ("residual_cnn", ("model.scheduler=cosine", "model.imbalance=balanced_sampling")),
    ("published_cnn", ("model.scheduler=plateau", "model.imbalance=class_weights", "model.transform=signed_log")),
])
def test_variant_trains_and_saves(variants_project, tmp_path, model, overrides):
    cfg = project_config(variants_project, f"model={model}", f"paths.models_dir={tmp_path}/models",
                         "model.batch_size=32", "trainer.max_epochs=5", *overrides)

    result = train.train_task(cfg, "attack")

    # Five well separated classes: five short epochs tell them apart.
    assert result.val_f1_macro > 0.9
    restored = FlowClassifier.load(result.model_dir)
    assert restored.net_config["_target_"] == cfg.model.net._target_
    assert restored.preprocessor.transform_name == cfg.model.transform


@pytest.mark.slow
def test_tree_init_places_starting_bins(variants_project, tmp_path):
    from iomt_ids.data.prepared import encode, feature_columns, read_split, task_targets

    # A learning rate of 0 keeps the initial weights, so the trained bins are where training started.
    cfg = project_config(variants_project, "model=ple_cnn_tree", f"paths.models_dir={tmp_path}/models",
                         "model.batch_size=32", "trainer.max_epochs=1", "model.optimizer.lr=0")

    classifier = train.train_task(cfg, "attack", save=False).classifier

    train_flows = read_split(variants_project / "prepared" / "train.parquet")
    features = classifier.preprocessor.transform(train_flows[feature_columns(train_flows)].to_numpy(dtype=np.float32))
    labels = encode(task_targets(train_flows, "attack"), classifier.class_names)
    expected = PiecewiseLinearEncoding(features.shape[1], cfg.model.net.n_bins, 1)
    expected.place_edges(torch.from_numpy(tree_bin_edges(features, labels, cfg.model.net.n_bins, seed=cfg.seed)))
    torch.testing.assert_close(classifier.network.embedding.slope, expected.slope)
    torch.testing.assert_close(classifier.network.embedding.offset, expected.offset)


def test_tree_bin_init_needs_an_encoding(variants_project, tmp_path):
    cfg = project_config(variants_project, "model=published_cnn", "+model.bin_init=tree",
                         f"paths.models_dir={tmp_path}/models")

    with pytest.raises(ConfigError, match="model 'published_cnn' has none; set model.bin_init=uniform"):
        train.train_task(cfg, "attack", save=False)


def test_cli_reports_tree_bins_without_encoding(variants_project, tmp_path, caplog):
    from iomt_ids import cli

    cfg = project_config(variants_project, "model=published_cnn", "+model.bin_init=tree",
                         f"paths.models_dir={tmp_path}/models")
    params = tmp_path / "params.yaml"
    params.write_text(OmegaConf.to_yaml(cfg, resolve=True))

    status = cli.main(["--params", str(params), "train", "--task", "attack"])

    assert status == 2
    assert "model.bin_init=tree needs a network with a piecewise-linear encoding" in caplog.text


def test_unknown_bin_init_rejected(variants_project):
    message = ("model.bin_init='quantiles' in .* is invalid: expected one of uniform, tree, "
               "for example model.bin_init=uniform")
    with pytest.raises(ConfigError, match=message):
        project_config(variants_project, "model=ple_cnn_tree", "model.bin_init=quantiles")


def test_unknown_imbalance_rejected(variants_project):
    message = "model.imbalance='oversample' in .* is invalid: expected one of none, class_weights, balanced_sampling"
    with pytest.raises(ConfigError, match=message):
        project_config(variants_project, "model=ple_cnn", "model.imbalance=oversample")


def test_unknown_scheduler_rejected():
    from iomt_ids.models.lit_module import FlowClassifierModule

    with pytest.raises(ValueError, match="unknown scheduler 'step'"):
        FlowClassifierModule(torch.nn.Linear(3, 2), n_classes=2, scheduler="step")


@pytest.mark.parametrize("n_bins", [0, -1])
def test_encoding_rejects_no_bins(n_bins):
    with pytest.raises(ValueError, match="n_bins must be at least 1"):
        PiecewiseLinearEncoding(n_features=3, n_bins=n_bins, dim=4)


def test_label_grouping_sums_per_label():
    from iomt_ids.serving.flow_classifier import label_grouping

    fine = ["Benign", "ARP_Spoofing", "Recon-Port_Scan", "Recon-OS_Scan"]
    grouping = label_grouping(fine, ["Benign", "Spoofing", "Recon"], "category")

    assert grouping.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]
    assert label_grouping(fine, ["Benign", "Attack"], "binary").tolist() == [[1, 0], [0, 1], [0, 1], [0, 1]]


def test_label_grouping_rejects_missing_label():
    from iomt_ids.serving.flow_classifier import label_grouping

    with pytest.raises(ValueError, match="'TCP_IP-DoS-UDP' belongs to category label 'DoS'"):
        label_grouping(["Benign", "TCP_IP-DoS-UDP"], ["Benign", "Recon"], "category")


@pytest.mark.slow
def test_fine_labels_scored_per_task_label(variants_project, tmp_path):
    from sklearn.metrics import f1_score

    from iomt_ids.data.prepared import read_split, task_targets
    from synthetic import CLASSES

    # One short epoch at a low rate leaves errors, so fine-label and task-label scores differ.
    cfg = project_config(variants_project, "model=ple_cnn", f"paths.models_dir={tmp_path}/models",
                         "model.batch_size=32", "trainer.max_epochs=1", "model.optimizer.lr=0.0003")
    assert cfg.model.fine_labels

    result = train.train_task(cfg, "binary")

    classifier = result.classifier
    assert classifier.class_names == ["Benign", "Attack"]
    assert classifier.fine_class_names == list(CLASSES)
    val_flows = read_split(variants_project / "prepared" / "val.parquet")
    probabilities = classifier.predict_proba(val_flows)
    assert probabilities.shape == (len(val_flows), 2)
    assert probabilities.sum(axis=1) == pytest.approx(1.0, abs=1e-5)
    # The selected validation score is the binary task's macro-F1 of the summed probabilities.
    predicted = [classifier.class_names[i] for i in probabilities.argmax(axis=1)]
    assert result.val_f1_macro == pytest.approx(
        f1_score(task_targets(val_flows, "binary"), predicted, average="macro"), abs=1e-6)

    restored = FlowClassifier.load(result.model_dir)
    assert restored.fine_class_names == list(CLASSES)
    assert restored.predict_proba(val_flows) == pytest.approx(probabilities, abs=1e-6)


@pytest.mark.slow
def test_attack_task_ignores_fine_labels(variants_project, tmp_path):
    cfg = project_config(variants_project, "model=ple_cnn", f"paths.models_dir={tmp_path}/models",
                         "model.batch_size=32", "trainer.max_epochs=1")

    result = train.train_task(cfg, "attack", save=False)

    assert result.classifier.fine_class_names is None


def test_fine_labels_rejects_non_boolean(variants_project, tmp_path):
    # Composing conf/ rejects this value already, so the test sets it as code that builds a config would.
    cfg = project_config(variants_project, "model=ple_cnn", f"paths.models_dir={tmp_path}/models")
    cfg.model.fine_labels = "maybe"

    message = "model.fine_labels='maybe' in the training config is invalid: expected true or false"
    with pytest.raises(ValueError, match=message):
        train.train_task(cfg, "binary", save=False)
