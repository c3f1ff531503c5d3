"""Search spaces: YAML files in ``conf/hparams_search/`` that map config keys to Optuna distributions.

A search space file looks like this::

    overrides: [model=published_cnn]      # Hydra overrides every trial starts from
    params:
      model.optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      model.net.kernel_size: {type: int, low: 3, high: 7, step: 2}
      model.net.conv_channels: {type: categorical, choices: [[16, 32], [32, 64]]}

``type`` is ``float``, ``int`` or ``categorical``. The other fields are the
arguments of the matching ``optuna.trial.Trial.suggest_*`` method. Each key
must exist in the composed config, so a misspelt key fails before any trial.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, ListConfig, OmegaConf

SPACE_GROUP = "hparams_search"

_FIELDS = {
    "float": {"low", "high", "log", "step"},
    "int": {"low", "high", "log", "step"},
    "categorical": {"choices"},
}


class SearchSpaceError(ValueError):
    """A search space file that is missing, malformed or names keys the config lacks."""


@dataclass(frozen=True)
class Param:
    """One searched config key and the arguments of its ``suggest_*`` call."""

    key: str
    kind: str
    arguments: dict[str, Any]

    def suggest(self, trial: optuna.trial.Trial) -> Any:
        """Draw this key's value for ``trial``. A list choice comes back as a list."""
        if self.kind == "float":
            return trial.suggest_float(self.key, **self.arguments)
        if self.kind == "int":
            return trial.suggest_int(self.key, **self.arguments)
        # Optuna stores only None, bool, int, float and str choices, so list
        # choices travel as their JSON text and are decoded here.
        encoded = [_encode_choice(choice) for choice in self.arguments["choices"]]
        return decode_choice(trial.suggest_categorical(self.key, encoded))


@dataclass(frozen=True)
class SearchSpace:
    """A named search space: base Hydra overrides plus the searched params."""

    name: str
    overrides: tuple[str, ...]
    params: tuple[Param, ...] = field(default_factory=tuple)

    def suggest(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        """Draw a value for every searched key and return them by config key."""
        return {param.key: param.suggest(trial) for param in self.params}

    def as_dict(self) -> dict[str, Any]:
        return {
            "overrides": list(self.overrides),
            "params": {param.key: {"type": param.kind, **param.arguments} for param in self.params},
        }


def space_path(config_dir: Path, name: str) -> Path:
    return Path(config_dir) / SPACE_GROUP / f"{name}.yaml"


def available_spaces(config_dir: Path) -> list[str]:
    return sorted(path.stem for path in (Path(config_dir) / SPACE_GROUP).glob("*.yaml"))


def load_space(config_dir: Path, name: str) -> SearchSpace:
    """Read ``<config_dir>/hparams_search/<name>.yaml`` and check its fields."""
    path = space_path(config_dir, name)
    if not path.is_file():
        raise SearchSpaceError(
            f"search space {name!r} not found at {path}; available: {available_spaces(config_dir) or 'none'}"
        )

    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(raw, dict) or not isinstance(raw.get("params"), dict) or not raw["params"]:
        raise SearchSpaceError(f"{path}: expected a non-empty 'params' mapping of config keys to distributions")
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise SearchSpaceError(f"{path}: 'overrides' must be a list of Hydra overrides such as 'model=published_cnn'")

    params = tuple(_parse_param(path, key, spec) for key, spec in raw["params"].items())
    return SearchSpace(name=name, overrides=tuple(overrides), params=params)


def check_keys(space: SearchSpace, config: DictConfig) -> None:
    """Raise SearchSpaceError for a searched key that the composed config does not contain."""
    missing = [param.key for param in space.params if OmegaConf.select(config, param.key, default=_MISSING) is _MISSING]
    if missing:
        raise SearchSpaceError(
            f"search space {space.name!r} names keys missing from the composed config: {missing}; "
            "check the spelling against params.yaml or the model config the space selects"
        )


def to_override(key: str, value: Any) -> str:
    """Render ``key=value`` as a Hydra override, with lists as ``[32,64]``."""
    return f"{key}={_override_value(value)}"


def decode_choice(value: Any) -> Any:
    """Turn a categorical value stored by Optuna back into the config value (lists are JSON text)."""
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)
    return value


_MISSING = object()


def _parse_param(path: Path, key: str, spec: Any) -> Param:
    if not isinstance(spec, dict) or spec.get("type") not in _FIELDS:
        raise SearchSpaceError(f"{path}: {key}: expected a mapping with 'type' one of {sorted(_FIELDS)}, got {spec!r}")
    kind = spec["type"]
    arguments = {name: value for name, value in spec.items() if name != "type"}
    unknown = set(arguments) - _FIELDS[kind]
    if unknown:
        raise SearchSpaceError(f"{path}: {key}: unknown fields {sorted(unknown)} for type {kind}")

    if kind == "categorical":
        choices = arguments.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SearchSpaceError(f"{path}: {key}: 'choices' must be a non-empty list")
        return Param(key, kind, {"choices": choices})

    if "low" not in arguments or "high" not in arguments:
        raise SearchSpaceError(f"{path}: {key}: type {kind} needs 'low' and 'high'")
    low, high = arguments["low"], arguments["high"]
    if not (_is_number(low) and _is_number(high)) or low > high:
        raise SearchSpaceError(f"{path}: {key}: expected numbers with low <= high, got low={low!r} high={high!r}")
    if arguments.get("log") and low <= 0:
        raise SearchSpaceError(f"{path}: {key}: a log-scaled range needs low > 0, got {low!r}")
    if kind == "float":
        arguments["low"], arguments["high"] = float(low), float(high)
    elif not (float(low).is_integer() and float(high).is_integer()):
        raise SearchSpaceError(f"{path}: {key}: type int needs whole-number bounds, got low={low!r} high={high!r}")
    else:
        arguments["low"], arguments["high"] = int(low), int(high)
    return Param(key, kind, arguments)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _encode_choice(choice: Any) -> Any:
    if isinstance(choice, (list, ListConfig)):
        return json.dumps(list(choice), separators=(",", ":"))
    return choice


def _override_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value)
