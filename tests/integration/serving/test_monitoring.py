"""Monitoring wired into the real service (uvicorn on loopback): feedback, keys, rate limit, A/B, shadow,
bandit, live drift, and a real Prometheus firing the drift alert from the service's own /metrics."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlops_template.pipeline.sample import make_chunk
from tests.conftest import require_tool, write_params
from tests.monitoring_support import prometheus_with_shipped_rules, wait_for

pytestmark = pytest.mark.integration
KEY = "s3cret-admin-key-for-tests"
ADMIN = {"X-API-Key": KEY}


def records(bundle: Path, rows: int, seed: int, drift: float = 0.0) -> list[dict]:
    """Rows of the sample generator as /predict records (the bundle's features, null for missing)."""
    features = [f["name"] for f in json.loads((bundle / "metadata.json").read_text())["features"]]
    frame = make_chunk(0, rows, seed, drift)[features].astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


def params_file(directory: Path, **monitoring: dict) -> str:
    """params.yaml with `monitoring` subsections replaced (unlisted keys take their defaults)."""
    return str(write_params(directory, monitoring=monitoring))


def metric(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample in the Prometheus text format (None when absent)."""
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


@pytest.fixture(scope="module")
def challenger_bundle(served_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second VALIDATED bundle (a copy: routing is what these tests check, not which model is better)."""
    return Path(shutil.copytree(served_bundle, tmp_path_factory.mktemp("challenger") / "model"))


def test_feedback_flow_keys_and_live_accuracy(served_bundle: Path, live_server, tmp_path: Path):
    params = params_file(tmp_path, feedback={"min_feedback": 20, "window_size": 100})
    server = live_server(served_bundle, ADMIN_API_KEYS=f"other-key,{KEY}", PARAMS_FILE=params, RATE_LIMIT="off")
    answer = httpx.post(f"{server.url}/predict", json=records(served_bundle, 40, seed=11)).json()
    key = answer["feedback_key"]
    assert key == answer["request_id"] + ":{row}" and answer["variant"] == "champion"
    predicted = [p["prediction"] for p in answer["predictions"]]
    classes = sorted(answer["predictions"][0]["probabilities"])
    body = {"request_id": key.format(row=0), "actual": predicted[0]}

    assert httpx.post(f"{server.url}/feedback", json=body).status_code == 401
    assert httpx.post(f"{server.url}/feedback", json=body, headers={"X-API-Key": "wrong"}).status_code == 403
    unknown = httpx.post(f"{server.url}/feedback", json={**body, "request_id": "nope"}, headers=ADMIN)
    assert unknown.status_code == 404 and "unknown" in unknown.json()["message"]
    bad = httpx.post(f"{server.url}/feedback", json={**body, "actual": "maybe"}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "actual"
    assert "'N'" in bad.json()["message"] and "'Y'" in bad.json()["message"]  # the classes are named
    metrics = httpx.get(f"{server.url}/metrics").text
    assert np.isnan(metric(metrics, "model_live_accuracy")) and metric(metrics, "model_live_accuracy_min") == 0.68

    right = 0
    for row, label in enumerate(predicted):  # the truth agrees with the model on 3 rows out of 4
        actual = label if row % 4 else next(c for c in classes if c != label)
        right += actual == label
        response = httpx.post(f"{server.url}/feedback", json={"request_id": key.format(row=row), "actual": actual},
                              headers=ADMIN)  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.json()["success"] == {"champion": actual == label}
    again = httpx.post(f"{server.url}/feedback", json=body, headers=ADMIN)
    assert again.status_code == 409 and "already" in again.json()["message"]

    metrics = httpx.get(f"{server.url}/metrics").text
    assert metric(metrics, "model_live_accuracy") == pytest.approx(right / len(predicted))
    assert metric(metrics, "model_live_feedback") == len(predicted)
    assert metric(metrics, "http_admin_auth_failures_total", 'status="401"') == 1
    assert metric(metrics, "http_admin_auth_failures_total", 'status="403"') == 1
    single = httpx.post(f"{server.url}/predict", json=records(served_bundle, 1, seed=12)[0]).json()
    assert single["feedback_key"] == single["request_id"]
    server.stop()
    assert KEY not in server.output() and "other-key" not in server.output()  # secrets never logged


def test_rate_limit_answers_429_with_retry_after(served_bundle: Path, live_server, tmp_path: Path):
    params = params_file(tmp_path, rate_limit={"requests_per_second": 0.5, "burst": 5})
    server = live_server(served_bundle, PARAMS_FILE=params)
    statuses = [httpx.get(f"{server.url}/model") for _ in range(8)]
    assert [r.status_code for r in statuses[:5]] == [200] * 5
    limited = statuses[-1]
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    assert httpx.get(f"{server.url}/health").status_code == 200  # probes and scrapes are never throttled
    assert metric(httpx.get(f"{server.url}/metrics").text, "http_rate_limited_total") == 3


def test_ab_assignment_is_sticky_and_shadow_records_the_challenger(
    served_bundle: Path, challenger_bundle: Path, live_server, tmp_path: Path
):
    params = params_file(tmp_path, experiment={"mode": "single", "challenger_share": 0.5})
    server = live_server(served_bundle, CHALLENGER_MODEL_DIR=str(challenger_bundle), EXPERIMENT_MODE="ab",
                         ADMIN_API_KEYS=KEY, PARAMS_FILE=params, RATE_LIMIT="off")  # fmt: skip
    record = records(served_bundle, 1, seed=13)[0]
    seen: dict[str, set[str]] = {}
    for client in range(16):
        for _ in range(3):
            answer = httpx.post(f"{server.url}/predict", json=record, headers={"X-Client-ID": f"client-{client}"})
            seen.setdefault(f"client-{client}", set()).add(answer.json()["variant"])
    assert all(len(variants) == 1 for variants in seen.values()), seen  # sticky
    assert set().union(*seen.values()) == {"champion", "challenger"}  # and both are used
    stats = httpx.get(f"{server.url}/experiment").json()
    assert (
        stats["mode"] == "ab"
        and stats["variants"]["champion"]["requests"] + stats["variants"]["challenger"]["requests"] == 48
    )

    assert httpx.post(f"{server.url}/experiment", json={"mode": "shadow"}).status_code == 401
    changed = httpx.post(f"{server.url}/experiment", json={"mode": "shadow"}, headers=ADMIN)
    assert changed.status_code == 200 and changed.json()["mode"] == "shadow"
    assert httpx.post(f"{server.url}/experiment", json={"mode": "coin"}, headers=ADMIN).status_code == 422
    answer = httpx.post(f"{server.url}/predict", json=record).json()
    assert answer["variant"] == "champion"
    deadline = time.monotonic() + 10  # the shadow prediction runs after the answer is sent
    while httpx.get(f"{server.url}/experiment").json()["variants"]["challenger"]["shadow"] < 1:
        assert time.monotonic() < deadline, "the challenger never predicted in the shadow"
        time.sleep(0.05)
    outcome = httpx.post(f"{server.url}/feedback", json={"request_id": answer["feedback_key"],
                         "actual": answer["predictions"][0]["prediction"]}, headers=ADMIN)  # fmt: skip
    assert outcome.json() == {"request_id": answer["request_id"], "served": "champion",
                              "success": {"champion": True, "challenger": True}}  # fmt: skip
    metrics = httpx.get(f"{server.url}/metrics").text
    assert metric(metrics, "model_experiment_feedback_total", 'variant="challenger"') == 1
    assert re.search(r'^model_info\{[^}]*variant="challenger",verdict="VALIDATED"[^}]*\} 1\.0$', metrics, re.M)


def test_bandit_shifts_traffic_to_the_better_variant(
    served_bundle: Path, challenger_bundle: Path, live_server, tmp_path: Path
):
    server = live_server(served_bundle, CHALLENGER_MODEL_DIR=str(challenger_bundle), EXPERIMENT_MODE="bandit",
                         ADMIN_API_KEYS=KEY, PARAMS_FILE=params_file(tmp_path), RATE_LIMIT="off")  # fmt: skip
    record = records(served_bundle, 1, seed=14)[0]
    rewards = np.random.default_rng(5).random(400)
    success_rate = {"champion": 0.3, "challenger": 0.8}  # the simulated truth: the challenger is better
    served = []
    with httpx.Client(base_url=server.url) as client:
        for reward in rewards:
            answer = client.post("/predict", json=record).json()
            variant, label = answer["variant"], answer["predictions"][0]["prediction"]
            served.append(variant)
            right = reward < success_rate[variant]
            classes = answer["predictions"][0]["probabilities"]
            actual = label if right else next(c for c in classes if c != label)
            assert client.post("/feedback", json={"request_id": answer["feedback_key"], "actual": actual},
                               headers=ADMIN).status_code == 200  # fmt: skip
    early = served[:50].count("challenger") / 50
    late = served[-150:].count("challenger") / 150
    assert late > 0.8 and late > early, (early, late)
    stats = httpx.get(f"{server.url}/experiment").json()
    assert stats["variants"]["challenger"]["success_rate"] > stats["variants"]["champion"]["success_rate"]
    assert "note" in stats["comparison"]  # adaptive traffic: the test is indicative only


def drift_params(tmp_path: Path, **drift: float) -> str:
    return params_file(tmp_path, drift={"min_rows": 200, "window_size": 1000, "refresh_seconds": 0, **drift})


def post_rows(url: str, rows: list[dict], batch: int = 100) -> None:
    with httpx.Client(base_url=url) as client:
        for start in range(0, len(rows), batch):
            assert client.post("/predict", json=rows[start : start + batch]).status_code == 200


def test_live_drift_on_drifted_rows_and_not_on_fresh_ones(served_bundle: Path, live_server, tmp_path: Path):
    server = live_server(served_bundle, PARAMS_FILE=drift_params(tmp_path), RATE_LIMIT="off")
    report = httpx.get(f"{server.url}/monitoring/drift").json()
    assert report["status"] == "not enough data" and report["rows"] == 0
    post_rows(server.url, records(served_bundle, 1000, seed=31))  # same distribution as training
    report = httpx.get(f"{server.url}/monitoring/drift").json()
    assert report["rows"] == 1000 and report["status"] == "no drift", [
        (f["name"], f["reason"]) for f in report["features"] if f["drifted"]
    ]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert metric(metrics, "model_drift_detected", 'feature="loan_amount"') == 0
    assert metric(metrics, "model_drift_window_rows") == 1000

    post_rows(server.url, records(served_bundle, 1500, seed=32, drift=0.5))  # fills the window (1000 rows)
    report = httpx.get(f"{server.url}/monitoring/drift").json()
    drifted = {f["name"] for f in report["features"] if f["drifted"]}
    assert report["status"] == "drift" and "loan_amount" in drifted and report["rows_seen"] == 2500
    assert report["rows"] == 1000  # bounded: the window keeps its last window_size rows
    metrics = httpx.get(f"{server.url}/metrics").text
    assert metric(metrics, "model_drift_detected", 'feature="loan_amount"') == 1
    assert metric(metrics, "model_feature_drift_psi", 'feature="loan_amount"') >= 0.2
    assert metric(metrics, "model_drift_detected", 'feature="married"') == 0  # the generator does not shift it


def test_prometheus_fires_feature_drift_from_the_real_service(served_bundle: Path, live_server, tmp_path: Path):
    """The issue's key test: real service, real Prometheus, the shipped alert rules, drifted traffic."""
    prometheus = require_tool("prometheus", "Debian package prometheus")
    server = live_server(served_bundle, PARAMS_FILE=drift_params(tmp_path, refresh_seconds=1), RATE_LIMIT="off")
    post_rows(server.url, records(served_bundle, 600, seed=41, drift=0.5))

    with prometheus_with_shipped_rules(prometheus, f"127.0.0.1:{server.port}", tmp_path) as alerts:
        firing = wait_for(alerts, lambda f: "loan_amount" in f.get("FeatureDrift", set()), timeout=45)
    log_tail = (tmp_path / "prometheus.log").read_text()[-2000:]
    assert "loan_amount" in firing.get("FeatureDrift", set()), (firing, log_tail)
    assert "married" not in firing["FeatureDrift"]
    assert not {"ServiceDown", "HighErrorRate", "LiveAccuracyLow"} & set(firing), firing
