"""Sound A/B decisions: A/A experiments read after every batch keep their false-positive rate at alpha, and a
real effect of the configured size is found with the configured power (seeded simulations)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlops_template.core.config import ExperimentConfig
from mlops_template.monitoring.ab_test import CHALLENGER, CHAMPION, NOT_ENOUGH, PROMOTE, ABTest, horizon, z_test

EXPERIMENTS = 1000
BATCH = 25  # feedback per variant between two reads of /experiment


def simulate(config: ExperimentConfig, champion: float, challenger: float, batches: int, seed: int) -> list[ABTest]:
    """EXPERIMENTS experiments, each read after every batch (a decision, once made, stays)."""
    rng = np.random.default_rng(seed)
    tests = [ABTest(config) for _ in range(EXPERIMENTS)]
    outcomes = {v: rng.binomial(BATCH, rate, size=(batches, EXPERIMENTS)) for v, rate in
                ((CHAMPION, champion), (CHALLENGER, challenger))}  # fmt: skip
    for b in range(batches):
        for i, test in enumerate(tests):
            if test.decided is None:
                test.observe(CHAMPION, int(outcomes[CHAMPION][b, i]), BATCH)
                test.observe(CHALLENGER, int(outcomes[CHALLENGER][b, i]), BATCH)
                test.summary()  # a read, as GET /experiment does
    return tests


def significant(tests: list[ABTest], alpha: float) -> float:
    """The share of experiments that declared a difference (either way)."""
    return float(np.mean([t.decided is not None and t.decided["p_value"] < alpha for t in tests]))


def test_peeking_at_a_plain_z_test_is_what_this_avoids() -> None:
    """The old rule: a z-test recomputed after every batch finds 'significance' in A/A data far above alpha."""
    rng = np.random.default_rng(1)
    a = rng.binomial(BATCH, 0.5, size=(80, EXPERIMENTS)).cumsum(axis=0)[7:]  # from 200 per variant on
    b = rng.binomial(BATCH, 0.5, size=(80, EXPERIMENTS)).cumsum(axis=0)[7:]
    n = BATCH * np.arange(8, 81)[:, None]
    pooled = (a + b) / (2 * n)
    z = (b - a) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)  # z_test's statistic, for every read at once
    assert z_test((a[0, 0], n[0, 0]), (b[0, 0], n[0, 0]))[0] == pytest.approx(z[0, 0])
    ever = (np.abs(z) > stats.norm.isf(0.025)).any(axis=0)
    assert ever.mean() > 0.2  # 0.29 with this seed: nearly six times alpha


@pytest.mark.parametrize("design", ["fixed", "sequential"])
def test_a_a_experiments_read_after_every_batch_keep_alpha(design: str) -> None:
    config = ExperimentConfig(test=design, alpha=0.05, min_detectable_effect=0.1)
    tests = simulate(config, 0.5, 0.5, batches=80, seed=2)  # 2,000 feedback per variant
    if design == "fixed":
        assert all(t.decided is not None for t in tests)  # everyone passed the horizon (~390) and decided once
    assert significant(tests, config.alpha) <= config.alpha + 0.015


@pytest.mark.parametrize("design", ["fixed", "sequential"])
def test_a_real_effect_of_the_configured_size_is_found_with_the_configured_power(design: str) -> None:
    config = ExperimentConfig(test=design, alpha=0.05, min_detectable_effect=0.1, power=0.8, baseline_rate=0.5)
    need = horizon(0.1, 0.05, 0.8, 0.5)
    # the sequential test pays for reading at any time with more data: allowed 3x the fixed horizon
    batches = (need // BATCH + 1) * (1 if design == "fixed" else 3)
    tests = simulate(config, 0.5, 0.6, batches=batches, seed=3)
    assert np.mean([t.summary()["decision"] == PROMOTE for t in tests]) >= config.power - 0.03


def test_summary_states_the_design_and_progress() -> None:
    fixed = ABTest(ExperimentConfig(test="fixed", min_detectable_effect=0.1, baseline_rate=0.5))
    fixed.observe(CHAMPION, 40, 100)
    fixed.observe(CHALLENGER, 60, 100)
    summary = fixed.summary()
    assert summary["design"].startswith("fixed") and summary["decision"] == NOT_ENOUGH
    assert summary["reached"] == {CHAMPION: 100, CHALLENGER: 100} and summary["sample_size_per_variant"] >= 380
    sequential = ABTest(ExperimentConfig(test="sequential", min_samples=50))
    sequential.observe(CHAMPION, 40, 100)
    sequential.observe(CHALLENGER, 45, 100)
    summary = sequential.summary()
    assert summary["design"].startswith("sequential") and 0 < summary["p_value"] <= 1
    assert "no significant difference yet" in summary["reason"]


def test_horizon_matches_the_textbook_sample_size() -> None:
    # two-sided alpha 0.05, power 0.8, 0.5 -> 0.6: 385-388 per group in the usual tables
    assert 380 <= horizon(0.1, 0.05, 0.8, 0.5) <= 392
    assert horizon(0.05, 0.05, 0.8, None) > horizon(0.1, 0.05, 0.8, None)  # smaller effects need more data
    assert horizon(0.1, 0.05, 0.9, 0.5) > horizon(0.1, 0.05, 0.8, 0.5)
