"""Tests for the published 1D CNN, the mini-batches that feed it and the shared metrics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from iomt_ids.data.batches import TensorBatches
from iomt_ids.metrics import classification_metrics
from iomt_ids.models.published_cnn import PublishedCNN


def make_rows(n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return features whose first column is twice the label, so a row can be traced."""
    labels = torch.arange(n_rows)
    features = torch.stack([2.0 * labels, -1.0 * labels], dim=1)
    return features, labels


def collect_epoch(batches: TensorBatches) -> tuple[list[int], list[torch.Tensor]]:
    """Run one epoch and return the label order and the feature batches."""
    order: list[int] = []
    feature_batches: list[torch.Tensor] = []
    for features, labels in batches:
        order += labels.tolist()
        feature_batches.append(features)
    return order, feature_batches


# TensorBatches


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_cover_every_row(shuffle):
    features, labels = make_rows(23)
    batches = TensorBatches(features, labels, batch_size=5, shuffle=shuffle, seed=1)

    for _ in range(3):
        order, _ = collect_epoch(batches)
        assert sorted(order) == list(range(23))


def test_batches_keep_rows_aligned():
    features, labels = make_rows(23)
    batches = TensorBatches(features, labels, batch_size=5, shuffle=True, seed=1)

    for batch_features, batch_labels in batches:
        assert torch.equal(batch_features[:, 0], 2.0 * batch_labels)


@pytest.mark.parametrize(
    ("n_rows", "batch_size", "sizes"),
    [(23, 5, [5, 5, 5, 5, 3]), (20, 5, [5, 5, 5, 5]), (3, 8, [3]), (4, 1, [1, 1, 1, 1]), (0, 4, [])],
)
def test_batches_sizes(n_rows, batch_size, sizes):
    features, labels = make_rows(n_rows)
    batches = TensorBatches(features, labels, batch_size=batch_size, shuffle=True)

    assert [len(batch_labels) for _, batch_labels in batches] == sizes
    assert len(batches) == len(sizes)


def test_batches_shuffle_differs_across_epochs():
    features, labels = make_rows(50)
    batches = TensorBatches(features, labels, batch_size=8, shuffle=True, seed=5)

    first, _ = collect_epoch(batches)
    second, _ = collect_epoch(batches)

    assert first != second
    assert first != list(range(50))


def test_batches_shuffle_reproducible():
    features, labels = make_rows(50)
    batches = TensorBatches(features, labels, batch_size=8, shuffle=True, seed=5)
    repeat = TensorBatches(features, labels, batch_size=8, shuffle=True, seed=5)

    for _ in range(3):
        assert collect_epoch(batches)[0] == collect_epoch(repeat)[0]


def test_batches_other_seed_differs():
    features, labels = make_rows(50)
    batches = TensorBatches(features, labels, batch_size=8, shuffle=True, seed=5)
    other = TensorBatches(features, labels, batch_size=8, shuffle=True, seed=6)

    assert collect_epoch(batches)[0] != collect_epoch(other)[0]


def test_batches_no_shuffle_keeps_order():
    features, labels = make_rows(23)
    batches = TensorBatches(features, labels, batch_size=5)

    for _ in range(2):
        order, feature_batches = collect_epoch(batches)
        assert order == list(range(23))
        assert torch.equal(torch.cat(feature_batches), features)


def test_batches_length_mismatch():
    features, _ = make_rows(10)

    with pytest.raises(ValueError, match="10 feature rows but 9 labels"):
        TensorBatches(features, torch.arange(9), batch_size=4)


def test_batches_zero_batch_size():
    features, labels = make_rows(10)

    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        TensorBatches(features, labels, batch_size=0)


# PublishedCNN


def describe_layers(model: nn.Module) -> list[tuple]:
    """Return the type and shape settings of every leaf layer, in forward order."""
    described: list[tuple] = []
    for layer in model.modules():
        if isinstance(layer, nn.Conv1d):
            described.append(("Conv1d", layer.in_channels, layer.out_channels, layer.kernel_size[0],
                              layer.stride[0], layer.padding[0]))
        elif isinstance(layer, nn.MaxPool1d):
            described.append(("MaxPool1d", layer.kernel_size))
        elif isinstance(layer, nn.Linear):
            described.append(("Linear", layer.in_features, layer.out_features))
        elif isinstance(layer, (nn.ReLU, nn.Flatten)):
            described.append((type(layer).__name__,))
    return described


