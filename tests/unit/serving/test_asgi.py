"""The service's ASGI plumbing on small apps: JSON errors, body limits, request context, rate limit, direct routes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import FastAPIError
from fastapi.security import APIKeyHeader
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from mlops_template.core.config import RateLimitConfig
from mlops_template.monitoring.security import RateLimiter
from mlops_template.serving.asgi import (
    ApiError,
    DirectRoute,
    DirectRoutes,
    JSONBody,
    RateLimit,
    RequestContext,
    read_body,
)
from mlops_template.serving.metrics import ServiceMetrics


def sample(metrics: ServiceMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def small_app(metrics: ServiceMetrics, limit: int = 10) -> FastAPI:
    """A direct route and a normal one, wrapped like create_app wraps the service (RequestContext outermost)."""
    app = FastAPI()

    async def echo(request: Request) -> Response:
        body = await read_body(request, limit)
        if body == b"fail":
            raise ApiError(422, "bad", "refused", [{"row": 0, "field": "x", "message": "no"}])
        if body == b"bug":
            raise RuntimeError("a bug")
        if body == b"gone":
            raise ClientDisconnect()
        return JSONBody({"got": body.decode(), "route": request.scope["route"].path, "n": np.arange(2)})

    app.router.add_api_route("/echo", echo, methods=["POST"], route_class_override=DirectRoute)

    @app.get("/slow")
    async def slow() -> Response:
        return JSONBody({"route": "normal"})

    app.add_middleware(DirectRoutes, routes=[r for r in app.router.routes if isinstance(r, DirectRoute)])
    app.add_middleware(RequestContext, metrics=metrics)
    return app


@pytest.fixture
def served() -> tuple[TestClient, ServiceMetrics]:
    metrics = ServiceMetrics()
    return TestClient(small_app(metrics), raise_server_exceptions=False), metrics


def test_direct_route_answers_and_labels_metrics_by_route(served) -> None:
    client, metrics = served
    response = client.post("/echo", content=b"hi", headers={"X-Request-ID": "r-1"})
    assert response.json() == {"got": "hi", "route": "/echo", "n": [0, 1]}  # numpy arrays serialized
    assert response.headers["x-request-id"] == "r-1"
    assert client.get("/slow").json() == {"route": "normal"}  # not direct: the router serves it
    assert sample(metrics, "http_requests_total", route="/echo", method="POST", status="200") == 1
    assert sample(metrics, "http_request_duration_seconds_count", route="/echo") == 1
    client.get("/nowhere")
    assert sample(metrics, "http_requests_total", route="unmatched", method="GET", status="404") == 1


def test_errors_are_json_with_the_request_id(served) -> None:
    client, metrics = served
    refused = client.post("/echo", content=b"fail")
    assert refused.status_code == 422
    body = refused.json()
    assert body == {
        "error": "bad",
        "message": "refused",
        "details": [{"row": 0, "field": "x", "message": "no"}],
        "request_id": refused.headers["x-request-id"],
    }
    crashed = client.post("/echo", content=b"bug")  # unexpected: 500, logged, no traceback to the client
    assert crashed.status_code == 500
    assert crashed.json()["error"] == "internal_error" and "Traceback" not in crashed.text
    assert crashed.json()["request_id"] == crashed.headers["x-request-id"]
    client.post("/echo", content=b"gone")
    assert sample(metrics, "http_requests_total", route="/echo", method="POST", status="499") == 1


def test_request_ids_are_made_or_kept_only_when_safe(served) -> None:
    client, _ = served
    made = client.get("/slow").headers["x-request-id"]
    assert len(made) == 32 and int(made, 16) >= 0
    assert client.get("/slow", headers={"X-Request-ID": "a.b:c-1"}).headers["x-request-id"] == "a.b:c-1"
    for unsafe in ("with space", "x" * 129, "semi;colon"):
        assert client.get("/slow", headers={"X-Request-ID": unsafe}).headers["x-request-id"] != unsafe


def test_body_limit_declared_streamed_and_malformed(served) -> None:
    client, _ = served
    declared = client.post("/echo", content=b"x" * 11)
    assert (declared.status_code, declared.json()["error"]) == (413, "body_too_large")
    assert "MAX_BODY_BYTES=10" in declared.json()["message"]

    def chunks():  # no Content-Length: counted while streaming
        yield b"x" * 6
        yield b"x" * 6

    assert client.post("/echo", content=chunks()).status_code == 413
    assert client.post("/echo", content=b"x" * 10).json()["got"] == "x" * 10  # the limit itself passes
    bad = client.post("/echo", content=b"hi", headers={"content-length": "two"})
    assert (bad.status_code, bad.json()["error"]) == (400, "bad_request")


@pytest.mark.parametrize("declared", [b"two", b"-1", b"1e3", b"\xb2", b"\xd9\xa3"])
def test_a_content_length_that_is_not_a_number_is_a_400(declared: bytes) -> None:
    """The header as an ASGI server hands it over (raw bytes, which TestClient re-encodes): "²" (latin-1 \xb2) is
    a digit to str.isdigit() but not to int(), and was a 500."""
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"content-length", declared)]}  # fmt: skip

    async def receive() -> dict:
        return {"type": "http.request", "body": b"hi", "more_body": False}

    with pytest.raises(ApiError) as refused:
        asyncio.run(read_body(Request(scope, receive), 10))
    assert (refused.value.status, refused.value.code) == (400, "bad_request")


def test_rate_limit_refuses_with_retry_after_but_never_probes() -> None:
    metrics = ServiceMetrics()
    app = FastAPI()

    @app.get("/health")
    async def health() -> Response:
        return JSONBody({"status": "ok"})

    @app.get("/model")
    async def model() -> Response:
        return JSONBody({})

    limiter = RateLimiter(RateLimitConfig(requests_per_second=0.001, burst=2))
    app.add_middleware(RateLimit, limiter=limiter, metrics=metrics)
    app.add_middleware(RequestContext, metrics=metrics)
    client = TestClient(app)
    statuses = [client.get("/model").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = client.get("/model")
    assert refused.json()["error"] == "rate_limited" and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert all(client.get("/health").status_code == 200 for _ in range(5))  # probes are never throttled
    assert sample(metrics, "http_rate_limited_total") == 2


def test_direct_routes_outside_their_table_take_the_normal_way() -> None:
    metrics = ServiceMetrics()
    client = TestClient(small_app(metrics), root_path="/api", raise_server_exceptions=False)
    assert client.post("/api/echo", content=b"hi").json()["got"] == "hi"  # the router found it instead
    assert client.get("/echo").status_code == 405  # a method the direct route does not have: the router's answer


async def direct(request: Request) -> Response:
    return JSONBody({})


def key_check(key: str | None = Security(APIKeyHeader(name="X-API-Key", auto_error=False))) -> None:
    raise AssertionError("never called: the route is refused first")


@pytest.mark.parametrize("dependency", [Security(key_check), Depends(key_check)], ids=["Security", "Depends"])
def test_direct_route_refuses_route_dependencies(dependency) -> None:
    app = FastAPI()
    with pytest.raises(FastAPIError, match=r"DirectRoute /d: .*dependency 'key_check' would never be run"):
        app.router.add_api_route(
            "/d", direct, methods=["POST"], route_class_override=DirectRoute, dependencies=[dependency]
        )


def test_direct_route_refuses_endpoint_and_app_dependencies_and_parameters() -> None:
    async def guarded(request: Request, key: None = Security(key_check)) -> Response:
        return JSONBody({})

    async def with_query(request: Request, limit: int = 5) -> Response:
        return JSONBody({})

    async def no_request() -> Response:
        return JSONBody({})

    app = FastAPI()
    with pytest.raises(FastAPIError, match="dependency 'key_check'"):
        app.router.add_api_route("/d", guarded, methods=["POST"], route_class_override=DirectRoute)
    with pytest.raises(FastAPIError, match="query parameter 'limit'"):
        app.router.add_api_route("/d", with_query, methods=["POST"], route_class_override=DirectRoute)
    with pytest.raises(FastAPIError, match="must take the Request"):
        app.router.add_api_route("/d", no_request, methods=["POST"], route_class_override=DirectRoute)
    guarded_app = FastAPI(dependencies=[Security(key_check)])  # an app-wide dependency would be skipped too
    with pytest.raises(FastAPIError, match="dependency 'key_check'"):
        guarded_app.router.add_api_route("/d", direct, methods=["POST"], route_class_override=DirectRoute)
    app.router.add_api_route("/d", direct, methods=["POST"], route_class_override=DirectRoute)  # the allowed form
