"""Command line of the pipeline stages: ``iomt-ids <stage> [--task TASK] [key=value ...]``.

Each stage reads ``params.yaml`` (the composed default of ``conf/``), so
``dvc repro`` and a hand-run stage behave the same. Trailing ``key=value``
arguments override single params for one hand run, for example
``iomt-ids train --task attack trainer.max_epochs=1``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from iomt_ids.data.schema import TASKS
from iomt_ids.tuning.command import add_sweep_arguments

STAGES_WITH_TASK = ("train", "evaluate", "promote")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iomt-ids", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="composed config to read (default: params.yaml)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    stages = parser.add_subparsers(dest="stage", required=True)

    stages.add_parser("ingest", help="validate the raw CSV files into one parquet file and a data report")
    stages.add_parser("prepare", help="split the ingested flows into train, validation and test")
    for name, text in (("train", "train one task's network, tracked in MLflow"),
                       ("evaluate", "score one task's network on the test split"),
                       ("promote", "register one task's model and move champion or challenger")):
        stage = stages.add_parser(name, help=text)
        stage.add_argument("--task", required=True, choices=TASKS)

    compare = stages.add_parser("compare-model", help="train and test one model for every task and seed")
    compare.add_argument("--kind", required=True, choices=("cnn", "baseline"),
                         help="cnn: conf/model/<name>.yaml; baseline: conf/baseline/<name>.yaml")
    compare.add_argument("--name", required=True, help="config file name without .yaml")
    stages.add_parser("compare-report", help="gather the comparison results into a table and plots")

    compose = stages.add_parser("compose", help="compose conf/ with Hydra overrides into params.yaml")
    compose.add_argument("--config-dir", type=Path, default=Path("conf"), help="Hydra config folder (default: conf)")

    download = stages.add_parser("download", help="fetch the release's CSV files into data.raw_dir")
    download.add_argument("--base-url", default=None, help="server folder holding train/ and test/")
    download.add_argument("--split", action="append", choices=("train", "test"),
                          help="split to fetch (repeatable; default: both)")
    download.add_argument("--class", dest="classes", action="append",
                          help="fetch only this class (repeatable; default: all)")
    download.add_argument("--max-files", type=_positive_int, default=None,
                          help="fetch only the first N files of each split")

    predict = stages.add_parser("predict", help="predict the class of every flow in CSV files with a registered model")
    _add_prediction_arguments(predict)
    predict.add_argument("--output", type=Path, required=True,
                         help="predictions file to write, .csv or .parquet (one row per flow)")
    captures = stages.add_parser("evaluate-captures",
                                 help="score a registered model on CSV files named by their official class")
    _add_prediction_arguments(captures)
    captures.add_argument("--output", type=Path, default=None, help="also write the predictions, .csv or .parquet")
    captures.add_argument("--report-dir", type=Path, required=True,
                          help="folder for metrics.json, per_class.json, confusion_matrix.json and files.json")

    sweep = stages.add_parser("sweep", help="tune hyperparameters with Optuna over a search space in conf/hparams_search")
    add_sweep_arguments(sweep)

    for name, stage in stages.choices.items():
        text = "Hydra overrides (model=..., trainer.max_epochs=1)" if name in ("compose", "sweep") else \
            "params to override for this run"
        stage.add_argument("overrides", nargs="*", metavar="key=value", help=text)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")

    from iomt_ids.config import ConfigError, load_params
    from iomt_ids.data.errors import DataError

    if args.stage == "compose":
        from hydra.errors import HydraException

        from iomt_ids.config import write_params
        try:
            write_params(args.params, args.overrides, args.config_dir)
        except (ConfigError, HydraException) as error:
            logging.getLogger("iomt_ids").error("%s", error)
            return 2
        return 0

    if args.stage == "sweep":
        from iomt_ids.tuning.command import run_sweep_command
        return run_sweep_command(args)

    if args.stage in ("predict", "evaluate-captures"):
        from iomt_ids.serving.commands import run_prediction
        try:
            return run_prediction(args, evaluate=args.stage == "evaluate-captures")
        except DataError as error:
            logging.getLogger("iomt_ids").error("%s", error)
            return 2

    try:
        cfg = load_params(args.params, args.overrides)
    except (ConfigError, FileNotFoundError) as error:
        logging.getLogger("iomt_ids").error("%s", error)
        return 2
    try:
        if args.stage == "ingest":
            from iomt_ids.pipeline import ingest
            ingest.run(cfg)
        elif args.stage == "prepare":
            from iomt_ids.pipeline import prepare
            prepare.run(cfg)
        elif args.stage == "train":
            from iomt_ids.pipeline import train
            train.train_task(cfg, args.task)
        elif args.stage == "evaluate":
            from iomt_ids.pipeline import evaluate
            evaluate.run(cfg, args.task)
        elif args.stage == "promote":
            from iomt_ids.pipeline import promote
            try:
                promote.promote(cfg, args.task)
            except promote.PromotionError as error:
                logging.getLogger("iomt_ids").error("%s", error)
                return 2
        elif args.stage == "compare-model":
            from iomt_ids.pipeline import compare
            (compare.run_cnn if args.kind == "cnn" else compare.run_baseline)(cfg, args.name)
        elif args.stage == "compare-report":
            from iomt_ids.pipeline import compare
            compare.report(cfg)
        elif args.stage == "download":
            return _download(cfg, args)
    except (DataError, ConfigError, FileNotFoundError) as error:
        # A missing input (a split not prepared yet, comparison results not computed) names the file and the fix.
        logging.getLogger("iomt_ids").error("%s", error)
        return 2
    return 0


def _positive_int(text: str) -> int:
    """Parse a command-line count, a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected a whole number of at least 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is invalid: expected a whole number of at least 1")
    return value


