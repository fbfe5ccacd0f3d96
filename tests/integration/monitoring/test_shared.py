"""monitoring/shared.py against a real redis-server: two instances of each piece act as two processes."""

from __future__ import annotations

import time

import pytest
import redis

from mlops_template.core.config import ExperimentConfig, FeedbackConfig, RateLimitConfig
from mlops_template.monitoring.experiment import CHALLENGER, CHAMPION, NOT_ENOUGH, PROMOTE
from mlops_template.monitoring.feedback import (
    DuplicateFeedback,
    ExpiredRequest,
    StateUnavailable,
    UnknownRequest,
)
from mlops_template.monitoring.shared import (
    LEASE_SECONDS,
    RETRY_SECONDS,
    ROWS_PER_CALL,
    Shared,
    SharedExperiment,
    SharedFeedbackStore,
    SharedRateLimiter,
)
from tests.integration.conftest import RedisServer

CLASSES = ["N", "Y"]


def stores(url: str, **config: float) -> tuple[SharedFeedbackStore, SharedFeedbackStore]:
    settings = FeedbackConfig(**{"min_feedback": 1, **config})
    return (SharedFeedbackStore(Shared(url), "binary", CLASSES, settings),
            SharedFeedbackStore(Shared(url), "binary", CLASSES, settings))  # fmt: skip


def test_the_rate_limit_holds_across_processes(redis_url: str) -> None:
    config = RateLimitConfig(requests_per_second=0.1, burst=6)
    a, b = SharedRateLimiter(Shared(redis_url), config), SharedRateLimiter(Shared(redis_url), config)
    decisions = [(a if i % 2 else b).allow("10.0.0.1") for i in range(10)]
    assert [d.allowed for d in decisions] == [True] * 6 + [False] * 4  # one bucket of 6, not 6 per process
    assert 0 < decisions[-1].retry_after <= 10 and decisions[-1].retry_after_header == "10"
    assert a.allow("10.0.0.2").allowed and b.allow("10.0.0.2").allowed  # per client
    assert a.shared.errors["rate_limit"] == 0 and len(a.local) == 0  # decided in Redis, not locally


def test_a_lease_spares_round_trips_and_never_lets_more_through_than_the_bucket(redis_url: str) -> None:
    now = [0.0]
    config = RateLimitConfig(requests_per_second=0.001, burst=100, shared_lease=0.1)  # leases of 10 tokens
    a, b = (SharedRateLimiter(Shared(redis_url), config, clock=lambda: now[0]) for _ in range(2))
    round_trips = []
    for limiter in (a, b):
        script = limiter._script
        limiter._script = lambda script=script, **call: round_trips.append(1) or script(**call)
    decisions = [(a if i % 2 else b).allow("10.0.0.1").allowed for i in range(100)]
    assert all(decisions) and len(round_trips) == 10  # one Redis call per 10 requests
    assert not a.allow("10.0.0.1").allowed and not b.allow("10.0.0.1").allowed  # the one bucket is empty
    assert a.allow("10.0.0.2").allowed and len(a._held) == 1  # a lease of its own for another client
    round_trips.clear()
    now[0] += LEASE_SECONDS  # an unspent lease expires: the next request gives it back and takes a new one
    assert a.allow("10.0.0.2").allowed and round_trips == [1]
    bucket = redis.Redis.from_url(redis_url).hget("mlops:rate:10.0.0.2", "tokens")
    assert float(bucket) == pytest.approx(100 - 10 + 9 - 10, abs=0.01)  # the 9 unspent tokens went back


def test_a_prediction_recorded_by_one_process_takes_its_feedback_in_another(redis_url: str) -> None:
    a, b = stores(redis_url)
    a.record_groups([(["r1", "r2"], ["Y", "N"], [[0.2, 0.8], [0.9, 0.1]], CHAMPION, True, None)])
    a.record_batch(["r1"], ["N"], [[0.6, 0.4]], CHALLENGER, served=False)  # a shadow prediction of r1
    assert len(b) == 2
    outcome = b.feedback("r1", "Y")
    assert (outcome.served, outcome.success) == (CHAMPION, {CHAMPION: True, CHALLENGER: False})
    with pytest.raises(DuplicateFeedback, match="already received"):
        a.feedback("r1", "Y")
    with pytest.raises(UnknownRequest, match="unknown"):
        a.feedback("never-recorded", "Y")
    assert a.feedback("r2", "Y").success == {CHAMPION: False}
    a.record_batch(["r3"], ["Y"], [[0.4, 0.6]])
    assert b.feedback("r3", "N").success == {CHAMPION: False}
    # the live quality windows are shared: both processes report the same numbers
    assert a.metrics() == b.metrics() == {"feedback": 3, "accuracy": 1 / 3, "roc_auc": 0.5, "mae": None}
    assert a.metrics(CHALLENGER)["accuracy"] == 0.0
    assert b.scopes() == [CHALLENGER, CHAMPION, "served"]


