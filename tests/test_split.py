"""Tests for iomt_ids.data.split on small label tables built in each test, and one real ingested file."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from iomt_ids.data.errors import DataError
from iomt_ids.data.ingest import ingest
from iomt_ids.data.schema import V2_COLUMNS
from iomt_ids.data.split import SplitConfig, assign_splits, split_counts
from synthetic import write_raw_folder

# Rows per class in each source folder. The official fixture has classes
# present in only one folder, a two-row class and a one-row class.
OFFICIAL_TRAIN = {"Benign": 400, "Recon-VulScan": 120, "ARP_Spoofing": 2, "MQTT-Malformed_Data": 1}
OFFICIAL_TEST = {"Benign": 150, "Recon-OS_Scan": 60, "MQTT-Malformed_Data": 5}
POOLED = {"Benign": 1000, "TCP_IP-DDoS-UDP": 600, "Recon-Ping_Sweep": 200, "Recon-VulScan": 1}


def make_flows(train: dict[str, int], test: dict[str, int]) -> pd.DataFrame:
    """Build a label table with the given rows per class and source folder, in a shuffled order."""
    rows = [
        (class_name, source_split)
        for source_split, counts in (("train", train), ("test", test))
        for class_name, count in counts.items()
        for _ in range(count)
    ]
    flows = pd.DataFrame(rows, columns=["class", "source_split"])
    order = np.random.default_rng(0).permutation(len(flows))
    return flows.iloc[order].reset_index(drop=True)


def count_rows(flows: pd.DataFrame, assigned: np.ndarray, class_name: str, split: str) -> int:
    return int(((flows["class"] == class_name).to_numpy() & (assigned == split)).sum())


def warning_messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def split_with_class_warnings(flows: pd.DataFrame, caplog) -> tuple[np.ndarray, list[str]]:
    """Split ``flows`` with the default config, and return the assigned splits and the warnings about classes."""
    with caplog.at_level(logging.WARNING, logger="iomt_ids.data.split"):
        assigned, _ = assign_splits(flows, SplitConfig())
    return assigned, [message for message in warning_messages(caplog) if message.startswith("class ")]


@pytest.fixture
def official():
    flows = make_flows(OFFICIAL_TRAIN, OFFICIAL_TEST)
    assigned, mode = assign_splits(flows, SplitConfig(val_fraction=0.1, test_fraction=0.2, seed=7))
    return flows, assigned, mode


@pytest.fixture
def pooled():
    flows = make_flows({}, POOLED)
    assigned, mode = assign_splits(flows, SplitConfig(val_fraction=0.1, test_fraction=0.2, seed=7))
    return flows, assigned, mode


def test_official_mode_detected(official):
    _, _, mode = official

    assert mode == "official"


def test_official_test_is_source_test(official):
    flows, assigned, _ = official

    np.testing.assert_array_equal(assigned == "test", flows["source_split"].to_numpy() == "test")


def test_official_val_from_source_train(official):
    flows, assigned, _ = official
    val_sources = set(flows["source_split"].to_numpy()[assigned == "val"])

    assert val_sources == {"train"}


@pytest.mark.parametrize(
    ("class_name", "expected_val"),
    [("Benign", 40), ("Recon-VulScan", 12), ("ARP_Spoofing", 1), ("MQTT-Malformed_Data", 0)],
)
def test_official_val_stratified(official, class_name, expected_val):
    flows, assigned, _ = official

    assert count_rows(flows, assigned, class_name, "val") == expected_val


def test_official_single_train_row_stays(official):
    flows, assigned, _ = official
    single = (flows["class"] == "MQTT-Malformed_Data").to_numpy() & (flows["source_split"] == "train").to_numpy()

    assert list(assigned[single]) == ["train"]


def test_official_no_warning(caplog):
    flows = make_flows({"Benign": 400, "ARP_Spoofing": 2}, OFFICIAL_TEST)

    with caplog.at_level(logging.WARNING, logger="iomt_ids.data.split"):
        assign_splits(flows, SplitConfig())

    assert caplog.records == []


def test_official_single_train_row_warns(caplog):
    _, missing = split_with_class_warnings(make_flows(OFFICIAL_TRAIN, OFFICIAL_TEST), caplog)

    assert len(missing) == 1
    assert "class MQTT-Malformed_Data has 1 row(s) from the train folder" in missing[0]
    assert "too few to put one in validation, so validation scores leave the class out" in missing[0]


def test_pooled_mode_detected(pooled):
    _, _, mode = pooled

    assert mode == "pooled"


def test_pooled_warns_optimistic(caplog):
    flows = make_flows({}, POOLED)

    with caplog.at_level(logging.WARNING, logger="iomt_ids.data.split"):
        assign_splits(flows, SplitConfig())

    optimistic = [message for message in warning_messages(caplog) if "optimistic" in message]

    assert len(optimistic) == 1
    assert "capture" in optimistic[0]


@pytest.mark.parametrize("class_name", ["Benign", "TCP_IP-DDoS-UDP", "Recon-Ping_Sweep"])
@pytest.mark.parametrize(("split", "fraction"), [("train", 0.7), ("val", 0.1), ("test", 0.2)])
def test_pooled_fractions_per_class(pooled, class_name, split, fraction):
    flows, assigned, _ = pooled
    n_class = POOLED[class_name]

    share = count_rows(flows, assigned, class_name, split) / n_class

    assert share == pytest.approx(fraction, abs=2 / n_class)


def test_pooled_single_row_stays_train(pooled):
    flows, assigned, _ = pooled

    assert list(assigned[(flows["class"] == "Recon-VulScan").to_numpy()]) == ["train"]


def test_pooled_single_row_warns(caplog):
    _, missing = split_with_class_warnings(make_flows({}, POOLED), caplog)

    assert len(missing) == 1
    assert "class Recon-VulScan has 1 row(s) from the test folder" in missing[0]
    assert "too few to put one in validation and test" in missing[0]


def test_pooled_two_rows_warns_validation(caplog):
    flows = make_flows({"Benign": 100, "ARP_Spoofing": 2}, {})
    assigned, missing = split_with_class_warnings(flows, caplog)

    assert count_rows(flows, assigned, "ARP_Spoofing", "test") == 1
    assert len(missing) == 1
    assert "class ARP_Spoofing has 2 row(s) from the train folder" in missing[0]
    assert "too few to put one in validation, so" in missing[0]


def test_duplicates_leave_single_row_warns(tmp_path, caplog):
    raw = write_raw_folder(tmp_path / "raw", rows_per_class=20)
    row = ",".join(["1.5"] * len(V2_COLUMNS))
    (raw / "test" / "Recon-VulScan_test.pcap.csv").write_text("\n".join([",".join(V2_COLUMNS), row, row, row]) + "\n")
    ingest(raw, tmp_path / "flows.parquet", duplicates="float32")
    flows = pq.read_table(tmp_path / "flows.parquet", columns=["class", "source_split"]).to_pandas()
    _, missing = split_with_class_warnings(flows, caplog)

    assert len(missing) == 1
    assert "class Recon-VulScan has 1 row(s)" in missing[0]
    assert "after ingestion drops duplicates" in missing[0]


def test_pooled_from_train_folder_only():
    flows = make_flows({"Benign": 100, "ARP_Spoofing": 50}, {})

    assigned, mode = assign_splits(flows, SplitConfig(val_fraction=0.1, test_fraction=0.2))

    assert mode == "pooled"
    assert count_rows(flows, assigned, "Benign", "test") == 20
    assert count_rows(flows, assigned, "ARP_Spoofing", "val") == 5


@pytest.mark.parametrize("source", [({}, POOLED), (OFFICIAL_TRAIN, OFFICIAL_TEST)], ids=["pooled", "official"])
def test_assign_splits_same_seed_same_result(source):
    flows = make_flows(*source)

    first, _ = assign_splits(flows, SplitConfig(seed=3))
    second, _ = assign_splits(flows, SplitConfig(seed=3))

    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("source", [({}, POOLED), (OFFICIAL_TRAIN, OFFICIAL_TEST)], ids=["pooled", "official"])
def test_assign_splits_other_seed_differs(source):
    flows = make_flows(*source)

    first, _ = assign_splits(flows, SplitConfig(seed=3))
    second, _ = assign_splits(flows, SplitConfig(seed=4))

    assert (first != second).any()


def test_assign_splits_empty_input():
    flows = pd.DataFrame({"class": pd.Series([], dtype=str), "source_split": pd.Series([], dtype=str)})

    with pytest.raises(DataError, match="no flows to split"):
        assign_splits(flows, SplitConfig())


@pytest.mark.parametrize(
    ("val_fraction", "test_fraction"),
    [(0.0, 0.2), (0.1, 0.0), (1.0, 0.2), (0.1, 1.0), (-0.1, 0.2), (0.1, 1.5), (0.5, 0.5), (0.6, 0.5)],
)
def test_split_config_bad_fractions(val_fraction, test_fraction):
    with pytest.raises(ValueError, match="fraction"):
        SplitConfig(val_fraction=val_fraction, test_fraction=test_fraction)


def test_split_config_defaults_valid():
    config = SplitConfig()

    assert (config.val_fraction, config.test_fraction) == (0.1, 0.2)


def test_split_counts_by_split_and_class():
    flows = pd.DataFrame({"class": ["Benign", "Benign", "Benign", "ARP_Spoofing", "ARP_Spoofing"]})
    assigned = np.array(["train", "train", "test", "train", "val"], dtype=object)

    counts = split_counts(flows, assigned)

    assert counts == {
        "train": {"Benign": 2, "ARP_Spoofing": 1},
        "val": {"ARP_Spoofing": 1},
        "test": {"Benign": 1},
    }


def test_split_counts_missing_split():
    flows = pd.DataFrame({"class": ["Benign", "ARP_Spoofing"]})
    assigned = np.array(["train", "test"], dtype=object)

    counts = split_counts(flows, assigned)

    assert set(counts) == {"train", "test"}
