"""Count test flows whose feature vector also occurs under another class, and the macro-F1 that allows.

A per-flow model predicts one class per feature vector, so when the
prepared splits contain the same vector under two classes, some of those
flows must be misclassified. For each task this script finds the test flows
whose vector occurs under more than one class in the train, validation and
test splits together. It then scores a ceiling: the true class for every other test flow, and the
vector's most frequent class (ties broken by class name) for these.

The ceiling is not a strict upper bound, because giving a shared vector to
a rarer class can raise macro-F1 a little, but it shows how much of the gap
to 1.0 identical vectors can explain. Vectors are compared by a 64-bit hash
of their values. Flows that differ in any feature are not counted, however
close.

Usage::

    .venv/bin/python benchmarks/label_conflicts.py            # reads params.yaml
    .venv/bin/python benchmarks/label_conflicts.py --params other.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from iomt_ids.config import load_params
from iomt_ids.data.prepared import feature_columns, read_split, task_targets
from iomt_ids.data.schema import TASKS
from iomt_ids.pipeline import prepare as prepare_stage

SPLITS = ("train", "val", "test")


def conflicting_flows(splits: dict[str, pd.DataFrame], task: str) -> pd.DataFrame:
    """Return the test flows with their class, majority class and whether their vector has several classes."""
    columns = feature_columns(splits["train"])
    frames = []
    for name in SPLITS:
        flows = splits[name]
        frames.append(pd.DataFrame({
            "vector": pd.util.hash_pandas_object(flows[columns], index=False).to_numpy(),
            "label": task_targets(flows, task).astype(str).to_numpy(),
            "split": name,
        }))
    every_flow = pd.concat(frames, ignore_index=True)

    counts = every_flow.groupby(["vector", "label"]).size().rename("flows").reset_index()
    counts = counts.sort_values(["vector", "flows", "label"], ascending=[True, False, True])
    majority = counts.drop_duplicates("vector").set_index("vector")["label"]
    n_classes = every_flow.groupby("vector")["label"].nunique()

    test = every_flow[every_flow["split"] == "test"].copy()
    test["majority"] = test["vector"].map(majority)
    test["conflicting"] = test["vector"].map(n_classes) > 1
    return test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="composed config whose prepared splits are read (default: params.yaml)")
    args = parser.parse_args()

    cfg = load_params(args.params)
    splits = {name: read_split(prepare_stage.split_path(cfg, name)) for name in SPLITS}
    for task in TASKS:
        test = conflicting_flows(splits, task)
        predicted = np.where(test["conflicting"], test["majority"], test["label"])
        ceiling = f1_score(test["label"], predicted, average="macro")
        print(f"{task}: {int(test['conflicting'].sum())} of {len(test)} test flows have a feature vector that "
              f"also occurs under another class; ceiling macro-F1 {ceiling:.4f}")
        by_class = test.loc[test["conflicting"], "label"].value_counts()
        for label, flows in by_class.items():
            print(f"    {label}: {flows}")


if __name__ == "__main__":
    main()
