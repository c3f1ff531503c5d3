"""Sweeps: search space files, the pruning callback, MLflow runs, the best-trial experiment and resume."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import sqlalchemy.exc
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from iomt_ids.config import compose_config
from iomt_ids.pipeline import train
from iomt_ids.tuning.experiment import experiment_name
from iomt_ids.tuning.objective import SweepObjective
from iomt_ids.tuning.space import SearchSpaceError, check_keys, load_space, to_override
from iomt_ids.tuning.sweep import SweepSettings, run_sweep
from tuning_project import ROOT, SPACE, TASK, make_project, path_overrides, sweep_command, sweep_env

N_TRIALS = 4


def write_space(config_dir: Path, name: str, text: str) -> None:
    (config_dir / "hparams_search").mkdir(parents=True, exist_ok=True)
    (config_dir / "hparams_search" / f"{name}.yaml").write_text(text)


def settings(base: Path, **changes) -> SweepSettings:
    values = dict(task=TASK, space=SPACE, n_trials=N_TRIALS, storage=f"sqlite:///{base}/sweeps/optuna.db",
                  overrides=(*path_overrides(base), "trainer.max_epochs=2"), config_dir=base / "conf")
    values.update(changes)
    return SweepSettings(**values)


def load(base: Path, name: str = f"{TASK}-{SPACE}") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{base}/sweeps/optuna.db")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A project whose test split is gone, after a 4-trial sweep that recorded every split it read."""
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = make_project(tmp_path_factory.mktemp("swept"))
    (base / "prepared" / "test.parquet").rename(base / "test.parquet.hidden")

    read = []
    original = train.read_split

    def recording_read_split(path):
        read.append(Path(path).name)
        return original(path)

    mp.setattr(train, "read_split", recording_read_split)
    result = run_sweep(settings(base))
    yield base, result, read
    mp.undo()


# Search space files.

def test_published_space_matches_config():
    space = load_space(ROOT / "conf", "published_cnn")
    config = compose_config(list(space.overrides), config_dir=ROOT / "conf")
    check_keys(space, config)
    assert "model.net.conv_channels" in {param.key for param in space.params}


@pytest.mark.parametrize("name", sorted(path.stem for path in (ROOT / "conf" / "hparams_search").glob("*.yaml")))
def test_every_space_matches_its_model(name):
    space = load_space(ROOT / "conf", name)
    config = compose_config(list(space.overrides), config_dir=ROOT / "conf")

    check_keys(space, config)


def test_space_unknown_key_rejected(tmp_path):
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    write_space(tmp_path / "conf", "typo", "params:\n  model.optimiser.lr: {type: float, low: 0.1, high: 1}\n")
    space = load_space(tmp_path / "conf", "typo")
    with pytest.raises(SearchSpaceError, match="model.optimiser.lr"):
        check_keys(space, compose_config([], config_dir=tmp_path / "conf"))


@pytest.mark.parametrize("spec, message", [
    ("{type: float, low: 1.0, high: 0.1}", "low <= high"),
    ("{type: float, low: 0.0, high: 1.0, log: true}", "log-scaled"),
    ("{type: int, low: 1.5, high: 3}", "whole-number"),
    ("{type: categorical, choices: []}", "non-empty"),
    ("{type: normal, low: 0, high: 1}", "type"),
    ("{type: float, low: 0.1, high: 1.0, scale: 2}", "unknown fields"),
])
def test_space_invalid_distribution_rejected(tmp_path, spec, message):
    write_space(tmp_path, "bad", f"params:\n  model.optimizer.lr: {spec}\n")
    with pytest.raises(SearchSpaceError, match=message):
        load_space(tmp_path, "bad")


def test_space_missing_file_lists_available():
    with pytest.raises(SearchSpaceError, match="published_cnn"):
        load_space(ROOT / "conf", "no_such_space")


def test_list_value_composes_as_override():
    override = to_override("model.net.conv_channels", [16, 32])
    assert override == "model.net.conv_channels=[16,32]"
    config = compose_config(["model=published_cnn", override], config_dir=ROOT / "conf")
    assert list(config.model.net.conv_channels) == [16, 32]


def test_float_value_composes_as_override():
    override = to_override("model.optimizer.lr", 1.5e-05)
    config = compose_config([override], config_dir=ROOT / "conf")
    assert config.model.optimizer.lr == pytest.approx(1.5e-05)


def test_invalid_settings_rejected(tmp_path):
    with pytest.raises(ValueError, match="--n-trials"):
        run_sweep(settings(tmp_path, n_trials=None, timeout_s=None))
    with pytest.raises(ValueError, match="unknown task"):
        run_sweep(settings(tmp_path, task="family"))
    with pytest.raises(ValueError, match="grace period"):
        run_sweep(settings(tmp_path, heartbeat_interval_s=10, grace_period_s=5))


# A sweep on synthetic data.

@pytest.mark.slow
def test_sweep_runs_requested_trials(swept):
    base, result, _ = swept
    study = load(base)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == N_TRIALS
    assert result.n_complete + result.n_pruned == N_TRIALS
    assert result.best_value == pytest.approx(study.best_value)


@pytest.mark.slow
def test_sweep_never_reads_test_split(swept):
    _, _, read = swept
    assert "test.parquet" not in read
    assert read.count("train.parquet") == N_TRIALS
    assert read.count("val.parquet") == N_TRIALS


