"""Content fingerprints of flow tables, to tell whether two scores share test data."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def fingerprint_flows(flows: pd.DataFrame, columns: list[str], label_column: str) -> str:
    """Return a SHA-256 hex digest of the feature values (float32) and labels, in row order."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(columns).encode())
    for column in columns:
        digest.update(np.ascontiguousarray(flows[column].to_numpy(dtype=np.float32)).tobytes())
    digest.update("\n".join(flows[label_column].astype(str)).encode())
    return digest.hexdigest()
