"""The app in-process (TestClient): endpoints, every bad input as a 4xx JSON error, metrics, observers."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlops_template.core.bundle import read_metadata
from mlops_template.core.errors import UserError
from mlops_template.serving.app import create_app
from mlops_template.serving.predict import PredictionEvent
from mlops_template.serving.settings import Settings
from tests.serving_helpers import REGRESSION, build_bundle

COMMIT = "5e1ec7ed" * 5  # the image's GIT_COMMIT
COMMITTED_AT = "2026-05-29T20:26:40+00:00"  # the image's MODEL_COMMITTED_AT


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def events() -> list[PredictionEvent]:
    return []


@pytest.fixture(scope="module")
def client(bundle: Path, events: list) -> TestClient:
    settings = Settings(model_dir=bundle, max_batch_rows=50, max_body_bytes=20_000, git_commit=COMMIT,
                        model_committed_at=COMMITTED_AT)  # fmt: skip
    app = create_app(settings, observers=[events.append])
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def example(bundle: Path) -> dict:
    return json.loads((bundle / "metadata.json").read_text())["example"]


def error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_predict_one_record(client: TestClient, example: dict, events: list):
    response = client.post("/predict", json=example)
    assert response.status_code == 200, response.text
    body = response.json()
    (row,) = body["predictions"]
    assert row["prediction"] in row["probabilities"]
    assert sum(row["probabilities"].values()) == pytest.approx(1.0)
    assert row["out_of_range"] == []
    assert row["unknown_categories"] == []
    assert body["runtime"] == "onnx"
    assert body["variant"] == "champion"
    assert body["request_id"] == response.headers["x-request-id"]
    assert events[-1].request_id == body["request_id"]
    assert len(events[-1].predictions.labels) == 1


def test_predict_batch_with_flags(client: TestClient, example: dict):
    odd = {**example, "applicant_income": 1e9, "property_area": "Mars"}
    response = client.post("/predict", json=[example, odd, example])
    rows = response.json()["predictions"]
    assert [r["out_of_range"] for r in rows] == [[], ["applicant_income"], []]
    assert [r["unknown_categories"] for r in rows] == [[], ["property_area"], []]


def test_incoming_request_id_is_kept(client: TestClient, example: dict):
    response = client.post("/predict", json=example, headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["request_id"] == "abc-123"
    unsafe = client.get("/health", headers={"X-Request-ID": "bad id\nwith newline"})
    assert unsafe.headers["x-request-id"] != "bad id\nwith newline"


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b'{"applicant_income": ', 400, "invalid_json", None),
        (b"", 400, "invalid_json", None),
        (b"42", 422, "invalid_body", None),
        (b"[]", 422, "invalid_body", None),
        (b"[1]", 422, "invalid_records", None),
    ],
)
def test_malformed_bodies(client: TestClient, body: bytes, status: int, code: str, field):
    assert error(client.post("/predict", content=body), status)["error"] == code


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"applicant_income": "5000"}, "applicant_income"),
        ({"applicant_income": None}, "applicant_income"),
        ({"applicant_income": True}, "applicant_income"),
        ({"gender": [1]}, "gender"),  # a number would be its label "1" (the label rule), a list is nothing
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_records_name_field_and_row(client: TestClient, example: dict, change: dict, field: str):
    body = error(client.post("/predict", json=[example, {**example, **change}]), 422)
    assert body["error"] == "invalid_records"
    assert {"row": 1, "field": field} == {k: body["details"][0][k] for k in ("row", "field")}


def test_nan_and_infinity_name_the_field(client: TestClient, example: dict):
    for token in ("NaN", "Infinity", "-Infinity"):
        text = json.dumps([example, {**example, "applicant_income": 1.5}]).replace("1.5", token)
        body = error(client.post("/predict", content=text), 422)
        assert (body["details"][0]["row"], body["details"][0]["field"]) == (1, "applicant_income")
        assert "NaN and Infinity are not allowed" in body["details"][0]["message"]


def test_missing_field(client: TestClient, example: dict):
    record = {k: v for k, v in example.items() if k != "education"}
    body = error(client.post("/predict", json=record), 422)
    assert body["details"][0]["field"] == "education"
    assert "required" in body["details"][0]["message"]


def test_too_many_rows_and_too_big_bodies(client: TestClient, example: dict):
    assert error(client.post("/predict", json=[example] * 51), 422)["error"] == "too_many_rows"
    big = json.dumps({**example, "gender": "x" * 30_000})
    assert error(client.post("/predict", content=big), 413)["error"] == "body_too_large"

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(30):
            yield b" " * 1000

    assert error(client.post("/predict", content=chunks()), 413)["error"] == "body_too_large"
    assert error(client.post("/predict", content=b"{}", headers={"content-length": "x"}), 400)


def test_ops_endpoints(client: TestClient, bundle: Path):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    info = client.get("/model").json()
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert info["model_version"] == metadata["model_version"]
    assert info["gate"]["verdict"] == "VALIDATED"
    assert info["onnx"]["used"] is True
    assert [f["name"] for f in info["features"]] == [f["name"] for f in metadata["features"]]
    # the shape of /model: the variant and runtime, then these metadata.json fields as they are in the file
    shown = ["model_version", "task", "target", "estimator", "classes", "metrics", "gate", "onnx",
             "features", "example", "training_data"]  # fmt: skip
    # git_commit is the deployment's (GIT_COMMIT): a bundle records no commit, nor a time (reproducible); the time
    # is MODEL_COMMITTED_AT's (dvc.lock's history, handed over by the build)
    assert info == {"variant": "champion", "runtime": "onnx", "git_commit": COMMIT,
                    "model_committed_at": COMMITTED_AT, **{k: metadata[k] for k in shown}}  # fmt: skip
    assert error(client.get("/nope"), 404)["error"] == "not_found"
    assert error(client.get("/predict"), 405)["error"] == "method_not_allowed"


def test_metrics_names_and_labels(client: TestClient, example: dict):
    client.post("/predict", json=[example, {**example, "property_area": "Mars", "applicant_income": -5.0}])
    client.post("/predict", content=b"[")
    text = client.get("/metrics").text
    for line in [
        'http_requests_total{method="POST",route="/predict",status="200"}',
        'http_requests_total{method="POST",route="/predict",status="400"}',
        'http_request_duration_seconds_bucket{le="0.005",route="/predict"}',
        'model_input_out_of_range_total{feature="applicant_income"}',
        'model_unknown_category_total{feature="property_area"}',
        "model_predictions_total{class=",
        'model_info{estimator="logistic_regression",variant="champion"',
    ]:
        assert line in text, line
    assert 'route="/nope"' not in text  # unmatched paths share one label value


def test_failing_observer_does_not_fail_predictions(bundle: Path, example: dict):
    def broken(event: PredictionEvent) -> None:
        raise RuntimeError("monitoring bug")

    client = TestClient(create_app(Settings(model_dir=bundle), observers=[broken]))
    assert client.post("/predict", json=example).status_code == 200


def test_openapi_documents_the_features(client: TestClient, example: dict):
    schema = client.get("/openapi.json").json()
    record = schema["components"]["schemas"]["Record"]
    assert set(record["properties"]) == set(example)
    assert record["examples"] == [example]
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["examples"]["one record"]["value"] == example
    assert {"200", "400", "413", "422"} <= set(schema["paths"]["/predict"]["post"]["responses"])
    assert "swagger-ui" in client.get("/docs").text
    assert "redoc" in client.get("/redoc").text


def test_sklearn_runtime_and_regression(tmp_path: Path):
    bundle = build_bundle(tmp_path, "ridge", rows=800, schema=REGRESSION)
    example = json.loads((bundle / "metadata.json").read_text())["example"]
    for runtime in ("sklearn", "onnx"):
        client = TestClient(create_app(Settings(model_dir=bundle, model_runtime=runtime)))
        body = client.post("/predict", json=[example, example]).json()
        assert body["runtime"] == runtime
        assert isinstance(body["predictions"][0]["prediction"], float)
        assert "probabilities" not in body["predictions"][0]
    assert 'model_predictions_total{class="value",variant="champion"} 2.0' in client.get("/metrics").text


def test_unservable_bundles_are_refused(tmp_path: Path, bundle: Path):
    with pytest.raises(UserError, match="not a model bundle"):
        create_app(Settings(model_dir=tmp_path))
    rejected = build_bundle(tmp_path / "rejected", rows=600, verdict="REJECTED")
    with pytest.raises(UserError, match="gate verdict is REJECTED"):
        create_app(Settings(model_dir=rejected))
    with (rejected.parent / "model" / "model.onnx").open("ab") as handle:
        handle.write(b"tampered")
    metadata = json.loads((rejected / "metadata.json").read_text())
    metadata["gate"]["verdict"] = "VALIDATED"
    (rejected / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(UserError, match="checksum mismatch"):
        create_app(Settings(model_dir=rejected))


def test_settings_from_env():
    settings = Settings.from_env({"MODEL_DIR": "/m", "MAX_BATCH_ROWS": "5", "LOG_LEVEL": "debug", "PORT": "9000"})
    assert (settings.model_dir, settings.max_batch_rows, settings.log_level, settings.port) == (
        Path("/m"),
        5,
        "DEBUG",
        9000,
    )
    with pytest.raises(UserError, match="MAX_BATCH_ROWS='many': expected an integer"):
        Settings.from_env({"MAX_BATCH_ROWS": "many"})
    with pytest.raises(UserError, match="MODEL_RUNTIME='gpu'"):
        Settings.from_env({"MODEL_RUNTIME": "gpu"})


def test_admin_routes_disabled_without_keys_and_cors_off_by_default(bundle: Path, example: dict):
    from mlops_template.monitoring.security import ApiKeys

    client = TestClient(create_app(Settings(model_dir=bundle), admin_keys=ApiKeys(())))
    response = client.post("/feedback", json={"request_id": "x", "actual": "Y"}, headers={"X-API-Key": "anything"})
    assert response.status_code == 503 and "ADMIN_API_KEYS" in response.json()["message"]
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/predict", headers=preflight).headers
    cors = TestClient(create_app(Settings(model_dir=bundle, cors_origins=("https://example.org",))))
    allowed = cors.options("/predict", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://example.org"
    # a refused preflight is the JSON error body like every refusal (it was Starlette's text/plain 400)
    for refused_headers, problem in [
        ({**preflight, "Origin": "https://evil.example"}, "Disallowed CORS origin"),
        ({**preflight, "Access-Control-Request-Method": "DELETE"}, "CORS method"),
    ]:
        refused = cors.options("/predict", headers=refused_headers)
        assert (refused.status_code, refused.json()["error"]) == (400, "cors_refused")
        assert problem in refused.json()["message"] and refused.json()["request_id"] == refused.headers["x-request-id"]
        assert refused.headers["access-control-allow-methods"] == "GET, POST"  # what the browser may send instead


def test_challenger_must_match_the_champion_and_modes_are_checked(bundle: Path):
    from mlops_template.serving.live import check_compatible

    meta = read_metadata(bundle)
    check_compatible(meta, meta, bundle)
    other = meta.model_copy(update={"task": "regression", "classes": None, "features": meta.features[1:]})
    with pytest.raises(UserError, match=r"CHALLENGER_MODEL_DIR.*task 'regression'.*classes None.*features"):
        check_compatible(meta, other, bundle)
    with pytest.raises(UserError, match="EXPERIMENT_MODE='coin'"):
        create_app(Settings(model_dir=bundle, experiment_mode="coin"))


def test_monitoring_settings_from_env():
    settings = Settings.from_env({"MODEL_DIR": "m", "CHALLENGER_MODEL_DIR": "c", "EXPERIMENT_MODE": "AB",
                                  "RATE_LIMIT": "off", "CORS_ORIGINS": "https://a, https://b"})  # fmt: skip
    assert settings.challengers == ((None, Path("c")),) and settings.experiment_mode == "ab"
    assert settings.rate_limit is False and settings.cors_origins == ("https://a", "https://b")
    assert Settings.from_env({"MODEL_DIR": "m"}).rate_limit is None  # params.yaml decides
    with pytest.raises(UserError, match="RATE_LIMIT"):
        Settings.from_env({"MODEL_DIR": "m", "RATE_LIMIT": "maybe"})


def test_predict_shortcut_keeps_rate_limit_cors_and_errors(bundle: Path, example: dict, tmp_path: Path):
    """POST /predict skips the router (DirectRoutes) but not the middlewares outside it, nor the JSON errors."""
    from tests.conftest import write_params

    params = write_params(tmp_path, monitoring={"rate_limit": {"requests_per_second": 0.01, "burst": 3}})
    settings = Settings(model_dir=bundle, params_file=params, rate_limit=True, cors_origins=("https://a.org",))
    app = create_app(settings)
    client = TestClient(app, raise_server_exceptions=False)
    statuses = [client.post("/predict", json=example, headers={"Origin": "https://a.org"}) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert all(r.headers["access-control-allow-origin"] == "https://a.org" for r in statuses)
    plain = TestClient(create_app(Settings(model_dir=bundle)), raise_server_exceptions=False)
    assert error(plain.post("/predict", content=b"{"), 400)["error"] == "invalid_json"
    # under a root path the shortcut does not match: the router serves the same route, errors included
    mounted = TestClient(create_app(Settings(model_dir=bundle)), root_path="/api", raise_server_exceptions=False)
    assert mounted.post("/api/predict", json=example).status_code == 200
    assert error(mounted.post("/api/predict", content=b"{"), 400)["error"] == "invalid_json"

    # an unexpected failure is a JSON 500 with the request id, never a traceback to the client
    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    plain.app.state.variants["champion"].contract.flags = broken  # type: ignore[method-assign]
    assert error(plain.post("/predict", json=example), 500)["error"] == "internal_error"
