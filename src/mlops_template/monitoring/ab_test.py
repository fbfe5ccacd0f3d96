"""A/B decisions that stay valid however often `/experiment` is read.

Recomputing a fixed-sample p-value after every feedback and acting on the first p < alpha ("peeking")
inflates false positives far beyond alpha. Two sound designs, chosen by `monitoring.experiment.test`:

- `fixed`: a horizon from a power analysis (minimum detectable effect, alpha, power, baseline rate) gives the
  feedback count per variant; nothing is decided before both variants reach it, and the decision uses the
  first `horizon` outcomes of each variant only, so reading it again later cannot change it.
- `sequential`: the mixture sequential probability ratio test (mSPRT; Johari, Pekelis, Walsh, "Always valid
  inference: continuous monitoring of A/B tests", 2017) on the difference of success rates with a normal
  mixing distribution of scale `min_detectable_effect`; its always-valid p-value may be read at any time and
  the test stops at the first p < alpha.

With several challengers each one is compared with the champion, at alpha / (number of challengers) (the
Bonferroni correction: the chance that any of the comparisons declares a difference that is not there stays
within alpha, whatever their dependence, and it holds for always-valid p-values read at any time too); the fixed
horizon is computed at that alpha, so every comparison keeps the configured power.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import stats

from mlops_template.core.config import ExperimentConfig

NOT_ENOUGH, KEEP, PROMOTE = "not enough data", "keep champion", "promote challenger"
CHAMPION, CHALLENGER = "champion", "challenger"


def horizon(effect: float, alpha: float, power: float, baseline: float | None) -> int:
    """Feedback per variant a two-sided two-proportion z-test needs to detect `effect` with `power`.

    `baseline` is the champion's expected success rate; None takes 0.5, the rate that needs the most data.
    """
    p1 = 0.5 if baseline is None else baseline
    p2 = min(max(p1 + effect, 1e-6), 1 - 1e-6) if baseline is not None else 0.5 + effect / 2
    p1 = p1 if baseline is not None else 0.5 - effect / 2
    mean = (p1 + p2) / 2
    z_alpha, z_power = stats.norm.isf(alpha / 2), stats.norm.isf(1 - power)
    n = (z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_power * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2
    return math.ceil(n / effect**2)


def z_test(champion: tuple[int, int], challenger: tuple[int, int]) -> tuple[float, float]:
    """Pooled two-sided two-proportion z statistic and p-value on (successes, trials) per variant."""
    (s1, n1), (s2, n2) = champion, challenger
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = 0.0 if se == 0 else (s2 / n2 - s1 / n1) / se
    return z, float(2 * stats.norm.sf(abs(z)))


def msprt_ratio(champion: tuple[int, int], challenger: tuple[int, int], scale: float) -> float:
    """The mixture likelihood ratio of "the rates differ" against "they are equal" (normal approximation)."""
    (s1, n1), (s2, n2) = champion, challenger
    pooled = (s1 + s2) / (n1 + n2)
    variance = max(pooled * (1 - pooled), 1e-9) * (1 / n1 + 1 / n2)  # of the difference, under no difference
    difference, tau2 = s2 / n2 - s1 / n1, scale**2
    return math.sqrt(variance / (variance + tau2)) * math.exp(tau2 * difference**2 / (2 * variance * (variance + tau2)))


class ABTest:
    """One challenger against the champion: their feedback outcomes and the decision they support.

    `comparisons`: how many challengers are compared with the champion (Bonferroni: each at alpha / comparisons).
    `trials` / `successes`: per variant counts shared with the caller (an Experiment of several challengers keeps
    one champion count for all its tests); by default the test's own.
    """

    def __init__(self, config: ExperimentConfig, challenger: str = CHALLENGER, comparisons: int = 1,
                 trials: dict[str, int] | None = None, successes: dict[str, int] | None = None) -> None:  # fmt: skip
        self.config, self.challenger, self.comparisons = config, challenger, comparisons
        self.alpha = config.alpha / comparisons
        self.horizon = max(
            horizon(config.min_detectable_effect, self.alpha, config.power, config.baseline_rate), config.min_samples
        )
        self.trials = {CHAMPION: 0, challenger: 0} if trials is None else trials
        self.successes = {CHAMPION: 0, challenger: 0} if successes is None else successes
        self.p_value = 1.0  # sequential: the always-valid p-value, a running minimum
        self.decided: dict[str, Any] | None = None  # frozen once made: later reads cannot change it

    def observe(self, variant: str, successes: int, trials: int = 1) -> None:
        self.trials[variant] += trials
        self.successes[variant] += successes
        if self.decided is None:
            self.update()

    def _pairs(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return tuple((self.successes[v], self.trials[v]) for v in (CHAMPION, self.challenger))  # type: ignore[return-value]

    def update(self) -> None:
        """Decide if the outcomes so far support it (sequential: also the running p-value)."""
        champion, challenger = self._pairs()
        if min(champion[1], challenger[1]) < self.config.min_samples:
            return
        difference = challenger[0] / challenger[1] - champion[0] / champion[1]
        if self.config.test == "sequential":
            ratio = msprt_ratio(champion, challenger, self.config.min_detectable_effect)
            self.p_value = min(self.p_value, 1 / ratio if ratio > 0 else 1.0)
            if self.p_value < self.alpha:
                self.decided = self._decision(difference, self.p_value, None)
        elif min(champion[1], challenger[1]) >= self.horizon:
            z, p_value = z_test(champion, challenger)
            self.p_value = p_value
            self.decided = self._decision(difference, p_value, z)

    def _decision(self, difference: float, p_value: float, z: float | None) -> dict[str, Any]:
        champion, challenger = self._pairs()
        significant = p_value < self.alpha
        decision = PROMOTE if significant and difference > 0 else KEEP
        why = ("challenger better" if difference > 0 else "champion better") if significant else "no difference"
        return {
            "decision": decision,
            "reason": f"{why} (p={p_value:.3g}, alpha {self._alpha_text()}) at {champion[1]} / {challenger[1]} "
            "feedback",
            "p_value": p_value,
            "z": z,
            "decided_at": {CHAMPION: champion[1], self.challenger: challenger[1]},
        }

    def _alpha_text(self) -> str:
        if self.comparisons == 1:
            return f"{self.alpha:g}"
        return f"{self.alpha:.3g} = {self.config.alpha:g} / {self.comparisons} challengers, Bonferroni"

    def summary(self) -> dict[str, Any]:
        """The design, how far it got, and the decision (or why there is none yet)."""
        config = self.config
        champion, challenger = self._pairs()
        result: dict[str, Any] = {
            "design": "fixed horizon (power analysis)"
            if config.test == "fixed"
            else "sequential (mSPRT, always valid)",
            "test": "two-proportion z-test (pooled, two-sided)" if config.test == "fixed" else "mSPRT",
            "challenger": self.challenger,
            "alpha": self.alpha,  # per comparison: the configured alpha / comparisons (Bonferroni)
            "min_detectable_effect": config.min_detectable_effect,
            "power": config.power if config.test == "fixed" else None,
            "sample_size_per_variant": self.horizon if config.test == "fixed" else None,
            "min_samples": config.min_samples,
            "reached": {CHAMPION: champion[1], self.challenger: challenger[1]},
            "champion_rate": champion[0] / champion[1] if champion[1] else None,
            "challenger_rate": challenger[0] / challenger[1] if challenger[1] else None,
            "z": None,
            "p_value": self.p_value if config.test == "sequential" and min(champion[1], challenger[1]) else None,
        }
        if self.decided is not None:
            return result | self.decided
        if config.test == "fixed":
            need = f"needs {self.horizon} feedback per variant (power analysis), has {champion[1]} and {challenger[1]}"
        elif min(champion[1], challenger[1]) < config.min_samples:
            need = f"needs {config.min_samples} feedback per variant first, has {champion[1]} and {challenger[1]}"
        else:
            need = f"no significant difference yet (always-valid p={self.p_value:.3g}, alpha {self._alpha_text()})"
        return result | {"decision": NOT_ENOUGH, "reason": need}
