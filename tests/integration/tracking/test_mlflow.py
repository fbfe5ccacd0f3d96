"""MLflow for real: `mlflow run . -e pipeline` and `dvc exp run` against a live `mlflow server`.

One pipeline run (module scope) is checked for everything it must leave behind: one run whose metrics are
reports/metrics.json, params, tags (data hash, git commit, dvc.lock hashes), the model, the registry version
with `challenger`; then `promote` -> `champion`, the service from MODEL_URI, `mlflow models serve`, and a
REJECTED experiment that never reaches the registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, dvc_project_copy, free_port, sh, wait_http

MODEL_NAME = "mlops-template"
EXPERIMENT = "pipeline-tests"


@pytest.fixture(scope="module")
def client(mlflow_server: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(mlflow_server)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> dict[str, Any]:
    """A clone-like copy of the repository where `mlflow run . -e pipeline` ran once against the server."""
    copy = tmp_path_factory.mktemp("mlflow-project")
    dvc_project_copy(copy)
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    result = sh(copy, "mlflow", "run", ".", "-e", "pipeline", "--env-manager", "local", "--experiment-name", EXPERIMENT,
                env=env)  # fmt: skip
    return {"dir": copy, "env": env, "output": result.stdout + result.stderr}


def test_one_run_with_the_pipelines_params_metrics_and_tags(project: dict[str, Any], client: Any):
    copy = project["dir"]
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]  # train, evaluate, gate: one run
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.metrics == json.loads((copy / "reports" / "metrics.json").read_text())
    params = yaml.safe_load((copy / "params.yaml").read_text())
    assert run.data.params["train.estimator"] == params["train"]["estimator"]
    assert run.data.params["data.sample.rows"] == "2500"
    assert json.loads(run.data.params["gate.thresholds"]) == params["gate"]["thresholds"]
    metadata = json.loads((copy / "artifacts" / "model" / "metadata.json").read_text())
    tags = run.data.tags
    assert tags["gate.verdict"] == "VALIDATED"
    assert tags["data.sha256"] == metadata["training_data"]["sha256"]
    assert tags["git_commit"] == sh(copy, "git", "rev-parse", "HEAD").stdout.strip()  # from git: not in the bundle
    assert tags["model_version"] == metadata["model_version"]
    lock = yaml.safe_load((copy / "dvc.lock").read_text())["stages"]
    assert tags["dvc.train.artifacts/candidate"] == lock["train"]["outs"][0]["md5"]
    assert tags["dvc.prep.artifacts/prepared"] == lock["prep"]["outs"][0]["md5"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plots", "gate", "metrics.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/roc.json" in plots
    record = json.loads((copy / "reports" / "mlflow-run.json").read_text())
    assert record["run_id"] == run.info.run_id and record["url"].endswith(f"/runs/{run.info.run_id}")
    assert run.info.run_id in project["output"]  # the run `mlflow run` created is the pipeline's run
    # evaluate creates the run and gate completes it; train never pays MLflow's import
    assert "stage evaluate logged" in project["output"] and "stage gate logged" in project["output"]
    assert "stage train logged" not in project["output"]


def test_validated_model_registered_as_challenger_and_loadable(project: dict[str, Any], client: Any):
    import mlflow.pyfunc
    import pandas as pd

    from mlops_template.core.bundle import load_bundle

    version = client.get_model_version_by_alias(MODEL_NAME, "challenger")
    bundle = load_bundle(project["dir"] / "artifacts" / "model")
    assert version.tags["model_version"] == bundle.version
    assert version.tags["gate.verdict"] == "VALIDATED"
    assert float(version.tags["metric.roc_auc"]) == bundle.metadata.metrics["roc_auc"]
    os.environ["MLFLOW_TRACKING_URI"] = project["env"]["MLFLOW_TRACKING_URI"]
    try:
        model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@challenger")
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    features = bundle.metadata.feature_names
    assert [c.name for c in model.metadata.get_input_schema().inputs] == features
    frame = pd.DataFrame([bundle.metadata.example])[features]
    assert list(model.predict(frame)) == list(bundle.model.predict(frame))


def test_promote_then_serve_from_model_uri(project: dict[str, Any], client: Any, live_server):
    copy, env = project["dir"], project["env"]
    before = client.search_model_versions(f"name = '{MODEL_NAME}'")  # (the session's act run of ci.yml adds one)
    sh(copy, sys.executable, "-m", "mlops_template", "gate", env=env)  # re-judging the same bundle: no new version
    assert len(client.search_model_versions(f"name = '{MODEL_NAME}'")) == len(before)
    image = "ghcr.io/acme/model@sha256:" + "a" * 64
    sh(copy, sys.executable, "-m", "mlops_template", "promote", "--image", image, env=env)
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.version == client.get_model_version_by_alias(MODEL_NAME, "challenger").version
    assert champion.tags["image"] == image
    metadata = json.loads((copy / "artifacts" / "model" / "metadata.json").read_text())
    server = live_server(Path("/nonexistent"), MODEL_URI=f"models:/{MODEL_NAME}@champion", **env)
    assert httpx.get(f"{server.url}/model").json()["model_version"] == metadata["model_version"]
    reply = httpx.post(f"{server.url}/predict", json=metadata["example"])
    assert reply.status_code == 200, reply.text


def test_model_uri_refusals_are_one_line(project: dict[str, Any], mlflow_server: str):
    cases = {
        f"models:/{MODEL_NAME}@nobody": ("MODEL_URI=models:/", mlflow_server),
        f"models:/{MODEL_NAME}@champion": ("not reachable", f"http://127.0.0.1:{free_port()}"),
    }
    for uri, (expected, tracking) in cases.items():
        result = sh(ROOT, sys.executable, "-m", "mlops_template", "serve", check=False,
                    env={"MODEL_URI": uri, "MLFLOW_TRACKING_URI": tracking, "PORT": str(free_port())})  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_mlflow_models_serve_the_exported_bundle(project: dict[str, Any], tmp_path: Path):
    from mlops_template.cli import main

    copy = project["dir"]  # the export `make bench-serve` serves: the same MLflow Model the pipeline logs
    args = ["--params", str(copy / "params.yaml"), "mlflow-model", "--bundle", str(copy / "artifacts" / "model")]
    assert main([*args, "--output", str(tmp_path / "m")]) == 0
    assert main([*args, "--output", str(tmp_path / "m")]) == 2  # never over an existing folder
    port = free_port()
    argv = ["mlflow", "models", "serve", "-m", str(tmp_path / "m"), "--env-manager", "local", "-h", "127.0.0.1"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen([*argv, "-p", str(port)], env=env, cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", timeout=120)
        example = json.loads((copy / "artifacts" / "model" / "metadata.json").read_text())["example"]
        reply = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": [example]}, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["predictions"][0] in ("Y", "N")
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def test_rejected_experiment_is_tracked_but_never_registered(project: dict[str, Any], client: Any):
    copy, env = project["dir"], project["env"]
    before = {v.version for v in client.search_model_versions(f"name = '{MODEL_NAME}'")}
    sh(copy, "git", "add", "-A")
    sh(copy, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "after the first run")
    strict = "gate.thresholds=[{metric: roc_auc, min: 0.9999}]"
    result = sh(copy, "dvc", "exp", "run", "-S", "train.seed=5", "-S", strict, "-S", "onnx.enabled=false",
                env={**env, "MLFLOW_EXPERIMENT_NAME": "rejected"}, check=False)  # fmt: skip
    assert result.returncode != 0 and "REJECTED" in result.stdout + result.stderr
    runs = client.search_runs([client.get_experiment_by_name("rejected").experiment_id])
    assert len(runs) == 1
    assert runs[0].data.tags["gate.verdict"] == "REJECTED"
    assert runs[0].data.tags["gate.failed"] == "roc_auc"
    assert runs[0].data.metrics["roc_auc"] < 0.9999
    assert {v.version for v in client.search_model_versions(f"name = '{MODEL_NAME}'")} == before
    # its logged model is in the tracking server, but the service refuses it like a local REJECTED bundle
    logged = client.search_logged_models(experiment_ids=[runs[0].info.experiment_id])
    assert len(logged) == 1
    served = sh(ROOT, sys.executable, "-m", "mlops_template", "serve", check=False,
                env={**env, "MODEL_URI": f"models:/{logged[0].model_id}", "PORT": str(free_port())})  # fmt: skip
    errors = [line for line in served.stderr.splitlines() if line.startswith("error:")]
    assert served.returncode == 2 and len(errors) == 1 and "gate verdict is REJECTED" in errors[0], served.stderr
    assert "Traceback" not in served.stderr


@pytest.fixture(scope="module")
def train_entry_point(project: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`mlflow run . -e train -P ...` in the environment python_env.yaml describes, built by uv (once)."""
    copy, env = project["dir"], project["env"]
    sh(copy, "git", "checkout", "--", ".")  # a failed `dvc exp run` (the REJECTED test) leaves its -S edits behind
    env = {**env, "MLFLOW_ENV_ROOT": str(tmp_path_factory.mktemp("mlflow-envs"))}
    result = sh(copy, "mlflow", "run", ".", "-e", "train", "-P", "estimator=logistic_regression", "-P", "seed=7",
                "--env-manager", "uv", "--experiment-name", "entry-points", env=env)  # fmt: skip
    return {"env": env, "output": result.stdout + result.stderr}


