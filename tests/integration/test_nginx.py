"""nginx in front of a real uvicorn app on loopback: config check, rate limit (429) and body limit (413)."""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, require_tool

pytestmark = pytest.mark.integration
CONFIG = ROOT / "deploy" / "monitoring" / "nginx.conf"

UPSTREAM = textwrap.dedent(
    """
    from fastapi import FastAPI, Request

    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(request: Request):
        return {"bytes": len(await request.body())}
    """
)


def local_config(tmp_path: Path, upstream: int, listen: int) -> Path:
    """The shipped config with only the addresses changed (loopback instead of compose names)."""
    text = CONFIG.read_text()
    assert "server service:8000;" in text and "listen 8080;" in text
    text = text.replace("server service:8000;", f"server 127.0.0.1:{upstream};")
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    text = re.sub(r"access_log [^;]+;", f"access_log {tmp_path}/access.log;", text)
    path = tmp_path / "nginx.conf"
    path.write_text(text)
    return path


def nginx_command(binary: str, config: Path, tmp_path: Path) -> list[str]:
    directives = f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; daemon off;"
    return [binary, "-p", str(tmp_path), "-c", str(config), "-g", directives]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def request(port: int, method: str, path: str, body: bytes | None = None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/octet-stream"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_shipped_config_passes_nginx_t(tmp_path: Path) -> None:
    binary = require_tool("nginx", "Debian package nginx")
    config = local_config(tmp_path, free_port(), free_port())
    result = subprocess.run(
        [
            *nginx_command(binary, config, tmp_path)[:-2],
            "-g",
            f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;",
            "-t",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


@pytest.fixture
def proxied(tmp_path: Path):
    binary = require_tool("nginx", "Debian package nginx")
    upstream, listen = free_port(), free_port()
    (tmp_path / "upstream_app.py").write_text(UPSTREAM)
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "upstream_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(upstream),
            "--log-level",
            "warning",
        ],
        cwd=tmp_path,
    )
    proxy = subprocess.Popen(nginx_command(binary, local_config(tmp_path, upstream, listen), tmp_path))
    try:
        wait_port(upstream)
        wait_port(listen)
        yield listen
    finally:
        for process in (proxy, app):
            process.terminate()
            process.wait(timeout=10)


def test_requests_pass_through_until_the_burst_then_429(proxied: int) -> None:
    assert request(proxied, "GET", "/health") == 200
    assert request(proxied, "GET", "/metrics") == 404  # not exposed through the proxy
    statuses = []
    deadline = time.monotonic() + 20
    # a burst far above 20 r/s: the first ~40 pass (burst, nodelay), then nginx answers 429
    while statuses.count(429) < 20 and time.monotonic() < deadline:
        statuses.append(request(proxied, "POST", "/predict", b"{}"))
    assert set(statuses) <= {200, 429}
    assert statuses.count(429) >= 20
    assert statuses[:35].count(200) == 35  # the burst allowance was honoured before limiting


def test_oversized_body_gets_413_without_reaching_the_service(proxied: int, tmp_path: Path) -> None:
    assert request(proxied, "POST", "/predict", b"x" * 1000) == 200
    assert request(proxied, "POST", "/predict", b"x" * (2 << 20)) == 413
