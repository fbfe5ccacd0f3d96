"""One rule for labels: a number or boolean for a categorical feature (or a class in /feedback) is the label
training gives it in a CSV (`as_label`): 0 -> "0", 1.0 -> "1", true -> "True", alike in training, the API and
the batch CLI. Numbers for numeric features stay strict."""

import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from mlops_template.core.bundle import VALIDATED
from mlops_template.monitoring.security import ApiKeys
from mlops_template.serving.app import create_app
from mlops_template.serving.batch import predict_file
from mlops_template.serving.contract import LABEL_RULE, json_label, text_label
from mlops_template.serving.settings import Settings
from tests.serving_helpers import small_params

KEY = "labels-admin-key"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on a CSV whose categorical `dependents` holds numbers (written 1 and 1.0), whose
    categorical `flag` holds True/False (pandas reads it as bool), and whose target is 0/1."""
    from mlops_template.pipeline import prep, train
    from mlops_template.pipeline.gate import record_verdict
    from mlops_template.pipeline.sample import write_sample

    directory = tmp_path_factory.mktemp("labels")
    params = small_params(directory, schema={"positive_class": "1", "categorical": ["dependents", "flag"]})
    write_sample(params.data.path, 1500, seed=7, drift=0.0)
    frame = pd.read_csv(params.data.path, dtype=str, keep_default_na=False)
    number = frame["dependents"].replace({"3+": "3"})
    frame["dependents"] = number.where(number != "1", "1.0").where(frame.index % 2 == 0, number)  # 1 and 1.0
    frame["flag"] = ["True" if i % 3 else "False" for i in range(len(frame))]
    frame["loan_status"] = frame["loan_status"].map({"Y": "1", "N": "0"})
    frame.to_csv(params.data.path, index=False)
    prep.run(params)
    train.run(params)
    record_verdict(params.train.output_dir, params.gate.bundle_dir, {"roc_auc": 0.9},
                   {"verdict": VALIDATED, "failed": []})  # fmt: skip
    return params.gate.bundle_dir


@pytest.fixture(scope="module")
def metadata(bundle: Path) -> dict:
    return json.loads((bundle / "metadata.json").read_text())


@pytest.fixture(scope="module")
def client(bundle: Path) -> TestClient:
    app = create_app(Settings(model_dir=bundle, rate_limit=False), admin_keys=ApiKeys.from_env({"ADMIN_API_KEYS": KEY}))
    return TestClient(app, raise_server_exceptions=False)


def test_training_reads_numbers_and_booleans_in_a_csv_as_their_label(metadata: dict):
    features = {f["name"]: f for f in metadata["features"]}
    assert features["dependents"]["type"] == features["flag"]["type"] == "categorical"
    assert features["dependents"]["categories"] == ["0", "1", "2", "3"]  # "1" and "1.0" in the CSV: one class
    assert features["flag"]["categories"] == ["False", "True"]
    assert metadata["classes"] == ["0", "1"]


@pytest.mark.parametrize(
    ("value", "label"),
    [(0, "0"), (1.0, "1"), (-0.0, "0"), (2.5, "2.5"), (True, "True"), (False, "False"), (10**20, str(10**20))],
)
def test_json_label(value, label):
    assert json_label(value) == label


@pytest.mark.parametrize("value", [float("nan"), float("inf"), None, "1", [1], {"a": 1}])
def test_json_label_is_only_for_numbers_and_booleans(value):
    assert json_label(value) is None


def test_text_label_reads_a_cell_as_training_would_when_the_label_is_known():
    known = frozenset({"0", "1", "True", "Urban"})
    assert [text_label(t, known) for t in ["1.0", "1e0", " 1", "true", "TRUE", "Urban ", "0.0"]] == [
        "1", "1", "1", "True", "True", "Urban", "0"
    ]  # fmt: skip
    assert [text_label(t, known) for t in ["2.0", "yes", "1_0", "false", "nan"]] == [
        "2.0",
        "yes",
        "1_0",
        "false",
        "nan",
    ]


def test_api_maps_numbers_and_booleans_to_the_training_labels(client: TestClient, metadata: dict):
    example = metadata["example"]
    as_text = {**example, "dependents": "1", "flag": "True"}
    typed = [{**example, "dependents": 1, "flag": True}, {**example, "dependents": 1.0, "flag": True}]
    response = client.post("/predict", json=[as_text, *typed, {**example, "dependents": 0, "flag": False}])
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    assert [r["unknown_categories"] for r in rows] == [[], [], [], []]
    assert rows[0] == rows[1] == rows[2]
    unknown = client.post("/predict", json={**example, "dependents": 7, "flag": 1}).json()["predictions"][0]
    assert unknown["unknown_categories"] == ["dependents", "flag"]  # "7" and "1": predicted and flagged


@pytest.mark.parametrize("value", ["5000", True, [5000], {"v": 1}])
def test_numbers_for_numeric_features_stay_strict(client: TestClient, metadata: dict, value):
    response = client.post("/predict", json={**metadata["example"], "applicant_income": value})
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == "applicant_income"


def test_docs_state_the_rule(client: TestClient):
    openapi = client.get("/openapi.json").json()
    schema = openapi["components"]["schemas"]
    dependents = schema["Record"]["properties"]["dependents"]
    assert {"type": "number"} in dependents["anyOf"] and {"type": "boolean"} in dependents["anyOf"]
    assert LABEL_RULE in dependents["description"]
    assert schema["Record"]["properties"]["applicant_income"]["type"] == "number"  # no string, no boolean
    feedback = openapi["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    actual = feedback["properties"]["actual"]
    assert actual["enum"] == ["0", "1", 0, 1]  # true is no class here: "True" is not one of them
    assert LABEL_RULE in actual["description"]


def test_feedback_takes_a_class_as_a_number(client: TestClient, metadata: dict):
    headers = {"X-API-Key": KEY}
    for actual in (1, 0.0, "1"):
        request_id = client.post("/predict", json=metadata["example"]).json()["request_id"]
        response = client.post("/feedback", json={"request_id": request_id, "actual": actual}, headers=headers)
        assert response.status_code == 200, (actual, response.text)
    request_id = client.post("/predict", json=metadata["example"]).json()["request_id"]
    for actual in (True, 2, 0.5, None, [1]):
        response = client.post("/feedback", json={"request_id": request_id, "actual": actual}, headers=headers)
        assert response.status_code == 422, (actual, response.text)
        assert response.json()["details"][0]["field"] == "actual"


def test_batch_cli_agrees_with_the_api(client: TestClient, bundle: Path, metadata: dict, tmp_path: Path):
    example = metadata["example"]
    cells = [("1.0", "true"), ("1", "TRUE"), (" 1", " True"), ("0.0", "false"), ("7", "yes")]
    frame = pd.DataFrame([{**example, "dependents": d, "flag": f} for d, f in cells])
    frame.to_csv(tmp_path / "in.csv", index=False)
    summary = predict_file(tmp_path / "in.csv", tmp_path / "out.csv", bundle, progress=False)
    assert summary.scored == len(cells)
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert out["flags_unknown_categories"].tolist() == ["", "", "", "", "dependents;flag"]
    typed = [{**example, "dependents": d, "flag": f} for d, f in [(1.0, True), (1, True), (1, True), (0, False)]]
    api = client.post("/predict", json=typed).json()["predictions"]
    assert out["prediction"].astype(str).tolist()[:4] == [r["prediction"] for r in api]
    assert out["probability_1"].tolist()[:4] == pytest.approx([r["probabilities"]["1"] for r in api], abs=1e-6)
