"""Two sweep workers sharing one study through a real PostgreSQL server on 127.0.0.1."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tuning_project import make_project, sweep_command, sweep_env

pytestmark = pytest.mark.slow

N_TRIALS = 6
STUDY = "shared"


def postgres_bin_dir() -> Path | None:
    """Return the newest Debian PostgreSQL server's bin folder, or None when none is installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda path: int(Path(path).parts[-3]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """Start a throwaway PostgreSQL cluster on 127.0.0.1, yield its base URL, then stop and delete it.

    The server refuses to run as root, so under root it runs as the Debian
    package's ``postgres`` user. Authentication is ``trust`` and the server
    listens only on 127.0.0.1 at a free port.
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql; "
                    "install them with `apt-get install postgresql` (.ci/run does)")
    as_user: list[str] = []
    data_dir = Path(tempfile.mkdtemp(prefix="iomt-ids-postgres-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user exists to run the server")
        os.chown(data_dir, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]

    port = free_port()
    cluster = data_dir / "cluster"
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(cluster), "-U", "postgres", "-A", "trust",
                    "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={data_dir} -c fsync=off"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(cluster), "-o", options, "-l",
                    str(data_dir / "server.log"), "-w", "start"], check=True, capture_output=True)
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute("CREATE DATABASE optuna")
            connection.execute("CREATE DATABASE mlflow")
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(cluster), "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def two_worker_study(postgres_url, tmp_path_factory):
    """Run two sweep workers at once on one study. Return the project, Optuna storage and MLflow URLs."""
    base = make_project(tmp_path_factory.mktemp("two_workers"))
    storage = f"{postgres_url}/optuna"
    tracking = f"{postgres_url}/mlflow"

    # Create MLflow's tables and experiment once, before the workers race to.
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(tracking)
    mlflow.create_experiment("iomt-ids", artifact_location=(base / "artifacts").as_uri())
    mp.undo()

    env = sweep_env(MLFLOW_TRACKING_URI=tracking)
    workers = []
    for seed in (1, 2):
        command = sweep_command(base, "--storage", storage, "--study-name", STUDY, "--n-trials", str(N_TRIALS),
                                "--seed", str(seed), overrides=("trainer.max_epochs=1",))
        # The second --storage wins over the sqlite default that sweep_command sets.
        log = open(base / f"worker-{seed}.log", "w")
        workers.append((subprocess.Popen(command, cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for process, log in workers:
        returncode = process.wait(timeout=400)
        log.close()
        assert returncode == 0, Path(log.name).read_text()[-5000:]
    return base, storage, tracking


def test_study_holds_requested_trials(two_worker_study):
    _, storage, _ = two_worker_study
    study = optuna.load_study(study_name=STUDY, storage=storage)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == N_TRIALS
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_both_workers_ran_trials(two_worker_study):
    base, _, _ = two_worker_study
    for seed in (1, 2):
        assert "trial " in (base / f"worker-{seed}.log").read_text(), f"worker {seed} ran no trial"


def test_failed_trials_only_surplus(two_worker_study):
    _, storage, _ = two_worker_study
    study = optuna.load_study(study_name=STUDY, storage=storage)
    for trial in study.get_trials(states=(TrialState.FAIL,)):
        assert trial.user_attrs.get("surplus"), f"trial {trial.number} failed"


def test_every_trial_in_mlflow_once(two_worker_study, monkeypatch):
    _, storage, tracking = two_worker_study
    study = optuna.load_study(study_name=STUDY, storage=storage)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(tracking)
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name("iomt-ids").experiment_id
    parents = client.search_runs([experiment_id], filter_string="tags.stage = 'sweep'")
    assert len(parents) == 1
    children = client.search_runs([experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    numbers = sorted(int(run.data.tags["optuna.trial_number"]) for run in children)
    assert numbers == sorted(trial.number for trial in finished)
    assert {run.info.run_id for run in children} == {trial.user_attrs["mlflow_run_id"] for trial in finished}
