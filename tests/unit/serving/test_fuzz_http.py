"""Property-based fuzzing of the HTTP surface, beyond the schema: hostile bytes, JSON of any shape and depth,
huge numbers and strings, wrong content types and encodings, odd headers, on every route, against the ASGI app
in-process. Whatever arrives: never a 5xx, every refusal is the documented JSON error body, and the app keeps
serving. Examples per test: the Hypothesis profile (tests/conftest.py; `make fuzz` runs the long one)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_template.monitoring.security import ApiKeys
from mlops_template.serving.app import create_app
from mlops_template.serving.settings import Settings
from tests.serving_helpers import build_bundle

pytestmark = pytest.mark.fuzz

KEY = "fuzz-admin-key"
PREDICT_KEY = "fuzz-predict-key"
ORIGIN = b"https://ui.example"
MAX_ROWS = 20
BODY_ROUTES = ["/predict", "/feedback", "/experiment"]
GET_ROUTES = [
    "/health",
    "/ready",
    "/model",
    "/metrics",
    "/monitoring/drift",
    "/experiment",
    "/openapi.json",
    "/docs",
    "/redoc",
]
ERROR_KEYS = {"error", "message", "details", "request_id"}


class Served:
    """The app and one event loop for the whole module: requests run as a server would run them."""

    def __init__(self, app: Any, example: dict[str, Any]) -> None:
        self.app, self.example, self.runner = app, example, asyncio.Runner()
        self.features = list(example)

    def request(self, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
                ) -> tuple[int, dict[bytes, bytes], bytes]:  # fmt: skip
        return self.runner.run(asyncio.wait_for(self._call(method, path, headers, chunks), timeout=30))

    async def _call(self, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> Any:
        pending = [*chunks] or [b""]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode("utf-8", "surrogateescape"), "query_string": b"", "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
        }  # fmt: skip

        async def receive() -> dict[str, Any]:
            if pending:
                chunk = pending.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
            await asyncio.sleep(3600)  # the client waits for its answer: no disconnect
            return {"type": "http.disconnect"}

        start: dict[str, Any] = {}
        body: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return start["status"], dict(start.get("headers", [])), b"".join(body)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("fuzz"))


def serve(bundle: Path, **settings: Any) -> Served:
    options = Settings(model_dir=bundle, max_batch_rows=MAX_ROWS, max_body_bytes=64_000, rate_limit=False, **settings)
    app = create_app(options, admin_keys=ApiKeys.from_env({"ADMIN_API_KEYS": KEY}))
    return Served(app, json.loads((bundle / "metadata.json").read_text())["example"])


@pytest.fixture(scope="module")
def served(bundle: Path) -> Iterator[Served]:
    server = serve(bundle)
    yield server
    check_still_serving(server)
    server.runner.close()


@pytest.fixture(scope="module")
def guarded(bundle: Path) -> Iterator[Served]:
    """The same model behind PREDICT_API_KEYS (the PredictKeys middleware), PROTECT_METADATA (read routes) and
    CORS_ORIGINS (CORS middleware)."""
    server = serve(bundle, predict_api_keys=ApiKeys.parse(PREDICT_KEY), protect_metadata=True,
                   cors_origins=(ORIGIN.decode(),))  # fmt: skip
    yield server
    check_still_serving(server, [(b"x-api-key", PREDICT_KEY.encode())])
    server.runner.close()


def check_still_serving(server: Served, key: list[tuple[bytes, bytes]] | None = None) -> None:
    """The process keeps serving: probes and a valid prediction still answer."""
    for path in ("/health", "/ready"):
        assert server.request("GET", path, [], [])[0] == 200
    status, _, body = server.request("POST", "/predict", [(b"content-type", b"application/json"), *(key or [])],
                                     [orjson.dumps(server.example)])  # fmt: skip
    assert status == 200, body


def check(status: int, headers: dict[bytes, bytes], body: bytes, method: str, path: str) -> None:
    """No server error; every refusal is the documented JSON error body with the request id."""
    assert status < 500, body[:2000]
    request_id = headers[b"x-request-id"].decode()
    if status >= 400:
        assert headers[b"content-type"].startswith(b"application/json"), (status, headers)
        error = orjson.loads(body)
        assert set(error) == ERROR_KEYS, error
        assert isinstance(error["error"], str) and isinstance(error["message"], str) and error["message"]
        assert isinstance(error["details"], list)
        assert error["request_id"] == request_id
    elif status == 200 and method not in ("HEAD", "OPTIONS") and path not in ("/metrics", "/docs", "/redoc"):
        # every other answer is JSON (3xx: Starlette's redirect of "/predict/" to "/predict"; OPTIONS: an accepted
        # CORS preflight is Starlette's plain "OK")
        orjson.loads(body)


# ---- strategies -------------------------------------------------------------------------------------------------
huge_numbers = st.one_of(
    st.integers(min_value=-(10**1000), max_value=10**1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1.0, 2**63, 2**64, -(2**63) - 1, 1e308, 5e-324, 10**4299]),
)
texts = st.one_of(st.text(max_size=30), st.text(max_size=3000), st.sampled_from(["", " ", "\x00", "\ud7ff", "Y"]))
scalars = st.one_of(st.none(), st.booleans(), huge_numbers, texts)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5), max_leaves=30
)


@st.composite
def records(draw: st.DrawFn, served: Served) -> dict[str, Any]:
    """A record near the contract: the example with some fields replaced, dropped or added."""
    record = dict(served.example)
    for name in draw(st.lists(st.sampled_from(served.features), max_size=4, unique=True)):
        if draw(st.booleans()):
            record[name] = draw(json_values)
        else:
            del record[name]
    record.update(draw(st.dictionaries(texts, json_values, max_size=2)))
    return record


@st.composite
def admin_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Bodies near /feedback's and /experiment's: their field names with any values, and strays."""
    names = ["request_id", "actual", "mode", "challenger_share", "name"]
    fields = {name: draw(json_values | st.sampled_from(["single", "ab", "shadow", "bandit", "Y", "N", 0.5]))
              for name in draw(st.lists(st.sampled_from(names), max_size=4, unique=True))}  # fmt: skip
    return fields | draw(st.dictionaries(texts, json_values, max_size=1))


