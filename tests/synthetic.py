"""Small synthetic raw-data folders for pipeline tests: separable classes, real CSV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iomt_ids.config import compose_config
from iomt_ids.data.schema import LAYOUTS

ROOT = Path(__file__).resolve().parents[1]

# One class of each category, so the binary, category and attack tasks all have two or more labels.
CLASSES = ("Benign", "ARP_Spoofing", "MQTT-DDoS-Connect_Flood", "Recon-Port_Scan", "TCP_IP-DoS-UDP")


def write_raw_folder(raw_dir: Path, rows_per_class: int = 120, seed: int = 0, layout: str = "v2",
                     split: str = "test") -> Path:
    """Write one CSV per class under ``raw_dir/<split>/``; class k has features centred on 3k."""
    rng = np.random.default_rng(seed)
    columns = LAYOUTS[layout]
    folder = Path(raw_dir) / split
    folder.mkdir(parents=True, exist_ok=True)
    for index, class_name in enumerate(CLASSES):
        values = rng.normal(loc=3.0 * index, scale=1.0, size=(rows_per_class, len(columns)))
        lines = [",".join(columns)] + [",".join(f"{v:.6f}" for v in row) for row in values]
        (folder / f"{class_name}_{split}.pcap.csv").write_text("\n".join(lines) + "\n")
    return Path(raw_dir)


def project_config(base: Path, *overrides: str):
    """Compose the real conf/ with every path moved under ``base`` and a short training of the published CNN."""
    return compose_config([
        "model=published_cnn",
        f"data.raw_dir={base}/raw",
        f"paths.ingested={base}/interim/flows.parquet",
        f"paths.prepared_dir={base}/prepared",
        f"paths.models_dir={base}/models",
        f"paths.reports_dir={base}/reports",
        f"mlflow.tracking_uri=sqlite:///{base}/mlflow.db",
        f"mlflow.artifact_dir={base}/artifacts",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "model.batch_size=64",
        *overrides,
    ], config_dir=ROOT / "conf")


def prepared_project(base: Path):
    """Write the synthetic raw folder under ``base``, ingest and split it; return the project's config."""
    from iomt_ids.pipeline import ingest, prepare

    write_raw_folder(base / "raw")
    cfg = project_config(base)
    ingest.run(cfg)
    prepare.run(cfg)
    return cfg
