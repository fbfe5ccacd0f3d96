"""HTTP plumbing of the service: JSON bodies and errors, body limits, and its pure-ASGI middlewares.

Middlewares, outermost first (see `create_app`): RequestContext (request id, metrics, access log), CORS when
configured, PredictKeys when PREDICT_API_KEYS is set, RateLimit when enabled, DirectRoutes (the hot route without
the router), then FastAPI's own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import FastAPIError
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from mlops_template.monitoring.security import MISSING, OK, STATUS, ApiKeys, Decision, fingerprint
from mlops_template.serving.metrics import ServiceMetrics

log = logging.getLogger("mlops_template.serving")
access_log = logging.getLogger("mlops_template.serving.access")
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # anything else is replaced (no log injection)
MAX_JSON_DEPTH = 1024  # orjson's fixed limit of nested arrays/objects; request bodies need 2 or 3


class JSONBody(JSONResponse):
    """JSON via orjson (numpy-aware); a JSONResponse so the OpenAPI schema keeps the response models."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class ApiError(Exception):
    """A refusal answered as JSON {error: code, message, details, request_id} with HTTP `status`."""

    def __init__(self, status: int, code: str, message: str, details: Sequence[dict[str, Any]] = ()):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, list(details)


def error_body(request: Request, status: int, code: str, message: str, details: Sequence[dict] = ()) -> JSONBody:
    return JSONBody(
        {
            "error": code,
            "message": message,
            "details": list(details),
            "request_id": request.scope.get("request_id", ""),
        },
        status_code=status,
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds `limit` (declared or streamed/chunked)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):  # "²".isdigit() is True, but int() refuses it
            raise ApiError(400, "bad_request", "Content-Length header is not a number")
        if int(declared) > limit:
            raise _too_large(int(declared), limit)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(total, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes, expected: str, allow_nan: bool = False) -> Any:
    """The parsed body, or a 400 invalid_json naming the problem; `expected` says what to send instead.

    `allow_nan`: read NaN/Infinity (not JSON, but the stdlib reads them) so that validation names the field.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        problem = str(exc)
        if "depth limit" in problem:  # the stdlib fallback would overflow the C stack of the interpreter instead
            problem = f"nested deeper than {MAX_JSON_DEPTH} levels of arrays/objects"
        elif allow_nan:
            try:
                return json.loads(body.decode("utf-8"))  # strict UTF-8, as orjson: no UTF-16 guessing
            except RecursionError:  # NaN/Infinity are read by the stdlib, whose depth limit is lower
                problem = f"nested too deeply to read its NaN/Infinity; send null and at most {MAX_JSON_DEPTH} levels"
            except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
                pass
    message = "empty body" if not body.strip() else f"body is not valid JSON: {problem}"
    raise ApiError(400, "invalid_json", f"{message}; send {expected}")


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        "body_too_large",
        f"request body of {size}+ bytes exceeds MAX_BODY_BYTES={limit}; send fewer records per request",
    )


class RequestContext:
    """Pure ASGI middleware: request id, metrics by route template, one JSON access-log line per request."""

    def __init__(self, app: Any, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _incoming_request_id(scope["headers"]) or os.urandom(16).hex()
        scope["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        state = {"status": 500, "started": False}

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            state["status"] = 499  # the client went away mid-request: nothing to answer
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not state["started"]:
                body = orjson.dumps(
                    {
                        "error": "internal_error",
                        "message": "internal server error; see the logs",
                        "details": [],
                        "request_id": request_id,
                    }
                )
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send_with_id({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"  # template: bounded label values
            self.metrics.observe_request(route, scope["method"], state["status"], elapsed)
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": route,
                    "status": state["status"],
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )


def _incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if SAFE_REQUEST_ID.fullmatch(text) else None
    return None


UNLIMITED = frozenset({"/health", "/ready", "/metrics"})  # probes and scrapes must not be throttled


class RateLimit:
    """Pure ASGI middleware: a token bucket per client address (the real client's when behind a trusted
    proxy: uvicorn resolves X-Forwarded-For for FORWARDED_ALLOW_IPS), or per API key once `PredictKeys` has
    accepted one (scope["rate_client"]); 429 with Retry-After when empty."""

    def __init__(self, app: Any, limiter: Any, metrics: ServiceMetrics):
        self.app, self.limiter, self.metrics = app, limiter, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED:
            await self.app(scope, receive, send)
            return
        decision = self.limiter.allow(scope.get("rate_client") or client_address(scope))
        if decision.allowed:
            await self.app(scope, receive, send)
            return
        await rate_limited(scope, send, decision, self.metrics)


def route_path(scope: dict) -> str:
    """The path the router matches: without the root path (uvicorn --root-path puts it in front of `path`)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def client_address(scope: dict) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


async def rate_limited(scope: dict, send: Any, decision: Decision, metrics: ServiceMetrics) -> None:
    """The 429 answer, counted."""
    metrics.rate_limited.inc()
    message = f"too many requests from this client; retry in {decision.retry_after_header} s"
    await refuse(scope, send, 429, "rate_limited", message, [(b"retry-after", decision.retry_after_header.encode())])