# A block is held in memory whole, so a ceiling stops a typo from requesting terabytes.
MAX_BLOCK_SIZE = 1 << 30


def _block_size(text: str) -> int:
    """Parse --block-size, a whole number of bytes from 1 to MAX_BLOCK_SIZE."""
    value = _positive_int(text)
    if value > MAX_BLOCK_SIZE:
        raise argparse.ArgumentTypeError(f"{value} is invalid: expected at most {MAX_BLOCK_SIZE} bytes (1 GiB)")
    return value


def _add_prediction_arguments(stage: argparse.ArgumentParser) -> None:
    stage.add_argument("input", type=Path, help="a flow CSV file (.csv or .csv.gz) or a folder of them")
    stage.add_argument("--task", choices=TASKS, default=None,
                       help="task whose champion to use when --model is not given (default: attack)")
    stage.add_argument("--model", default=None,
                       help="MLflow model URI or saved classifier folder (default: models:/<prefix>-<task>@champion)")
    stage.add_argument("--format", dest="output_format", choices=("csv", "parquet"), default=None,
                       help="output format (default: from the --output suffix)")
    stage.add_argument("--all-probabilities", action="store_true",
                       help="add a probability_<class> column for every class")
    stage.add_argument("--block-size", type=_block_size, default=None,
                       help="bytes of CSV read per block, at most 1 GiB; bounds memory (default: 4 MiB)")
    stage.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    stage.add_argument("--engine", choices=("torch", "onnxruntime"), default="torch",
                       help="run the network with PyTorch or with ONNX Runtime (needs onnxruntime; default: torch)")
    stage.add_argument("--threads", type=_positive_int, default=None,
                       help="CPU threads for the network (default: PyTorch's default, one per core)")


def _download(cfg, args) -> int:
    from iomt_ids.data.download import DEFAULT_BASE_URL, DownloadError, download_release

    try:
        download_release(
            Path(cfg.data.raw_dir),
            base_url=args.base_url or DEFAULT_BASE_URL,
            splits=tuple(args.split or ("train", "test")),
            classes=args.classes,
            max_files=args.max_files,
        )
    except DownloadError as error:
        logging.getLogger("iomt_ids").error("%s", error)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
