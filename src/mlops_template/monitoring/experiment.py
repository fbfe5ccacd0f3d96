"""Champion / challengers: which model answers a request, per-variant counts, and what the data support.

Arms: the champion and any number of challengers (named by the service: serving/app.py). Modes: `single`
(champion only), `ab` (a fixed share of clients goes to the challengers, split equally between them, sticky:
sha256 of experiment name + client key), `shadow` (champion answers, every challenger predicts on the side),
`bandit` (a policy of monitoring/bandit.py over all arms, fed by feedback rewards). The A/B decision is
monitoring/ab_test.py's: each challenger against the champion, Bonferroni-corrected when there are several, under
a fixed horizon from a power analysis or an always-valid sequential test, never a p-value recomputed until it dips.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_template.core.config import ExperimentConfig
from mlops_template.monitoring.ab_test import CHALLENGER, CHAMPION, KEEP, NOT_ENOUGH, PROMOTE, ABTest
from mlops_template.monitoring.bandit import POLICIES

VARIANTS = (CHAMPION, CHALLENGER)  # the arms of one unnamed challenger (CHALLENGER_MODEL_DIR=<one folder>)
__all__ = ["CHALLENGER", "CHAMPION", "KEEP", "NOT_ENOUGH", "PROMOTE", "VARIANTS", "Experiment", "Route", "ab_arm",
           "bucket", "family"]  # fmt: skip


@dataclass(slots=True)  # per request: a frozen dataclass takes 4x longer to build
class Route:
    """The variant whose answer the client gets, and those that predict in the shadow (if any)."""

    served: str
    shadow: tuple[str, ...] = ()


def bucket(experiment: str, client_key: str) -> float:
    """A stable number in [0, 1) per (experiment, client): same on every process, host and restart."""
    digest = hashlib.sha256(f"{experiment}\x00{client_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def ab_arm(position: float, share: float, challengers: Sequence[str]) -> str:
    """The arm of a client at `position` in [0, 1): [0, share) split equally between the challengers, the rest
    the champion (adding a challenger moves only clients that were on challengers)."""
    if position >= share or not challengers:
        return CHAMPION
    return challengers[min(int(position / share * len(challengers)), len(challengers) - 1)]


def family(config: ExperimentConfig, summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The decision over several challengers' tests (their summaries): the best of those that beat the champion."""
    m = len(summaries)
    first = next(iter(summaries.values()))
    promoted = [n for n, s in summaries.items() if s["decision"] == PROMOTE]
    if promoted:
        winner = max(promoted, key=lambda n: summaries[n]["challenger_rate"] or 0.0)
        decision, reason = PROMOTE, f"{winner} beats the champion ({summaries[winner]['reason']})"
    elif all(s["decision"] == KEEP for s in summaries.values()):
        winner, decision, reason = None, KEEP, f"no challenger beats the champion ({m} comparisons)"
    else:
        waiting = [n for n, s in summaries.items() if s["decision"] == NOT_ENOUGH]
        winner, decision = None, NOT_ENOUGH
        reason = f"{len(waiting)} of {m} comparisons undecided: " + "; ".join(
            f"{n}: {summaries[n]['reason']}" for n in waiting
        )
    return {
        "design": first["design"],
        "test": first["test"],
        "correction": f"Bonferroni: each of the {m} challengers against the champion at alpha {config.alpha:g} / {m}"
        f" = {config.alpha / m:.3g} (family-wise false-positive rate <= {config.alpha:g})",
        "alpha": config.alpha,
        "min_detectable_effect": config.min_detectable_effect,
        "power": first["power"],
        "sample_size_per_variant": first["sample_size_per_variant"],
        "min_samples": config.min_samples,
        "p_value": None,  # one per challenger: `comparisons`
        "decision": decision,
        "winner": winner,
        "reason": reason,
    }


