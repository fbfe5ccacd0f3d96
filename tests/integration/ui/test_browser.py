"""The web UI in a real headless Chromium, against the real Streamlit server and the real service.

For the sample (binary) model: the form answers what the API answers (with the probabilities' chart), the
out-of-range and unknown-category flags and a 422 read as sentences, a CSV scored through the UI downloads the same
predictions as `python -m mlops_template predict` (what `make predict` runs), the Model page shows the gate table,
the importance chart and when a commit recorded the bundle (from the dvc.lock history the service was started in),
the Monitoring page names the features a drifted batch moved, each challenger's test (p-value, decision) and the
live quality from feedback, the service's 503 while its Redis is stopped reads as a sentence and the page recovers
once Redis is back, the service's rate limit (429) reads as a sentence, and a stopped service shows one banner. For
a regression and a multiclass model: the same form and batch checks, with no change to the UI's code (and the card
says the commit time is unknown: their services were not started in a checkout that records them).
Screenshots of each page land in $UI_SCREENSHOTS (reports/ui to refresh the committed ones), else a scratch folder.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlops_template.core.provenance import utc_text
from mlops_template.ui.tables import UNKNOWN_COMMIT_TIME
from tests.conftest import ROOT
from tests.integration.serving.test_monitoring import records
from tests.integration.ui.conftest import ADMIN_KEY, CHALLENGERS, COMMITTED_EPOCH, PREDICT_KEY, Stack
from tests.integration.ui.driver import Ui


def api_prediction(stack: Stack, record: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{stack.service.url}/predict", json=record, headers=stack.headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def shown_prediction(stack: Stack, item: dict[str, Any]) -> list[str]:
    """What the Predict page must show for the API's answer `item`."""
    if stack.model["task"] == "regression":
        return [f"Predicted {stack.model['target']}", f"{item['prediction']:,.4g}"]
    return [f"Predicted {stack.model['target']}: {item['prediction']}",
            *(f"P({c}) = {p:.3f}" for c, p in item["probabilities"].items())]  # fmt: skip


def required(model: dict[str, Any], kind: str) -> dict[str, Any]:
    """A feature of type `kind` that was never missing in training (the service refuses null for it)."""
    return next(f for f in model["features"] if f["type"] == kind and not f.get("missing_rate"))


def typed(feature: dict[str, Any], value: float) -> float | int:
    """A value as a person types it into the feature's input (whole numbers for integer features)."""
    return round(value) if feature.get("integer") else value


def upload_csv(stack: Stack, path: Path, rows: int) -> tuple[Path, list[int]]:
    """`rows` training rows as a user would upload them, two of them broken; returns the file and bad lines."""
    frame = pd.read_csv(stack.data, dtype=str, keep_default_na=False).head(rows)
    number = required(stack.model, "numeric")["name"]
    frame.loc[3, number] = "not a number"
    frame.loc[rows - 5, number] = ""  # missing where training never had it missing
    frame.to_csv(path, index=False)
    return path, [3 + 2, rows - 5 + 2]  # CSV lines: the header is line 1


