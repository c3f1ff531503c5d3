"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

# Real CICIoMT2024 rows sit next to the repository, in shared/data, on machines that have them.
SHARED_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data_dir() -> Path:
    """Return the folder of real CICIoMT2024 rows, or skip the test when it is absent."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"real CICIoMT2024 rows not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR

# Each project fixture unsets MLFLOW_TRACKING_URI itself, because mlflow.set_tracking_uri sets that
# variable and the pipeline prefers it to the project's config, so one test's store would leak into the next.
