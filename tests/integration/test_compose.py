"""docker-compose.yml started for real (CONTAINER_ENGINE compose): the service built from the Dockerfile, Redis,
nginx, Prometheus, Alertmanager, the alert relay and the web UI (target `ui`), in a copy of the project (a clone
after `make pipeline`).

One `compose up` for the session; one test asserts along the way: through nginx on its published port /ready, a
prediction and its feedback (admin key); Prometheus scrapes the service; a drifted batch makes `FeatureDrift` fire
and reach the relay, which posts the dispatch to a stand-in GitHub API (a compose service of the test's override
file); the web UI answers on its published port and reads /model from the service by its compose name;
`compose down` leaves no container behind. The waits of the shipped configuration (rule `for:`, intervals,
Alertmanager's group_wait) are cut to seconds in the copy only; the expressions, routes and receivers are the
shipped ones. Grafana (no stand-in image here) is not started: the services are named.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import free_port, require_tool, write_params
from tests.integration.serving.test_monitoring import records
from tests.integration.test_runtime import bundle_dir, project_copy

pytestmark = pytest.mark.integration
SERVICES = ("service", "redis", "nginx", "prometheus", "alertmanager", "alert-relay", "github", "ui")
IMAGE, UI_IMAGE = "mlops-template:compose-test", "mlops-template-ui:compose-test"
# inside the ui container: the model version the web UI reads from the service at its API_URL (service DNS)
UI_READS_MODEL = "from mlops_template.ui.client import Client; print('model', Client().model()['model_version'])"
ADMIN_KEY, RELAY_TOKEN, GITHUB_TOKEN, REPOSITORY = "compose-admin-key", "compose-relay-token", "gh-token", "o/r"
# The GitHub API stand-in: prints each request as one JSON line (read back with `compose logs github`).
FAKE_GITHUB = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        print("REQUEST " + json.dumps({"path": self.path, "authorization": self.headers.get("Authorization"),
                                       "body": json.loads(body or b"null")}), flush=True)
        self.send_response(204); self.end_headers()
    def log_message(self, *args): pass
HTTPServer(("0.0.0.0", 8000), H).serve_forever()
"""


def container_engine() -> list[str]:
    """CONTAINER_ENGINE as argv (compose needs a real engine: here ../shared/tools/container.sh, set by .ci/run)."""
    configured = os.environ.get("CONTAINER_ENGINE")
    argv = shlex.split(configured or "docker")
    argv[0] = os.path.abspath(require_tool(argv[0], "set CONTAINER_ENGINE to a docker-compatible command"))
    return argv