@pytest.mark.slow
def test_sweep_nests_one_run_per_trial(swept):
    base, result, _ = swept
    mlflow.set_tracking_uri(f"sqlite:///{base}/mlflow.db")
    client = MlflowClient()
    children = client.search_runs(client.get_run(result.parent_run_id).info.experiment_id,
                                  filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert len(children) == N_TRIALS
    assert sorted(run.data.tags["optuna.trial_number"] for run in children) == [str(n) for n in range(N_TRIALS)]
    for run in children:
        assert run.data.tags["optuna.trial_state"] in ("COMPLETE", "PRUNED")
        assert run.data.params["model.name"] == "published_cnn"
        assert len(client.get_metric_history(run.info.run_id, "val_f1_macro")) >= 1


@pytest.mark.slow
def test_parent_run_holds_best_and_plots(swept):
    base, result, _ = swept
    mlflow.set_tracking_uri(f"sqlite:///{base}/mlflow.db")
    client = MlflowClient()
    parent = client.get_run(result.parent_run_id)
    assert parent.data.metrics["best_val_f1_macro"] == pytest.approx(result.best_value)
    assert parent.data.tags["best_trial_number"] == str(result.best_number)
    assert parent.data.tags["best.model.optimizer.lr"] == str(result.best_params["model.optimizer.lr"])
    plots = {artifact.path for artifact in client.list_artifacts(result.parent_run_id, "optuna")}
    for name in ("optimization_history.png", "param_importances.png", "best_trial.json", "trials.csv"):
        assert f"optuna/{name}" in plots, name


@pytest.mark.slow
def test_experiment_file_reproduces_best_trial(swept):
    base, result, _ = swept
    path = base / "conf" / "experiment" / f"{experiment_name(result.study_name)}.yaml"
    assert result.experiment_path == path
    assert path.read_text().startswith("# @package _global_\n")

    config = compose_config([f"experiment={path.stem}"], config_dir=base / "conf")
    best = load(base).best_trial
    assert config.model.optimizer.lr == pytest.approx(best.params["model.optimizer.lr"])
    assert config.model.batch_size == best.params["model.batch_size"]
    assert list(config.model.net.conv_channels) == json.loads(best.params["model.net.conv_channels"])
    assert config.trainer.max_epochs == 2
    assert str(base) not in path.read_text()


@pytest.mark.slow
def test_full_study_rerun_runs_nothing(swept):
    base, result, _ = swept
    again = run_sweep(settings(base))
    assert again.parent_run_id == result.parent_run_id
    assert len(load(base).trials) == len(load(base).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))


@pytest.mark.slow
def test_resume_other_task_rejected(swept):
    base, _, _ = swept
    with pytest.raises(ValueError, match="created for task"):
        run_sweep(settings(base, task="binary", study_name=f"{TASK}-{SPACE}"))


@pytest.mark.slow
def test_pruned_trial_tagged_in_mlflow(tmp_path, monkeypatch):
    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = make_project(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{base}/mlflow.db")
    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    objective = SweepObjective(TASK, load_space(base / "conf", SPACE), (*path_overrides(base), "trainer.max_epochs=3"),
                               base / "conf", n_trials=None)
    study.optimize(objective, n_trials=1)

    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]
    run = MlflowClient().get_run(trial.user_attrs["mlflow_run_id"])
    assert run.data.tags["optuna.trial_state"] == "PRUNED"
    assert run.info.status == "KILLED"


# Resume after a killed worker.

def wait_for(study_name: str, base: Path, condition, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not (base / "sweeps" / "optuna.db").exists():
            time.sleep(0.2)
            continue
        try:
            if condition(load(base, study_name)):
                return
        except KeyError:
            pass  # the study does not exist yet
        except sqlalchemy.exc.SQLAlchemyError:
            pass  # the worker is still creating the tables, and opening the storage raced with it
        time.sleep(0.2)
    raise TimeoutError(f"study {study_name} did not reach the expected state in {timeout} s")


@pytest.mark.slow
def test_killed_sweep_resumes(tmp_path):
    base = make_project(tmp_path)
    name = "resume"
    arguments = ("--study-name", name, "--n-trials", "5", "--heartbeat-interval", "1", "--grace-period", "2")
    # Trials of a few seconds each, so the poll below finds one running: with two epochs,
    # an idle machine finished all five trials between two polls.
    overrides = ("trainer.max_epochs=40",)
    env = sweep_env()

    worker = subprocess.Popen(sweep_command(base, *arguments, overrides=overrides), cwd=base, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Kill while a trial trains, after its MLflow run started.
        wait_for(name, base, lambda study: len(study.get_trials(states=(TrialState.COMPLETE,))) >= 2
                 and any("mlflow_run_id" in trial.user_attrs for trial in study.get_trials(states=(TrialState.RUNNING,))))
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    before = load(base, name)
    finished_before_kill = {trial.number: trial.value for trial in before.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))}
    interrupted = [trial.number for trial in before.get_trials(states=(TrialState.RUNNING,))]
    assert len(interrupted) == 1

    result = subprocess.run(sweep_command(base, *arguments, overrides=overrides), cwd=base, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    after = load(base, name)
    finished = after.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 5
    for number, value in finished_before_kill.items():
        assert after.trials[number].value == value, number
    assert after.trials[interrupted[0]].state == TrialState.FAIL
    assert not after.get_trials(states=(TrialState.RUNNING,))

    mlflow.set_tracking_uri(f"sqlite:///{base}/mlflow.db")
    parents = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("iomt-ids").experiment_id],
                                         filter_string="tags.stage = 'sweep'")
    assert len(parents) == 1
    killed_run = MlflowClient().get_run(after.trials[interrupted[0]].user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "FAILED"


def test_overrides_of_sampled_keys_found():
    from iomt_ids.tuning.sweep import shadowed_overrides

    space = load_space(ROOT / "conf", "ple_cnn")
    overrides = ["model.net.n_bins=8", "trainer.max_epochs=1", "+model.optimizer.lr=0.1"]

    assert shadowed_overrides(space, overrides) == ["model.net.n_bins=8", "+model.optimizer.lr=0.1"]