def encode(value: Any) -> bytes:
    """JSON text of `value`, NaN/Infinity included (not JSON: the service must refuse or name them)."""
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except ValueError:  # an int beyond Python's 4300-digit str limit
        return b"1" * 5000


header_values = st.one_of(
    st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")),
    st.sampled_from([b"", b" ", b"abc-123", b"a" * 129, b"\xff\xfe", b"../../etc", b"x\ty", b"\xc3\xa9t\xc3\xa9"]),
)  # what an HTTP/1.1 parser lets through: no CR, LF or NUL in a header value
content_types = st.sampled_from([b"application/json", b"application/json; charset=utf-16", b"text/plain",
                                 b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
                                 b"application/xml", b""]) | header_values  # fmt: skip
content_lengths = st.one_of(
    st.sampled_from(
        [b"0", b"-1", b"+5", b" 5", b"5 ", b"1e3", b"0x10", b"99999999999999999999999", b"", b"\xd9\xa3", b"\xb2"]
    ),  # \xb2: "²" in latin-1, a digit to str.isdigit() but not to int()
    st.integers(min_value=0, max_value=10**7).map(lambda n: str(n).encode()),
)


@st.composite
def headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    found = [(b"content-type", draw(content_types))] if draw(st.booleans()) else []
    if draw(st.booleans()):
        found.append((b"x-request-id", draw(header_values)))
    if draw(st.booleans()):
        found.append(
            (
                b"x-api-key",
                draw(st.sampled_from([KEY.encode(), KEY.encode() + b" ", PREDICT_KEY.encode()]) | header_values),
            )
        )
    if draw(st.integers(0, 4)) == 0:
        found.append((b"content-length", draw(content_lengths)))
    if draw(st.integers(0, 9)) == 0:
        found += [(b"x-client-id", draw(header_values)), (b"accept", draw(header_values))]
    if draw(st.integers(0, 4)) == 0:  # a browser's CORS preflight (with OPTIONS) or request, allowed or not
        found += [
            (b"origin", draw(st.sampled_from([ORIGIN, b"https://evil.example"]) | header_values)),
            (b"access-control-request-method", draw(st.sampled_from([b"POST", b"DELETE"]) | header_values)),
            (b"access-control-request-headers", draw(st.sampled_from([b"x-api-key", b"x-evil"]) | header_values)),
        ]
    return found


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> list[bytes]:
    """The body as one message, or streamed in random pieces (as a chunked upload arrives)."""
    if not body or draw(st.booleans()):
        return [body]
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]


