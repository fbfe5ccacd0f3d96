"""Estimators by name and task; hyper-parameters come from params.yaml and are checked by sklearn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

from mlops_template.core.config import DEFAULT_PARAMS, Params, TrainConfig, invalid, load_params
from mlops_template.core.errors import one_line

CLASSIFIERS: dict[str, type[BaseEstimator]] = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
}
REGRESSORS: dict[str, type[BaseEstimator]] = {
    "ridge": Ridge,
    "random_forest": RandomForestRegressor,
    "hist_gradient_boosting": HistGradientBoostingRegressor,
}


def registry(task: str) -> dict[str, type[BaseEstimator]]:
    return REGRESSORS if task == "regression" else CLASSIFIERS


def make_estimator(task: str, name: str, hyperparameters: dict[str, Any], seed: int) -> BaseEstimator:
    """Build the estimator; raise ValueError naming the params.yaml key when a value is wrong."""
    choices = registry(task)
    if name not in choices:
        raise ValueError(f"train.estimator: {name!r} does not fit task {task!r}; choose one of {sorted(choices)}")
    estimator = choices[name]()
    try:
        estimator.set_params(**hyperparameters)
        if "random_state" in estimator.get_params() and "random_state" not in hyperparameters:
            estimator.set_params(random_state=seed)
        estimator._validate_params()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"train.{name}: {exc}") from None
    return estimator


def check_estimator_params(task: str, train: TrainConfig) -> None:
    """Validate the chosen estimator and every hyper-parameter block that fits the task."""
    make_estimator(task, train.estimator, train.hyperparameters(), train.seed)
    for name in registry(task):
        make_estimator(task, name, getattr(train, name), train.seed)


def load_training_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """params.yaml for the training side: also the estimator and its hyper-parameters, checked by sklearn."""
    params = load_params(path)
    try:
        check_estimator_params(params.schema_.task, params.train)
    except ValueError as exc:
        raise invalid(Path(path), [f"  - {one_line(exc)}"]) from None
    return params