def score_with_cli(stack: Stack, source: Path, directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    output, rejects = directory / "cli-predictions.csv", directory / "cli-rejects.csv"
    subprocess.run([sys.executable, "-m", "mlops_template", "predict", "--input", str(source), "--output",
                    str(output), "--rejects", str(rejects), "--model-dir", str(stack.bundle), "--no-progress"],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)  # fmt: skip
    return read_result(output), pd.read_csv(rejects)


def read_result(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def assert_same_predictions(ui: pd.DataFrame, cli: pd.DataFrame) -> None:
    """Same columns, rows and values; numbers equal to float32 precision (ONNX Runtime answers float32, which
    the CLI writes in float32's shortest form and the API sends as the equal float64)."""
    assert list(ui.columns) == list(cli.columns)
    assert len(ui) == len(cli)
    numbers = [c for c in ui.columns if c.startswith("probability_")]
    if pd.to_numeric(cli["prediction"], errors="coerce").notna().all() and "probability_" not in "".join(ui.columns):
        numbers.append("prediction")  # regression
    for column in ui.columns:
        if column in numbers:
            np.testing.assert_allclose(ui[column].astype(float), cli[column].astype(float), rtol=1e-6, atol=1e-7)
        else:
            assert ui[column].tolist() == cli[column].tolist(), column


def check_batch(stack: Stack, ui: Ui, directory: Path, rows: int, screenshot: str | None = None) -> None:
    source, bad_lines = upload_csv(stack, directory / "upload.csv", rows)
    ui.open("batch", "Batch scoring")
    ui.upload(source)
    ui.wait_text(f"{rows} rows. Preview:")
    ui.click("Score")
    text = ui.wait_text("rows scored")
    assert f"{rows - 2} rows scored, 2 refused" in text
    for line in bad_lines:
        assert f"line {line}: " in text
    downloaded = ui.download("Download the predictions (CSV)", directory / "download")
    refused = ui.download("Download the refused rows (CSV)", directory / "download-rejects")
    cli_output, cli_rejects = score_with_cli(stack, source, directory)
    assert_same_predictions(read_result(downloaded), cli_output)
    assert pd.read_csv(refused)["line"].tolist() == cli_rejects["line"].tolist() == bad_lines
    if screenshot:
        ui.screenshot(screenshot)


# ---- the sample model (binary), one stack for the whole sequence ------------------------------------------------
def test_predict_form_answers_what_the_api_answers(binary_stack: Stack, browser: Any):
    ui, model = Ui(browser, binary_stack.ui), binary_stack.model
    ui.open("", f"Predict {model['target']}")
    feature = required(model, "numeric")
    value = typed(feature, feature["median"])
    ui.type_number(feature["name"], value)
    ui.click("Predict")
    expected = shown_prediction(
        binary_stack, api_prediction(binary_stack, {**model["example"], feature["name"]: value})
    )
    ui.wait_text(*expected)
    shown = ui.element_text(".st-key-prediction")
    assert all(needle in shown for needle in expected), (expected, shown)
    ui.find('.st-key-prediction [data-testid="stVegaLiteChart"]')  # the probabilities' bar chart
    assert "Every value lies within the training range and categories." in shown
    ui.screenshot("predict")


def test_flags_and_a_422_read_as_sentences(binary_stack: Stack, browser: Any):
    ui, model = Ui(browser, binary_stack.ui), binary_stack.model
    ui.open("", f"Predict {model['target']}")
    feature = required(model, "numeric")
    bound = ui.number_attribute(feature["name"], "max")
    ui.click_label("Keep numbers within the training range",  # now unbounded: values the model never saw
                   then=lambda _: ui.number_attribute(feature["name"], "max") != bound)  # fmt: skip
    ui.type_number(feature["name"], typed(feature, feature["max"] * 10 + 1))
    category = next(f for f in model["features"] if f["type"] != "numeric")
    ui.choose_new(category["name"], "a-category-never-seen")
    ui.click("Predict")
    ui.wait_text(f"{feature['name']} is outside the range seen in training",
                 f"{category['name']} has a category never seen in training")  # fmt: skip
    ui.type_number(feature["name"], None)  # required: the service refuses a null
    ui.click("Predict")
    text = ui.wait_text("The service refused the input (422)")
    assert f"row 0, field {feature['name']}" in text
    assert "Traceback" not in text
    ui.screenshot("predict-422")


def test_batch_download_equals_the_batch_cli(binary_stack: Stack, browser: Any, tmp_path: Path):
    check_batch(binary_stack, Ui(browser, binary_stack.ui), tmp_path, rows=1200, screenshot="batch")


def test_model_card_shows_the_bundle(binary_stack: Stack, browser: Any):
    ui, model = Ui(browser, binary_stack.ui), binary_stack.model
    ui.open("model", "Model card")
    text = ui.wait_text("Features (the request contract)")
    assert model["model_version"] in text and model["gate"]["verdict"] in text and model["estimator"] in text
    assert ("ONNX Runtime" if model["runtime"] == "onnx" else "scikit-learn") in text
    # dated by the dvc.lock history of the checkout the service started in (no MODEL_COMMITTED_AT given)
    assert model["model_committed_at"] == utc_text(COMMITTED_EPOCH) == "2026-05-29T20:26:40+00:00"
    assert "Committed at (not the training time" in text
    assert "2026-05-29 20:26:40 UTC, when a commit first recorded this bundle in dvc.lock" in text
    assert "records no feature importance" not in text  # the pipeline recorded it: the chart is drawn
    ui.find('[data-testid="stVegaLiteChart"]')
    for name in [*model["metrics"], *(t["metric"] for t in model["gate"].get("thresholds", []))]:
        assert name in text
    gate = ui.element_text('[data-testid="stTable"]')  # the first table: metrics with the gate's rules
    for threshold in model["gate"]["thresholds"]:
        rule = f"≥ {threshold['min']:g}" if threshold.get("min") is not None else f"≤ {threshold['max']:g}"
        assert rule in gate, gate
    assert "yes" in gate and "NO" not in gate  # a VALIDATED bundle passed every threshold
    for feature in model["features"]:
        assert feature["name"] in text
    ui.screenshot("model")


def test_monitoring_shows_live_drift_and_experiment(binary_stack: Stack, browser: Any):
    ui, service = Ui(browser, binary_stack.ui), binary_stack.service.url
    drifted = records(binary_stack.bundle, 2000, seed=41, drift=1.0)  # on top of the batch above (not drifted)
    for start in range(0, len(drifted), 500):
        answer = httpx.post(f"{service}/predict", json=drifted[start : start + 500], headers=binary_stack.headers,
                            timeout=60)  # fmt: skip
        assert answer.status_code == 200, answer.text
    answered = answer.json()
    # per arm, the feedback that met its prediction: a challenger's shadow prediction is filed after the answer is
    # sent, so the first feedback may come before it (then it counts for the champion only)
    outcomes: Counter[str] = Counter()
    for row, item in enumerate(answered["predictions"][:30]):
        body = {"request_id": answered["feedback_key"].format(row=row), "actual": item["prediction"]}
        response = httpx.post(f"{service}/feedback", json=body, headers={"X-API-Key": ADMIN_KEY}, timeout=10)
        assert response.status_code == 200, response.text
        outcomes.update(response.json()["success"])  # ground truth = the answer: live accuracy 1
    time.sleep(1.2)  # the service's drift report is recomputed at most every second (the stack's params)
    report = httpx.get(f"{service}/monitoring/drift", timeout=30).json()
    names = [i["name"] for i in report["features"] + report["outputs"] if i["drifted"]]
    assert report["drifted"] and names
    ui.open("monitoring", "Drift of recent requests vs training")
    text = ui.wait_text("Live quality")
    assert f"Drift detected in {', '.join(names)}: status {report['status']}" in text
    assert "decision:" in text and "mode shadow" in text
    experiment = httpx.get(f"{service}/experiment", timeout=10).json()
    # each challenger's test against the champion, as the service reports it (Bonferroni: alpha 0.05 / 2)
    assert "Bonferroni: each of the 2 challengers against the champion at alpha 0.05 / 2 = 0.025" in text
    rows = {row["challenger"]: row for row in ui.table_rows()}  # the one static table: each challenger's test
    assert outcomes["champion"] == 30 and all(outcomes[name] for name in CHALLENGERS), outcomes
    assert sorted(rows) == sorted(CHALLENGERS)
    for name in CHALLENGERS:
        test, row = experiment["comparisons"][name], rows[name]
        assert test["reached"] == {"champion": 30, name: outcomes[name]} and test["decision"] == "not enough data"
        assert row["feedback (champion / challenger)"] == f"30 / {outcomes[name]}"
        assert row["alpha"] == "0.025" and row["p-value"] == f"{test['p_value']:.3g}"  # sequential: from the start
        assert row["champion rate"] == row["challenger rate"] == "1"  # actual = the answer, the same model
        assert (row["decision"], row["reason"]) == (test["decision"], test["reason"])
    # the tables (drift, experiment, live quality) as the grid renders them: the rows in view (here every feature)
    features = [i["name"] for i in report["features"] if i["drifted"]]
    ui.hidden_text('[data-testid="stDataFrame"]', *features, "accuracy")
    assert experiment["live_quality"]["served"]["accuracy"] == 1.0
    ui.screenshot("monitoring")


def test_redis_down_is_a_503_sentence_and_the_page_recovers(binary_stack: Stack, browser: Any):
    """REDIS_URL's Redis stopped: the service keeps answering (drift is per process) but /experiment answers 503; the
    Monitoring page shows the service's own sentence, then the experiment again once Redis is back."""
    ui, service, redis = Ui(browser, binary_stack.ui), binary_stack.service.url, binary_stack.redis
    assert redis is not None
    redis.stop()
    try:
        answer = httpx.get(f"{service}/experiment", timeout=10)
        assert answer.status_code == 503 and answer.json()["error"] == "state_unavailable", answer.text
        ui.open("monitoring", "The service is not available (503)")
        text = ui.text()
        assert f"shared monitoring state unavailable: Redis at 127.0.0.1:{redis.port} (REDIS_URL)" in text
        assert "retry once it is back" in text and "starting or overloaded" not in text
        assert text.count("(503)") == 1 and "Traceback" not in text and "Service unavailable" not in text
        assert "Drift of recent requests vs training" in text  # the rest of the page still answers
        browser.execute_script(
            "const a = document.querySelectorAll('[data-testid=\"stAlert\"]'); "
            'a[a.length - 1].scrollIntoView({block: "center"})'
        )  # the 503 in the screenshot
        ui.screenshot("monitoring-503")
    finally:
        redis.start()  # empty, as a restarted Redis without persistence
    deadline = time.monotonic() + 30
    while "Live quality" not in text:  # the service tries Redis again a second after a failure
        assert time.monotonic() < deadline, text
        time.sleep(1.2)
        ui.click("Refresh")
        text = ui.wait_text("Drift of recent requests vs training")
    assert "(503)" not in text and "mode shadow" in text
    rows = ui.table_rows()  # a new, empty experiment (Redis restarted empty)
    assert [row["challenger"] for row in rows] == list(CHALLENGERS)
    assert all(row["feedback (champion / challenger)"] == "0 / 0" and row["p-value"] == "—" for row in rows), rows


def test_rate_limit_then_service_down_are_sentences(binary_stack: Stack, browser: Any):
    ui, service = Ui(browser, binary_stack.ui), binary_stack.service.url
    ui.open("", f"Predict {binary_stack.model['target']}")
    ui.wait_text("Predict")
    headers = {"X-API-Key": PREDICT_KEY}  # the UI's key: its bucket, emptied here (no refill to speak of)
    for _ in range(150):  # the 100 of the bucket (in Redis, leased 10 at a time), then a 429
        if httpx.post(f"{service}/predict", json=binary_stack.model["example"], headers=headers).status_code == 429:
            break
    ui.click("Predict")
    text = ui.wait_text("Too many requests (429)")
    assert "rate limit was reached; retry in" in text and "Traceback" not in text
    ui.screenshot("predict-429")

    binary_stack.service.stop()
    for page in ("", "batch", "model", "monitoring"):
        ui.open(page, "Service unavailable")
        text = ui.text()
        assert text.count("Service unavailable") == 1 and "is not reachable" in text and "Traceback" not in text
    ui.screenshot("service-down")


# ---- other forks' models: regression and multiclass, same UI code -----------------------------------------------
def test_other_model_kinds(other_stack: Stack, browser: Any, tmp_path: Path):
    ui, model = Ui(browser, other_stack.ui), other_stack.model
    ui.open("", f"Predict {model['target']}")
    ui.click("Predict")  # the example row as pre-filled
    expected = shown_prediction(other_stack, api_prediction(other_stack, model["example"]))
    ui.wait_text(*expected)
    shown = ui.element_text(".st-key-prediction")
    assert all(needle in shown for needle in expected), (expected, shown)
    ui.screenshot(f"predict-{other_stack.kind}")
    check_batch(other_stack, ui, tmp_path, rows=600)
    ui.open("model", "Model card")  # the other pages too: built from this model's contract, no error on them
    text = ui.wait_text("Features (the request contract)")
    assert model["task"] in text and model["model_version"] in text and "The service" not in text
    assert model["model_committed_at"] is None and UNKNOWN_COMMIT_TIME in text  # served outside a checkout
    assert all(name in text for name in model["metrics"])
    ui.open("monitoring", "Drift of recent requests vs training")
    text = ui.wait_text("Live quality")
    assert "status" in text and "The service" not in text and "Traceback" not in text


@pytest.fixture(autouse=True)
def _no_leftover_ui_state(browser: Any):
    """Each test starts from a fresh browser session (Streamlit keeps widget state per session)."""
    browser.delete_all_cookies()
