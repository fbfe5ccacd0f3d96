"""Shared integration fixtures: a small gated bundle and real uvicorn servers on loopback.

`live_server(model_dir, **env)` starts `python -m mlops_template serve` on a free port (as the image
and Procfile do), waits for /ready and stops it (SIGTERM) at teardown. Other suites (monitoring, A/B)
can reuse it with their own env. `redis_server` is a real redis-server (Debian package) on a free loopback port
for the session, without persistence (a restart comes back empty); `redis_url` empties it for each test.
`mlflow_server` is a real `mlflow server` for the session (the tracking tests and the act run of ci.yml).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, require_tool, wait_http
from tests.serving_helpers import build_bundle


@dataclass
class LiveServer:
    url: str
    port: int
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 40) -> int:
        """SIGTERM (what docker stop, Heroku and Kubernetes send) and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@pytest.fixture(scope="session")
def served_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VALIDATED bundle of the default estimator (with its verified ONNX model), trained on a small sample."""
    return build_bundle(tmp_path_factory.mktemp("served"), "hist_gradient_boosting", rows=2000)


def serve_command() -> list[str]:
    return [sys.executable, "-m", "mlops_template", "serve"]


def server_env(model_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "MODEL_RUNTIME")}
    return env | {"MODEL_DIR": str(model_dir), "PORT": str(port), "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"} | extra


def start_server(model_dir: Path, log_dir: Path, ready_timeout: float = 90, **env: str) -> LiveServer:
    """`python -m mlops_template serve` on a free port, returned once /ready answers 200 (the caller stops it)."""
    port = free_port()
    log = log_dir / f"server-{port}.log"
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen(serve_command(), cwd=ROOT, env=server_env(model_dir, port, **env),
                                   stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
    server = LiveServer(f"http://127.0.0.1:{port}", port, process, log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode} before /ready:\n{server.output()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"server not ready within {ready_timeout} s:\n{server.output()[-3000:]}")


@contextmanager
def running_server(model_dir: Path, log_dir: Path, **env: str) -> Iterator[LiveServer]:
    """A served bundle for a `with` block or a wider-scoped fixture (several tests sharing one server)."""
    server = start_server(model_dir, log_dir, **env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(model_dir: Path, ready_timeout: float = 90, **env: str) -> LiveServer:
        server = start_server(model_dir, tmp_path, ready_timeout, **env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.stop()


@dataclass
class RedisServer:
    """A redis-server process on loopback that a test may stop and start again (same port, empty)."""

    port: int
    directory: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> None:
        command = [require_tool("redis-server", "Debian package redis-server (make system-deps)"),
                   "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=self.directory)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited with {self.process.returncode}: {self.log()[-2000:]}")
            if self.ping():
                return
            time.sleep(0.05)
        pytest.fail(f"redis-server not answering on port {self.port} within {timeout} s: {self.log()[-2000:]}")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.is_file() else ""


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, running (a test may have stopped it) and empty."""
    import redis

    if not redis_server.ping():
        redis_server.start()
    redis.Redis(port=redis_server.port).flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` (SQLite store, local artifact root, free loopback port), once per session: the
    tracking tests and the act run of ci.yml log to it."""
    store = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    log = open(store / "server.log", "w", encoding="utf-8")  # noqa: SIM115 - closed at teardown
    argv = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    argv += ["--backend-store-uri", f"sqlite:///{store}/mlflow.db", "--artifacts-destination", str(store / "artifacts")]
    # no job runner: MLflow 3 otherwise starts seven busy huey consumer processes the tracking tests never use
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(argv, cwd=store, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=120)
    except OSError:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"mlflow server did not start:\n{(store / 'server.log').read_text()[-3000:]}")
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()
