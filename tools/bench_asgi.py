"""Per-request CPU of /predict without the network: the ASGI apps called in a loop (floor vs service).

`python tools/bench_asgi.py [--calls N] [--runs R]` (run `make pipeline` first; pin it with `taskset -c 0` for
steadier figures). Uses the bundle in MODEL_DIR (default: params.yaml's), the metadata example as the body, JSON
logs configured as `serve` does but written to /dev/null. Prints µs per request (best of R runs) and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from mlops_template.core.client_keys import key_headers

sys.path.insert(0, str(Path(__file__).resolve().parent))
# a service with PREDICT_API_KEYS wants the key (PREDICT_API_KEY or ADMIN_API_KEY in this environment)
KEY = [(name.lower().encode(), value.encode()) for name, value in key_headers("/predict").items()]


async def call(app: Any, body: bytes) -> None:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a disconnect never comes: the response is complete before
        return {"type": "http.disconnect"}

    status: list[int] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *KEY],
        "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    await app(scope, receive, send)
    if status != [200]:
        raise SystemExit(f"bench-asgi: /predict answered {status}")


async def per_request(app: Any, body: bytes, calls: int, runs: int) -> float:
    for _ in range(min(300, calls)):
        await call(app, body)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            await call(app, body)
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


async def main() -> None:
    # one client at full speed would be rate limited (429): measure the service without the limiter, as bench-serve
    os.environ.setdefault("RATE_LIMIT", "off")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import bench_apps

    from mlops_template.core.bundle import read_metadata
    from mlops_template.serving.app import create_app
    from mlops_template.serving.logs import configure
    from mlops_template.serving.settings import Settings

    settings = Settings.from_env()
    configure(settings.log_level)
    service = create_app(settings)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    for handler in logging.getLogger().handlers:  # keep the formatting cost, drop the output
        handler.setStream(devnull)  # type: ignore[attr-defined]
    body = json.dumps(read_metadata(settings.model_dir).example).encode()
    floor = await per_request(bench_apps.floor, body, args.calls, args.runs)
    predict = await per_request(service, body, args.calls, args.runs)
    print(
        json.dumps({"floor_us": round(floor, 1), "service_us": round(predict, 1), "ratio": round(floor / predict, 3)})
    )


if __name__ == "__main__":
    asyncio.run(main())
