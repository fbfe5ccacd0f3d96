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
    KEEP,
    NOT_ENOUGH,
    PROMOTE,
    Experiment,
    Route,
    ab_arm,
    bucket,
    family,
)


def test_ab_assignment_is_sticky_and_follows_the_split() -> None:
    experiment = Experiment(ExperimentConfig(mode="ab", challenger_share=0.3), challengers=(CHALLENGER,))
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
    shadow = Experiment(ExperimentConfig(mode="shadow"), challengers=(CHALLENGER,))
    route = shadow.route("c")
    assert route.served == CHAMPION and route.shadow == (CHALLENGER,)
    assert shadow.stats()["variants"][CHALLENGER]["shadow"] == 1
    without = Experiment(ExperimentConfig(mode="ab", challenger_share=1.0), challengers=())
    assert without.route("c").served == CHAMPION and without.mode == "single"


def test_bandit_shifts_traffic_to_the_better_variant() -> None:
    experiment = Experiment(ExperimentConfig(mode="bandit", seed=3), challengers=(CHALLENGER,))
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
        experiment = Experiment(ExperimentConfig(mode="bandit", seed=9), challengers=(CHALLENGER,))
        return [experiment.route("k").served for _ in range(50)]

    assert run() == run()


def test_z_test_agrees_with_the_chi_square_test() -> None:
    z, p_value = z_test((700, 1000), (780, 1000))
    chi2 = stats.chi2_contingency([[700, 300], [780, 220]], correction=False)  # z^2 == chi2 without correction
    assert z**2 == pytest.approx(chi2.statistic) and p_value == pytest.approx(chi2.pvalue)


def test_fixed_design_decides_once_at_its_horizon() -> None:
    config = ExperimentConfig(mode="ab", min_detectable_effect=0.1, baseline_rate=0.7)
    experiment = Experiment(config, challengers=(CHALLENGER,))
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
    experiment = Experiment(ExperimentConfig(), challengers=(CHALLENGER,))
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
    assert Experiment(config, challengers=(CHALLENGER,)).sticky
    assert not Experiment(config, challengers=()).sticky  # no challenger: single
    for mode in ("single", "shadow", "bandit"):
        assert not Experiment(ExperimentConfig(mode=mode), challengers=(CHALLENGER,)).sticky


ARMS3 = ("a", "b")  # two challengers beside the champion


def test_ab_over_three_arms_is_sticky_and_splits_the_challenger_share_equally() -> None:
    experiment = Experiment(ExperimentConfig(mode="ab", challenger_share=0.4), challengers=ARMS3)
    first = {f"client-{i}": experiment.route(f"client-{i}").served for i in range(6000)}
    assert first == {key: experiment.route(key).served for key in first}  # sticky across the three arms
    for arm, share in ((CHAMPION, 0.6), ("a", 0.2), ("b", 0.2)):
        seen = sum(v == arm for v in first.values()) / len(first)
        assert abs(seen - share) < 4 * np.sqrt(share * (1 - share) / len(first)), (arm, seen)
    # a new challenger takes clients from the challengers' slice only: champion clients stay champion clients
    more = Experiment(ExperimentConfig(mode="ab", challenger_share=0.4), challengers=(*ARMS3, "c"))
    assert all(more.route(k).served == CHAMPION for k, v in first.items() if v == CHAMPION)
    assert ab_arm(0.0, 0.4, ARMS3) == "a" and ab_arm(0.39999, 0.4, ARMS3) == "b" and ab_arm(0.4, 0.4, ARMS3) == CHAMPION


def test_shadow_scores_every_challenger_and_bandit_finds_the_best_of_three() -> None:
    shadow = Experiment(ExperimentConfig(mode="shadow"), challengers=ARMS3)
    assert shadow.route("c") == Route(CHAMPION, shadow=ARMS3)
    assert [shadow.stats()["variants"][v]["shadow"] for v in (CHAMPION, *ARMS3)] == [0, 1, 1]
    for policy in ("thompson", "epsilon_greedy", "ucb1"):
        experiment = Experiment(ExperimentConfig(mode="bandit", bandit=policy, seed=5), challengers=ARMS3)
        rewards, true_rate = np.random.default_rng(6), {CHAMPION: 0.6, "a": 0.85, "b": 0.5}
        served = []
        for i in range(3000):
            variant = experiment.route(f"r{i}").served
            experiment.observe(variant, bool(rewards.random() < true_rate[variant]))
            served.append(variant)
        assert set(served[:30]) == {CHAMPION, "a", "b"}, policy  # every arm is tried
        assert served[-1000:].count("a") > 800, policy  # and the best one gets the traffic
        counts = experiment.stats()["variants"]
        assert sum(c["feedback"] for c in counts.values()) == 3000 and counts["a"]["requests"] == served.count("a")


def test_each_challenger_is_tested_against_the_champion_at_a_bonferroni_alpha() -> None:
    config = ExperimentConfig(mode="ab", min_detectable_effect=0.1, baseline_rate=0.7)
    single_horizon = Experiment(config, challengers=(CHALLENGER,)).stats()["comparison"]["sample_size_per_variant"]
    experiment = Experiment(config, challengers=ARMS3)
    stats_ = experiment.stats()
    need = stats_["comparison"]["sample_size_per_variant"]
    assert need > single_horizon  # alpha / 2 needs more feedback for the same power
    assert stats_["comparisons"]["a"]["alpha"] == stats_["comparisons"]["b"]["alpha"] == pytest.approx(0.025)
    assert "Bonferroni" in stats_["comparison"]["correction"] and stats_["comparison"]["decision"] == NOT_ENOUGH
    for variant, rate in ((CHAMPION, 0.7), ("a", 0.85), ("b", 0.7)):  # a is better, b is the same as the champion
        for i in range(need):
            experiment.observe(variant, i % 20 < rate * 20)
    stats_ = experiment.stats()
    assert stats_["comparisons"]["a"]["decision"] == PROMOTE and stats_["comparisons"]["b"]["decision"] == KEEP
    assert stats_["comparisons"]["a"]["decided_at"] == {CHAMPION: need, "a": need}
    assert [stats_["variants"][v]["decision"] for v in (CHAMPION, "a", "b")] == [None, PROMOTE, KEEP]
    assert stats_["comparison"]["decision"] == PROMOTE and stats_["comparison"]["winner"] == "a"
    with pytest.raises(ValueError, match="unknown variant 'challenger'"):
        experiment.observe(CHALLENGER, True)
    with pytest.raises(ValueError, match="distinct"):
        Experiment(config, challengers=("a", "a"))


def test_family_decision_waits_for_every_comparison_and_keeps_the_champion_when_none_wins() -> None:
    summary = {"design": "d", "test": "t", "power": 0.8, "sample_size_per_variant": 10, "challenger_rate": 0.5}
    config = ExperimentConfig()
    keep = {"a": {**summary, "decision": KEEP, "reason": "x"}, "b": {**summary, "decision": KEEP, "reason": "y"}}
    assert family(config, keep)["decision"] == KEEP and family(config, keep)["winner"] is None
    waiting = {**keep, "b": {**summary, "decision": NOT_ENOUGH, "reason": "needs 10"}}
    assert family(config, waiting)["decision"] == NOT_ENOUGH and "b: needs 10" in family(config, waiting)["reason"]
    both = {"a": {**summary, "decision": PROMOTE, "reason": "p", "challenger_rate": 0.8},
            "b": {**summary, "decision": PROMOTE, "reason": "q", "challenger_rate": 0.9}}  # fmt: skip
    assert family(config, both)["winner"] == "b"
