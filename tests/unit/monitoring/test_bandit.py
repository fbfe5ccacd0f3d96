"""Bandit policies: on a fixed two-arm problem each one's regret grows sub-linearly; any number of arms works."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_template.monitoring.bandit import POLICIES

RATES = np.array([0.5, 0.6])  # champion, challenger: the challenger is better by 0.1
STEPS = 8000


def regret(policy: str, rates: np.ndarray, seed: int) -> np.ndarray:
    """Cumulative expected regret after each step (the best rate minus the chosen arm's)."""
    rng = np.random.default_rng(seed)
    successes, trials = np.zeros(len(rates), int), np.zeros(len(rates), int)
    lost = np.empty(STEPS)
    for step in range(STEPS):
        arm = POLICIES[policy](successes, trials, rng, 0.1)
        trials[arm] += 1
        successes[arm] += rng.random() < rates[arm]
        lost[step] = rates.max() - rates[arm]
    return lost.cumsum()


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_regret_grows_sub_linearly(policy: str) -> None:
    curves = np.mean([regret(policy, RATES, seed) for seed in range(4)], axis=0)
    quarter, whole = curves[STEPS // 4 - 1], curves[-1]
    # linear growth (a policy that never learns) would give 4x from a quarter of the run to all of it
    assert whole < 2.5 * quarter, (quarter, whole)
    assert whole < 0.1 * STEPS * 0.25  # and far below always playing the worse arm a quarter of the time


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_any_number_of_arms(policy: str) -> None:
    rates = np.array([0.3, 0.5, 0.7, 0.4])
    rng = np.random.default_rng(0)
    successes, trials = np.zeros(4, int), np.zeros(4, int)
    for _ in range(3000):
        arm = POLICIES[policy](successes, trials, rng, 0.1)
        trials[arm] += 1
        successes[arm] += rng.random() < rates[arm]
    assert int(np.argmax(trials)) == 2  # the best arm gets the most traffic
