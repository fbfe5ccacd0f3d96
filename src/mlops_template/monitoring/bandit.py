"""Multi-armed bandit policies for routing traffic between any number of models, fed by feedback rewards.

Each policy picks an arm from the success and trial counts of every arm (trials: feedback received, since a
reward is only known once the ground truth arrives). `monitoring.experiment.bandit` chooses one:
- `thompson`: a draw from each arm's Beta(1 + successes, 1 + failures) posterior, the largest wins;
- `epsilon_greedy`: every arm once, then the best observed rate, except a uniformly random arm with probability
  epsilon / sqrt(1 + trials / arms): a constant rate would keep paying for exploration, so its regret would grow
  linearly;
- `ucb1`: every arm once, then the largest rate + sqrt(2 ln(total trials) / arm trials) (Auer et al., 2002).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Policy = Callable[[np.ndarray, np.ndarray, np.random.Generator, float], int]


def _rates(successes: np.ndarray, trials: np.ndarray) -> np.ndarray:
    return np.divide(successes, trials, out=np.full(len(trials), 0.5), where=trials > 0)


def thompson(successes: np.ndarray, trials: np.ndarray, rng: np.random.Generator, epsilon: float = 0.0) -> int:
    return int(np.argmax(rng.beta(1 + successes, 1 + trials - successes)))


def epsilon_greedy(successes: np.ndarray, trials: np.ndarray, rng: np.random.Generator, epsilon: float) -> int:
    untried = np.flatnonzero(trials == 0)
    if len(untried):  # an arm never tried has no rate to be greedy about
        return int(untried[0])
    if rng.random() < epsilon / np.sqrt(1 + trials.sum() / len(trials)):
        return int(rng.integers(len(trials)))
    rates = _rates(successes, trials)
    return int(rng.choice(np.flatnonzero(rates == rates.max())))  # ties broken at random, not by position


def ucb1(successes: np.ndarray, trials: np.ndarray, rng: np.random.Generator, epsilon: float = 0.0) -> int:
    untried = np.flatnonzero(trials == 0)
    if len(untried):
        return int(untried[0])
    bonus = np.sqrt(2 * np.log(trials.sum()) / trials)
    return int(np.argmax(_rates(successes, trials) + bonus))


POLICIES: dict[str, Policy] = {"thompson": thompson, "epsilon_greedy": epsilon_greedy, "ucb1": ucb1}