def mutate(draw: st.DrawFn, body: bytes) -> bytes:
    """A valid body damaged: truncated, bytes flipped, inserted or deleted."""
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        at = draw(st.integers(0, len(data)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(
                st.binary(min_size=1, max_size=8) | st.sampled_from([b'"', b"[", b"{", b"\\u", b"\xef\xbb\xbf"])
            )
        elif at < len(data):
            del data[at]
    return bytes(data)


def send(served: Served, method: str, path: str, head: list, chunks: list[bytes]) -> None:
    status, response_headers, body = served.request(method, path, head, chunks)
    check(status, response_headers, body, method, path)


# ---- the properties ---------------------------------------------------------------------------------------------
@given(data=st.data())
def test_json_of_any_shape_on_every_body_route(served: Served, data: st.DataObject):
    route = data.draw(st.sampled_from(BODY_ROUTES))
    value = data.draw(st.one_of(
        json_values,
        records(served),
        st.lists(records(served), min_size=1, max_size=MAX_ROWS + 2),
        admin_bodies(),
    ))  # fmt: skip
    body = encode(value)
    send(served, "POST", route, data.draw(headers()), data.draw(chunked(body)))


@given(data=st.data())
def test_raw_and_damaged_bytes_on_every_body_route(served: Served, data: st.DataObject):
    route = data.draw(st.sampled_from(BODY_ROUTES))
    valid = orjson.dumps(data.draw(st.sampled_from([served.example, [served.example] * 3])))
    kind = data.draw(st.sampled_from(["random", "damaged", "valid"]))
    body = {"random": lambda: data.draw(st.binary(max_size=2000)), "damaged": lambda: mutate(data.draw, valid),
            "valid": lambda: valid}[kind]()  # fmt: skip
    send(served, "POST", route, data.draw(headers()), data.draw(chunked(body)))


@given(data=st.data())
def test_deep_nesting_and_huge_values_on_every_body_route(served: Served, data: st.DataObject):
    route = data.draw(st.sampled_from(BODY_ROUTES))
    depth = data.draw(st.integers(1, 3000))
    opener, closer = data.draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"x":', b"}]")]))
    inner = data.draw(st.sampled_from([b"1", b"NaN", b"null", b'"t"', b"1e999", b"-Infinity", b""]))
    nested = opener * depth + inner + closer * depth
    feature = data.draw(st.sampled_from(served.features))
    huge = data.draw(
        st.sampled_from([b"9" * 5000, b"1e400", b"-1e-400", b'"' + b"x" * 60_000 + b'"', b"[" + b"1," * 20_000 + b"1]"])
    )
    record = orjson.dumps(served.example)[:-1] + b',"' + feature.encode() + b'":' + huge + b"}"
    body = data.draw(st.sampled_from([nested, record]))
    send(served, "POST", route, data.draw(headers()), data.draw(chunked(body)))


@given(data=st.data())
def test_wrong_encodings_and_content_types(served: Served, data: st.DataObject):
    route = data.draw(st.sampled_from(BODY_ROUTES))
    value = data.draw(st.sampled_from([served.example, [served.example], {"request_id": "é", "actual": "Y"}]))
    text = json.dumps(value, ensure_ascii=False)
    encoding = data.draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]))
    body = text.encode(encoding, "replace")
    head = [(b"content-type", data.draw(content_types)), *data.draw(headers())]
    send(served, "POST", route, head, data.draw(chunked(body)))


@given(data=st.data())
def test_odd_headers_methods_and_paths(served: Served, guarded: Served, data: st.DataObject):
    served = data.draw(st.sampled_from([served, guarded]), label="app")  # guarded: keys, CORS
    method = data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"]))
    path = data.draw(st.sampled_from([*GET_ROUTES, *BODY_ROUTES, "/", "/predict/", "//predict", "/PREDICT"])
                     | st.text(max_size=40).map(lambda t: "/" + t))  # fmt: skip
    body = data.draw(st.sampled_from([b"", orjson.dumps(served.example)]) | st.binary(max_size=200))
    send(served, method, path, data.draw(headers()), data.draw(chunked(body)))
