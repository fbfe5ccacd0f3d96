"""Two real service processes sharing their monitoring state through a real redis-server (REDIS_URL).

One run checks, in order: a prediction of one process takes its feedback in the other, /experiment agrees from
both; Redis stopped: /predict still answers 200, admin and shared reads answer 503 and the dropped updates are
counted; Redis back (empty): no 5xx, feedback across processes works again; the rate limit holds across both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from tests.integration.conftest import RedisServer
from tests.integration.serving.test_monitoring import ADMIN, KEY, metric, params_file, records

pytestmark = pytest.mark.integration
BURST, RATE = 40, 0.2


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for `check()` (the other process files its predictions every FLUSH_SECONDS)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def feedback(url: str, request_id: str, actual: str) -> httpx.Response:
    return httpx.post(f"{url}/feedback", json={"request_id": request_id, "actual": actual}, headers=ADMIN)


def test_two_processes_share_feedback_experiment_and_rate_limit(
    served_bundle: Path, live_server, redis_server: RedisServer, redis_url: str, tmp_path: Path
):
    params = params_file(tmp_path, rate_limit={"requests_per_second": RATE, "burst": BURST})
    a, b = (live_server(served_bundle, ADMIN_API_KEYS=KEY, PARAMS_FILE=params, REDIS_URL=redis_url) for _ in "ab")
    rows = records(served_bundle, 3, seed=5)

    # a prediction served by one process takes its feedback in the other
    batch = httpx.post(f"{a.url}/predict", json=rows).json()
    single = [httpx.post(f"{b.url}/predict", json=rows[0]).json() for _ in range(2)]
    first = batch["feedback_key"].format(row=0)
    until(lambda: feedback(b.url, first, batch["predictions"][0]["prediction"]).status_code != 404)
    assert feedback(a.url, first, "Y").status_code == 409  # answered in B, known to A
    answered = feedback(a.url, single[0]["request_id"], single[0]["predictions"][0]["prediction"])
    assert answered.status_code == 200 and answered.json()["success"] == {"champion": True}

    def experiment(url: str) -> dict:
        return httpx.get(f"{url}/experiment").json()

    until(lambda: experiment(a.url)["variants"]["champion"]["requests"] == 3)
    until(lambda: experiment(a.url)["variants"] == experiment(b.url)["variants"])
    assert experiment(b.url)["variants"]["champion"]["feedback"] == 2
    assert experiment(a.url)["live_quality"] == experiment(b.url)["live_quality"]

    # Redis stopped: the answers go on, admin and shared reads say why they cannot
    redis_server.stop()
    try:
        for server in (a, b):
            assert httpx.post(f"{server.url}/predict", json=rows).status_code == 200
            refused = feedback(server.url, single[1]["request_id"], "Y")
            assert refused.status_code == 503 and refused.json()["error"] == "state_unavailable"
            assert "Redis at 127.0.0.1" in refused.json()["message"] and "REDIS_URL" in refused.json()["message"]
            assert httpx.get(f"{server.url}/experiment").status_code == 503
        time.sleep(1)  # a periodic flush of the predictions above meets the outage
        scraped = httpx.get(f"{a.url}/metrics")
        assert scraped.status_code == 200
        assert metric(scraped.text, "model_shared_state_errors_total", 'operation="rate_limit"') >= 1
        assert metric(scraped.text, "model_shared_state_errors_total", 'operation="record"') >= 1
        assert metric(scraped.text, "model_live_accuracy") is None  # absent, not stale, while Redis is away
    finally:
        redis_server.start()  # without persistence: back empty

    # Redis back, empty: no 5xx; what was recorded before is unknown, new predictions work across processes
    until(lambda: httpx.get(f"{a.url}/experiment").status_code == 200)
    until(lambda: httpx.get(f"{b.url}/experiment").status_code == 200)
    assert feedback(b.url, single[1]["request_id"], "Y").status_code == 404
    fresh = httpx.post(f"{b.url}/predict", json=rows[1]).json()
    until(lambda: feedback(a.url, fresh["request_id"], "N").status_code == 200)

    # the rate limit holds across both processes: one bucket of BURST, not BURST per process
    redis.Redis.from_url(redis_url).flushall()
    start, allowed, statuses = time.monotonic(), 0, []
    for i in range(3 * BURST):
        status = httpx.get(f"{(a, b)[i % 2].url}/model").status_code
        statuses.append(status)
        if status == 429:
            break
        assert status == 200
        allowed += 1
    refill = math.ceil((time.monotonic() - start) * RATE)
    assert statuses[-1] == 429 and BURST <= allowed <= BURST + refill
    assert httpx.get(f"{a.url}/model").status_code == httpx.get(f"{b.url}/model").status_code == 429
    for server in (a, b):
        assert "Traceback" not in server.output()
