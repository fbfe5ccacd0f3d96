"""Shared test helpers. External tools: skipped locally when absent, a failure in CI (CI=true)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

# Property-based tests (Hypothesis): a bounded, reproducible run in `make test`; `make fuzz` runs the long one
# (HYPOTHESIS_PROFILE=fuzz: random seeds, many more examples, failures kept in .hypothesis/ to replay).
settings.register_profile(
    "bounded", max_examples=400, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
settings.register_profile(
    "fuzz", max_examples=5_000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bounded"))

if TYPE_CHECKING:
    from mlops_template.core.bundle import ModelRecord
    from tests.object_store import ObjectStore

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(message: str) -> None:
    """Something a test needs is absent: a failure in CI (it must be installed there), a skip locally."""
    if IN_CI:
        pytest.fail(f"{message} (CI must install it: see .ci/run)")
    pytest.skip(message)


def require_tool(name: str, hint: str = "") -> str:
    """Path of an external command; skip when missing, except in CI where it must be installed."""
    path = shutil.which(name)
    if not path:
        missing(f"{name} not found on PATH{': ' + hint if hint else ''}")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeHandler(BaseHTTPRequestHandler):
    """Request handler of a loopback fake (GitHub, a deployed service, an exporter): quiet, JSON replies."""

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free loopback port in a thread; yields the base URL, stops the server after."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def wait_http(url: str, timeout: float = 30) -> None:
    """Poll `url` until it answers 2xx; re-raise the last error after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def root() -> Path:
    return ROOT


def write_params(directory: Path, **sections: dict) -> Path:
    """params.yaml in `directory`: the project's own, with whole sections or keys overridden."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        params[section] = {**params.get(section, {}), **values} if isinstance(values, dict) else values
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary project directory (cwd) with the default params and a small sample dataset."""
    from mlops_template.pipeline.sample import write_sample

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    write_sample(tmp_path / "data" / "loans.csv", rows=3000, seed=1)
    return tmp_path


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project directory where the whole pipeline already ran once (shared, treat as read-only)."""
    from mlops_template.core.config import load_params
    from mlops_template.pipeline import evaluate, gate, prep, train
    from mlops_template.pipeline.sample import write_sample

    directory = tmp_path_factory.mktemp("trained")
    old = Path.cwd()
    os.chdir(directory)
    try:
        write_params(directory)
        write_sample(directory / "data" / "loans.csv", rows=4000, seed=3)
        params = load_params()
        prep.run(params)
        train.run(params)
        evaluate.run(params)
        gate.run(params)
    finally:
        os.chdir(old)
    return directory


def model_record(**changes: object) -> ModelRecord:
    """A small, valid metadata record (two features, binary), with top-level fields replaced by `changes`."""
    from mlops_template.core.bundle import ModelRecord

    record = {
        "task": "binary",
        "target": "label",
        "classes": ["N", "Y"],
        "positive_class": "Y",
        "estimator": "logistic_regression",
        "features": [
            {
                "name": "income",
                "type": "numeric",
                "missing_rate": 0.0,
                "min": 10.0,
                "max": 100.0,
                "median": 50.0,
                "integer": False,
            },
            {"name": "area", "type": "categorical", "missing_rate": 0.0, "categories": ["Rural", "Urban"]},
        ],
        "example": {"income": 50.0, "area": "Urban"},
        "training_data": {"source": "data.csv", "sha256": "0" * 64, "rows": {"train": 8, "test": 2}},
        "params": {
            "schema": {"target": "label", "task": "binary"},
            "train": {"estimator": "logistic_regression", "seed": 0, "hyperparameters": {}},
        },
        "metrics": None,
        "gate": {"verdict": "PENDING"},
        "onnx": {"used": False, "reason": "not exported in this test"},
    }
    return ModelRecord.model_validate(record | changes)


# `make test` runs on pytest-xdist workers (`-n 2 --dist loadscope`): each module's tests run on one worker (its
# module-scoped fixtures are built once), and so do the modules of one group below, one after another, because
# they share something machine-wide. act: the act wrapper (its first call installs act), act's cache server
# (ACT_CACHE_DIR) and `npm ci` into this checkout's node_modules (gitlab-ci-local, `make lint-workflows`).
# containers: the container engine (its first use builds the base images; image tags; compose projects).
SERIAL_GROUPS = {
    "act": (
        "tests/integration/pipeline/test_fork_data.py",
        "tests/integration/test_ci_lint.py",
        "tests/integration/test_gitlab_ci.py",
        "tests/integration/test_workflow_ci.py",
        "tests/integration/test_workflow_ct.py",
        "tests/integration/test_workflow_deploy.py",
    ),
    "containers": (
        "tests/integration/test_compose.py",
        "tests/integration/test_runtime.py",
        "tests/integration/tracking/test_compose_mlflow.py",
    ),
}
SERIAL_MODULES = {module: group for group, modules in SERIAL_GROUPS.items() for module in modules}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration runs real tools: it carries the `integration` marker. A module with a
    `workflows` test (act) must be in SERIAL_GROUPS["act"]."""
    folder = ROOT / "tests" / "integration"
    for item in items:
        if item.path.is_relative_to(folder):
            item.add_marker(pytest.mark.integration)
    act = {item.path.relative_to(ROOT).as_posix() for item in items if item.get_closest_marker("workflows")}
    if unlisted := sorted(act - set(SERIAL_GROUPS["act"])):
        raise pytest.UsageError(f"tests/conftest.py: add {unlisted} to SERIAL_GROUPS['act'] (act runs one at a time)")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`--dist loadscope` by module, and by group for the modules of SERIAL_GROUPS."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SERIAL_MODULES.get(module, module)

    return ModuleScheduling(config, log)


def sh(cwd: Path, *command: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """A command in `cwd` with this interpreter's tools first on PATH; a failure fails the test with its output."""
    full = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    result = subprocess.run(command, cwd=cwd, env=full, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def dvc_project_copy(copy: Path) -> Path:
    """A fresh clone-like copy in `copy`: tracked files only, its own git history, a small sample under DVC."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in filter(None, tracked.stdout.split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    write_params(copy, data={"sample": {"rows": 2500, "seed": 11, "drift": 0.0}})
    sh(copy, "git", "init", "-q", "-b", "main")
    sh(copy, sys.executable, "-m", "mlops_template", "sample")
    sh(copy, "dvc", "add", "-q", "data")
    sh(copy, "git", "add", "-A")
    sh(copy, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy")
    return copy


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """A Google Cloud Storage emulator on loopback for the session (tests/object_store.py): DVC remotes on it."""
    from tests.object_store import start_object_store

    yield from start_object_store(tmp_path_factory.mktemp("object-store"))
