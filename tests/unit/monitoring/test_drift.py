"""Drift statistics: PSI, KS, chi-square, the decision rule, report formats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlops_template.core.config import DriftConfig
from mlops_template.monitoring.drift import (
    DRIFT,
    NO_DRIFT,
    NOT_ENOUGH,
    chi2_test,
    compare,
    ks_test,
    markdown,
    observe_frame,
    observe_outputs,
    prometheus_samples,
    psi,
)
from mlops_template.monitoring.report import plot
from tests.monitoring_support import DRIFT as CONFIG
from tests.monitoring_support import fake_outputs, loan_frame, reference


def report_for(profile, frame, config: DriftConfig = CONFIG):
    return compare(profile, observe_frame(profile, frame), observe_outputs(profile, fake_outputs(frame)), config)


def test_psi_is_zero_for_equal_distributions_and_matches_the_formula() -> None:
    assert psi(np.array([10, 20, 30]), np.array([1, 2, 3])) == pytest.approx(0.0)
    expected = (0.5 - 0.25) * math.log(0.5 / 0.25) + (0.5 - 0.75) * math.log(0.5 / 0.75)
    assert psi(np.array([25, 75]), np.array([50, 50])) == pytest.approx(expected)
    assert math.isfinite(psi(np.array([10, 0]), np.array([0, 10])))  # empty buckets are floored


def test_ks_and_chi2_separate_same_and_shifted_samples() -> None:
    rng = np.random.default_rng(0)
    same = ks_test(rng.normal(size=1000), rng.normal(size=2000))
    shifted = ks_test(rng.normal(size=1000), rng.normal(0.5, size=2000))
    assert same[1] > 0.01 > shifted[1] and shifted[0] > same[0]
    assert ks_test(np.array([]), np.array([1.0])) == (0.0, 1.0)
    _, p_same, v_same = chi2_test(np.array([500, 500, 0]), np.array([250, 250, 0]))
    _, p_diff, v_diff = chi2_test(np.array([500, 500]), np.array([100, 400]))
    assert p_same == pytest.approx(1.0) and v_same == pytest.approx(0.0)
    assert p_diff < 1e-10 and v_diff > 0.2
    assert chi2_test(np.array([5, 0]), np.array([5, 0]))[1] == 1.0  # a single non-empty bucket: no test


@pytest.fixture(scope="module")
def profile():
    return reference(rows=8000, seed=1)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_fresh_data_of_the_same_distribution_is_not_drift(profile, seed: int) -> None:
    report = report_for(profile, loan_frame(3000, seed))
    assert report["status"] == NO_DRIFT and not report["drifted"]
    # far from the threshold, not just under it: the verdict is not a coin flip
    assert max(i["psi"] for i in report["features"] + report["outputs"]) < CONFIG.psi_threshold / 4


def test_drifted_data_is_drift_in_inputs_and_predictions(profile) -> None:
    report = report_for(profile, loan_frame(3000, 11, drift=0.5))
    assert report["status"] == DRIFT and report["drifted"]
    flagged = {i["name"] for i in report["features"] if i["drifted"]}
    assert {"applicant_income", "loan_amount", "credit_history"} <= flagged
    assert any(i["drifted"] for i in report["outputs"])
    assert not next(i for i in report["features"] if i["name"] == "married")["drifted"]  # not shifted


def test_few_rows_give_no_verdict(profile) -> None:
    report = report_for(profile, loan_frame(50, 11, drift=1.0))
    assert report["status"] == NOT_ENOUGH and not report["drifted"]
    samples = list(prometheus_samples(report))
    assert all(math.isnan(v) for name, _, v in samples if name.endswith("_psi"))
    assert all(v == 0.0 for name, _, v in samples if name.endswith("_detected"))


def test_a_test_needs_a_large_enough_effect(profile) -> None:
    frame = loan_frame(3000, 11, drift=0.5)
    strict = report_for(profile, frame, DriftConfig(psi_threshold=100.0, min_effect=0.99))
    assert not strict["drifted"]  # significant p-values, but effects below 0.99 and PSI below 100
    assert report_for(profile, frame, DriftConfig(psi_threshold=100.0, min_effect=0.0))["drifted"]


def test_missing_observations_are_an_error(profile) -> None:
    with pytest.raises(ValueError, match="applicant_income"):
        compare(profile, {}, {}, CONFIG)


def test_prometheus_samples_markdown_and_plot(profile, tmp_path) -> None:
    report = report_for(profile, loan_frame(1000, 11, drift=0.5))
    samples = list(prometheus_samples(report))
    names = {name for name, _, _ in samples}
    assert {"model_feature_drift_psi", "model_drift_detected", "model_prediction_drift_psi"} <= names
    detected = {labels["feature"]: v for name, labels, v in samples if name == "model_drift_detected"}
    assert detected["loan_amount"] == 1.0
    text = markdown(report)
    assert "| feature | loan_amount |" in text and "**DRIFT**" in text
    path = tmp_path / "drift.png"
    plot(report, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
