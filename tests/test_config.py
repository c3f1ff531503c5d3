"""The committed params.yaml must equal conf/ composed, since plain `dvc repro` reads it."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from iomt_ids.config import compose_config, load_params, write_params

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_matches_composed_conf():
    composed = OmegaConf.to_container(compose_config(config_dir=ROOT / "conf"), resolve=True)
    committed = OmegaConf.to_container(OmegaConf.load(ROOT / "params.yaml"), resolve=True)
    assert committed == composed, "params.yaml is stale: run `iomt-ids compose` (or `make params`)"


def test_compose_experiment_overrides_trainer():
    config = compose_config(["experiment=smoke"], config_dir=ROOT / "conf")
    assert config.trainer.max_epochs == 1


def test_compose_rejects_unknown_model():
    with pytest.raises(Exception, match="no_such_model"):
        compose_config(["model=no_such_model"], config_dir=ROOT / "conf")


def test_write_params_round_trips(tmp_path):
    path = tmp_path / "params.yaml"
    write_params(path, ["trainer.max_epochs=3"], ROOT / "conf")
    assert load_params(path).trainer.max_epochs == 3


def test_load_params_applies_overrides():
    config = load_params(ROOT / "params.yaml", ["model.batch_size=64"])
    assert config.model.batch_size == 64


def test_load_params_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="params.yaml"):
        load_params(tmp_path / "params.yaml")


def test_configs_have_no_hydra_interpolation():
    # DVC composes conf/ outside @hydra.main, where ${hydra:...} cannot resolve.
    for path in (ROOT / "conf").rglob("*.yaml"):
        assert "${hydra:" not in path.read_text(), path


def test_load_params_rejects_unknown_key():
    from iomt_ids.config import ConfigError

    with pytest.raises(ConfigError, match="key 'trainer.max_epoch' not found"):
        load_params(ROOT / "params.yaml", ["trainer.max_epoch=1"])


def test_load_params_rejects_group_switch():
    from iomt_ids.config import ConfigError

    with pytest.raises(ConfigError, match="iomt-ids compose model=published_cnn"):
        load_params(ROOT / "params.yaml", ["model=published_cnn"])


@pytest.mark.parametrize("override", ["trainer.max_epochs", "=3"])
def test_load_params_rejects_malformed(override):
    from iomt_ids.config import ConfigError

    with pytest.raises(ConfigError, match="expected key=value"):
        load_params(ROOT / "params.yaml", [override])


def test_load_params_plus_adds_key():
    config = load_params(ROOT / "params.yaml", ["+trainer.limit_train_batches=2"])
    assert config.trainer.limit_train_batches == 2


def test_cli_reports_bad_override():
    from iomt_ids import cli

    status = cli.main(["--params", str(ROOT / "params.yaml"), "train", "--task", "attack", "model=published_cnn"])

    assert status == 2


def test_cli_reports_missing_params(tmp_path, caplog):
    from iomt_ids import cli

    status = cli.main(["--params", str(tmp_path / "none.yaml"), "train", "--task", "attack"])

    assert status == 2
    assert f"{tmp_path / 'none.yaml'} not found. Run from the project root, or pass --params PATH." in caplog.text


def test_cli_reports_missing_comparison_results(tmp_path, caplog):
    from iomt_ids import cli

    status = cli.main(["--params", str(ROOT / "params.yaml"), "compare-report", f"paths.reports_dir={tmp_path}"])

    assert status == 2
    assert "no comparison results for" in caplog.text
    assert "run dvc repro compare_cnn compare_baseline" in caplog.text


@pytest.mark.parametrize(("overrides", "epochs"), [
    (["model=published_cnn"], 10),
    (["model=ple_cnn"], 30),
    (["model=ple_cnn", "trainer.max_epochs=2"], 2),
])
def test_trainer_takes_model_epochs(overrides, epochs):
    config = compose_config(overrides, config_dir=ROOT / "conf")
    assert config.trainer.max_epochs == epochs


@pytest.mark.parametrize(("overrides", "epochs"), [
    (["model.max_epochs=4"], 4),
    (["model.max_epochs=4", "trainer.max_epochs=2"], 2),
    (["trainer.max_epochs=2"], 2),
])
def test_load_params_model_epochs_reach_trainer(overrides, epochs):
    config = load_params(ROOT / "params.yaml", overrides)
    assert config.trainer.max_epochs == epochs


@pytest.mark.parametrize(("override", "message"), [
    ("model.max_epochs=abc", "model.max_epochs='abc'"),
    ("model.max_epochs=1.5", "model.max_epochs=1.5"),
    ("model.max_epochs=0", "model.max_epochs=0"),
    ("trainer.max_epochs=-1", "trainer.max_epochs=-1"),
    ("comparison.max_epochs=0", "comparison.max_epochs=0"),
    ("model.batch_size=true", "model.batch_size=True"),
    ("model.optimizer.lr=-0.1", "model.optimizer.lr=-0.1"),
    ("registry.min_improvement=high", "registry.min_improvement=.high."),
    ("model.fine_labels=maybe", "model.fine_labels='maybe'"),
    ("data.split.test_fraction=1.0", "data.split.test_fraction=1.0"),
    ("comparison.seeds=[0,x]", r"comparison.seeds=\[0, 'x'\]"),
    ("model.net.dropout=1.5", "model.net.dropout=1.5"),
    ("model.net.dropout=-0.1", "model.net.dropout=-0.1"),
    ("data.drop_columns=IAT", "expected a list of column names"),
])
def test_load_params_rejects_bad_values(override, message):
    from iomt_ids.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_params(ROOT / "params.yaml", [override])


def test_load_params_accepts_null_where_allowed():
    config = load_params(ROOT / "params.yaml", ["comparison.max_epochs=null", "model.early_stopping_patience=5"])
    assert config.comparison.max_epochs is None
    assert config.model.early_stopping_patience == 5


def test_compose_bad_value_keeps_params(tmp_path):
    from iomt_ids import cli

    params = tmp_path / "params.yaml"
    params.write_text("seed: 1\n")

    assert cli.main(["--params", str(params), "compose", "--config-dir", str(ROOT / "conf"),
                     "model.max_epochs=abc"]) == 2
    assert cli.main(["--params", str(params), "compose", "--config-dir", str(ROOT / "conf"), "model=nope"]) == 2
    assert params.read_text() == "seed: 1\n"


@pytest.mark.parametrize("option", [["--threads", "-1"], ["--block-size", "0"], ["--threads", "two"],
                                    ["--block-size", str((1 << 30) + 1)], ["--block-size", "9" * 20]])
def test_predict_rejects_invalid_counts(tmp_path, option, capsys):
    from iomt_ids import cli

    with pytest.raises(SystemExit) as stopped:
        cli.main(["predict", str(tmp_path), "--output", str(tmp_path / "out.csv"), *option])

    assert stopped.value.code == 2
    assert option[0] in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(path.stem for path in (ROOT / "conf" / "model").glob("*.yaml")))
def test_model_config_composes(name):
    config = compose_config([f"model={name}"], config_dir=ROOT / "conf")
    assert config.model.name == name
    assert config.trainer.max_epochs == config.model.max_epochs
