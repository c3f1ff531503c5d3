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
    check_values(config, str(path) + (" with the overrides" if overrides else ""))
    return config


class ConfigError(ValueError):
    """An invalid setting in an override, params.yaml or conf/, or one that the chosen model cannot use."""


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


# Settings checked before any stage runs, as (key, kind, whether null is allowed). _KIND_TEXT describes each kind.
# A learning rate of 0 is valid because it keeps the initial weights, which tests use to make a worse model.
_VALUE_RULES: tuple[tuple[str, str, bool], ...] = (
    ("seed", "index", False),
    ("model.max_epochs", "count", True),
    ("trainer.max_epochs", "count", False),
    ("model.batch_size", "count", False),
    ("model.optimizer.lr", "non_negative", False),
    ("model.optimizer.weight_decay", "non_negative", True),
    ("model.early_stopping_patience", "count", True),
    ("model.net.dropout", "probability", False),
    ("model.keep_best_epoch", "flag", True),
    ("model.fine_labels", "flag", True),
    ("data.split.val_fraction", "fraction", False),
    ("data.split.test_fraction", "fraction", False),
    ("registry.min_improvement", "number", True),
    ("comparison.max_epochs", "count", True),
    ("comparison.baseline_max_train_flows", "count", True),
)

# Training options, each one of a fixed set of names.
IMBALANCE_OPTIONS: tuple[str, ...] = ("none", "class_weights", "balanced_sampling")
# Starting places of a piecewise-linear encoding's bins: evenly spaced, or at per-feature decision-tree thresholds.
BIN_INIT_OPTIONS: tuple[str, ...] = ("uniform", "tree")
_CHOICE_RULES: dict[str, tuple[str, ...]] = {"model.imbalance": IMBALANCE_OPTIONS, "model.bin_init": BIN_INIT_OPTIONS}

_KIND_TEXT = {
    "count": "a whole number of at least 1",
    "index": "a whole number of at least 0",
    "number": "a number",
    "non_negative": "a number of at least 0",
    "probability": "a number from 0 up to but not including 1",
    "fraction": "a number between 0 and 1",
    "flag": "true or false",
}

# Example values for the error message: by key name where the kind's example would mislead.
_KIND_EXAMPLES = {"count": "1", "index": "0", "number": "0", "non_negative": "0", "probability": "0.1",
                   "fraction": "0.1", "flag": "true"}
_KEY_EXAMPLES = {"max_epochs": "10", "batch_size": "512", "lr": "0.001"}


def _fits(value: object, kind: str) -> bool:
    """Return whether ``value`` is of ``kind`` (a key of _KIND_TEXT)."""
    if kind == "flag":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if kind in ("count", "index"):
        return isinstance(value, int) and value >= (1 if kind == "count" else 0)
    if kind == "number":
        return True
    if kind == "non_negative":
        return value >= 0
    if kind == "probability":
        return 0 <= value < 1
    return 0 < value < 1


def check_values(config: DictConfig, source: str) -> None:
    """Raise ConfigError for a setting whose value has the wrong type or range.

    This catches a value such as ``trainer.max_epochs=abc`` before a stage
    starts, in place of an error deep inside Lightning. Keys that the config
    lacks are skipped, because only the models that use a key define it.
    """
    for key, kind, nullable in _VALUE_RULES:
        value = OmegaConf.select(config, key, default=_MISSING, throw_on_resolution_failure=False)
        if value is _MISSING or (value is None and nullable):
            continue
        if not _fits(value, kind):
            name = key.rsplit(".", 1)[-1]
            example = _KEY_EXAMPLES.get(name, _KIND_EXAMPLES[kind])
            raise ConfigError(
                f"{key}={value!r} in {source} is invalid: expected {_KIND_TEXT[kind]}"
                f"{' or null' if nullable and kind != 'flag' else ''}, for example {key}={example}."
            )
    for key, choices in _CHOICE_RULES.items():
        value = OmegaConf.select(config, key, default=_MISSING, throw_on_resolution_failure=False)
        if value is not _MISSING and value not in choices:
            raise ConfigError(f"{key}={value!r} in {source} is invalid: expected one of {', '.join(choices)}, "
                              f"for example {key}={choices[0]}.")
    drop_columns = OmegaConf.select(config, "data.drop_columns", default=None)
    if drop_columns is not None and not (OmegaConf.is_list(drop_columns) or isinstance(drop_columns, list)):
        raise ConfigError(
            f"data.drop_columns={drop_columns!r} in {source} is invalid: expected a list of column names, for "
            f"example data.drop_columns=[IAT]."
        )
    seeds = OmegaConf.select(config, "comparison.seeds", default=None)
    if seeds is not None and (len(seeds) == 0 or not all(_fits(seed, "index") for seed in seeds)):
        raise ConfigError(
            f"comparison.seeds={list(seeds)!r} in {source} is invalid: expected a list of whole numbers of at "
            "least 0, for example comparison.seeds=[0,1,2]."
        )


def compose_config(overrides: Sequence[str] = (), config_dir: Path = Path("conf")) -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides (``model=...``, ``trainer.max_epochs=1``)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        config = compose(config_name="config", overrides=list(overrides))
    check_values(config, f"{config_dir} composed" + (" with the overrides" if overrides else ""))
    return config


def write_params(path: Path = Path("params.yaml"), overrides: Sequence[str] = (),
                 config_dir: Path = Path("conf")) -> DictConfig:
    """Compose ``conf/`` and write it to ``params.yaml``, the file DVC stages read."""
    config = compose_config(overrides, config_dir)
    header = "# Composed from conf/ by `iomt-ids compose`; edit conf/ and recompose, do not edit by hand.\n"
    Path(path).write_text(header + OmegaConf.to_yaml(config, resolve=True))
    return config