def test_train_entry_point_runs_an_experiment_with_the_overrides(
    project: dict[str, Any], train_entry_point: dict[str, Any], client: Any
):
    copy = project["dir"]
    assert "using uv" in train_entry_point["output"]  # python_env.yaml's environment, not this interpreter's
    runs = client.search_runs([client.get_experiment_by_name("entry-points").experiment_id])
    assert len(runs) == 1  # the pipeline logged into the run `mlflow run` started
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.project.entryPoint"] == "train"
    assert run.data.tags["mlflow.project.env"] == "uv"
    params = run.data.params
    assert (params["estimator"], params["seed"]) == ("logistic_regression", "7")  # MLflow's record of the -P overrides
    assert (params["train.estimator"], params["train.seed"]) == ("logistic_regression", "7")  # what the pipeline used
    assert run.data.metrics == json.loads((copy / "reports" / "metrics.json").read_text())
    metadata = json.loads((copy / "artifacts" / "model" / "metadata.json").read_text())
    assert (
        metadata["estimator"] == "logistic_regression" and run.data.tags["model_version"] == metadata["model_version"]
    )
    assert "logistic_regression" in sh(copy, "dvc", "exp", "show", "--no-pager", "--csv").stdout  # a DVC experiment too


def test_serve_entry_point_answers_predictions(project: dict[str, Any], train_entry_point: dict[str, Any]):
    copy, port = project["dir"], free_port()
    argv = ["mlflow", "run", ".", "-e", "serve", "-P", f"port={port}", "--env-manager", "uv"]
    env = {
        **os.environ,
        **train_entry_point["env"],
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    log = copy / "serve-entry-point.log"
    with log.open("w") as out:
        process = subprocess.Popen([*argv, "--experiment-name", "entry-points"], cwd=copy, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        try:
            wait_http(f"http://127.0.0.1:{port}/ready", timeout=120)
        except OSError:
            pytest.fail(f"`mlflow run . -e serve` not ready:\n{log.read_text()[-3000:]}")
        metadata = json.loads((copy / "artifacts" / "model" / "metadata.json").read_text())
        assert httpx.get(f"http://127.0.0.1:{port}/model").json()["model_version"] == metadata["model_version"]
        reply = httpx.post(f"http://127.0.0.1:{port}/predict", json=metadata["example"], timeout=30)
        assert reply.status_code == 200, reply.text
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    assert "already exists" in log.read_text()  # the environment the train entry point built, reused
