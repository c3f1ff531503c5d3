"""Classification metrics shared by every model and stage, so all figures are comparable."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str],
                           counts: Sequence[int] | None = None) -> dict:
    """Return accuracy and macro and weighted precision, recall and F1, plus per-class scores.

    ``labels`` fixes the classes that macro averages run over and their order:
    pass every class present in the test set or known to the model, so a
    class the model never predicts counts as F1 0 instead of disappearing.
    ``counts``, when given, says how many flows each (true, predicted) pair
    stands for, so a caller can pass confusion-matrix cells instead of flows.
    """
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    labels = list(labels)
    weight = None if counts is None else np.asarray(counts, dtype=np.int64)
    n_flows = len(y_true) if weight is None else weight.sum()

    summary = {"accuracy": float(accuracy_score(y_true, y_pred, sample_weight=weight)), "n_flows": int(n_flows)}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, sample_weight=weight, zero_division=0
        )
        summary[f"precision_{average}"] = float(precision)
        summary[f"recall_{average}"] = float(recall)
        summary[f"f1_{average}"] = float(f1)

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, sample_weight=weight, zero_division=0
    )
    per_class = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(round(s))}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support)
    }
    matrix = confusion_matrix(y_true, y_pred, labels=labels, sample_weight=weight)
    return {"summary": summary, "per_class": per_class, "confusion_matrix": matrix.tolist(), "labels": labels}
