"""Two real service processes behind a real nginx (round robin), sharing their monitoring state through a real
redis-server (REDIS_URL).

One run checks, in order: an experiment change posted to one process is taken up by the other; through nginx a
prediction served by one process takes its feedback in the other, every challenger of the two predicts in the
shadow, and the A/B decision and /experiment counts of the three arms are the same from both; Redis stopped:
/predict still answers 200, admin and shared reads answer 503 and the dropped updates are counted; Redis back
(empty): no 5xx, feedback across processes works again; through nginx the rate limit holds across both.
Another test: SIGTERM files the queued state into Redis before the process exits.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from mlops_template.core.config import RateLimitConfig
from tests.conftest import free_port, require_tool
from tests.integration.conftest import LiveServer, RedisServer
from tests.integration.serving.test_monitoring import ADMIN, KEY, metric, params_file, records
from tests.integration.test_nginx import local_config, nginx_command, wait_port

pytestmark = pytest.mark.integration
BURST, RATE = 30, 3.0  # below nginx's own per-client limit (burst 40, 20 r/s): the service's 429 comes first
# shadow mode: every feedback is an outcome of the three arms; a fixed-horizon test this coarse decides after 5
# (each challenger against the champion at alpha / 2, Bonferroni)
EXPERIMENT = {"min_samples": 2, "min_detectable_effect": 0.9}
HORIZON = 5
CHALLENGERS = ("x", "y")


@dataclass
class Replicas:
    a: LiveServer
    b: LiveServer
    proxy: str  # nginx, round robin over a and b; X-Upstream names the one that answered

    def upstream(self, response: httpx.Response) -> str:
        names = {f"127.0.0.1:{s.port}": name for name, s in (("a", self.a), ("b", self.b))}
        return names[response.headers["X-Upstream"]]


@pytest.fixture
def replicas(served_bundle: Path, live_server, redis_url: str, tmp_path: Path) -> Iterator[Replicas]:
    """Two processes (the bundle as champion and as two challengers) sharing Redis, behind nginx's shipped config."""
    binary = require_tool("nginx", "Debian package nginx")
    params = params_file(tmp_path, rate_limit={"requests_per_second": RATE, "burst": BURST}, experiment=EXPERIMENT)
    a, b = (live_server(served_bundle, ADMIN_API_KEYS=KEY, PARAMS_FILE=params, REDIS_URL=redis_url,
                        CHALLENGER_MODEL_DIR=",".join(f"{c}={served_bundle}" for c in CHALLENGERS))
            for _ in "ab")  # fmt: skip
    listen, proxy_dir = free_port(), tmp_path / "nginx"
    proxy_dir.mkdir()
    config = local_config(proxy_dir, a.port, listen)
    text = config.read_text().replace("worker_processes auto;", "worker_processes 1;")  # one round-robin counter
    both = f"server 127.0.0.1:{a.port};\n        server 127.0.0.1:{b.port};"
    text = text.replace(f"server 127.0.0.1:{a.port};", both)
    text = text.replace(
        "proxy_pass http://model_service;",
        "proxy_pass http://model_service;\n            add_header X-Upstream $upstream_addr always;",
    )
    config.write_text(text)
    proxy = subprocess.Popen(nginx_command(binary, config, proxy_dir))
    try:
        wait_port(listen)
        yield Replicas(a, b, f"http://127.0.0.1:{listen}")
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for `check()` (the other process files its predictions every FLUSH_SECONDS)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def feedback(url: str, request_id: str, actual: str) -> httpx.Response:
    return httpx.post(f"{url}/feedback", json={"request_id": request_id, "actual": actual}, headers=ADMIN)


