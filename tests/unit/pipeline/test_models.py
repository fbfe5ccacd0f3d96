"""Estimator choice and hyper-parameters are checked by sklearn when the training side reads params.yaml."""

from pathlib import Path

import pytest

from mlops_template.core.config import load_params
from mlops_template.core.errors import UserError
from mlops_template.pipeline.models import load_training_params
from tests.conftest import write_params


def test_hyperparameter_checked_by_sklearn(tmp_path: Path):
    write_params(tmp_path, train={"hist_gradient_boosting": {"learning_rate": "fast"}})
    with pytest.raises(UserError, match=r"train\.hist_gradient_boosting: .*learning_rate"):
        load_training_params(tmp_path / "params.yaml")


def test_estimator_must_fit_task(tmp_path: Path):
    write_params(tmp_path, train={"estimator": "ridge"})
    with pytest.raises(UserError, match="does not fit task 'binary'"):
        load_training_params(tmp_path / "params.yaml")


def test_unknown_hyperparameter(tmp_path: Path):
    write_params(tmp_path, train={"random_forest": {"n_trees": 10}})
    with pytest.raises(UserError, match=r"train\.random_forest: .*n_trees"):
        load_training_params(tmp_path / "params.yaml")


def test_serving_side_does_not_need_sklearn_checks(tmp_path: Path):
    """load_params (used by the service) accepts what only the training side judges."""
    write_params(tmp_path, train={"estimator": "ridge"})
    assert load_params(tmp_path / "params.yaml").train.estimator == "ridge"
