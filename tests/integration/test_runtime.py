"""The runtime for real: the Procfile under honcho, the image built and run by a container engine.

The image test builds from a copy of the project (what a clean clone holds after `make pipeline`), so it
never touches this checkout's artifacts/. No engine: skipped locally, a failure in CI (see .ci/run).
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sklearn.dummy import DummyClassifier

from mlops_template.core.bundle import REJECTED, save_bundle
from mlops_template.core.config import load_params
from mlops_template.core.provenance import utc_text
from tests.conftest import ROOT, free_port, missing, model_record, require_tool

pytestmark = pytest.mark.integration
IMAGE_TOOL = ROOT / "tools" / "image_test.py"


def container_engine() -> list[str]:
    """CONTAINER_ENGINE (or docker) as argv, only if it can actually build and run containers."""
    configured = os.environ.get("CONTAINER_ENGINE")
    argv = shlex.split(configured or "docker")
    argv[0] = require_tool(argv[0], "set CONTAINER_ENGINE to a docker-compatible command")
    if not configured:  # a docker CLI without a reachable daemon is no engine either
        info = subprocess.run([*argv, "info"], capture_output=True, text=True, timeout=60)
        if info.returncode != 0:
            missing(f"`docker info` failed, no Docker engine: {info.stderr.strip()[-200:]}")
    return argv


@pytest.fixture(scope="module")
def validated_project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project directory where the pipeline ran and the gate VALIDATED the bundle (conftest's `trained`)."""
    try:
        return request.getfixturevalue("trained")
    except pytest.FixtureLookupError:  # a conftest without the shared fixture: run the pipeline here
        pass
    from mlops_template.pipeline import evaluate, gate, prep, train
    from mlops_template.pipeline.sample import write_sample

    directory = tmp_path_factory.mktemp("runtime-project")
    old = Path.cwd()
    os.chdir(directory)
    try:
        shutil.copy2(ROOT / "params.yaml", directory / "params.yaml")
        write_sample(directory / "data" / "loans.csv", rows=4000, seed=3)
        params = load_params()
        for stage in (prep, train, evaluate, gate):
            stage.run(params)
    finally:
        os.chdir(old)
    return directory


def bundle_dir(project: Path) -> Path:
    return project / load_params(ROOT / "params.yaml").gate.bundle_dir


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 90) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode} before /ready:\n{process.stdout.read()}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} not ready within {timeout} s")


