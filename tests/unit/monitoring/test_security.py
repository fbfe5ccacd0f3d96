"""Admin API keys and the per-client token-bucket rate limiter."""

from __future__ import annotations

import pytest

from mlops_template.core.config import RateLimitConfig
from mlops_template.monitoring.security import DISABLED, INVALID, MISSING, OK, STATUS, ApiKeys, RateLimiter


def test_api_keys_from_the_environment() -> None:
    keys = ApiKeys.from_env({"ADMIN_API_KEYS": " first-key , second-key ,, "})
    assert keys.check("first-key") == OK and keys.check("second-key") == OK
    assert keys.check(None) == MISSING and keys.check("") == MISSING
    assert keys.check("first-key ") == INVALID and keys.check("guess") == INVALID
    assert [STATUS[x] for x in (OK, MISSING, INVALID, DISABLED)] == [200, 401, 403, 503]
    assert "first-key" not in repr(keys) and "first-key" not in str(keys.digests)


def test_no_configured_key_disables_admin_routes() -> None:
    assert ApiKeys.from_env({}).check("anything") == DISABLED
    assert ApiKeys.from_env({"ADMIN_API_KEYS": " , "}).check("") == DISABLED


def test_key_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((len(a), len(b))) or real(a, b))
    keys = ApiKeys.from_env({"ADMIN_API_KEYS": "a,bb,ccc"})
    assert keys.check("a") == OK
    assert calls == [(32, 32)] * 3  # every key compared, as fixed-length digests, even after a match


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimitConfig(requests_per_second=2, burst=5, max_clients=10), clock=clock)
    assert all(limiter.allow("a").allowed for _ in range(5))
    refused = limiter.allow("a")
    assert not refused.allowed and refused.retry_after == pytest.approx(0.5)
    assert refused.retry_after_header == "1"
    assert limiter.allow("b").allowed  # buckets are per client
    clock.now += 0.5
    assert limiter.allow("a").allowed and not limiter.allow("a").allowed
    clock.now += 100
    assert sum(limiter.allow("a").allowed for _ in range(10)) == 5  # refills up to the burst, not beyond


def test_tracked_clients_are_bounded_with_lru_eviction() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimitConfig(requests_per_second=1, burst=1, max_clients=3), clock=clock)
    for client in ("a", "b", "c"):
        limiter.allow(client)
    limiter.allow("a")  # a is now the most recently seen; b the least
    limiter.allow("d")
    assert len(limiter) == 3 and set(limiter._buckets) == {"a", "c", "d"}
    for i in range(10_000):
        limiter.allow(f"client-{i}")
    assert len(limiter) == 3