async def refuse(scope: dict, send: Any, status: int, code: str, message: str,
                 headers: Sequence[tuple[bytes, bytes]] = ()) -> None:  # fmt: skip
    """The JSON error body, answered from a middleware (outside FastAPI's exception handlers)."""
    body = orjson.dumps({"error": code, "message": message, "details": [], "request_id": scope.get("request_id", "")})
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


class Cors(CORSMiddleware):
    """Starlette's CORS middleware (CORS_ORIGINS), but a refused preflight (an origin, method or header the policy does
    not allow) is the JSON error body with the request id, like every other refusal, not a text/plain 400."""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        # Starlette's own test for a preflight; headers parsed only for OPTIONS (not on every /predict)
        headers = Headers(scope=scope) if scope["type"] == "http" and scope["method"] == "OPTIONS" else None
        if headers is None or "origin" not in headers or "access-control-request-method" not in headers:
            await super().__call__(scope, receive, send)
            return
        response = self.preflight_response(request_headers=headers)
        if response.status_code != 400:
            await response(scope, receive, send)
            return
        kept = [(k, v) for k, v in response.raw_headers if k not in (b"content-type", b"content-length")]
        message = f"{response.body.decode()} (the service's CORS_ORIGINS policy)"  # e.g. "Disallowed CORS origin"
        await refuse(scope, send, 400, "cors_refused", message, kept)


class PredictKeys:
    """Pure ASGI middleware (outside RateLimit): `paths` need one of `keys` in the X-API-Key header (PREDICT_API_KEYS).

    An accepted key names the caller's rate-limit bucket (its fingerprint, never the key), so each key has its own
    limit wherever it comes from. A refused request takes a token from its address's bucket first: guessing keys
    is throttled like any other traffic (429), then answered 401 (no key) or 403 (wrong key) and counted.
    """

    def __init__(self, app: Any, keys: ApiKeys, paths: frozenset[str], limiter: Any, metrics: ServiceMetrics):
        self.app, self.keys, self.paths, self.limiter, self.metrics = app, keys, paths, limiter, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or route_path(scope) not in self.paths:
            await self.app(scope, receive, send)
            return
        presented = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-api-key"), None)
        outcome = self.keys.check(presented)  # constant time; the key is never logged or stored
        if outcome == OK:
            scope["rate_client"] = "key:" + fingerprint(presented or "")
            await self.app(scope, receive, send)
            return
        if self.limiter is not None:
            decision = self.limiter.allow(client_address(scope))
            if not decision.allowed:
                await rate_limited(scope, send, decision, self.metrics)
                return
        status = STATUS[outcome]
        self.metrics.predict_failures.labels(str(status)).inc()
        if outcome == MISSING:
            await refuse(scope, send, 401, "unauthorized", "this route needs an API key in the X-API-Key header")
        else:
            await refuse(scope, send, 403, "forbidden", "the X-API-Key key is not valid")


class DirectRoute(APIRoute):
    """An APIRoute documented like any other, whose endpoint takes the Request and returns the Response.

    FastAPI's per-request machinery (dependency solving, body parsing, response validation, exit stacks)
    is skipped: the endpoint reads and checks the body itself, and its ApiErrors are answered here, so
    `DirectRoutes` can call it without the router and exception middlewares. Used for the hot route, /predict.
    So a dependency (`dependencies=[...]`, `Depends`/`Security` parameters, the app's or router's own) or any
    parameter but the Request would silently never run: such a route is refused when it is created.
    """

    def __init__(self, path: str, endpoint: Callable[[Request], Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        ignored = [f"dependency {getattr(d.call, '__name__', d.call)!r}" for d in self.dependant.dependencies]
        for kind in ("path", "query", "header", "cookie", "body"):
            ignored += [f"{kind} parameter {f.name!r}" for f in getattr(self.dependant, f"{kind}_params")]
        if ignored:
            raise FastAPIError(
                f"DirectRoute {path}: its endpoint is called with the Request only, so {', '.join(ignored)} would "
                "never be run or read; do that inside the endpoint, or use a normal APIRoute"
            )
        if self.dependant.request_param_name is None:
            raise FastAPIError(
                f"DirectRoute {path}: the endpoint must take the Request (it is called as endpoint(request))"
            )

        async def app(scope: dict, receive: Any, send: Any) -> None:
            request = Request(scope, receive, send)
            try:
                response = await endpoint(request)
            except ApiError as exc:
                response = error_body(request, exc.status, exc.code, exc.message, exc.details)
            await response(scope, receive, send)

        self.app = app


class DirectRoutes:
    """Pure ASGI middleware, the innermost one: requests for a DirectRoute go straight to it.

    Starlette's router, exception and exit-stack middlewares cost ~15 µs per request (12% of a single-row
    /predict); the middlewares outside this one (request id, metrics, access log, CORS, rate limit) still
    run. Anything else, and a DirectRoute under a root path, takes the normal way.
    """

    def __init__(self, app: Any, routes: Sequence[DirectRoute]) -> None:
        self.app = app
        self.table = {(method, route.path): route for route in routes for method in route.methods}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        route = self.table.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # as the router does: the metrics and access log label requests by route
        await route.app(scope, receive, send)