def published_length(n_features: int) -> int:
    """Return the sequence length after two valid k=3 convolutions, each followed by a pool of 2."""
    return ((n_features - 2) // 2 - 2) // 2


@pytest.mark.parametrize(("n_features", "length"), [(39, 8), (45, 9)])
def test_published_length_formula(n_features, length):
    assert published_length(n_features) == length


@pytest.mark.parametrize(("n_features", "n_classes"), [(39, 19), (45, 6), (39, 2)])
def test_cnn_published_structure(n_features, n_classes):
    model = PublishedCNN(n_features=n_features, n_classes=n_classes)
    length = published_length(n_features)

    assert describe_layers(model) == [
        ("Conv1d", 1, 32, 3, 1, 0),
        ("MaxPool1d", 2),
        ("ReLU",),
        ("Conv1d", 32, 64, 3, 1, 0),
        ("MaxPool1d", 2),
        ("ReLU",),
        ("Flatten",),
        ("Linear", 64 * length, 128),
        ("ReLU",),
        ("Linear", 128, n_classes),
    ]


@pytest.mark.parametrize("n_features", [39, 45, 12])
def test_cnn_pool_first_same_as_published(n_features):
    torch.manual_seed(0)
    model = PublishedCNN(n_features=n_features, n_classes=6)
    conv1, pool1, relu1, conv2, pool2, relu2 = model.features
    published = nn.Sequential(conv1, relu1, pool1, conv2, relu2, pool2)
    flows = torch.randn(64, n_features)

    logits = model(flows)
    reference = model.classifier(published(flows.unsqueeze(1)))
    gradient = torch.autograd.grad(logits.sum(), conv1.weight)[0]
    reference_gradient = torch.autograd.grad(reference.sum(), conv1.weight)[0]

    assert torch.equal(logits, reference)
    assert torch.equal(gradient, reference_gradient)


@pytest.mark.parametrize(("n_features", "n_classes"), [(39, 19), (45, 6), (10, 2)])
def test_cnn_output_shape(n_features, n_classes):
    model = PublishedCNN(n_features=n_features, n_classes=n_classes)

    logits = model(torch.randn(5, n_features))

    assert logits.shape == (5, n_classes)
    assert logits.dtype == torch.float32


@pytest.mark.parametrize("n_features", [1, 5, 9])
def test_cnn_too_few_features(n_features):
    with pytest.raises(ValueError, match=f"{n_features} features are too few"):
        PublishedCNN(n_features=n_features, n_classes=2)


@pytest.mark.parametrize(
    ("n_features", "n_classes", "expected"),
    [
        # conv1 1*32*3+32 = 128, conv2 32*64*3+64 = 6,208, dense 512*128+128 = 65,664,
        # output 128*19+19 = 2,451.
        (39, 19, 128 + 6_208 + 65_664 + 2_451),
        # Same convolutions, dense 576*128+128 = 73,856, output 128*2+2 = 258.
        (45, 2, 128 + 6_208 + 73_856 + 258),
    ],
)
def test_cnn_parameter_count(n_features, n_classes, expected):
    model = PublishedCNN(n_features=n_features, n_classes=n_classes)

    assert sum(parameter.numel() for parameter in model.parameters()) == expected


# classification_metrics

# Ten flows, imbalanced 6:3:1. Every "a" is right, one "b" and the only "c" are
# predicted "a", so "c" is never predicted. Per class, by hand:
#   a: precision 6/8, recall 6/6, F1 6/7
#   b: precision 2/2, recall 2/3, F1 4/5
#   c: precision 0 (no predictions), recall 0/1, F1 0
Y_TRUE = ["a"] * 6 + ["b"] * 3 + ["c"]
Y_PRED = ["a"] * 6 + ["b", "b", "a"] + ["a"]
LABELS = ["a", "b", "c"]


@pytest.fixture
def toy_metrics():
    return classification_metrics(Y_TRUE, Y_PRED, LABELS)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("accuracy", 8 / 10),
        ("precision_macro", (6 / 8 + 1 + 0) / 3),
        ("recall_macro", (1 + 2 / 3 + 0) / 3),
        ("f1_macro", (6 / 7 + 4 / 5 + 0) / 3),
        ("precision_weighted", (6 * 6 / 8 + 3 * 1 + 1 * 0) / 10),
        ("recall_weighted", (6 * 1 + 3 * 2 / 3 + 1 * 0) / 10),
        ("f1_weighted", (6 * 6 / 7 + 3 * 4 / 5 + 1 * 0) / 10),
    ],
)
def test_metrics_summary_by_hand(toy_metrics, name, expected):
    assert toy_metrics["summary"][name] == pytest.approx(expected)


def test_metrics_flow_count(toy_metrics):
    assert toy_metrics["summary"]["n_flows"] == 10


def test_metrics_macro_below_weighted(toy_metrics):
    summary = toy_metrics["summary"]

    assert summary["f1_macro"] < summary["f1_weighted"]


def test_metrics_unpredicted_class_f1_zero(toy_metrics):
    assert toy_metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("a", {"precision": 6 / 8, "recall": 1.0, "f1": 6 / 7, "support": 6}),
        ("b", {"precision": 1.0, "recall": 2 / 3, "f1": 4 / 5, "support": 3}),
    ],
)
def test_metrics_per_class_by_hand(toy_metrics, label, expected):
    assert toy_metrics["per_class"][label] == pytest.approx(expected)


def test_metrics_confusion_follows_labels():
    scores = classification_metrics(Y_TRUE, Y_PRED, ["c", "a", "b"])

    # Rows are true classes and columns predicted classes, both in the order c, a, b.
    assert scores["confusion_matrix"] == [[0, 1, 0], [0, 6, 0], [0, 1, 2]]
    assert scores["labels"] == ["c", "a", "b"]
    assert list(scores["per_class"]) == ["c", "a", "b"]


def test_metrics_from_counts_match_metrics_from_flows(toy_metrics):
    # The same ten flows as confusion cells: (a, a) 6, (b, b) 2, (b, a) 1, (c, a) 1.
    scores = classification_metrics(["a", "b", "b", "c"], ["a", "b", "a", "a"], LABELS, counts=[6, 2, 1, 1])

    assert scores["summary"] == pytest.approx(toy_metrics["summary"])
    for label in LABELS:
        assert scores["per_class"][label] == pytest.approx(toy_metrics["per_class"][label])
    assert scores["confusion_matrix"] == toy_metrics["confusion_matrix"]
    assert scores["summary"]["n_flows"] == 10
