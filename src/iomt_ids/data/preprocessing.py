"""Feature preprocessing fitted on the training split: non-finite cells, then scaling.

Every model stores its fitted :class:`FeaturePreprocessor`, so a flow is
cleaned and scaled the same way at training, evaluation and prediction time:

- ``+inf`` becomes the column's largest finite training value, ``-inf`` its
  smallest, and NaN (an empty cell) its training median. A column with no
  finite training value gets 0 for all three.
- An optional per-column transform reshapes heavy-tailed values:
  ``signed_log`` maps x to sign(x) * log(1 + |x|), and ``quantile`` maps x
  to its rank among the training values (0 to 1, by interpolating between
  ``n_quantiles`` training quantiles). ``standard`` leaves values as they are.
- Each column is then standardised with the training mean and standard
  deviation; a constant column is only centred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRANSFORMS: tuple[str, ...] = ("standard", "signed_log", "quantile")


@dataclass
class FeaturePreprocessor:
    """Per-column fill values and scaling, all float64 arrays of length ``len(columns)``."""

    columns: list[str]
    pos_inf_fill: np.ndarray
    neg_inf_fill: np.ndarray
    nan_fill: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    transform_name: str = "standard"
    # (n_quantiles, n_features) training quantiles, only for the quantile transform.
    quantiles: np.ndarray | None = None

    @classmethod
    def fit(cls, features: np.ndarray, columns: list[str], transform: str = "standard",
            n_quantiles: int = 1000) -> "FeaturePreprocessor":
        """Fit on a (n_flows, n_features) array of training features."""
        if transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {transform!r}; expected one of {', '.join(TRANSFORMS)}")
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

        unscaled = cls(list(columns), pos_fill, neg_fill, nan_fill, np.zeros(n_features), np.ones(n_features),
                       transform_name=transform)
        cleaned = unscaled.clean(features)
        if transform == "quantile":
            levels = np.linspace(0.0, 1.0, min(n_quantiles, len(cleaned)))
            unscaled.quantiles = np.quantile(cleaned.astype(np.float64), levels, axis=0)
        shaped = unscaled.reshape(cleaned).astype(np.float64)
        mean = shaped.mean(axis=0)
        std = shaped.std(axis=0)
        scale = np.where(std > 0, std, 1.0)
        return cls(list(columns), pos_fill, neg_fill, nan_fill, mean, scale, transform, unscaled.quantiles)

    def clean(self, features: np.ndarray) -> np.ndarray:
        """Replace non-finite cells by the fitted fill values; returns a new float32 array."""
        cleaned = np.array(features, dtype=np.float32, copy=True)
        # Most batches hold no non-finite cell, so one check skips the three replacements.
        if np.isfinite(cleaned).all():
            return cleaned
        cleaned = np.where(np.isposinf(cleaned), self.pos_inf_fill.astype(np.float32), cleaned)
        cleaned = np.where(np.isneginf(cleaned), self.neg_inf_fill.astype(np.float32), cleaned)
        cleaned = np.where(np.isnan(cleaned), self.nan_fill.astype(np.float32), cleaned)
        return cleaned

    def reshape(self, cleaned: np.ndarray) -> np.ndarray:
        """Apply the fitted per-column transform to cleaned (finite) features; returns float32."""
        if self.transform_name == "signed_log":
            return (np.sign(cleaned) * np.log1p(np.abs(cleaned))).astype(np.float32)
        if self.transform_name == "quantile":
            levels = np.linspace(0.0, 1.0, len(self.quantiles))
            ranked = np.empty(cleaned.shape, dtype=np.float32)
            for j in range(cleaned.shape[1]):
                ranked[:, j] = np.interp(cleaned[:, j], self.quantiles[:, j], levels)
            return ranked
        return cleaned

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Clean and standardise a (n_flows, n_features) array; returns float32."""
        if features.ndim != 2 or features.shape[1] != len(self.columns):
            raise ValueError(
                f"expected a (n_flows, {len(self.columns)}) feature array, got shape {features.shape}"
            )
        # clean() returns a new array and reshape() keeps it or returns another new one, so scaling in place
        # leaves the caller's array unchanged.
        scaled = self.reshape(self.clean(features))
        scaled -= self.mean.astype(np.float32)
        scaled /= self.scale.astype(np.float32)
        return scaled

    def to_dict(self) -> dict:
        return {
            "columns": list(self.columns),
            "pos_inf_fill": self.pos_inf_fill.tolist(),
            "neg_inf_fill": self.neg_inf_fill.tolist(),
            "nan_fill": self.nan_fill.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "transform": self.transform_name,
            "quantiles": None if self.quantiles is None else self.quantiles.tolist(),
        }

    @classmethod
    def from_dict(cls, values: dict) -> "FeaturePreprocessor":
        arrays = {key: np.asarray(values[key], dtype=np.float64)
                  for key in ("pos_inf_fill", "neg_inf_fill", "nan_fill", "mean", "scale")}
        quantiles = values.get("quantiles")
        return cls(columns=list(values["columns"]), **arrays, transform_name=values.get("transform", "standard"),
                   quantiles=None if quantiles is None else np.asarray(quantiles, dtype=np.float64))