def test_entries_are_bounded_by_capacity_and_ttl(redis_url: str) -> None:
    a, b = stores(redis_url, capacity=3, ttl_seconds=60)
    now = time.time()
    a.record_batch(["old"], ["Y"], [[0.3, 0.7]], created=[now - 61])  # predicted 61 s ago, filed late
    a.record_batch([f"r{i}" for i in range(5)], ["Y"] * 5, [[0.3, 0.7]] * 5)
    assert len(b) == 3
    with pytest.raises(ExpiredRequest, match="expired \\(predictions wait 60 s"):
        b.feedback("old", "Y")
    with pytest.raises(ExpiredRequest, match="evicted \\(at most 3 predictions"):
        b.feedback("r0", "Y")
    assert b.feedback("r4", "N").success == {CHAMPION: False}


def test_experiment_counts_and_the_frozen_decision_are_shared(redis_url: str) -> None:
    config = ExperimentConfig(mode="ab", test="sequential", min_samples=20, min_detectable_effect=0.3)
    a = SharedExperiment(Shared(redis_url), config, challengers=(CHALLENGER,))
    b = SharedExperiment(Shared(redis_url), config, challengers=(CHALLENGER,))
    for i in range(7):
        (a if i % 2 else b).route(f"client-{i}")
    assert b.stats()["comparison"]["decision"] == NOT_ENOUGH
    for i in range(40):  # the challenger always right, the champion one time in four
        (a if i % 2 else b).observe(CHALLENGER, True)
        (b if i % 2 else a).observe(CHAMPION, i % 4 == 0)
    a_stats, b_stats = a.stats(), b.stats()
    assert a_stats["variants"] == b_stats["variants"]
    assert sum(v["requests"] for v in a_stats["variants"].values()) == 7
    assert a_stats["variants"][CHALLENGER]["feedback"] == a_stats["variants"][CHAMPION]["feedback"] == 40
    decided = a_stats["comparison"]
    assert decided["decision"] == PROMOTE and decided == b_stats["comparison"]
    for _ in range(60):  # later outcomes cannot change a decision once made, whichever process sees them
        a.observe(CHALLENGER, False)
        b.observe(CHAMPION, True)
    assert b.stats()["comparison"]["decision"] == PROMOTE
    assert b.stats()["comparison"]["decided_at"] == decided["decided_at"]
    # the bandit draws from the shared counts: a process that never saw feedback knows them after a sync
    c = SharedExperiment(Shared(redis_url), config.model_copy(update={"mode": "bandit"}), challengers=(CHALLENGER,))
    c.sync()
    assert c.trials == {CHAMPION: 100, CHALLENGER: 100}


def test_three_arms_share_their_counts_and_each_challenger_its_own_decision(redis_url: str) -> None:
    config = ExperimentConfig(mode="bandit", test="sequential", min_samples=20, min_detectable_effect=0.3)
    a = SharedExperiment(Shared(redis_url), config, challengers=("x", "y"))
    b = SharedExperiment(Shared(redis_url), config, challengers=("x", "y"))
    for i in range(40):  # x always right, y like the champion: right one time in four
        (a if i % 2 else b).observe("x", True)
        (b if i % 2 else a).observe("y", i % 4 == 0)
        (a if i % 2 else b).observe(CHAMPION, i % 4 == 0)
    a_stats, b_stats = a.stats(), b.stats()
    assert a_stats["variants"] == b_stats["variants"] and a_stats["comparisons"] == b_stats["comparisons"]
    assert [a_stats["variants"][v]["feedback"] for v in (CHAMPION, "x", "y")] == [40, 40, 40]
    assert a_stats["comparisons"]["x"]["decision"] == PROMOTE and a_stats["comparisons"]["y"]["decision"] == NOT_ENOUGH
    assert a_stats["comparisons"]["x"]["alpha"] == pytest.approx(0.025)  # Bonferroni over two challengers
    assert b.trials == {CHAMPION: 40, "x": 40, "y": 40}  # the bandit's counts, over the three arms
    other = SharedExperiment(Shared(redis_url), config, challengers=("x",))  # another set of arms: its own counts
    assert other.stats()["variants"]["x"]["feedback"] == 0


