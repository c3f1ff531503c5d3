"""Classification metrics shared by every model and stage, so all figures are comparable."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Return accuracy and macro and weighted precision, recall and F1, plus per-class scores.

    ``labels`` fixes the classes that macro averages run over and their order:
    pass every class present in the test set or known to the model, so a
    class the model never predicts counts as F1 0 instead of disappearing.
    """
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    labels = list(labels)

    summary = {"accuracy": float(accuracy_score(y_true, y_pred)), "n_flows": int(len(y_true))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        summary[f"precision_{average}"] = float(precision)
        summary[f"recall_{average}"] = float(recall)
        summary[f"f1_{average}"] = float(f1)

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    per_class = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support)
    }
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return {"summary": summary, "per_class": per_class, "confusion_matrix": matrix.tolist(), "labels": labels}
