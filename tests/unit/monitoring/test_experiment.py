"""Champion/challenger routing: sticky A/B, shadow, Thompson-sampling bandit, and the significance test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlops_template.core.config import ExperimentConfig
from mlops_template.monitoring.ab_test import z_test
from mlops_template.monitoring.experiment import (
    CHALLENGER,
    CHAMPION,
    NOT_ENOUGH,
    PROMOTE,
    Experiment,
    bucket,
)


def test_ab_assignment_is_sticky_and_follows_the_split() -> None:
    experiment = Experiment(ExperimentConfig(mode="ab", challenger_share=0.3), has_challenger=True)
    first = {f"client-{i}": experiment.route(f"client-{i}").served for i in range(5000)}
    again = {key: experiment.route(key).served for key in first}
    assert first == again
    share = sum(v == CHALLENGER for v in first.values()) / len(first)
    assert abs(share - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 5000)  # within 4 standard errors
    # stable across processes: a fixed hash, not Python's randomised hash()
    assert bucket("experiment-1", "client-1") == bucket("experiment-1", "client-1")
    assert bucket("experiment-1", "client-1") != bucket("experiment-2", "client-1")
    assert 0.0 <= bucket("x", "") < 1.0


def test_ab_hash_is_uniform() -> None:
    values = [bucket("exp", str(i)) for i in range(4000)]
    assert stats.kstest(values, "uniform").pvalue > 0.001


def test_single_and_shadow_answer_with_the_champion() -> None:
    shadow = Experiment(ExperimentConfig(mode="shadow"), has_challenger=True)
    route = shadow.route("c")
    assert route.served == CHAMPION and route.shadow == CHALLENGER
    assert shadow.stats()["variants"][CHALLENGER]["shadow"] == 1
    without = Experiment(ExperimentConfig(mode="ab", challenger_share=1.0), has_challenger=False)
    assert without.route("c").served == CHAMPION and without.mode == "single"


def test_bandit_shifts_traffic_to_the_better_variant() -> None:
    experiment = Experiment(ExperimentConfig(mode="bandit", seed=3), has_challenger=True)
    rewards = np.random.default_rng(4)
    true_rate = {CHAMPION: 0.70, CHALLENGER: 0.80}
    served = []
    for i in range(3000):
        variant = experiment.route(f"r{i}").served
        experiment.observe(variant, bool(rewards.random() < true_rate[variant]))
        served.append(variant)
    early = np.mean([v == CHALLENGER for v in served[:300]])
    late = np.mean([v == CHALLENGER for v in served[-1000:]])
    assert late > 0.8 and late > early
    stats_ = experiment.stats()
    assert stats_["variants"][CHALLENGER]["requests"] > stats_["variants"][CHAMPION]["requests"]
    assert "adaptive" in stats_["comparison"]["note"]


def test_bandit_is_reproducible_with_its_seed() -> None:
    def run() -> list[str]:
        experiment = Experiment(ExperimentConfig(mode="bandit", seed=9), has_challenger=True)
        return [experiment.route("k").served for _ in range(50)]

    assert run() == run()


def test_z_test_agrees_with_the_chi_square_test() -> None:
    z, p_value = z_test((700, 1000), (780, 1000))
    chi2 = stats.chi2_contingency([[700, 300], [780, 220]], correction=False)  # z^2 == chi2 without correction
    assert z**2 == pytest.approx(chi2.statistic) and p_value == pytest.approx(chi2.pvalue)


def test_fixed_design_decides_once_at_its_horizon() -> None:
    config = ExperimentConfig(mode="ab", min_detectable_effect=0.1, baseline_rate=0.7)
    experiment = Experiment(config, has_challenger=True)
    need = experiment.stats()["comparison"]["sample_size_per_variant"]
    for variant, rate in ((CHAMPION, 0.7), (CHALLENGER, 0.8)):
        for i in range(need - 1):
            experiment.observe(variant, i % 10 < rate * 10)
    comparison = experiment.stats()["comparison"]
    assert comparison["decision"] == NOT_ENOUGH and f"needs {need} feedback" in comparison["reason"]
    experiment.observe(CHAMPION, True)
    experiment.observe(CHALLENGER, True)
    decided = experiment.stats()["comparison"]
    assert decided["decision"] == PROMOTE and decided["decided_at"] == {CHAMPION: need, CHALLENGER: need}
    for _ in range(500):  # later outcomes (all failures for the challenger) cannot change a decision made
        experiment.observe(CHALLENGER, False)
    assert experiment.stats()["comparison"]["decision"] == PROMOTE
    assert experiment.stats()["variants"][CHALLENGER]["feedback"] == need + 500


def test_observe_and_reconfigure_validate_their_input() -> None:
    experiment = Experiment(ExperimentConfig(), has_challenger=True)
    with pytest.raises(ValueError, match="unknown variant"):
        experiment.observe("nobody", True)
    experiment.reconfigure(mode="ab", challenger_share=1.0)
    assert experiment.route("x").served == CHALLENGER
    with pytest.raises(ValueError, match="challenger_share"):
        experiment.reconfigure(challenger_share=2.0)
    experiment.observe(CHALLENGER, True)
    assert experiment.stats()["variants"][CHALLENGER]["success_rate"] == 1.0


def test_only_ab_routing_depends_on_the_client():
    config = ExperimentConfig(mode="ab", challenger_share=0.5)
    assert Experiment(config, has_challenger=True).sticky
    assert not Experiment(config, has_challenger=False).sticky  # no challenger: single
    for mode in ("single", "shadow", "bandit"):
        assert not Experiment(ExperimentConfig(mode=mode), has_challenger=True).sticky
