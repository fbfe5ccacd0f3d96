"""The HTTP client: every error answer of the service becomes one sentence (a loopback server answers)."""

from __future__ import annotations

import json

import httpx
import pytest

from mlops_template.ui.client import ApiDown, ApiProblem, Client, api_url, detail_text, problem
from tests.conftest import FakeHandler, free_port, loopback_server

ANSWERS = {
    "/predict": (422, {"error": "invalid_records", "message": "2 problem(s)", "details": [
        {"row": 0, "field": "age", "message": "field required"},
        {"row": 3, "field": None, "message": "not an object"}]}),
    "/model": (429, {"error": "rate_limited", "message": "too many requests", "details": []}),
    "/monitoring/drift": (503, {"error": "not_ready", "message": "model loading", "details": []}),
    "/experiment": (500, "<html>oops</html>"),
}  # fmt: skip


class Service(FakeHandler):
    def do_GET(self) -> None:
        status, body = ANSWERS[self.path]
        if isinstance(body, str):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())
            return
        if status == 429:
            self.send_response(status)
            payload = json.dumps(body).encode()
            self.send_header("Retry-After", "7")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.reply(status, body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.reply(*ANSWERS[self.path])


@pytest.fixture(scope="module")
def client():
    with loopback_server(Service) as url:
        yield Client(url)


def test_422_names_rows_and_fields(client: Client):
    with pytest.raises(ApiProblem) as caught:
        client.predict([{"age": 1}])
    assert caught.value.status == 422 and caught.value.code == "invalid_records"
    assert str(caught.value) == (
        "The service refused the input (422): row 0, field age: field required; row 3: not an object"
    )


def test_429_says_when_to_retry(client: Client):
    with pytest.raises(ApiProblem, match=r"Too many requests \(429\).*retry in 7 s") as caught:
        client.model()
    assert caught.value.retry_after == 7.0


def test_503_and_other_errors_are_sentences(client: Client):
    with pytest.raises(ApiProblem, match=r"not available \(503\): model loading"):
        client.drift()
    with pytest.raises(ApiProblem, match=r"answered HTTP 500: Internal Server Error"):
        client.experiment()


def test_a_503_of_the_shared_state_is_its_own_sentence():
    """Redis down (REDIS_URL): the service's message names what is down and when it retries; no guess added."""
    message = ("shared monitoring state unavailable: Redis at 127.0.0.1:6399 (REDIS_URL) did not answer; "
               "retry once it is back (tried again every 1 s)")  # fmt: skip
    body = {"error": "state_unavailable", "message": message, "details": []}
    sentence = str(problem(httpx.Response(503, json=body)))
    assert sentence == f"The service is not available (503): {message}"


def test_nothing_listening_is_service_down(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("API_URL", f"http://127.0.0.1:{free_port()}/")
    client = Client()
    assert client.base_url == api_url() and not client.base_url.endswith("/")
    with pytest.raises(ApiDown, match=r"not reachable .*make serve"):
        client.model()


def test_detail_without_row_or_field_is_its_message():
    assert detail_text({"row": None, "field": None, "message": "empty"}) == "empty"
