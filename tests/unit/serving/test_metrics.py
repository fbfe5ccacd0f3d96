"""One source of metric names: what a created app's Prometheus registry exposes is exactly monitoring/metrics.py,
plus prometheus_client's own process and platform collectors (their names are the library's)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from mlops_template.monitoring.metrics import METRICS, NAMES
from mlops_template.monitoring.security import ApiKeys
from mlops_template.serving.app import create_app
from mlops_template.serving.settings import Settings
from tests.serving_helpers import build_bundle


@pytest.fixture(scope="module")
def exercised(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """An app whose every labelled metric has a sample: a challenger (its comparison's p-value), a flagged
    prediction, refused admin and /predict calls, a scrape."""
    bundle = build_bundle(tmp_path_factory.mktemp("metrics"))
    example = json.loads((bundle / "metadata.json").read_text())["example"]
    settings = Settings(model_dir=bundle, predict_api_keys=ApiKeys.parse("p"), challengers=str(bundle))
    client = TestClient(create_app(settings, admin_keys=ApiKeys.from_env({"ADMIN_API_KEYS": "k"})))
    flagged = [example, {**example, "applicant_income": 1e12, "gender": "?"}]
    assert client.post("/predict", json=flagged, headers={"X-API-Key": "p"}).is_success
    assert client.post("/predict", json=example).status_code == 401
    assert client.post("/feedback", json={"request_id": "x", "actual": "Y"}).status_code == 401
    assert client.get("/metrics").is_success
    return client


def test_the_table_declares_each_name_once() -> None:
    assert len(NAMES) == len(METRICS)
    assert all(kind in ("counter", "gauge", "histogram") for _, kind, _, _ in METRICS)


def test_registry_of_a_created_app_matches_the_table_exactly(exercised: TestClient) -> None:
    declared = {name: (kind, help_text, set(labels)) for name, kind, help_text, labels in METRICS}
    exposed, standard = {}, set()
    for family in exercised.app.state.metrics.registry.collect():
        if family.name.startswith(("process_", "python_")):
            standard.add(family.name)
            continue
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = [set(s.labels) - {"le"} for s in family.samples]
        assert labels, f"{name}: no sample to read its labels from (exercise it in the fixture)"
        assert all(found == labels[0] for found in labels), name
        exposed[name] = (family.type, family.documentation, labels[0])
    assert exposed == declared
    # per replica CPU and memory (Kubernetes, compose): the default collectors a private registry leaves out
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds", "python_info"} <= standard
    text = exercised.get("/metrics").text
    assert "process_cpu_seconds_total " in text and "process_resident_memory_bytes " in text
