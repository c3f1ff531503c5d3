"""Classical baselines (scikit-learn and LightGBM estimators) built from config."""

from __future__ import annotations

import inspect

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig


def build_estimator(estimator_config: DictConfig, seed: int):
    """Instantiate the estimator named by ``_target_``, seeded when it takes ``random_state``."""
    estimator = instantiate(estimator_config)
    if "random_state" in inspect.signature(type(estimator).__init__).parameters:
        estimator.set_params(random_state=seed)
    return estimator


def stratified_sample(labels: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """Return row indices of a class-stratified sample of at most ``max_rows`` rows (all when None).

    Every class keeps at least one row, so rare classes are not lost.
    """
    if max_rows is None or len(labels) <= max_rows:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    fraction = max_rows / len(labels)
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        n_rows = max(1, int(round(fraction * len(rows))))
        chosen.append(rng.choice(rows, size=n_rows, replace=False))
    return np.sort(np.concatenate(chosen))
