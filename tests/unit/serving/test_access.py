"""Access settings on the app in-process (TestClient): PREDICT_API_KEYS with a per-key rate limit, OUTPUT_PRECISION,
PROTECT_METADATA, and what /openapi.json says about them. The real server with Redis: tests/integration/serving."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mlops_template.core.client_keys import key_headers
from mlops_template.core.errors import UserError
from mlops_template.monitoring.security import ApiKeys
from mlops_template.serving.app import create_app
from mlops_template.serving.predict import PredictionEvent
from mlops_template.serving.settings import Settings
from tests.conftest import write_params
from tests.serving_helpers import build_bundle

ALICE, BOB, CAROL, ADMIN = "alice-predict-key", "bob-predict-key", "carol-predict-key", "the-admin-key"
BURST = 3


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("access"))


@pytest.fixture(scope="module")
def example(bundle: Path) -> dict:
    return json.loads((bundle / "metadata.json").read_text())["example"]


@pytest.fixture(scope="module")
def events() -> list[PredictionEvent]:
    return []


@pytest.fixture(scope="module")
def app(bundle: Path, events: list, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """Every access setting on, a rate limit of BURST requests (no refill to speak of)."""
    params = write_params(tmp_path_factory.mktemp("params"),
                          monitoring={"rate_limit": {"requests_per_second": 0.001, "burst": BURST}})  # fmt: skip
    settings = Settings(model_dir=bundle, params_file=params, rate_limit=True, output_precision=2,
                        protect_metadata=True, predict_api_keys=ApiKeys.parse(f"{ALICE},{BOB},{CAROL}"))  # fmt: skip
    return create_app(settings, observers=[events.append], admin_keys=ApiKeys.parse(ADMIN))


def caller(app: FastAPI, address: str) -> TestClient:
    """A client from its own address (its own rate-limit bucket): the tests do not share one."""
    return TestClient(app, raise_server_exceptions=False, client=(address, 50000))


def key(value: str) -> dict[str, str]:
    return {"X-API-Key": value}


def failures(client: TestClient, status: str) -> float:
    value = client.app.state.metrics.registry.get_sample_value("http_predict_auth_failures_total", {"status": status})
    return value or 0.0


def test_predict_keys_refuse_strangers_and_limit_each_key_on_its_own(app: FastAPI, example: dict):
    """One address, three callers: each key has its own bucket; refused guesses spend the address's bucket."""
    guarded = caller(app, "10.0.0.1")
    missing = guarded.post("/predict", json=example)
    assert (missing.status_code, missing.json()["error"]) == (401, "unauthorized")
    assert "X-API-Key" in missing.json()["message"] and missing.json()["request_id"] == missing.headers["x-request-id"]
    wrong = guarded.post("/predict", json=example, headers=key("guess"))
    assert (wrong.status_code, wrong.json()["error"]) == (403, "forbidden")
    alice = [guarded.post("/predict", json=example, headers=key(ALICE)).status_code for _ in range(BURST + 1)]
    assert alice == [200] * BURST + [429]  # Alice's bucket is empty...
    assert guarded.post("/predict", json=example, headers=key(BOB)).status_code == 200  # ...Bob's is not
    assert guarded.post("/predict", json=example, headers=key(ADMIN)).status_code == 200  # an admin key opens it
    # the address's bucket took the two refusals: one more guess, then guessing is throttled like any flood
    assert guarded.post("/predict", json=example, headers=key("guess 2")).status_code == 403
    throttled = guarded.post("/predict", json=example, headers=key("guess 3"))
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert (failures(guarded, "401"), failures(guarded, "403")) == (1, 2)  # the throttled one was not checked


def test_predict_keys_hold_under_a_root_path(bundle: Path, example: dict):
    """Behind a proxy prefix (uvicorn --root-path) the router still finds /predict: so must the key check."""
    settings = Settings(model_dir=bundle, predict_api_keys=ApiKeys.parse(ALICE))
    client = TestClient(create_app(settings, admin_keys=ApiKeys(())), root_path="/api")
    assert client.post("/api/predict", json=example).status_code == 401
    assert client.post("/api/predict", json=example, headers=key(ALICE)).status_code == 200


