"""Write a study's best trial as a Hydra experiment file that ``dvc exp run -S experiment=<name>`` retrains."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial

from iomt_ids.config import compose_config

logger = logging.getLogger(__name__)

EXPERIMENT_GROUP = "experiment"

# Top-level keys that the train stage reads (its params in dvc.yaml). An
# experiment file keeps only these, so paths and tracking stores used while
# sweeping do not leak into the pipeline.
TRAINING_KEYS = ("seed", "model", "trainer")


def experiment_name(study_name: str) -> str:
    """Return the experiment file's name for a study: ``best_`` and the name with other characters as ``_``."""
    return "best_" + re.sub(r"[^A-Za-z0-9_]", "_", study_name)


def write_best_experiment(trial: FrozenTrial, *, study_name: str, task: str, space_name: str,
                          config_dir: Path, name: str | None = None) -> Path:
    """Write ``<config_dir>/experiment/<name>.yaml`` from the trial's Hydra overrides and return its path.

    Config-group choices (``model=...``) become ``override /group`` entries of
    the defaults list, and every other training key gets the value it had in
    the trial's composed config, so composing ``experiment=<name>`` reproduces
    the trial. The file is rewritten on each call.
    """
    config_dir = Path(config_dir)
    name = name or experiment_name(study_name)
    overrides: Sequence[str] = trial.user_attrs["overrides"]
    composed = compose_config(overrides, config_dir)

    group_choices: dict[str, str] = {}
    values = OmegaConf.create({})
    skipped = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key.split(".")[0] not in TRAINING_KEYS:
            skipped.append(override.input_line)
        elif (config_dir / key).is_dir():
            group_choices[key] = str(override.value())
        else:
            OmegaConf.update(values, key, OmegaConf.select(composed, key), force_add=True)
    if skipped:
        logger.info("experiment %s leaves out overrides that the train stage does not read: %s", name, skipped)

    header = [
        "# @package _global_",
        f"# Best trial ({trial.number}) of Optuna study {study_name!r}, search space {space_name!r}:",
        f"# validation macro-F1 {trial.value:.4f} on the {task} task. Written by `iomt-ids sweep`;",
        f"# retrain through the pipeline with `dvc exp run -S experiment={name} promote@{task}`.",
    ]
    body = {}
    if group_choices:
        body["defaults"] = [{f"override /{group}": choice} for group, choice in group_choices.items()]
    body.update(OmegaConf.to_container(values))

    path = config_dir / EXPERIMENT_GROUP / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header) + "\n" + OmegaConf.to_yaml(OmegaConf.create(body)))
    logger.info("wrote the best trial (%d, val macro-F1 %.4f) to %s", trial.number, trial.value, path)
    return path
