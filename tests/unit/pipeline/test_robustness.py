"""Model security figures: the membership attack tells an overfit model from a regularised one, the evasion
search finds the known smallest flip of a simple model, and evaluate reports both for the gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from mlops_template.core.config import RobustnessConfig
from mlops_template.pipeline.robustness import evaluate, membership_auc, search


def noisy_data(rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, 6)), columns=[f"x{i}" for i in range(6)])
    signal = x["x0"] + 0.5 * x["x1"] + rng.normal(scale=1.5, size=rows)  # weak signal: room to memorise
    return x, pd.Series(np.where(signal > 0, "yes", "no"))


def test_an_overfit_model_leaks_membership_and_a_regularised_one_does_not() -> None:
    train, test = noisy_data(1500, 1), noisy_data(1500, 2)
    overfit = RandomForestClassifier(n_estimators=50, min_samples_leaf=1, random_state=0).fit(*train)
    regularised = LogisticRegression(C=0.1).fit(*train)
    leaky = membership_auc(overfit, "binary", train, test, 1000, seed=0)
    tight = membership_auc(regularised, "binary", train, test, 1000, seed=0)
    assert leaky > 0.7 and abs(tight - 0.5) < 0.05 and leaky - tight > 0.2


def threshold_model() -> DecisionTreeClassifier:
    x = pd.DataFrame({"x": np.linspace(0, 1, 101), "other": np.zeros(101)})
    return DecisionTreeClassifier(max_depth=1).fit(x, np.where(x["x"] > 0.5, "high", "low"))


def test_evasion_search_finds_the_smallest_flip_of_a_threshold() -> None:
    model = threshold_model()  # high above x = 0.505 (the tree's split), range 0..1
    rows = pd.DataFrame({"x": [0.6, 0.9, 0.3], "other": [0.0, 0.0, 0.0]})
    truth = pd.Series(model.predict(rows))
    flips, _ = search(model, rows, truth, ["x", "other"], {"x": (0, 1), "other": (0, 1)}, "binary",
                      RobustnessConfig(tries=4))  # fmt: skip
    # the first budget on the grid (0.025 steps up to 0.3) at or beyond each row's distance; 0.9 is out of reach
    assert flips.tolist() == [0.1, float("inf"), 0.225]


def test_regression_error_under_attack_grows_with_the_budget() -> None:
    x = pd.DataFrame({"x": np.linspace(0, 1, 200)})
    model = DecisionTreeRegressor(max_depth=4).fit(x, 10 * x["x"])
    rows, truth = x.iloc[::20].reset_index(drop=True), pd.Series(10 * x["x"].iloc[::20].to_numpy())
    small = search(model, rows, truth, ["x"], {"x": (0, 1)}, "regression", RobustnessConfig(budget=0.05))[1]
    large = search(model, rows, truth, ["x"], {"x": (0, 1)}, "regression", RobustnessConfig(budget=0.2))[1]
    assert large.mean() > small.mean() > 0


@pytest.mark.parametrize(("evasion", "membership"), [(True, True), (False, True), (True, False)])
def test_evaluate_reports_what_is_switched_on(evasion: bool, membership: bool) -> None:
    model = threshold_model()
    x = pd.DataFrame({"x": np.linspace(0, 1, 60), "other": np.zeros(60)})
    y = pd.Series(model.predict(x))
    ranges = {"x": (0.0, 1.0), "other": (0.0, 1.0)}
    config = RobustnessConfig(evasion=evasion, membership=membership)
    metrics, curve = evaluate(model, "binary", ranges, (x, y), (x, y), config)
    assert ("membership_auc" in metrics) == membership
    assert ("adversarial_accuracy" in metrics) == evasion == bool(curve)
    if evasion:
        assert 0 < metrics["adversarial_accuracy"] < 1 and metrics["median_flip_distance"] > 0
        assert curve[0] == {"budget": 0.0, "accuracy": 1.0} and curve[-1]["accuracy"] < curve[0]["accuracy"]