def test_output_precision_rounds_single_and_batch_answers_only(app: FastAPI, example: dict, events: list):
    """The answer's probabilities are rounded (one and many records, same path); monitoring keeps them exact."""
    guarded = caller(app, "10.0.0.2")
    other = {**example, "applicant_income": example["applicant_income"] * 3 + 1}
    for body in (example, [example, other]):
        answer = guarded.post("/predict", json=body, headers=key(CAROL))
        assert answer.status_code == 200, answer.text
        exact = events[-1].predictions.probabilities
        returned = np.array([list(p["probabilities"].values()) for p in answer.json()["predictions"]])
        assert np.array_equal(returned, exact.round(2))
        assert not np.array_equal(exact, exact.round(2))  # the observers (drift, feedback) got full precision
        assert [p["prediction"] for p in answer.json()["predictions"]] == list(events[-1].predictions.labels)


def test_protect_metadata_puts_model_experiment_and_drift_behind_the_admin_key(app: FastAPI):
    for i, path in enumerate(("/model", "/experiment", "/monitoring/drift")):
        guarded = caller(app, f"10.0.1.{i}")
        assert guarded.get(path).status_code == 401, path
        assert guarded.get(path, headers=key(ALICE)).status_code == 403, path  # a predict key is not an admin key
        assert guarded.get(path, headers=key(ADMIN)).status_code == 200, path
    assert all(guarded.get(path).status_code == 200 for path in ("/health", "/ready", "/metrics"))  # probes, scrape


def test_protect_metadata_without_admin_keys_is_refused_at_start(bundle: Path):
    with pytest.raises(UserError, match=r"PROTECT_METADATA=true .* set ADMIN_API_KEYS"):
        create_app(Settings(model_dir=bundle, protect_metadata=True), admin_keys=ApiKeys(()))


def test_openapi_declares_the_keys_only_where_they_apply(app: FastAPI, bundle: Path):
    document = caller(app, "10.0.0.3").get("/openapi.json").json()
    assert set(document["components"]["securitySchemes"]) == {"PredictKey", "AdminKey"}
    assert document["components"]["securitySchemes"]["PredictKey"]["name"] == "X-API-Key"
    predict = document["paths"]["/predict"]["post"]
    assert predict["security"] == [{"PredictKey": []}] and {"401", "403", "429"} <= set(predict["responses"])
    for path in ("/model", "/experiment", "/monitoring/drift"):
        assert document["paths"][path]["get"]["security"] == [{"AdminKey": []}], path
    open_document = TestClient(create_app(Settings(model_dir=bundle), admin_keys=ApiKeys(()))).get("/openapi.json")
    paths = open_document.json()["paths"]
    assert "security" not in paths["/predict"]["post"] and "401" not in paths["/predict"]["post"]["responses"]
    assert "security" not in paths["/model"]["get"] and "security" not in paths["/experiment"]["get"]
    assert paths["/feedback"]["post"]["security"] == [{"AdminKey": []}]  # admin routes always say so


def test_client_key_headers_pick_the_key_for_the_route():
    both = {"PREDICT_API_KEY": " p ", "ADMIN_API_KEY": "a"}
    assert key_headers("/predict", both) == {"X-API-Key": "p"}
    assert key_headers("https://host/api/predict", both) == {"X-API-Key": "p"}
    assert key_headers("/model", both) == key_headers("/feedback", both) == {"X-API-Key": "a"}
    assert key_headers("/predict", {"ADMIN_API_KEY": "a", "PREDICT_API_KEY": ""}) == {"X-API-Key": "a"}
    assert key_headers("/predict", {}) == key_headers("/model", {"PREDICT_API_KEY": "p"}) == {}
