"""Every access setting on, on the real server (`python -m mlops_template serve`) with its rate limit in a real
redis-server: PREDICT_API_KEYS with a limit per key held in Redis, OUTPUT_PRECISION, PROTECT_METADATA; and the
clients that must still work with keys on (the smoke test, the UI's client), given their keys by environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from mlops_template.monitoring.security import fingerprint
from mlops_template.ui.client import ApiProblem, Client
from tests.conftest import ROOT
from tests.integration.serving.test_monitoring import params_file, records

pytestmark = pytest.mark.integration
PREDICT_KEY, OTHER_KEY, ADMIN_KEY = "predict-key-for-tests-1", "predict-key-for-tests-2", "admin-key-for-tests"
BURST = 12


def smoke(url: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m mlops_template smoke-test` as CD runs it, with only `env`'s keys."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PREDICT_API_KEY", "ADMIN_API_KEY")}
    return subprocess.run([sys.executable, "-m", "mlops_template", "smoke-test", "--url", url, "--wait", "10"],
                          cwd=ROOT, env=clean | env, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_keys_precision_and_metadata_on_the_real_server_with_redis(
    served_bundle: Path, live_server, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    params = params_file(tmp_path, rate_limit={"requests_per_second": 0.01, "burst": BURST})
    server = live_server(served_bundle, PARAMS_FILE=params, REDIS_URL=redis_url, ADMIN_API_KEYS=ADMIN_KEY,
                         PREDICT_API_KEYS=f"{PREDICT_KEY},{OTHER_KEY}", OUTPUT_PRECISION="2",
                         PROTECT_METADATA="true")  # fmt: skip
    url, rows = server.url, records(served_bundle, 2, seed=3)

    # keyless and wrong-key callers are refused; the documented key works and its answer is rounded
    assert httpx.post(f"{url}/predict", json=rows[0]).status_code == 401
    assert httpx.post(f"{url}/predict", json=rows[0], headers={"X-API-Key": "nope"}).status_code == 403
    answer = httpx.post(f"{url}/predict", json=rows, headers={"X-API-Key": PREDICT_KEY})
    assert answer.status_code == 200, answer.text
    for prediction in answer.json()["predictions"]:
        assert all(round(p, 2) == p for p in prediction["probabilities"].values())
    assert httpx.get(f"{url}/model").status_code == 401
    assert httpx.get(f"{url}/experiment", headers={"X-API-Key": PREDICT_KEY}).status_code == 403

    # the limit is per key and lives in Redis, under the key's fingerprint (never the key itself)
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    buckets = set(store.scan_iter("mlops:rate:*"))
    assert f"mlops:rate:key:{fingerprint(PREDICT_KEY)}" in buckets and "mlops:rate:127.0.0.1" in buckets
    assert not any(PREDICT_KEY in name or ADMIN_KEY in name for name in buckets)
    statuses = [httpx.post(f"{url}/predict", json=rows[0], headers={"X-API-Key": PREDICT_KEY}).status_code
                for _ in range(BURST)]  # fmt: skip
    assert statuses == [200] * (BURST - 1) + [429]  # one token went to the batch above
    assert httpx.post(f"{url}/predict", json=rows[0], headers={"X-API-Key": OTHER_KEY}).status_code == 200
    store.delete(f"mlops:rate:key:{fingerprint(PREDICT_KEY)}")  # emptied in Redis = refilled for the service
    assert httpx.post(f"{url}/predict", json=rows[0], headers={"X-API-Key": PREDICT_KEY}).status_code == 200

    # the smoke test (CD) reads /model and posts /predict: without keys it fails naming the 401, with them it passes
    refused = smoke(url)
    assert refused.returncode == 2 and "/model: HTTP 401" in refused.stderr
    passed = smoke(url, ADMIN_API_KEY=ADMIN_KEY, PREDICT_API_KEY=OTHER_KEY)
    assert passed.returncode == 0, passed.stderr

    # the UI's client: every page's call works with the admin key alone, and a missing key reads as a sentence
    monkeypatch.delenv("PREDICT_API_KEY", raising=False)
    monkeypatch.delenv("ADMIN_API_KEY", raising=False)
    with pytest.raises(ApiProblem, match=r"refused the API key \(401\).*PREDICT_API_KEY"):
        Client(url).model()
    monkeypatch.setenv("ADMIN_API_KEY", ADMIN_KEY)
    ui = Client(url)
    assert ui.model()["model_version"] == answer.json()["model_version"]
    assert ui.predict(rows)["predictions"][0]["probabilities"] == answer.json()["predictions"][0]["probabilities"]
    assert "variants" in ui.experiment() and isinstance(ui.drift(), dict)

    scraped = httpx.get(f"{url}/metrics").text  # open: Prometheus scrapes without a key
    assert 'http_predict_auth_failures_total{status="401"}' in scraped
    log = server.output()
    assert all(secret not in log for secret in (PREDICT_KEY, OTHER_KEY, ADMIN_KEY))  # never logged
    assert '"predict_keys":2,' in log and '"protect_metadata":true' in log and "Traceback" not in log
