"""`dvc repro` and `dvc exp run` in a real DVC repository built in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthetic import write_raw_folder

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory):
    """A git + DVC copy of the project: the category task only, one seed and two models compared, for speed."""
    project = tmp_path_factory.mktemp("dvc_project")
    for name in ("conf", "src", "dvc.yaml", ".dvcignore", ".gitignore"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, project / name)
    (project / ".dvc").mkdir()
    shutil.copy(ROOT / ".dvc" / "config", project / ".dvc" / "config")

    config_path = project / "conf" / "config.yaml"
    config_path.write_text(config_path.read_text().replace("tasks: [binary, category, attack]", "tasks: [category]"))
    comparison_path = project / "conf" / "comparison" / "default.yaml"
    comparison = yaml.safe_load(comparison_path.read_text())
    comparison.update(cnn_models=["published_cnn"], baselines=["logistic_regression"], seeds=[0])
    comparison_path.write_text(yaml.safe_dump(comparison))
    trainer_path = project / "conf" / "trainer" / "default.yaml"
    trainer_path.write_text(trainer_path.read_text().replace("max_epochs: 10", "max_epochs: 1"))
    write_raw_folder(project / "data" / "raw", rows_per_class=60)

    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    })
    run(["git", "init", "-q"], project, env)
    run([sys.executable, "-m", "iomt_ids", "compose"], project, env)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "project copy"], project, env)
    return project, env


def test_repro_runs_every_stage(dvc_project):
    project, env = dvc_project
    result = run(["dvc", "repro"], project, env)
    for stage in ("ingest", "prepare", "train@category", "evaluate@category", "promote@category",
                  "compare_cnn@published_cnn", "compare_baseline@logistic_regression", "compare"):
        assert f"Running stage '{stage}'" in result.stdout, stage
    promotion = json.loads((project / "reports" / "category" / "promotion.json").read_text())
    assert promotion["alias"] == "champion"


def test_second_repro_does_nothing(dvc_project):
    project, env = dvc_project
    result = run(["dvc", "repro"], project, env)
    assert "Running stage" not in result.stdout
    assert "up to date" in result.stdout


def test_metrics_show_lists_task_metrics(dvc_project):
    project, env = dvc_project
    result = run(["dvc", "metrics", "show", "--json"], project, env)
    metrics = json.loads(result.stdout)
    task_metrics = next(iter(metrics.values()))["data"]["reports/category/metrics.json"]["data"]
    for key in ("accuracy", "f1_macro", "f1_weighted"):
        assert key in task_metrics, key


def test_exp_run_overrides_model_and_epochs(dvc_project):
    project, env = dvc_project
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "first repro"], project, env)
    result = run(["dvc", "exp", "run", "-S", "model=published_cnn", "-S", "trainer.max_epochs=2"], project, env)
    assert "Running stage 'train@category'" in result.stdout
    assert "Running stage 'ingest'" not in result.stdout
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["trainer"]["max_epochs"] == 2
    assert params["model"]["name"] == "published_cnn"
