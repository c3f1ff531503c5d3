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
    for override in overrides:
        check_override(config, override, path)
    if overrides:
        dotlist = [override.removeprefix("+") for override in overrides]
        config = OmegaConf.merge(config, OmegaConf.from_dotlist(dotlist))
        # params.yaml contains trainer.max_epochs already resolved from model.max_epochs, so pass the
        # model's new value on, as composing conf/ would, unless trainer.max_epochs is overridden too.
        keys = {item.split("=", 1)[0] for item in dotlist}
        if "model.max_epochs" in keys and "trainer.max_epochs" not in keys:
            config.trainer.max_epochs = config.model.max_epochs
    return config


class ConfigError(ValueError):
    """An invalid command-line override of params.yaml."""


# Marks a key that OmegaConf.select did not find, since None is a valid value.
_MISSING = object()


def check_override(config: DictConfig, override: str, path: Path) -> None:
    """Raise ConfigError for an override that is not ``key=value``, names no key, or replaces a whole group.

    A ``+`` prefix (``+key=value``) adds a key that params.yaml lacks.
    """
    key, separator, value = override.partition("=")
    if not separator or not key.lstrip("+"):
        raise ConfigError(f"override {override!r} is invalid: expected key=value, for example trainer.max_epochs=1")
    if key.startswith("+"):
        return
    current = OmegaConf.select(config, key, default=_MISSING)
    if current is _MISSING:
        raise ConfigError(
            f"override {override!r}: key {key!r} not found in {path}. Check the spelling against {path}, "
            f"or write +{key}={value} to add a new key."
        )
    if isinstance(current, DictConfig) and not value.startswith("{"):
        raise ConfigError(
            f"override {override!r} selects a config group, which a single stage cannot do. Recompose "
            f"params.yaml with `iomt-ids compose {override}` or run `dvc exp run -S {override} promote`."
        )


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
