# Set-up and entry points. Every target creates .venv from the pinned
# requirements when it is missing, so a fresh machine needs only `make run`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1

.PHONY: venv run compare test ui params sweep download benchmark-prepare benchmark-inference test-serving clean-venv

$(BIN)/iomt-ids: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "$(PYTHON) was not found or is older than Python 3.11, which the project needs: run make PYTHON=python3.11" >&2; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)
	# torch first and exactly: a looser pin pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

venv: $(BIN)/iomt-ids  ## Create .venv only, for commands run from the activated virtualenv

run: $(BIN)/iomt-ids  ## Train, evaluate and promote the three tasks' models on data/raw
	@raw=$$($(BIN)/python -c "from omegaconf import OmegaConf; print(OmegaConf.load('params.yaml').data.raw_dir)"); \
	if [ ! -d "$$raw" ]; then \
		echo "$$raw not found: place the CICIoMT2024 CSV files under $$raw/train/ and $$raw/test/ (see README), or run make download" >&2; \
		exit 1; \
	fi
	dvc repro promote

compare: $(BIN)/iomt-ids  ## Compare every CNN variant and baseline over 3 seeds (long: see README)
	dvc repro compare

test: $(BIN)/iomt-ids  ## Run the test suite
	pytest

ui: $(BIN)/iomt-ids  ## Open the MLflow UI on the project's runs at http://127.0.0.1:5000
	mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --host 127.0.0.1 --port 5000

params: $(BIN)/iomt-ids  ## Recompose params.yaml from conf/
	iomt-ids compose

# Override on the command line, e.g. make sweep TASK=binary SWEEP_ARGS="--n-trials 40 trainer.max_epochs=5".
TASK ?= attack
SPACE ?= published_cnn
SWEEP_ARGS ?= --n-trials 20
sweep: $(BIN)/iomt-ids  ## Run or resume an Optuna sweep (TASK, SPACE, SWEEP_ARGS)
	iomt-ids sweep --task $(TASK) --space $(SPACE) $(SWEEP_ARGS)

download: $(BIN)/iomt-ids  ## Fetch the release's CSV files into data/raw (pass options in DOWNLOAD_ARGS)
	iomt-ids download $(DOWNLOAD_ARGS)

# A release-sized 45-column folder (about 2.7 GB) is built under BENCH_DIR and removed afterwards.
BENCH_DIR ?= /tmp/iomt-release
benchmark-prepare: $(BIN)/iomt-ids  ## Time ingest beside pandas and polars on a release-sized folder
	$(BIN)/pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/make_release.py $(BENCH_DIR) --force
	$(BIN)/python benchmarks/prepare_benchmark.py $(BENCH_DIR) --repeat 3 --out docs/benchmarks/prepare.json
	rm -rf $(BENCH_DIR) $(BENCH_DIR)-scratch

benchmark-inference: $(BIN)/iomt-ids  ## Time each CNN, the predict command and tree baselines (docs/benchmarks/inference.md)
	$(BIN)/pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/inference.py --out docs/benchmarks/inference.json

test-serving: $(BIN)/iomt-ids  ## Run the batch prediction and REST serving tests only
	pytest tests/test_predict.py tests/test_serving.py

clean-venv:
	rm -rf $(VENV)
