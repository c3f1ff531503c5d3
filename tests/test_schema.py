"""Tests for iomt_ids.data.schema: labels from file names, the label mapping and column layouts.

The expected category and binary label of every class are written out below
from the dataset's published rules, not derived from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from iomt_ids.data.schema import (
    BINARY_LABELS,
    CATEGORIES,
    CLASSES,
    V1_COLUMNS,
    V2_COLUMNS,
    binary_of,
    category_of,
    class_from_file_name,
    layout_of,
    task_labels,
)

# class -> (category, binary label). Spoofing is ARP_Spoofing alone, MQTT the five
# MQTT-* classes, Recon the four Recon-* classes, DDoS TCP_IP-DDoS-*, DoS TCP_IP-DoS-*.
LABEL_TABLE: dict[str, tuple[str, str]] = {
    "Benign": ("Benign", "Benign"),
    "ARP_Spoofing": ("Spoofing", "Attack"),
    "MQTT-DDoS-Connect_Flood": ("MQTT", "Attack"),
    "MQTT-DDoS-Publish_Flood": ("MQTT", "Attack"),
    "MQTT-DoS-Connect_Flood": ("MQTT", "Attack"),
    "MQTT-DoS-Publish_Flood": ("MQTT", "Attack"),
    "MQTT-Malformed_Data": ("MQTT", "Attack"),
    "Recon-OS_Scan": ("Recon", "Attack"),
    "Recon-Ping_Sweep": ("Recon", "Attack"),
    "Recon-Port_Scan": ("Recon", "Attack"),
    "Recon-VulScan": ("Recon", "Attack"),
    "TCP_IP-DDoS-ICMP": ("DDoS", "Attack"),
    "TCP_IP-DDoS-SYN": ("DDoS", "Attack"),
    "TCP_IP-DDoS-TCP": ("DDoS", "Attack"),
    "TCP_IP-DDoS-UDP": ("DDoS", "Attack"),
    "TCP_IP-DoS-ICMP": ("DoS", "Attack"),
    "TCP_IP-DoS-SYN": ("DoS", "Attack"),
    "TCP_IP-DoS-TCP": ("DoS", "Attack"),
    "TCP_IP-DoS-UDP": ("DoS", "Attack"),
}

# The v1 columns that the v2 layout lacks. In their place v2 has Time_To_Live.
V1_ONLY_COLUMNS = {"Duration", "Srate", "Drate", "Magnitue", "Radius", "Covariance", "Weight"}


def test_classes_match_label_table():
    assert set(CLASSES) == set(LABEL_TABLE)
    assert len(CLASSES) == 19


@pytest.mark.parametrize("class_name", list(LABEL_TABLE))
@pytest.mark.parametrize("split", ["train", "test"])
def test_class_from_file_name_every_class(class_name, split):
    assert class_from_file_name(Path(f"{class_name}_{split}.pcap.csv")) == class_name


@pytest.mark.parametrize(
    ("file_name", "class_name"),
    [
        ("TCP_IP-DDoS-ICMP3_train.pcap.csv", "TCP_IP-DDoS-ICMP"),
        ("TCP_IP-DDoS-UDP12_test.pcap.csv", "TCP_IP-DDoS-UDP"),
        ("TCP_IP-DoS-SYN1_train.pcap.csv", "TCP_IP-DoS-SYN"),
        ("Benign2_test.pcap.csv", "Benign"),
    ],
)
def test_class_from_file_name_capture_digits(file_name, class_name):
    assert class_from_file_name(Path(file_name)) == class_name


@pytest.mark.parametrize(
    ("file_name", "class_name"),
    [
        ("TCP_IP-DDoS-ICMP3_train.pcap.csv.gz", "TCP_IP-DDoS-ICMP"),
        ("MQTT-Malformed_Data_test.pcap.csv.gz", "MQTT-Malformed_Data"),
    ],
)
def test_class_from_file_name_gzip(file_name, class_name):
    assert class_from_file_name(Path(file_name)) == class_name


def test_class_from_file_name_ignores_folders():
    path = Path("raw") / "Recon-Port_Scan_train.pcap.csv" / "Benign_test.pcap.csv"

    assert class_from_file_name(path) == "Benign"


@pytest.mark.parametrize(
    "file_name",
    [
        "ARP_Spoof_test.pcap.csv",
        "benign_train.pcap.csv",
        "Benign-Extra_train.pcap.csv",
        "Recon-Port_Scan_validation.pcap.csv",
        "flows.csv",
        "123_train.pcap.csv",
        "Benign_train.pcap.txt",
    ],
)
def test_class_from_file_name_unknown(file_name):
    path = Path("raw") / "test" / file_name

    with pytest.raises(ValueError) as excinfo:
        class_from_file_name(path)

    message = str(excinfo.value)
    assert str(path) in message
    assert "Known classes" in message
    for class_name in CLASSES:
        assert class_name in message


@pytest.mark.parametrize(("class_name", "labels"), list(LABEL_TABLE.items()))
def test_category_of_every_class(class_name, labels):
    assert category_of(class_name) == labels[0]


@pytest.mark.parametrize(("class_name", "labels"), list(LABEL_TABLE.items()))
def test_binary_of_every_class(class_name, labels):
    assert binary_of(class_name) == labels[1]


@pytest.mark.parametrize("class_name", ["TCP_IP-DDoS-ICMP3", "benign", "MQTT-Unknown", ""])
def test_category_of_unknown_class(class_name):
    with pytest.raises(ValueError, match="unknown class"):
        category_of(class_name)


@pytest.mark.parametrize("class_name", ["TCP_IP-DoS-ICMP1", "Attack"])
def test_binary_of_unknown_class(class_name):
    with pytest.raises(ValueError, match="unknown class"):
        binary_of(class_name)


def test_task_labels_binary():
    assert task_labels("binary") == ("Benign", "Attack")


def test_task_labels_category():
    assert task_labels("category") == ("Benign", "Spoofing", "MQTT", "Recon", "DDoS", "DoS")


def test_task_labels_attack():
    assert task_labels("attack") == CLASSES


def test_task_labels_unknown_task():
    with pytest.raises(ValueError, match="'multiclass'"):
        task_labels("multiclass")


def test_label_sets_cover_mapping():
    categories = {labels[0] for labels in LABEL_TABLE.values()}
    binary_labels = {labels[1] for labels in LABEL_TABLE.values()}

    assert set(CATEGORIES) == categories
    assert set(BINARY_LABELS) == binary_labels


def test_layout_columns_unique():
    assert len(V1_COLUMNS) == 45
    assert len(set(V1_COLUMNS)) == 45
    assert len(V2_COLUMNS) == 39
    assert len(set(V2_COLUMNS)) == 39


def test_layout_v2_differs_from_v1():
    assert set(V1_COLUMNS) - set(V2_COLUMNS) == V1_ONLY_COLUMNS
    assert set(V2_COLUMNS) - set(V1_COLUMNS) == {"Time_To_Live"}


@pytest.mark.parametrize(
    ("columns", "layout"),
    [
        (list(V1_COLUMNS), "v1"),
        (list(reversed(V1_COLUMNS)), "v1"),
        (list(V2_COLUMNS), "v2"),
        (sorted(V2_COLUMNS), "v2"),
    ],
)
def test_layout_of_known_layouts(columns, layout):
    assert layout_of(columns) == layout


@pytest.mark.parametrize(
    "columns",
    [
        list(V2_COLUMNS) + ["Duration"],
        list(V1_COLUMNS)[:-1],
        [column for column in V2_COLUMNS if column != "Time_To_Live"],
        [],
    ],
    ids=["v2_plus_one", "v1_minus_one", "v2_minus_one", "empty"],
)
def test_layout_of_unknown_layout(columns):
    with pytest.raises(ValueError, match="neither the v1 nor the v2 layout"):
        layout_of(columns)
