"""Regression tests for bad input that once answered 500 or a needless 422 (issue 16)."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlops_template.monitoring.security import ApiKeys
from mlops_template.serving.app import create_app
from mlops_template.serving.settings import Settings
from tests.serving_helpers import build_bundle

KEY = "bad-input-admin-key"
ROUTES = ["/predict", "/feedback", "/experiment"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bad-input"))


@pytest.fixture(scope="module")
def client(bundle: Path) -> TestClient:
    app = create_app(Settings(model_dir=bundle, rate_limit=False), admin_keys=ApiKeys.from_env({"ADMIN_API_KEYS": KEY}))
    return TestClient(app, raise_server_exceptions=False)


def refusal(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "details", "request_id"}
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("depth", [1025, 100_000])  # just past orjson's limit; the 200 kB body
def test_nesting_too_deep_is_a_400_naming_the_depth(client: TestClient, route: str, depth: int):
    body = b"[" * depth + b"]" * depth
    response = client.post(route, content=body, headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    if route != "/predict" and depth == 100_000:  # admin bodies are capped at 16 kB before parsing
        assert refusal(response, 413)["error"] == "body_too_large"
        return
    refused = refusal(response, 400)
    assert refused["error"] == "invalid_json"
    assert "nested deeper than 1024 levels" in refused["message"]


@pytest.mark.parametrize("route", ROUTES)
def test_nesting_too_deep_with_nan_is_a_400(client: TestClient, route: str):
    # within orjson's limit but with NaN, which only the stdlib reader (smaller depth limit) reads
    body = b'{"a":' * 1000 + b"NaN" + b"}" * 1000
    response = client.post(route, content=body, headers={"X-API-Key": KEY})
    assert refusal(response, 400)["error"] == "invalid_json"


def test_nesting_within_the_limit_is_validated_as_records(client: TestClient):
    body = b"[" * 1024 + b"]" * 1024
    assert refusal(client.post("/predict", content=body), 422)["error"] == "invalid_records"


def test_categorical_number_is_its_training_label(client: TestClient, bundle: Path):
    """`{"dependents": 0}` was a 422 although training reads 0 and "0" as the same class."""
    example = json.loads((bundle / "metadata.json").read_text())["example"]
    assert isinstance(example["dependents"], str)
    as_text = {**example, "dependents": "0"}
    as_number = {**example, "dependents": 0}
    response = client.post("/predict", json=[as_text, as_number, {**example, "dependents": 1.0}])
    assert response.status_code == 200, response.text
    text, number, one = response.json()["predictions"]
    assert number == text
    assert number["unknown_categories"] == one["unknown_categories"] == []


def test_utf16_body_is_refused_like_any_non_utf8_body(client: TestClient, bundle: Path):
    example = json.loads((bundle / "metadata.json").read_text())["example"]
    body = json.dumps(example).encode("utf-16")  # the stdlib reader guessed UTF-16: a 200 before
    assert refusal(client.post("/predict", content=body), 400)["error"] == "invalid_json"