class Experiment:
    """Routes requests between the champion and its challengers and keeps per-variant counts (thread-safe)."""

    def __init__(self, config: ExperimentConfig, challengers: Sequence[str] = ()) -> None:
        if len(set(challengers)) != len(challengers) or CHAMPION in challengers:
            raise ValueError(f"challenger names must be distinct and not {CHAMPION!r}: {list(challengers)}")
        self.config = config
        self.challengers = tuple(challengers)
        self.arms = (CHAMPION, *self.challengers)
        self._rng = np.random.default_rng(config.seed)
        self._counts = {v: {"requests": 0, "shadow": 0} for v in self.arms}
        self._new_tests(config)
        self._lock = threading.Lock()

    def _new_tests(self, config: ExperimentConfig) -> None:
        """Fresh outcome counts and one A/B test per challenger (all reading the same champion counts)."""
        self.trials, self.successes = dict.fromkeys(self.arms, 0), dict.fromkeys(self.arms, 0)
        m = max(len(self.challengers), 1)
        self._tests = {c: ABTest(config, c, m, self.trials, self.successes) for c in self.challengers}

    @property
    def has_challenger(self) -> bool:
        return bool(self.challengers)

    @property
    def mode(self) -> str:
        """The effective mode: without a challenger bundle every mode is `single`."""
        return self.config.mode if self.challengers else "single"

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
                self._new_tests(config)
            self.config = config

    def _choose(self, client_key: str) -> Route:
        mode = self.mode
        if mode == "ab":
            return Route(ab_arm(bucket(self.config.name, client_key), self.config.challenger_share, self.challengers))
        if mode == "shadow":
            return Route(CHAMPION, shadow=self.challengers)
        if mode == "bandit":
            successes = np.array([self.successes[v] for v in self.arms])
            trials = np.array([self.trials[v] for v in self.arms])
            arm = POLICIES[self.config.bandit](successes, trials, self._rng, self.config.epsilon)
            return Route(self.arms[arm])
        return Route(CHAMPION)

    def route(self, client_key: str) -> Route:
        """The route of one request (client_key: API key id, client IP or a header; sticky in `ab`)."""
        with self._lock:
            route = self._choose(client_key)
            self._counts[route.served]["requests"] += 1
            for shadow in route.shadow:
                self._counts[shadow]["shadow"] += 1
        return route

    def _check(self, variant: str) -> None:
        if variant not in self._counts:
            raise ValueError(f"unknown variant {variant!r}; expected one of {self.arms}")

    def _affected(self, variant: str) -> list[ABTest]:
        """The tests an outcome of `variant` feeds: all of them for the champion, its own for a challenger."""
        return list(self._tests.values()) if variant == CHAMPION else [self._tests[variant]]

    def observe(self, variant: str, success: bool) -> None:
        """A feedback outcome of `variant` (the reward of the bandit, the data of its A/B test)."""
        self._check(variant)
        with self._lock:
            self.trials[variant] += 1
            self.successes[variant] += int(success)
            for test in self._affected(variant):
                if test.decided is None:
                    test.update()

    def _totals(self) -> dict[str, dict[str, int]]:
        """Requests and shadow predictions per variant (call under the lock)."""
        return {v: dict(c) for v, c in self._counts.items()}

    def _comparison(self, config: ExperimentConfig) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The decision (one challenger: its test's; several: the family's) and each challenger's test (locked)."""
        comparisons = {c: test.summary() for c, test in self._tests.items()}
        if len(comparisons) > 1:
            return family(config, comparisons), comparisons
        if comparisons:
            return dict(next(iter(comparisons.values()))), comparisons
        return {**ABTest(config).summary(), "reason": "no challenger loaded (CHALLENGER_MODEL_DIR)"}, comparisons

    def stats(self) -> dict[str, Any]:
        """Per-variant counts, success rates and decisions, and the A/B design, progress and decision."""
        with self._lock:
            counts = self._totals()
            config = self.config
            test, comparisons = self._comparison(config)
            for v, c in counts.items():
                c["feedback"], c["successes"] = self.trials[v], self.successes[v]
                c["success_rate"] = c["successes"] / c["feedback"] if c["feedback"] else None
                c["decision"] = comparisons[v]["decision"] if v in comparisons else None
        if self.mode == "bandit":
            test["bandit"] = config.bandit
            test["note"] = "bandit traffic is adaptive: treat the test as indicative, not as a fixed-design A/B test"
        return {
            "mode": self.mode,
            "configured_mode": config.mode,
            "experiment": config.name,
            "challenger_share": config.challenger_share,
            "challenger_loaded": self.has_challenger,
            "challengers": list(self.challengers),
            "variants": counts,
            "comparison": test,
            "comparisons": comparisons,
        }
