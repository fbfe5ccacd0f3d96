"""The service with a champion and two challengers, in-process: bandit, A/B and shadow over three arms, their names,
/experiment, feedback attributed to the arm that answered, and the variant label of every arm in /metrics."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlops_template.core.errors import UserError
from mlops_template.monitoring.security import ApiKeys
from mlops_template.serving.app import create_app
from mlops_template.serving.settings import ChallengerDir, Settings
from tests.conftest import write_params
from tests.serving_helpers import build_bundle

KEY = "arms-admin-key"
ADMIN = {"X-API-Key": KEY}
VERSIONS = ("a1a1a1a1a1a1", "b2b2b2b2b2b2")  # the challengers' model_version: their arm names


def challenger_copy(bundle: Path, directory: Path, version: str) -> Path:
    """A copy of `bundle` that says it is another model (metadata.json is not checksummed; its model file is)."""
    copy = Path(shutil.copytree(bundle, directory / "model"))
    metadata = json.loads((copy / "metadata.json").read_text())
    (copy / "metadata.json").write_text(json.dumps({**metadata, "model_version": version}))
    return copy


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    champion = build_bundle(tmp_path_factory.mktemp("arms"))
    a, b = (challenger_copy(champion, tmp_path_factory.mktemp(v), v) for v in VERSIONS)
    return champion, a, b


def app_client(champion: Path, challengers: str, tmp_path: Path, **experiment: object) -> TestClient:
    params = write_params(tmp_path, monitoring={"experiment": {"mode": "bandit", **experiment}})
    settings = Settings.from_env({"MODEL_DIR": str(champion), "CHALLENGER_MODEL_DIR": challengers,
                                  "PARAMS_FILE": str(params), "RATE_LIMIT": "off"})  # fmt: skip
    return TestClient(create_app(settings, admin_keys=ApiKeys.parse(KEY)))


@pytest.fixture(scope="module")
def client(bundles: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    champion, a, b = bundles
    return app_client(champion, f"{a}, {b}", tmp_path_factory.mktemp("params"))


@pytest.fixture(scope="module")
def example(bundles: tuple[Path, Path, Path]) -> dict:
    return json.loads((bundles[0] / "metadata.json").read_text())["example"]


def arms(client: TestClient) -> dict[str, dict]:
    return client.get("/experiment").json()["variants"]


def test_bandit_routes_over_every_arm_named_by_its_model_version(client: TestClient, example: dict):
    served = [client.post("/predict", json=example).json() for _ in range(60)]
    assert {answer["variant"] for answer in served} == {"champion", *VERSIONS}  # no feedback yet: all explored
    assert all(a["model_version"] == a["variant"] for a in served if a["variant"] != "champion")
    stats = client.get("/experiment").json()
    assert stats["mode"] == "bandit" and stats["challengers"] == list(VERSIONS)
    assert list(stats["variants"]) == ["champion", *VERSIONS] and list(stats["comparisons"]) == list(VERSIONS)
    assert sum(v["requests"] for v in stats["variants"].values()) == 60
    assert [stats["variants"][v]["model_version"] for v in VERSIONS] == list(VERSIONS)
    assert "Bonferroni" in stats["comparison"]["correction"] and "note" in stats["comparison"]
    assert set(stats["live_quality"]) == {"served", "champion", *VERSIONS}
    metrics = client.get("/metrics").text
    for arm in ("champion", *VERSIONS):
        count = sum(answer["variant"] == arm for answer in served)
        assert re.search(rf'^model_experiment_requests_total\{{variant="{arm}"\}} {count}\.0$', metrics, re.M), arm
        assert re.search(rf'^model_predictions_total\{{[^}}]*variant="{arm}"', metrics, re.M), arm
        assert re.search(rf'^model_info\{{[^}}]*variant="{arm}"', metrics, re.M), arm
    for arm in VERSIONS:  # one comparison per challenger
        assert re.search(rf'^model_experiment_p_value\{{variant="{arm}"\}} NaN$', metrics, re.M), arm


def test_ab_is_sticky_over_three_arms_and_feedback_goes_to_the_arm_that_answered(client: TestClient, example: dict):
    changed = client.post("/experiment", json={"mode": "ab", "challenger_share": 0.6}, headers=ADMIN)
    assert changed.status_code == 200 and changed.json()["mode"] == "ab"
    seen: dict[str, set[str]] = {}
    answers = {}
    for i in range(30):
        for _ in range(2):
            answer = client.post("/predict", json=example, headers={"X-Client-ID": f"client-{i}"}).json()
            seen.setdefault(f"client-{i}", set()).add(answer["variant"])
            answers[answer["variant"]] = answer
    assert all(len(v) == 1 for v in seen.values()), seen  # sticky
    assert set(answers) == {"champion", *VERSIONS}  # and every arm gets clients
    before = arms(client)
    target = answers[VERSIONS[1]]
    body = {"request_id": target["feedback_key"], "actual": target["predictions"][0]["prediction"]}
    outcome = client.post("/feedback", json=body, headers=ADMIN).json()
    assert outcome == {"request_id": target["request_id"], "served": VERSIONS[1], "success": {VERSIONS[1]: True}}
    after = arms(client)
    assert {v: after[v]["feedback"] - before[v]["feedback"] for v in after} == {"champion": 0, VERSIONS[0]: 0,
                                                                                 VERSIONS[1]: 1}  # fmt: skip
    assert after[VERSIONS[1]]["success_rate"] == 1.0
    quality = client.get("/experiment").json()["live_quality"]
    assert quality[VERSIONS[1]]["feedback"] == 1 and quality[VERSIONS[0]]["feedback"] == 0


def test_shadow_scores_every_challenger(client: TestClient, example: dict):
    client.post("/experiment", json={"mode": "shadow"}, headers=ADMIN)
    before = arms(client)
    answer = client.post("/predict", json=example).json()  # TestClient runs the background task before returning
    assert answer["variant"] == "champion"
    after = arms(client)
    assert {v: after[v]["shadow"] - before[v]["shadow"] for v in after} == {"champion": 0, **dict.fromkeys(VERSIONS, 1)}
    label = answer["predictions"][0]["prediction"]
    outcome = client.post("/feedback", json={"request_id": answer["request_id"], "actual": label}, headers=ADMIN)
    assert outcome.json()["success"] == {"champion": True, **dict.fromkeys(VERSIONS, True)}  # the copies agree
    metrics = client.get("/metrics").text
    for arm in VERSIONS:
        assert re.search(rf'^model_experiment_feedback_total\{{variant="{arm}"\}} [1-9]', metrics, re.M), arm


def test_arm_names_from_configuration_or_metadata_and_one_unnamed_challenger_stays_challenger(
    bundles: tuple[Path, Path, Path], tmp_path: Path
):
    champion, a, b = bundles
    named = app_client(champion, f"fast={a},{b}", tmp_path)
    assert list(named.app.state.variants) == ["champion", "fast", VERSIONS[1]]
    one = app_client(champion, str(a), tmp_path)  # today's configuration: one folder, the arm `challenger`
    assert list(arms(one)) == ["champion", "challenger"]
    assert one.get("/experiment").json()["comparison"]["challenger"] == "challenger"
    with pytest.raises(UserError, match=r"both named 'a1a1a1a1a1a1'.*CHALLENGER_MODEL_DIR=a=<folder>,b=<folder>"):
        app_client(champion, f"{a},{a}", tmp_path)  # the same bundle twice: its model_version twice
    with pytest.raises(UserError, match=r"CHALLENGER_MODEL_DIR='champion=/m'.*not champion or served"):
        Settings.from_env({"MODEL_DIR": "m", "CHALLENGER_MODEL_DIR": "champion=/m"})
    parsed = Settings.from_env({"MODEL_DIR": "m", "CHALLENGER_MODEL_DIR": " x=/b/c , /d/e=f ,, g/h"}).challengers
    assert parsed == (ChallengerDir("x", Path("/b/c")), ChallengerDir(None, Path("/d/e=f")),
                      ChallengerDir(None, Path("g/h")))  # fmt: skip