def test_two_processes_behind_nginx_share_feedback_experiment_and_rate_limit(
    replicas: Replicas, served_bundle: Path, redis_server: RedisServer, redis_url: str
):
    a, b, proxy = replicas.a, replicas.b, replicas.proxy
    store = redis.Redis.from_url(redis_url)
    rows = records(served_bundle, 3, seed=5)

    def experiment(url: str) -> dict:
        return httpx.get(f"{url}/experiment").json()

    # an experiment change posted to one process is the change of both (stored in Redis)
    changed = httpx.post(f"{a.url}/experiment", json={"mode": "shadow"}, headers=ADMIN)
    assert changed.status_code == 200 and changed.json()["mode"] == "shadow"
    assert experiment(b.url)["mode"] == "shadow"  # a GET syncs first: no wait for the periodic flush

    # through nginx: each prediction is answered by one process and its feedback by the other
    for i in range(HORIZON):
        predicted = httpx.post(f"{proxy}/predict", json=rows[i % len(rows)])
        answer = predicted.json()
        key = f"mlops:fb:{answer['request_id']}"
        until(lambda key=key: store.exists(key))  # filed by its process's flush
        label = answer["predictions"][0]["prediction"]
        answered = httpx.post(f"{proxy}/feedback", json={"request_id": answer["request_id"], "actual": label},
                              headers=ADMIN)  # fmt: skip
        assert {replicas.upstream(predicted), replicas.upstream(answered)} == {"a", "b"}, i
        assert answered.status_code == 200, answered.text
        assert answered.json()["success"] == {"champion": True, "x": True, "y": True}  # shadow: every challenger

    # the same counts and the same A/B decision from both (two GETs through nginx: one from each process)
    until(lambda: experiment(a.url)["variants"] == experiment(b.url)["variants"])
    seen = [httpx.get(f"{proxy}/experiment") for _ in range(2)]
    assert {replicas.upstream(r) for r in seen} == {"a", "b"}
    first, second = (r.json() for r in seen)
    assert first["variants"] == second["variants"] and first["comparison"] == second["comparison"]
    assert first["variants"]["champion"]["requests"] == HORIZON
    for arm in CHALLENGERS:
        assert first["variants"][arm]["shadow"] == first["variants"][arm]["feedback"] == HORIZON
        assert first["comparisons"][arm]["decision"] == "keep champion"
    assert first["comparison"]["decision"] == "keep champion" and first["live_quality"] == second["live_quality"]

    # a batch served by one process: a row's feedback in the other, then the first knows it was answered
    batch = httpx.post(f"{a.url}/predict", json=rows).json()
    single = [httpx.post(f"{b.url}/predict", json=rows[0]).json() for _ in range(2)]
    first_row = batch["feedback_key"].format(row=0)
    until(lambda: feedback(b.url, first_row, batch["predictions"][0]["prediction"]).status_code != 404)
    assert feedback(a.url, first_row, "Y").status_code == 409  # answered in B, known to A

    # Redis stopped: the answers go on, admin and shared reads say why they cannot
    redis_server.stop()
    try:
        for server in (a, b):
            assert httpx.post(f"{server.url}/predict", json=rows).status_code == 200
            refused = feedback(server.url, single[1]["request_id"], "Y")
            assert refused.status_code == 503 and refused.json()["error"] == "state_unavailable"
            assert "Redis at 127.0.0.1" in refused.json()["message"] and "REDIS_URL" in refused.json()["message"]
            assert httpx.get(f"{server.url}/experiment").status_code == 503
        change = httpx.post(f"{a.url}/experiment", json={"mode": "single"}, headers=ADMIN)
        assert change.status_code == 503 and change.json()["error"] == "state_unavailable"
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
    assert experiment(b.url)["mode"] == "shadow"  # the refused change did not happen
    assert feedback(b.url, single[1]["request_id"], "Y").status_code == 404
    fresh = httpx.post(f"{b.url}/predict", json=rows[1]).json()
    until(lambda: feedback(a.url, fresh["request_id"], "N").status_code == 200)

    # through nginx the rate limit holds across both processes: one bucket of BURST, not BURST per process
    store.flushall()
    start, allowed, served = time.monotonic(), 0, set()
    for _ in range(3 * BURST):
        response = httpx.get(f"{proxy}/model")
        served.add(replicas.upstream(response))
        if response.status_code == 429:
            break
        assert response.status_code == 200
        allowed += 1
    refill = math.ceil((time.monotonic() - start) * RATE)
    assert response.status_code == 429 and response.json()["error"] == "rate_limited"  # the service's, not nginx's
    # each process may still hold a lease taken before the flush (rate_limit.shared_lease: its share of BURST)
    leases = 2 * math.ceil(RateLimitConfig().shared_lease * BURST)
    assert served == {"a", "b"} and BURST <= allowed <= BURST + refill + leases < 2 * BURST
    assert float(response.headers["Retry-After"]) >= 1
    for server in (a, b):
        assert "Traceback" not in server.output()


def test_sigterm_files_the_queued_state_into_redis(served_bundle: Path, live_server, redis_url: str, tmp_path: Path):
    """Graceful shutdown: what is still queued (no periodic flush within the test) reaches Redis before exit."""
    params = params_file(tmp_path, feedback={"flush_seconds": 3600})
    server = live_server(served_bundle, PARAMS_FILE=params, REDIS_URL=redis_url, RATE_LIMIT="off")
    answer = httpx.post(f"{server.url}/predict", json=records(served_bundle, 2, seed=9)).json()
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    key = f"mlops:fb:{answer['feedback_key'].format(row=1)}"
    assert not store.exists(key)  # still queued in the process
    assert server.stop() in (0, -15)
    assert store.exists(key) and store.hget(key, "s") == "champion"
    counts = next(store.hgetall(k) for k in store.scan_iter("mlops:exp:*"))
    assert counts["requests:champion"] == "1"
    assert "Application shutdown complete" in server.output()