def test_an_experiment_change_reaches_every_process_and_a_new_name_its_own_counts(redis_url: str) -> None:
    config = ExperimentConfig(mode="single")
    a = SharedExperiment(Shared(redis_url), config, challengers=(CHALLENGER,))
    b = SharedExperiment(Shared(redis_url), config, challengers=(CHALLENGER,))
    a.observe(CHAMPION, True)
    a.reconfigure(mode="ab", challenger_share=0.5)
    assert (a.mode, a.config.challenger_share) == ("ab", 0.5)
    b.sync()  # the periodic flush of the other process
    assert (b.mode, b.config.challenger_share, b.config.name) == ("ab", 0.5, "experiment-1")
    assert b.stats()["variants"][CHAMPION]["feedback"] == 1  # same experiment: its outcomes stay
    b.reconfigure(name="experiment-2")  # a new experiment: the other process reads the new one's counts
    stats = a.stats()
    assert (stats["experiment"], stats["mode"], stats["variants"][CHAMPION]["feedback"]) == ("experiment-2", "ab", 0)
    c = SharedExperiment(Shared(redis_url), config, challengers=(CHALLENGER,))  # a process started later
    assert c.stats()["experiment"] == "experiment-2" and c.mode == "ab"
    with pytest.raises(ValueError, match="challenger_share"):  # validated like params.yaml, and nothing stored
        a.reconfigure(challenger_share=2.0)
    assert b.stats()["challenger_share"] == 0.5


def test_redis_down_fails_fast_counts_and_recovers(redis_server: RedisServer, redis_url: str) -> None:
    shared = Shared(redis_url)
    limiter = SharedRateLimiter(shared, RateLimitConfig(requests_per_second=1, burst=2))
    store = SharedFeedbackStore(shared, "binary", CLASSES, FeedbackConfig())
    store.record_batch(["before"], ["Y"], [[0.1, 0.9]])
    redis_server.stop()
    try:
        assert limiter.allow("c").allowed and limiter.allow("c").allowed  # the process's own bucket meanwhile
        assert not limiter.allow("c").allowed
        with pytest.raises(StateUnavailable, match=r"Redis at 127\.0\.0\.1:\d+ \(REDIS_URL\)"):
            store.record_batch(["during"], ["Y"], [[0.1, 0.9]])
        with pytest.raises(StateUnavailable) as refused:
            store.feedback("before", "Y")
        assert refused.value.http_status == 503
        assert shared.errors["rate_limit"] == 3 and shared.errors["record"] == 1 and shared.errors["feedback"] == 1
    finally:
        redis_server.start()  # empty: no persistence
    time.sleep(RETRY_SECONDS)
    with pytest.raises(UnknownRequest):  # recorded before the restart: gone with Redis's data, a 404 not a 5xx
        store.feedback("before", "Y")
    store.record_batch(["after"], ["Y"], [[0.1, 0.9]])  # scripts reloaded after the restart
    assert store.feedback("after", "Y").success == {CHAMPION: True}
    assert limiter.allow("c").allowed


def test_a_flush_goes_in_short_script_calls_and_a_mass_expiry_in_slices(redis_url: str) -> None:
    a, b = stores(redis_url, capacity=10_000, ttl_seconds=60)
    calls = lambda: redis.Redis.from_url(redis_url).info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)  # noqa: E731
    before = calls()
    now = time.time()
    ids = [f"r{i}" for i in range(4_500)]
    a.record_batch(ids, ["Y"] * len(ids), [[0.3, 0.7]] * len(ids), created=[now] * len(ids))
    assert calls() - before == -(-len(ids) // ROWS_PER_CALL)  # Redis is never held by one long script
    assert len(b) == len(ids)
    a.clock = lambda: now + 61  # one call finds all 4,500 past their TTL: more ids than Lua's unpack takes at once
    a.record_batch(["new"], ["Y"], [[0.3, 0.7]])
    assert len(b) == 1
    with pytest.raises(ExpiredRequest, match="expired"):
        b.feedback("r0", "Y")
    with pytest.raises(ExpiredRequest, match="expired"):
        b.feedback("r4499", "Y")
    assert b.feedback("new", "Y").success == {CHAMPION: True}
