"""Champion / challenger: which model answers a request, per-variant counts, and what the data support.

Modes: `single` (champion only), `ab` (a fixed share of clients, sticky: sha256 of experiment name +
client key), `shadow` (champion answers, challenger predicts on the side), `bandit` (a policy of
monitoring/bandit.py fed by feedback rewards). The A/B decision is monitoring/ab_test.py's: a fixed horizon
from a power analysis or an always-valid sequential test, never a p-value recomputed until it dips.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_template.core.config import ExperimentConfig
from mlops_template.monitoring.ab_test import CHALLENGER, CHAMPION, KEEP, NOT_ENOUGH, PROMOTE, ABTest
from mlops_template.monitoring.bandit import POLICIES

VARIANTS = (CHAMPION, CHALLENGER)
__all__ = ["CHALLENGER", "CHAMPION", "KEEP", "NOT_ENOUGH", "PROMOTE", "VARIANTS", "Experiment", "Route", "bucket"]


@dataclass(slots=True)  # per request: a frozen dataclass takes 4x longer to build
class Route:
    """The variant whose answer the client gets, and the one that predicts in the shadow (if any)."""

    served: str
    shadow: str | None = None


def bucket(experiment: str, client_key: str) -> float:
    """A stable number in [0, 1) per (experiment, client): same on every process, host and restart."""
    digest = hashlib.sha256(f"{experiment}\x00{client_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Experiment:
    """Routes requests between champion and challenger and keeps per-variant counts (thread-safe)."""

    def __init__(self, config: ExperimentConfig, has_challenger: bool) -> None:
        self.config = config
        self.has_challenger = has_challenger
        self._rng = np.random.default_rng(config.seed)
        self._counts = {v: {"requests": 0, "shadow": 0} for v in VARIANTS}
        self._test = ABTest(config)
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
            config = ExperimentConfig.model_validate({**self.config.model_dump(), **changes})
            if (config.name, config.test, config.alpha, config.min_detectable_effect) != (
                self.config.name,
                self.config.test,
                self.config.alpha,
                self.config.min_detectable_effect,
            ):  # a new experiment or design: the old outcomes do not belong to it
                self._test = ABTest(config)
            self.config = config

    def _choose(self, client_key: str) -> Route:
        mode = self.mode
        if mode == "ab":
            take = bucket(self.config.name, client_key) < self.config.challenger_share
            return Route(CHALLENGER if take else CHAMPION)
        if mode == "shadow":
            return Route(CHAMPION, shadow=CHALLENGER)
        if mode == "bandit":
            successes = np.array([self._test.successes[v] for v in VARIANTS])
            trials = np.array([self._test.trials[v] for v in VARIANTS])
            arm = POLICIES[self.config.bandit](successes, trials, self._rng, self.config.epsilon)
            return Route(VARIANTS[arm])
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
            self._test.observe(variant, int(success))

    def _totals(self) -> dict[str, dict[str, int]]:
        """Requests and shadow predictions per variant (call under the lock)."""
        return {v: dict(c) for v, c in self._counts.items()}

    def stats(self) -> dict[str, Any]:
        """Per-variant counts and success rates, and the A/B design, progress and decision."""
        with self._lock:
            counts = self._totals()
            config = self.config
            test = self._test.summary()
            for v, c in counts.items():
                c["feedback"], c["successes"] = self._test.trials[v], self._test.successes[v]
                c["success_rate"] = c["successes"] / c["feedback"] if c["feedback"] else None
        if self.mode == "bandit":
            test["bandit"] = config.bandit
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
