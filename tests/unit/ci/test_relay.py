"""Alert relay: body mapping, settings, and the relay as a real HTTP server on loopback in front of a fake GitHub.

Alertmanager must always get an answer: 502 on any upstream failure (it retries), 4xx for a bad request.
The round trip with a real Alertmanager is in tests/integration/ci/test_relay.py.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mlops_template.ci.relay import Relay, RelaySettings, dispatch_body, make_server
from mlops_template.core.errors import UserError
from tests.conftest import FakeHandler, free_port, loopback_server


def alert(status: str, **labels: str) -> dict:
    return {"status": status, "labels": {"alertname": "FeatureDrift", **labels}, "startsAt": "2026-01-01T00:00:00Z"}


def test_firing_alerts_become_a_dispatch_with_at_most_ten_payload_keys() -> None:
    body = dispatch_body(
        {
            "status": "firing",
            "groupKey": "g",
            "alerts": [alert("firing", feature="b"), alert("firing", feature="a"), alert("resolved", feature="z")],
        },
        "retrain",
    )
    assert body["event_type"] == "retrain"
    assert body["client_payload"]["features"] == ["a", "b"] and body["client_payload"]["alerts"] == ["FeatureDrift"]
    assert len(body["client_payload"]) <= 10


def test_resolved_notifications_dispatch_nothing() -> None:
    assert dispatch_body({"status": "resolved", "alerts": [alert("resolved")]}, "retrain") is None
    assert dispatch_body({"status": "firing", "alerts": []}, "retrain") is None


def test_settings_come_from_the_environment_and_never_show_the_token() -> None:
    settings = RelaySettings.from_env(
        {
            "GITHUB_REPOSITORY": "o/r",
            "GITHUB_TOKEN": "tok",
            "RELAY_MIN_INTERVAL": "5",
            "GITHUB_API_URL": "https://ghe.example/api/v3/",
        }
    )
    assert settings.api_url == "https://ghe.example/api/v3" and settings.min_interval == 5.0
    assert "tok" not in repr(settings)
    with pytest.raises(UserError, match="GITHUB_TOKEN"):
        RelaySettings.from_env({"GITHUB_REPOSITORY": "o/r"})
    with pytest.raises(UserError, match="owner/name"):
        RelaySettings.from_env({"GITHUB_REPOSITORY": "nope", "GITHUB_TOKEN": "t"})
    with pytest.raises(UserError, match="RELAY_MIN_INTERVAL"):
        RelaySettings.from_env({"GITHUB_REPOSITORY": "o/r", "GITHUB_TOKEN": "t", "RELAY_MIN_INTERVAL": "soon"})


@contextmanager
def relay_server(api_url: str, timeout: float = 5.0) -> Iterator[tuple[str, int]]:
    """The relay's own HTTP server on a free loopback port, in a thread."""
    settings = RelaySettings("acme/loans", "gh-secret", api_url, inbound_token="relay-secret", timeout=timeout)
    server = make_server(Relay(settings), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield "127.0.0.1", server.server_port
    finally:
        server.shutdown()
        server.server_close()


def post_alert(address: tuple[str, int], body: bytes, length: str | None = None) -> tuple[int, dict]:
    """POST /alerts as Alertmanager does; `length` overrides the Content-Length header."""
    connection = http.client.HTTPConnection(*address, timeout=30)
    try:
        connection.putrequest("POST", "/alerts")
        connection.putheader("Authorization", "Bearer relay-secret")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)) if length is None else length)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


FIRING = json.dumps({"status": "firing", "alerts": [alert("firing", feature="loan_amount")]}).encode()


def fake_github(behaviour: str) -> type[FakeHandler]:
    class GitHubAPI(FakeHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.path == "/repos/acme/loans/dispatches" and body["event_type"] == "retrain"
            assert self.headers["Authorization"] == "Bearer gh-secret"
            if behaviour == "slow":
                time.sleep(3)  # longer than the relay's timeout
            if behaviour == "hang up":
                self.close_connection = True
                return  # the connection closes without a status line
            if behaviour == "error":
                return self.reply(500, {"message": "Server Error"})
            self.send_response(204)
            self.end_headers()

    return GitHubAPI


def test_a_dispatch_accepted_by_github_is_202() -> None:
    with loopback_server(fake_github("ok")) as api, relay_server(api) as relay:
        assert post_alert(relay, FIRING) == (202, {"dispatched": True, "event_type": "retrain"})


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [("error", "HTTP 500"), ("slow", "timed out"), ("hang up", "GitHub API POST /dispatches")],
)
def test_any_upstream_failure_is_a_502_answer(behaviour: str, reason: str) -> None:
    with loopback_server(fake_github(behaviour)) as api, relay_server(api, timeout=0.5) as relay:
        status, answer = post_alert(relay, FIRING)
        assert (status, answer["dispatched"]) == (502, False)
        assert reason in answer["reason"] and "gh-secret" not in answer["reason"]
        # the failed dispatch did not count as a retraining: the next alert tries again
        assert post_alert(relay, FIRING)[0] == 502


def test_connection_refused_is_a_502_answer() -> None:
    with relay_server(f"http://127.0.0.1:{free_port()}") as relay:  # nothing listens there
        status, answer = post_alert(relay, FIRING)
        assert (status, answer["dispatched"]) == (502, False)
        assert "refused" in answer["reason"].lower()


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", "²"])
def test_a_bad_content_length_is_a_400_answer(length: str) -> None:
    with relay_server(f"http://127.0.0.1:{free_port()}") as relay:
        assert post_alert(relay, FIRING, length=length) == (400, {"error": "Content-Length is not a number"})


@pytest.mark.parametrize("body", [b"\xff\xfe", b'{"alerts": [1]}', b'{"alerts": [{"labels": []}]}', b"[]"])
def test_malformed_webhook_bodies_are_a_400_answer(body: bytes) -> None:
    with relay_server(f"http://127.0.0.1:{free_port()}") as relay:
        assert post_alert(relay, body)[0] == 400
