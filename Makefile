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

.PHONY: run test ui params clean-venv

$(BIN)/iomt-ids: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and exactly: a looser pin pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

run: $(BIN)/iomt-ids  ## Run the whole pipeline (dvc repro) on data/raw
	dvc repro

test: $(BIN)/iomt-ids  ## Run the test suite
	pytest

ui: $(BIN)/iomt-ids  ## Open the MLflow UI on the project's runs at http://127.0.0.1:5000
	mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --host 127.0.0.1 --port 5000

params: $(BIN)/iomt-ids  ## Recompose params.yaml from conf/
	iomt-ids compose

clean-venv:
	rm -rf $(VENV)
