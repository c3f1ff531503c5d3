"""Load the experiment config: the composed ``params.yaml``, or ``conf/`` through Hydra."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def load_params(path: Path = Path("params.yaml"), overrides: Sequence[str] = ()) -> DictConfig:
    """Read ``params.yaml`` (what DVC stages use) and apply ``key=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found. Run from the project root, or pass --params PATH."
        )
    config = OmegaConf.load(path)
    if overrides:
        config = OmegaConf.merge(config, OmegaConf.from_dotlist(list(overrides)))
    return config


def compose_config(overrides: Sequence[str] = (), config_dir: Path = Path("conf")) -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides (``model=...``, ``trainer.max_epochs=1``)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def write_params(path: Path = Path("params.yaml"), overrides: Sequence[str] = (),
                 config_dir: Path = Path("conf")) -> DictConfig:
    """Compose ``conf/`` and write it to ``params.yaml``, the file DVC stages read."""
    config = compose_config(overrides, config_dir)
    header = "# Composed from conf/ by `iomt-ids compose`; edit conf/ and recompose, do not edit by hand.\n"
    Path(path).write_text(header + OmegaConf.to_yaml(config, resolve=True))
    return config
