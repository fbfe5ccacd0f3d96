"""Post-deploy checks against a loopback stand-in of the service contract (/ready, /health, /model, /predict)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sklearn.dummy import DummyClassifier

from mlops_template.ci.smoke import fetch_metrics, smoke_test
from mlops_template.cli import main
from mlops_template.core.bundle import read_metadata, save_bundle
from mlops_template.core.errors import UserError
from tests.conftest import FakeHandler, loopback_server, model_record

EXAMPLE = {"applicant_income": 4000, "property_area": "Urban"}


@pytest.fixture
def service() -> Iterator[dict]:
    state = {"ready": True, "predictions": [], "metrics": {"roc_auc": 0.85}, "releases": [], "auth": set()}

    class Handler(FakeHandler):
        def do_GET(self) -> None:
            state["auth"].add(self.headers.get("Authorization"))
            # `releases`: what /model reports on successive calls (the old release answers until the switch)
            release = state["releases"].pop(0) if len(state["releases"]) > 1 else (state["releases"] or [{}])[0]
            routes = {
                "/ready": (200 if state["ready"] else 503, {"ready": state["ready"]}),
                "/health": (200, {"status": "ok"}),
                "/model": (200, {"example": EXAMPLE, "metrics": state["metrics"], **release}),
            }
            self.reply(*routes.get(self.path, (404, {"detail": "not found"})))

        def do_POST(self) -> None:
            record = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["predictions"].append(record)
            ok = record.keys() == EXAMPLE.keys()
            self.reply(200 if ok else 422, {"prediction": "Y"} if ok else {"detail": "bad record"})

    with loopback_server(Handler) as url:
        state["url"] = url
        yield state


def test_smoke_test_sends_the_models_example(service: dict) -> None:
    assert smoke_test(service["url"], wait=2) == {"prediction": "Y"}
    assert service["predictions"] == [EXAMPLE]


def test_smoke_test_uses_a_local_metadata_example(service: dict, tmp_path: Path) -> None:
    model = DummyClassifier().fit([[0], [1]], ["N", "Y"])
    bundle = save_bundle(tmp_path / "bundle", model, model_record())  # its example is not the service's EXAMPLE
    with pytest.raises(UserError, match="/predict with the example: HTTP 422"):
        smoke_test(service["url"], bundle / "metadata.json", wait=2)
    assert service["predictions"] == [read_metadata(bundle).example]


def test_a_malformed_local_metadata_is_refused_before_sending(service: dict, tmp_path: Path) -> None:
    metadata = tmp_path / "metadata.json"
    metadata.write_text(json.dumps({"example": {"unexpected": 1}}))
    with pytest.raises(UserError, match=r"metadata\.json: field `format_version` is missing.*make pipeline"):
        smoke_test(service["url"], metadata, wait=2)
    assert service["predictions"] == []


def test_a_service_that_never_gets_ready_fails_with_the_reason(service: dict) -> None:
    service["ready"] = False
    with pytest.raises(UserError, match=r"did not answer 200 within 0\.5 s.*HTTP 503"):
        smoke_test(service["url"], wait=0.5)


def test_cli_exit_codes(service: dict) -> None:
    assert main(["smoke-test", "--url", service["url"], "--wait", "2"]) == 0
    assert main(["smoke-test", "--url", "ftp://nowhere"]) == 2
    assert main(["smoke-test", "--url", "http://127.0.0.1:9", "--wait", "0.2"]) == 2


def test_production_metrics_for_the_gate(service: dict, tmp_path: Path) -> None:
    out = tmp_path / "prod.json"
    assert fetch_metrics(service["url"], out) == service["metrics"]
    assert json.loads(out.read_text()) == service["metrics"]
    service["metrics"] = {}
    with pytest.raises(UserError, match="no `metrics`"):
        fetch_metrics(service["url"], out)


OLD = {"model_version": "0ld0ld0ld0ld", "git_commit": "a" * 40}
NEW = {"model_version": "5e1ec7ed0001", "git_commit": "b" * 40}


def test_smoke_test_waits_until_the_deployed_release_answers(service: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Status codes alone pass on the previous release: /model must report the bundle just deployed."""
    monkeypatch.setattr("mlops_template.ci.smoke.time.sleep", lambda s: None)
    service["releases"] = [OLD, OLD, NEW]
    assert smoke_test(service["url"], wait=30, expected=NEW) == {"prediction": "Y"}
    assert service["releases"] == [NEW]


def test_smoke_test_fails_when_another_release_keeps_answering(service: dict) -> None:
    service["releases"] = [OLD]
    with pytest.raises(UserError, match=r"still serves another release.*model_version '0ld0ld0ld0ld' \(deployed: '5e1"):
        smoke_test(service["url"], wait=0.1, expected=NEW)
    assert service["predictions"] == []  # no prediction is checked against the wrong release


def test_smoke_test_cli_takes_the_expected_release_and_token_from_the_environment(
    service: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    service["releases"] = [NEW]
    monkeypatch.setenv("EXPECT_MODEL_VERSION", NEW["model_version"])
    monkeypatch.setenv("EXPECT_GIT_COMMIT", NEW["git_commit"])
    monkeypatch.setenv("SMOKE_TOKEN", "id-token")
    assert main(["smoke-test", "--url", service["url"], "--wait", "5"]) == 0
    assert service["auth"] == {"Bearer id-token"}
    monkeypatch.setenv("EXPECT_GIT_COMMIT", "c" * 40)
    assert main(["smoke-test", "--url", service["url"], "--wait", "0.1"]) == 2
