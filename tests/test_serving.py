"""REST serving: ``mlflow models serve`` on a registered champion returns what the batch command writes.

Starts a real server subprocess on a free port of 127.0.0.1, with the
environment of this virtualenv (``--env-manager local``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iomt_ids.data.schema import V2_COLUMNS
from iomt_ids.serving.predict import load_classifier, predict_captures
from promoted import CHAMPION_URI, promote_category_model

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for_ping(url: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"model server exited with code {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    pytest.fail(f"model server did not answer /ping within {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def champion_server(tmp_path_factory):
    """Serve the champion of a freshly promoted project; yield (project folder, server URL)."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = tmp_path_factory.mktemp("served")
    cfg = promote_category_model(base)

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": cfg.mlflow.tracking_uri,
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           # mlflow starts uvicorn by name, so the virtualenv's bin folder must be on PATH.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log_path = base / "server.log"
    with open(log_path, "w") as log:
        # A new session makes the server and its uvicorn worker one process group to stop.
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", CHAMPION_URI, "--env-manager", "local",
             "--host", HOST, "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://{HOST}:{port}"
    try:
        wait_for_ping(url, server, log_path)
        yield base, cfg, url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        monkeypatch.undo()


def capture_rows(base: Path) -> tuple[Path, pd.DataFrame]:
    """Return one raw capture file of the project and its rows, with an inf and an empty cell."""
    path = base / "raw" / "test" / "MQTT-DDoS-Connect_Flood_test.pcap.csv"
    flows = pd.read_csv(path).head(20)
    flows.loc[0, "Rate"] = np.inf
    flows.loc[1, "Std"] = np.nan
    return path, flows


def test_rest_answers_like_batch_command(champion_server, tmp_path):
    base, cfg, url = champion_server
    _, flows = capture_rows(base)
    (tmp_path / "in").mkdir()
    flows.to_csv(tmp_path / "in" / "capture.csv", index=False)
    import mlflow

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    predict_captures(load_classifier(CHAMPION_URI), tmp_path / "in", tmp_path / "batch.csv", all_probabilities=True)
    batch = pd.read_csv(tmp_path / "batch.csv")

    # JSON has no inf or NaN; Python's json writes Infinity and NaN, which the server parses.
    body = {"dataframe_split": {"columns": list(flows.columns), "data": flows.to_numpy().tolist()}}
    served = pd.DataFrame(post_json(f"{url}/invocations", body)["predictions"])

    probability_columns = [column for column in batch.columns if column.startswith("probability_")]
    assert list(served["predicted_class"]) == list(batch["predicted_class"])
    np.testing.assert_allclose(served["probability"], batch["probability"], rtol=1e-5)
    np.testing.assert_allclose(served[probability_columns], batch[probability_columns], rtol=1e-4, atol=1e-7)


def test_rest_missing_column_rejected(champion_server):
    base, _, url = champion_server
    _, flows = capture_rows(base)
    body = {"dataframe_split": {"columns": list(V2_COLUMNS[1:]), "data": flows[list(V2_COLUMNS[1:])].head(2).to_numpy().tolist()}}
    with pytest.raises(urllib.error.HTTPError) as error:
        post_json(f"{url}/invocations", body)
    assert error.value.code == 400
    assert "Header_Length" in error.value.read().decode()