def shorten_waits(context: Path) -> None:
    """The copy's monitoring configuration with its waits cut to seconds (the shipped files are not touched)."""
    monitoring = context / "deploy" / "monitoring"
    rules = yaml.safe_load((monitoring / "alerts.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "2s"
    (monitoring / "alerts.yml").write_text(yaml.safe_dump(rules))
    config = yaml.safe_load((monitoring / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (monitoring / "prometheus.yml").write_text(yaml.safe_dump(config))
    routes = yaml.safe_load((monitoring / "alertmanager.yml").read_text())
    routes["route"].update(group_wait="1s", group_interval="1s")
    (monitoring / "alertmanager.yml").write_text(yaml.safe_dump(routes))
    # the service's own drift report: recomputed every second over a small window (image's params.yaml)
    drift = yaml.safe_load((context / "params.yaml").read_text())["monitoring"]["drift"]
    write_params(context, monitoring={"drift": {**drift, "min_rows": 200, "window_size": 1000, "refresh_seconds": 1}})


class Stack:
    """The running compose project: its engine command, environment and published ports."""

    def __init__(self, engine: list[str], context: Path, name: str) -> None:
        self.engine, self.context, self.name = engine, context, name
        self.ports = {key: free_port() for key in ("NGINX_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "UI_PORT")}
        self.env = {**os.environ, **{k: str(v) for k, v in self.ports.items()}, "ADMIN_API_KEYS": ADMIN_KEY,
                    "RELAY_TOKEN": RELAY_TOKEN, "GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_REPOSITORY": REPOSITORY,
                    "GITHUB_API_URL": "http://github:8000"}  # fmt: skip
        self.up_seconds = 0.0

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        command = [*self.engine, "compose", "-p", self.name, "-f", "docker-compose.yml", "-f", "compose.test.yml",
                   *args]  # fmt: skip
        result = subprocess.run(command, cwd=self.context, env=self.env, capture_output=True, text=True,
                                timeout=timeout)  # fmt: skip
        if check and result.returncode != 0:
            pytest.fail(f"compose {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                        f"{result.stderr[-3000:]}")  # fmt: skip
        return result

    def url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.ports[key]}"

    def logs(self, service: str) -> str:
        result = self.compose("logs", service, check=False, timeout=60)
        return result.stdout + result.stderr

    def containers(self) -> list[str]:
        listed = subprocess.run([*self.engine, "ps", "-a", "--filter", f"label=io.podman.compose.project={self.name}",
                                 "--format", "{{.Names}}"], capture_output=True, text=True, timeout=60)  # fmt: skip
        docker = subprocess.run([*self.engine, "ps", "-a", "--filter", f"label=com.docker.compose.project={self.name}",
                                 "--format", "{{.Names}}"], capture_output=True, text=True, timeout=60)  # fmt: skip
        return sorted(set((listed.stdout + docker.stdout).split()))


def until(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """The first truthy `check()` (transport errors count as not yet); fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
            if found:
                return found
        except (httpx.TransportError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def compose_stack(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """ONE `compose up` per session (build included; its wall time is printed), `compose down -v` after."""
    engine = container_engine()
    context = project_copy(tmp_path_factory.mktemp("compose") / "context", bundle_dir(trained))
    shorten_waits(context)
    (context / ".secrets").mkdir()
    (context / ".secrets" / "relay-token").write_text(RELAY_TOKEN)
    # the test's own image tag (a developer's mlops-template:local stays as it is); layers are cached across runs
    # RELAY_MIN_INTERVAL 0: FeatureDrift and PredictionDrift are separate Alertmanager groups, and with the shipped
    # one-retraining-an-hour limit whichever fires first would be the only dispatch (flaky: either can be first)
    override = {"services": {"service": {"image": IMAGE}, "ui": {"image": UI_IMAGE},
                             "alert-relay": {"image": IMAGE, "environment": {"RELAY_MIN_INTERVAL": "0"}},
                             "github": {"image": IMAGE, "command": ["python", "-c", FAKE_GITHUB],
                                        "depends_on": ["service"], "expose": ["8000"]}}}  # fmt: skip
    (context / "compose.test.yml").write_text(yaml.safe_dump(override))
    stack = Stack(engine, context, f"mlops-compose-test-{os.getpid()}")
    start = time.monotonic()
    try:
        stack.compose("up", "-d", "--build", *SERVICES, timeout=1800)
        stack.up_seconds = time.monotonic() - start
        print(f"\ncompose up (build included): {stack.up_seconds:.0f} s")
        yield stack
    finally:
        stack.compose("down", "-v", "--timeout", "20", check=False, timeout=300)
        volumes = subprocess.run([*engine, "volume", "ls", "--format", "{{.Name}}"], capture_output=True, text=True,
                                 timeout=60).stdout.split()  # fmt: skip
        leftover = [v for v in volumes if v.startswith(f"{stack.name}_")]  # podman-compose may leave named volumes
        if leftover:
            subprocess.run([*engine, "volume", "rm", "-f", *leftover], capture_output=True, timeout=60)


@pytest.mark.timeout(2400)
def test_compose_stack_serves_scrapes_alerts_and_stops(compose_stack: Stack, trained: Path) -> None:
    stack, nginx = compose_stack, compose_stack.url("NGINX_PORT")
    until(lambda: httpx.get(f"{nginx}/ready", timeout=5).status_code == 200, "/ready through nginx")
    assert httpx.get(f"{nginx}/metrics").status_code == 404  # scraped inside the network only

    rows = records(bundle_dir(trained), 2, seed=7)
    answer = httpx.post(f"{nginx}/predict", json=rows[0], timeout=10)
    assert answer.status_code == 200, answer.text
    predicted = answer.json()
    body = {"request_id": predicted["request_id"], "actual": predicted["predictions"][0]["prediction"]}
    headers = {"X-API-Key": ADMIN_KEY}
    # filed in Redis by the service's periodic flush (REDIS_URL of the compose file): 404 until then
    accepted = until(lambda: (r := httpx.post(f"{nginx}/feedback", json=body, headers=headers)).status_code == 200
                     and r, "feedback accepted", timeout=20)  # fmt: skip
    assert accepted.json()["success"] == {"champion": True}
    assert httpx.post(f"{nginx}/feedback", json=body).status_code == 401  # admin key required
    assert httpx.get(f"{nginx}/experiment").json()["variants"]["champion"]["feedback"] == 1

    prometheus = stack.url("PROMETHEUS_PORT")

    def service_target() -> dict | None:
        targets = httpx.get(f"{prometheus}/api/v1/targets").json()["data"]["activeTargets"]
        found = [t for t in targets if t["labels"]["job"] == "mlops-service" and t["health"] == "up"]
        return found[0] if found else None

    assert until(service_target, "Prometheus scraping the service")["scrapeUrl"] == "http://service:8000/metrics"

    drifted = records(bundle_dir(trained), 600, seed=41, drift=0.5)
    for start in range(0, len(drifted), 100):
        assert httpx.post(f"{nginx}/predict", json=drifted[start : start + 100], timeout=30).status_code == 200

    def feature_drift() -> set[str]:
        alerts = httpx.get(f"{prometheus}/api/v1/alerts").json()["data"]["alerts"]
        return {a["labels"].get("feature") for a in alerts if a["labels"]["alertname"] == "FeatureDrift"
                and a["state"] == "firing"}  # fmt: skip

    assert "loan_amount" in until(feature_drift, "FeatureDrift firing", timeout=90)

    def dispatched() -> list[dict]:
        # podman-compose prefixes and colours each line: the JSON object is all that sits between the braces
        return [json.loads(found[1]) for found in re.finditer(r"REQUEST (\{.*\})", stack.logs("github"))]

    def feature_drift_dispatched() -> list[dict]:
        return [s for s in dispatched() if "FeatureDrift" in s["body"]["client_payload"]["alerts"]]

    sent = until(feature_drift_dispatched, "the relay's FeatureDrift dispatch to GitHub", timeout=90)
    assert sent[0]["path"] == f"/repos/{REPOSITORY}/dispatches"
    assert sent[0]["authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert sent[0]["body"]["event_type"] == "retrain"
    assert "loan_amount" in sent[0]["body"]["client_payload"]["features"]

    # the web UI (Dockerfile target `ui`) on its published port, reading the service's /model over the network
    ui = stack.url("UI_PORT")
    until(lambda: httpx.get(f"{ui}/_stcore/health", timeout=5).status_code == 200, "the ui service's health")
    version = json.loads((bundle_dir(trained) / "metadata.json").read_text())["model_version"]
    assert f"model {version}" in stack.compose("exec", "ui", "python", "-c", UI_READS_MODEL, timeout=120).stdout
    assert "Traceback" not in stack.logs("ui")

    service_log = stack.logs("service")
    assert "Traceback" not in service_log
    loaded = [json.loads(m[0]) for m in re.finditer(r'\{"time".*"message": ?"model loaded".*\}', service_log)]
    assert loaded and loaded[0]["shared_state"] == "redis:6379"  # the compose file's REDIS_URL is in effect
    stack.compose("down", "-v", "--timeout", "20", timeout=300)
    assert stack.containers() == []
