"""The compose stack's optional `mlflow` service for real: built from the Dockerfile (target `mlflow`), started with
its profile by the container engine (CONTAINER_ENGINE, as the image test), a run logged from the host through the
published port, then `compose down`. No engine: skipped locally, a failure in CI (see .ci/run)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, wait_http
from tests.integration.test_runtime import container_engine


def test_compose_mlflow_service_tracks_a_run_from_the_host(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    engine, port = container_engine(), free_port()
    # its own project name: other tests (and people) may run the stack's other services at the same time
    compose = [*engine, "compose", "-p", f"mlflow-test-{os.getpid()}", "-f", str(ROOT / "docker-compose.yml")]
    compose += ["--profile", "mlflow"]
    env = {**os.environ, "MLFLOW_PORT": str(port)}

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*compose, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)

    try:
        up = run("up", "-d", "--build", "mlflow", timeout=1200)
        assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/health", timeout=180)
        except OSError:
            pytest.fail(f"the mlflow service did not answer on port {port}:\n{run('logs', 'mlflow').stdout[-3000:]}")
        assert "<title>MLflow" in httpx.get(url, timeout=10).text  # the web UI (not in mlflow-skinny)
        client = MlflowClient(url)
        experiment = client.create_experiment("compose")
        run_id = client.create_run(experiment).info.run_id
        client.log_param(run_id, "estimator", "hist_gradient_boosting")
        client.log_metric(run_id, "roc_auc", 0.91)
        (tmp_path / "metrics.json").write_text('{"roc_auc": 0.91}\n')
        client.log_artifact(run_id, str(tmp_path / "metrics.json"))  # through the server into its volume
        client.set_terminated(run_id)
        stored = client.get_run(run_id)
        assert stored.data.params == {"estimator": "hist_gradient_boosting"}
        assert stored.data.metrics == {"roc_auc": 0.91} and stored.info.status == "FINISHED"
        downloaded = client.download_artifacts(run_id, "metrics.json", str(tmp_path / "back"))
        assert Path(downloaded).read_text() == '{"roc_auc": 0.91}\n'
        # another host name than those the compose file allows (DNS rebinding): refused (/health is exempt)
        api = f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=compose"
        assert httpx.get(api, timeout=10).status_code == 200
        assert httpx.get(api, headers={"Host": f"evil.example:{port}"}, timeout=10).status_code in (400, 403)
    finally:
        down = run("down", "-v", timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr
