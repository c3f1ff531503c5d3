"""Hyperparameter sweeps: Optuna studies over search spaces in ``conf/hparams_search``, tracked in MLflow."""

# Optuna storage used when --storage is not given: a sqlite file in the project.
DEFAULT_STORAGE = "sqlite:///sweeps/optuna.db"
