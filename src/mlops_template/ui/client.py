"""The service's HTTP API as seen by the front end: JSON in, JSON out, every failure one readable sentence."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import httpx

from mlops_template.core.client_keys import key_headers

DEFAULT_API_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 30.0


class ApiProblem(Exception):
    """The service answered with an error (or did not answer): `str()` is the sentence a person reads."""

    def __init__(self, message: str, status: int | None = None, code: str = "", details: list[dict] | None = None,
                 retry_after: float | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.code, self.details, self.retry_after = status, code, details or [], retry_after


class ApiDown(ApiProblem):
    """No HTTP answer at all: the service is not running, not reachable or too slow."""


def api_url() -> str:
    """The service's base URL: API_URL, default the local service (`make serve`)."""
    return (os.environ.get("API_URL") or DEFAULT_API_URL).rstrip("/")


def detail_text(detail: dict) -> str:
    """One problem of a 422 as words: `row 3, field age: message` (row counted from 0 as in the request)."""
    where = []
    if detail.get("row") is not None:
        where.append(f"row {detail['row']}")
    if detail.get("field"):
        where.append(f"field {detail['field']}")
    return f"{', '.join(where)}: {detail.get('message', '')}" if where else str(detail.get("message", ""))


def problem(response: httpx.Response) -> ApiProblem:
    """The readable sentence for an error response: 422 lists rows and fields, 429 says when to retry."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    message = str(body.get("message") or response.reason_phrase or "no message")
    details = [d for d in body.get("details") or [] if isinstance(d, dict)]
    status = response.status_code
    retry_after = None
    if status == 422:
        shown = "; ".join(detail_text(d) for d in details[:10]) or message
        more = f" (and {len(details) - 10} more)" if len(details) > 10 else ""
        text = f"The service refused the input (422): {shown}{more}"
    elif status == 429:
        try:
            retry_after = float(response.headers.get("retry-after", "1"))
        except ValueError:
            retry_after = 1.0
        text = f"Too many requests (429): the service's rate limit was reached; retry in {retry_after:g} s"
    elif status in (401, 403):
        text = (f"The service refused the API key ({status}): {message}; set PREDICT_API_KEY (or ADMIN_API_KEY) "
                "for the UI to one of the service's keys")  # fmt: skip
    elif status == 503:  # the shared state's message says itself what is down and when it is tried again
        hint = "" if body.get("error") == "state_unavailable" else "; it may be starting or overloaded, retry shortly"
        text = f"The service is not available (503): {message}{hint}"
    else:
        text = f"The service answered HTTP {status}: {message}"
    return ApiProblem(text, status, str(body.get("error", "")), details, retry_after)


@dataclass
class Client:
    """A small synchronous client of the service (one connection pool per Streamlit session)."""

    base_url: str = field(default_factory=api_url)
    timeout: float = TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=self.timeout)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """JSON of a 2xx answer; ApiProblem (ApiDown when nothing answered) otherwise."""
        try:
            response = self.http.request(method, path, json=body, headers=key_headers(path))
        except httpx.TransportError as exc:
            raise ApiDown(
                f"The prediction service at {self.base_url} is not reachable ({type(exc).__name__}). "
                "Start it (`make serve`) or point API_URL at it."
            ) from None
        if response.status_code >= 400:
            raise problem(response)
        try:
            return response.json()
        except ValueError:
            raise ApiProblem(f"{method} {path}: the service answered something that is not JSON") from None

    def model(self) -> dict[str, Any]:
        return self.request("GET", "/model")

    def predict(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return self.request("POST", "/predict", records)

    def drift(self) -> dict[str, Any]:
        return self.request("GET", "/monitoring/drift")

    def experiment(self) -> dict[str, Any]:
        return self.request("GET", "/experiment")