def test_procfile_web_serves_on_port(validated_project: Path):
    honcho = require_tool("honcho", "pip install -r requirements-dev.txt")
    port = free_port()
    env = {**os.environ, "MODEL_DIR": str(bundle_dir(validated_project)), "PYTHONUNBUFFERED": "1"}
    env.pop("PORT", None)
    # honcho gives the first process type PORT=<--port>, as Heroku gives its dyno one.
    process = subprocess.Popen(
        [honcho, "start", "--no-colour", "--procfile", str(ROOT / "Procfile"), "--port", str(port), "web"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}/ready", process)
        assert ready.status_code == 200
        model = httpx.get(f"http://127.0.0.1:{port}/model", timeout=5).json()
        version = json.loads((bundle_dir(validated_project) / "metadata.json").read_text())["model_version"]
        assert version in json.dumps(model)
        process.send_signal(signal.SIGTERM)  # honcho forwards it to the server (exec'd: no shell in between)
        process.wait(timeout=40)
        output = process.stdout.read()
        # uvicorn finishes in-flight work, then re-raises SIGTERM: rc -15 (or 0) is clean, -9 would be a kill
        assert re.search(r"web\.1 stopped \(rc=(0|-15)\)", output), output[-3000:]
        assert "Application shutdown complete" in output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def project_copy(destination: Path, bundle: Path) -> Path:
    """The project's files (tracked and new, not ignored) plus a gated bundle: a clone after `make pipeline`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    shutil.copytree(bundle, destination / load_params(ROOT / "params.yaml").gate.bundle_dir)
    return destination


def run_image_tool(context: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(IMAGE_TOOL), "--context", str(context), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_image_build_refuses_a_rejected_bundle(tmp_path: Path):
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy2(ROOT / "params.yaml", context / "params.yaml")
    model = DummyClassifier().fit([[0], [1]], ["N", "Y"])
    save_bundle(context / "judged", model, model_record(gate={"verdict": REJECTED}))
    # the engine is never reached: a path that does not exist proves it
    result = run_image_tool(context, "--bundle", "judged", "--engine", str(tmp_path / "no-engine"), timeout=120)
    assert result.returncode == 1
    assert "refusing to build" in result.stderr
    assert "gate verdict is REJECTED" in result.stderr


def lock_bundle(context: Path, scratch: Path) -> str:
    """Record the context's bundle in its dvc.lock with the hash DVC itself computes (`dvc add` in a scratch repo),
    as `make pipeline` leaves it; returns that hash."""
    import yaml

    bundle = load_params(ROOT / "params.yaml").gate.bundle_dir
    shutil.copytree(context / bundle, scratch / "model")
    dvc = [sys.executable, "-m", "dvc"]
    for command in (["git", "init", "-q"], [*dvc, "init", "-q"], [*dvc, "add", "-q", "model"]):
        subprocess.run(command, cwd=scratch, check=True, capture_output=True, timeout=120)
    md5 = yaml.safe_load((scratch / "model.dvc").read_text())["outs"][0]["md5"]
    lock = yaml.safe_load((context / "dvc.lock").read_text())
    outs = [out for stage in lock["stages"].values() for out in stage.get("outs", []) if out["path"] == str(bundle)]
    assert len(outs) == 1, "dvc.lock records the gated bundle once (the gate stage's output)"
    outs[0]["md5"] = md5
    (context / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    return md5


@pytest.mark.timeout(2400)
def test_image_builds_runs_and_passes_its_checks(validated_project: Path, tmp_path: Path):
    engine = container_engine()
    context = project_copy(tmp_path / "context", bundle_dir(validated_project))
    (tmp_path / "scratch").mkdir()
    locked = lock_bundle(context, tmp_path / "scratch")
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"]):
        subprocess.run(["git", *command], cwd=context, check=True, capture_output=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=context, capture_output=True, text=True).stdout.strip()
    report = tmp_path / "image.json"
    image, ui_image = f"mlops-template-serving:test-{os.getpid()}", f"mlops-template-ui:test-{os.getpid()}"
    result = run_image_tool(context, "--engine", shlex.join(engine), "--image", image, "--ui-image", ui_image,
                            "--report", str(report))  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    recorded = json.loads(report.read_text())
    assert recorded["size_bytes"] > 50_000_000  # a Python + numpy image; the figure itself goes to the README
    checks = recorded["checks"]
    assert checks["uid"] != 0
    assert checks["healthcheck"].startswith("healthy")
    metadata = json.loads((bundle_dir(context) / "metadata.json").read_text())
    assert checks["model_version"] == metadata["model_version"]
    assert checks["git_commit"] == head and len(head) == 40  # GIT_COMMIT: the bundle records no commit
    # MODEL_COMMITTED_AT: the time of the commit whose dvc.lock recorded the bundle (the bundle records no time)
    epoch = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=context, capture_output=True, text=True).stdout
    assert checks["model_committed_at"] == utc_text(int(epoch))
    # the image carries the bundle dvc.lock records (DVC's own hash of it) and its model_version as a label
    assert checks["bundle"] == {"model_version_label": metadata["model_version"], "bundle_md5": locked,
                                "dvc_lock_md5": locked}  # fmt: skip
    assert checks["predict"]
    ui = checks["ui"]  # the web UI image beside it: healthy, not root, reads /model, stops cleanly
    assert ui["model_version"] == metadata["model_version"] and ui["uid"] != 0
    assert ui["healthcheck"].startswith("healthy") and ui["stop_exit_code"] in {0, 143}
    assert recorded["ui_size_mb"] > 0
    subprocess.run([*engine, "rmi", "-f", image, ui_image], capture_output=True, timeout=120)
