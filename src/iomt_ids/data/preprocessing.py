"""Feature preprocessing fitted on the training split: non-finite cells, then scaling.

Every model stores its fitted :class:`FeaturePreprocessor`, so a flow is
cleaned and scaled the same way at training, evaluation and prediction time:

- ``+inf`` becomes the column's largest finite training value, ``-inf`` its
  smallest, and NaN (an empty cell) its training median. A column with no
  finite training value gets 0 for all three.
- Each column is then standardised with the training mean and standard
  deviation; a constant column is only centred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FeaturePreprocessor:
    """Per-column fill values and scaling, all float64 arrays of length ``len(columns)``."""

    columns: list[str]
    pos_inf_fill: np.ndarray
    neg_inf_fill: np.ndarray
    nan_fill: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, columns: list[str]) -> "FeaturePreprocessor":
        """Fit on a (n_flows, n_features) array of training features."""
        if features.ndim != 2 or features.shape[1] != len(columns):
            raise ValueError(
                f"expected a (n_flows, {len(columns)}) feature array, got shape {features.shape}"
            )
        if features.shape[0] == 0:
            raise ValueError("cannot fit the preprocessing on zero training flows")

        n_features = len(columns)
        pos_fill = np.zeros(n_features)
        neg_fill = np.zeros(n_features)
        nan_fill = np.zeros(n_features)
        for j in range(n_features):
            column = features[:, j].astype(np.float64)
            finite = column[np.isfinite(column)]
            if finite.size:
                pos_fill[j], neg_fill[j], nan_fill[j] = finite.max(), finite.min(), np.median(finite)

        unscaled = cls(list(columns), pos_fill, neg_fill, nan_fill, np.zeros(n_features), np.ones(n_features))
        cleaned = unscaled.clean(features).astype(np.float64)
        mean = cleaned.mean(axis=0)
        std = cleaned.std(axis=0)
        scale = np.where(std > 0, std, 1.0)
        return cls(list(columns), pos_fill, neg_fill, nan_fill, mean, scale)

    def clean(self, features: np.ndarray) -> np.ndarray:
        """Replace non-finite cells by the fitted fill values; returns a new float32 array."""
        cleaned = np.array(features, dtype=np.float32, copy=True)
        cleaned = np.where(np.isposinf(cleaned), self.pos_inf_fill.astype(np.float32), cleaned)
        cleaned = np.where(np.isneginf(cleaned), self.neg_inf_fill.astype(np.float32), cleaned)
        cleaned = np.where(np.isnan(cleaned), self.nan_fill.astype(np.float32), cleaned)
        return cleaned

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Clean and standardise a (n_flows, n_features) array; returns float32."""
        if features.ndim != 2 or features.shape[1] != len(self.columns):
            raise ValueError(
                f"expected a (n_flows, {len(self.columns)}) feature array, got shape {features.shape}"
            )
        cleaned = self.clean(features)
        scaled = (cleaned - self.mean.astype(np.float32)) / self.scale.astype(np.float32)
        return scaled.astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        return {
            "columns": list(self.columns),
            "pos_inf_fill": self.pos_inf_fill.tolist(),
            "neg_inf_fill": self.neg_inf_fill.tolist(),
            "nan_fill": self.nan_fill.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, values: dict) -> "FeaturePreprocessor":
        arrays = {key: np.asarray(values[key], dtype=np.float64)
                  for key in ("pos_inf_fill", "neg_inf_fill", "nan_fill", "mean", "scale")}
        return cls(columns=list(values["columns"]), **arrays)
