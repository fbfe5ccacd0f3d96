"""Alert -> retrain: a real Alertmanager posts to the real relay, which calls a local fake GitHub API.

The fake GitHub endpoint checks what GitHub would check: path, token, API headers, and the body
against the schema of `POST /repos/{owner}/{repo}/dispatches`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT, FakeHandler, free_port, loopback_server, require_tool, wait_http

pytestmark = pytest.mark.integration

# GitHub REST API, "Create a repository dispatch event": body parameters
DISPATCH_SCHEMA = {
    "type": "object",
    "required": ["event_type"],
    "additionalProperties": False,
    "properties": {
        "event_type": {"type": "string", "minLength": 1, "maxLength": 100},
        "client_payload": {"type": "object", "maxProperties": 10},
    },
}


class FakeGitHub:
    """Records each dispatch it receives with the problems found in it (path, token, headers, schema)."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        outer = self

        class Handler(FakeHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                problems = []
                if self.path != "/repos/acme/loans/dispatches":
                    problems.append(f"path {self.path}")
                if self.headers.get("Authorization") != "Bearer gh-secret":
                    problems.append("token")
                if self.headers.get("Accept") != "application/vnd.github+json":
                    problems.append("accept")
                if not self.headers.get("X-GitHub-Api-Version"):
                    problems.append("api version")
                try:
                    jsonschema.validate(body, DISPATCH_SCHEMA)
                except jsonschema.ValidationError as error:
                    problems.append(error.message)
                outer.received.append({"body": body, "problems": problems})
                self.send_response(422 if problems else 204)
                self.end_headers()

        self.handler = Handler


@pytest.fixture
def github():
    fake = FakeGitHub()
    with loopback_server(fake.handler) as url:
        fake.url = url
        yield fake


@pytest.fixture
def relay(github, tmp_path):
    port = free_port()
    env = {
        **os.environ,  # keeps coverage's subprocess measurement; the GitHub settings below override any real ones
        "GITHUB_REPOSITORY": "acme/loans",
        "GITHUB_TOKEN": "gh-secret",
        "GITHUB_API_URL": github.url,
        "RELAY_TOKEN": "relay-secret",
        "RELAY_MIN_INTERVAL": "3600",
    }
    log = open(tmp_path / "relay.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "mlops_template", "alert-relay", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        assert "gh-secret" not in (tmp_path / "relay.log").read_text()  # secrets never logged


def post(url: str, payload, token: str | None = "relay-secret") -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def notification(status: str) -> dict:
    alert = {
        "status": status,
        "labels": {"alertname": "FeatureDrift", "feature": "loan_amount", "action": "retrain"},
        "annotations": {},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus",
        "fingerprint": "abc",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="FeatureDrift"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "retrain",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


def test_relay_dispatches_once_and_refuses_bad_calls(relay, github) -> None:
    assert post(f"{relay}/alerts", notification("firing"), token=None)[0] == 401
    assert post(f"{relay}/alerts", notification("firing"), token="wrong")[0] == 401
    assert post(f"{relay}/alerts", {"not": "alertmanager"})[0] == 400
    assert post(f"{relay}/alerts", notification("resolved")) == (
        200,
        {"dispatched": False, "reason": "no firing alert"},
    )
    assert github.received == []
    status, answer = post(f"{relay}/alerts", notification("firing"))
    assert (status, answer["dispatched"]) == (202, True)
    assert len(github.received) == 1 and github.received[0]["problems"] == []
    body = github.received[0]["body"]
    assert body["event_type"] == "retrain"
    assert body["client_payload"]["alerts"] == ["FeatureDrift"] and body["client_payload"]["features"] == [
        "loan_amount"
    ]
    status, answer = post(f"{relay}/alerts", notification("firing"))  # within RELAY_MIN_INTERVAL
    assert status == 200 and not answer["dispatched"] and len(github.received) == 1


def test_real_alertmanager_drives_the_relay(relay, github, tmp_path) -> None:
    binary = require_tool("prometheus-alertmanager", "Debian package prometheus-alertmanager")
    config = yaml.safe_load((ROOT / "deploy/monitoring/alertmanager.yml").read_text())
    config["route"] |= {"group_wait": "1s", "group_interval": "1s"}
    webhook = config["receivers"][1]["webhook_configs"][0]
    webhook["url"] = f"{relay}/alerts"
    (tmp_path / "relay-token").write_text("relay-secret")
    webhook["http_config"]["authorization"]["credentials_file"] = str(tmp_path / "relay-token")
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port, cluster = free_port(), free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--cluster.listen-address=127.0.0.1:{cluster}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "am.log", "w"),  # noqa: SIM115
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready")
        alerts = [
            {
                "labels": {
                    "alertname": "FeatureDrift",
                    "feature": "loan_amount",
                    "action": "retrain",
                    "severity": "warning",
                },
                "annotations": {"summary": "drift"},
            },
            {"labels": {"alertname": "HighLatencyP99", "severity": "warning"}},
        ]  # not routed to retrain
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()
        deadline = time.monotonic() + 30
        while not github.received and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert len(github.received) == 1, (tmp_path / "am.log").read_text()[-2000:]
    assert github.received[0]["problems"] == []
    assert github.received[0]["body"]["client_payload"]["alerts"] == ["FeatureDrift"]
