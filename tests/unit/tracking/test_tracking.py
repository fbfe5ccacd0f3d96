"""Tracking without a server: when it is on, what it logs, and that a failure is one line (or a warning)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_template import tracking
from mlops_template.ci.report import mlflow_run
from mlops_template.core.config import TrackingConfig, load_params
from mlops_template.core.errors import UserError
from mlops_template.core.fsutil import sha256_file
from mlops_template.tracking.connect import check_server, public_uri
from mlops_template.tracking.runs import flatten, lock_tags
from mlops_template.tracking.settings import LOCAL_URI, resolve
from tests.conftest import ROOT, FakeHandler, free_port, loopback_server


def test_off_unless_a_uri_or_an_experiment_is_configured():
    assert resolve(TrackingConfig(), env={}) is None
    on = resolve(TrackingConfig(), env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert (on.uri, on.experiment, on.model_name, on.required) == ("http://mlflow:5000", "mlops-template",
                                                                  "mlops-template", False)  # fmt: skip
    local = resolve(TrackingConfig(mlflow="loans", registered_model="loan-model", required=True), env={})
    assert (local.uri, local.experiment, local.model_name, local.required) == (LOCAL_URI, "loans", "loan-model", True)


def test_nothing_from_mlflow_is_imported_when_tracking_is_off():
    code = (
        "import sys\n"
        "from mlops_template import cli, tracking\n"
        "from mlops_template.pipeline import train, evaluate, gate\n"
        "from mlops_template.serving import app\n"
        "from mlops_template.core.config import load_params\n"
        "params = load_params()\n"
        "tracking.evaluate_done(params, {'roc_auc': 0.9})\n"
        "tracking.gate_done(params, 'VALIDATED', [])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # tracking off
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_server_down_is_a_warning_unless_tracking_is_required(monkeypatch, caplog):
    params = load_params(ROOT / "params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.WARNING):
        tracking.evaluate_done(params, {"roc_auc": 0.9})  # the stage goes on
    assert "is not reachable" in caplog.text and "the pipeline goes on" in caplog.text
    required = params.model_copy(update={"tracking": TrackingConfig(required=True)})
    with pytest.raises(UserError, match=r"is not reachable .*tracking.required is true"):
        tracking.evaluate_done(required, {"roc_auc": 0.9})


def test_a_uri_that_is_no_mlflow_server_is_named():
    class NotMlflow(FakeHandler):
        def do_GET(self):
            self.reply(404, {"detail": "not found"})

    with loopback_server(NotMlflow) as url, pytest.raises(UserError, match="answered HTTP 404 on /health"):
        check_server(url)


def test_credentials_never_leave_the_uri():
    assert public_uri("https://user:secret@mlflow.example.com:8443/x") == "https://mlflow.example.com:8443/x"
    assert public_uri("sqlite:///mlruns/mlflow.db") == "sqlite:///mlruns/mlflow.db"


def test_params_are_flattened_to_dotted_keys():
    flat = flatten({"train": {"seed": 42, "hgb": {"learning_rate": 0.05}}, "gate": {"thresholds": [{"m": "f1"}]}})
    assert flat == {"train.seed": "42", "train.hgb.learning_rate": "0.05", "gate.thresholds": '[{"m": "f1"}]'}


def test_lock_tags_are_the_stage_output_hashes(tmp_path: Path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "schema: '2.0'\nstages:\n  train:\n    cmd: x\n    outs:\n    - path: artifacts/candidate\n"
        "      hash: md5\n      md5: abc.dir\n"
    )
    assert lock_tags(lock) == {"dvc.train.artifacts/candidate": "abc.dir"}
    assert lock_tags(tmp_path / "missing.lock") == {}


def test_report_links_the_run_of_this_candidate_only(workdir: Path):
    params = load_params()
    candidate = params.train.output_dir / "metadata.json"
    candidate.parent.mkdir(parents=True)
    candidate.write_text("{}")
    record = {"run_id": "r1", "url": "http://mlflow/#/experiments/1/runs/r1", "verdict": "VALIDATED",
              "registered_model": "mlops-template", "registered_version": "3"}  # fmt: skip
    params.tracking.run_file.parent.mkdir(parents=True, exist_ok=True)
    params.tracking.run_file.write_text(json.dumps(record | {"candidate_sha256": sha256_file(candidate)}))
    line = mlflow_run(params)
    assert line == (
        "MLflow run: [r1](http://mlflow/#/experiments/1/runs/r1) (VALIDATED); "
        "registered as `mlops-template` version 3 (`challenger`)"
    )
    candidate.write_text('{"retrained": true}')  # a newer candidate: the run file is stale
    assert mlflow_run(params) is None


def test_mlflow_client_and_server_pins_agree():
    def pin(path: str, package: str) -> str:
        lines = (ROOT / path).read_text().splitlines()
        return next(line.split("==")[1].split()[0] for line in lines if line.startswith(f"{package}=="))

    server = pin("requirements-dev.txt", "mlflow")
    assert pin("requirements-mlflow.txt", "mlflow-skinny") == server  # the client a MODEL_URI image installs
    # every project pin of a package mlflow depends on satisfies mlflow's range (pyarrow<26, numpy<3, ...): the
    # dev environment and the compose service's image (requirements.txt as constraints) resolve
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    pins = {}
    for path in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / path).read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                pins[line.split("==")[0].strip().lower()] = line.split("==")[1].split()[0]
    needed = [Requirement(r) for r in requires("mlflow") or [] if "extra ==" not in r]
    checked = {r.name.lower(): pins[r.name.lower()] for r in needed if r.name.lower() in pins}
    assert {"pyarrow", "numpy", "pandas", "scikit-learn"} <= set(checked)
    for requirement in needed:
        if requirement.name.lower() in checked:
            assert requirement.specifier.contains(checked[requirement.name.lower()]), (requirement, checked)
    # the compose service's server: built from the Dockerfile at the client pin's version (no second pin)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["mlflow"]["build"]["target"] == "mlflow"
    stage = (ROOT / "Dockerfile").read_text().split(" AS mlflow\n")[1].split("\nFROM ")[0]
    assert "/tmp/requirements-mlflow.txt" in stage and '"mlflow==${version}"' in stage and "3.17" not in stage
    assert "mlflow" not in (ROOT / "requirements.txt").read_text()  # the serving image stays without it
