"""Champion / challenger: which model answers a request, per-variant counts, and what the data support.

Modes: `single` (champion only), `ab` (a fixed share of clients, sticky: sha256 of experiment name +
client key), `shadow` (champion answers, challenger predicts on the side), `bandit` (Thompson
sampling on Beta(1 + successes, 1 + failures) posteriors, fed by feedback rewards).
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from mlops_template.core.config import ExperimentConfig

CHAMPION, CHALLENGER = "champion", "challenger"
VARIANTS = (CHAMPION, CHALLENGER)
NOT_ENOUGH, KEEP, PROMOTE = "not enough data", "keep champion", "promote challenger"


@dataclass(slots=True)  # per request: a frozen dataclass takes 4x longer to build
class Route:
    """The variant whose answer the client gets, and the one that predicts in the shadow (if any)."""

    served: str
    shadow: str | None = None


def bucket(experiment: str, client_key: str) -> float:
    """A stable number in [0, 1) per (experiment, client): same on every process, host and restart."""
    digest = hashlib.sha256(f"{experiment}\x00{client_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def two_proportion_test(
    champion: tuple[int, int], challenger: tuple[int, int], alpha: float, min_samples: int
) -> dict[str, Any]:
    """Two-sided pooled z-test on (successes, trials) per variant, and the decision it supports."""
    (s1, n1), (s2, n2) = champion, challenger
    result: dict[str, Any] = {
        "test": "two-proportion z-test (pooled, two-sided)",
        "alpha": alpha,
        "min_samples": min_samples,
        "z": None,
        "p_value": None,
    }
    result["champion_rate"] = s1 / n1 if n1 else None
    result["challenger_rate"] = s2 / n2 if n2 else None
    if min(n1, n2) < min_samples:
        return {
            **result,
            "decision": NOT_ENOUGH,
            "reason": f"needs {min_samples} feedback per variant, has {n1} (champion) and {n2} (challenger)",
        }
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = 0.0 if se == 0 else (s2 / n2 - s1 / n1) / se
    p_value = float(2 * stats.norm.sf(abs(z)))
    result |= {"z": z, "p_value": p_value}
    if p_value < alpha and z > 0:
        return {**result, "decision": PROMOTE, "reason": f"challenger better, p={p_value:.3g} < {alpha}"}
    why = "champion better" if p_value < alpha else "no significant difference"
    return {**result, "decision": KEEP, "reason": f"{why} (p={p_value:.3g}, alpha {alpha})"}


class Experiment:
    """Routes requests between champion and challenger and keeps per-variant counts (thread-safe)."""

    def __init__(self, config: ExperimentConfig, has_challenger: bool) -> None:
        self.config = config
        self.has_challenger = has_challenger
        self._rng = np.random.default_rng(config.seed)
        self._counts = {v: {"requests": 0, "shadow": 0, "feedback": 0, "successes": 0} for v in VARIANTS}
        self._lock = threading.Lock()

    @property
    def mode(self) -> str:
        """The effective mode: without a challenger bundle every mode is `single`."""
        return self.config.mode if self.has_challenger else "single"

    @property
    def sticky(self) -> bool:
        """Whether routing depends on the client (`ab`): only then is the client key worth computing."""
        return self.mode == "ab"

    def reconfigure(self, **changes: Any) -> None:
        """Change mode / share / name at run time (admin route); validated like params.yaml."""
        with self._lock:
            self.config = ExperimentConfig.model_validate({**self.config.model_dump(), **changes})

    def _choose(self, client_key: str) -> Route:
        mode = self.mode
        if mode == "ab":
            take = bucket(self.config.name, client_key) < self.config.challenger_share
            return Route(CHALLENGER if take else CHAMPION)
        if mode == "shadow":
            return Route(CHAMPION, shadow=CHALLENGER)
        if mode == "bandit":
            draws = {
                v: self._rng.beta(1 + c["successes"], 1 + c["feedback"] - c["successes"])
                for v, c in self._counts.items()
            }
            return Route(max(draws, key=draws.get))
        return Route(CHAMPION)

    def route(self, client_key: str) -> Route:
        """The route of one request (client_key: API key id, client IP or a header; sticky in `ab`)."""
        with self._lock:
            route = self._choose(client_key)
            self._counts[route.served]["requests"] += 1
            if route.shadow:
                self._counts[route.shadow]["shadow"] += 1
        return route

    def observe(self, variant: str, success: bool) -> None:
        """A feedback outcome of `variant` (the reward of the bandit, the data of the A/B test)."""
        if variant not in self._counts:
            raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        with self._lock:
            self._counts[variant]["feedback"] += 1
            self._counts[variant]["successes"] += int(success)

    def stats(self) -> dict[str, Any]:
        """Per-variant counts and success rates, and the A/B significance test with its decision."""
        with self._lock:
            counts = {v: dict(c) for v, c in self._counts.items()}
            config = self.config
        for c in counts.values():
            c["success_rate"] = c["successes"] / c["feedback"] if c["feedback"] else None
        test = two_proportion_test(
            (counts[CHAMPION]["successes"], counts[CHAMPION]["feedback"]),
            (counts[CHALLENGER]["successes"], counts[CHALLENGER]["feedback"]),
            config.alpha,
            config.min_samples,
        )
        if self.mode == "bandit":
            test["note"] = "bandit traffic is adaptive: treat the test as indicative, not as a fixed-design A/B test"
        return {
            "mode": self.mode,
            "configured_mode": config.mode,
            "experiment": config.name,
            "challenger_share": config.challenger_share,
            "challenger_loaded": self.has_challenger,
            "variants": counts,
            "comparison": test,
        }
