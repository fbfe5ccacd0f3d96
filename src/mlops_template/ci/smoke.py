"""Post-deploy checks against a running service: readiness, one real prediction, and its model's metrics."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mlops_template.core.bundle import read_metadata_file
from mlops_template.core.client_keys import key_headers
from mlops_template.core.errors import UserError
from mlops_template.core.fsutil import write_text

log = logging.getLogger(__name__)


def _request(url: str, body: Any = None, timeout: float = 10, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:  # a private Cloud Run service: an identity token for its URL
        headers["Authorization"] = f"Bearer {token}"
    headers |= key_headers(
        urllib.parse.urlsplit(url).path
    )  # PREDICT_API_KEY / ADMIN_API_KEY, when the service wants one
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return status, raw.decode(errors="replace")[:300]


def wait_ready(base: str, wait: float, interval: float = 2.0, token: str | None = None) -> None:
    """Poll GET /ready until 200 or `wait` seconds pass (a new revision may still be starting)."""
    deadline = time.monotonic() + wait
    last = "no answer"
    while True:
        try:
            status, payload = _request(f"{base}/ready", token=token)
            if status == 200:
                return
            last = f"HTTP {status}: {payload}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise UserError(f"{base}/ready did not answer 200 within {wait:g} s (last: {last})")
        time.sleep(interval)


def _model_info(base: str, token: str | None = None) -> dict[str, Any]:
    status, payload = _request(f"{base}/model", token=token)
    if status != 200 or not isinstance(payload, dict):
        raise UserError(f"{base}/model: HTTP {status}: {payload}")
    return payload.get("metadata", payload) if isinstance(payload.get("metadata"), dict) else payload


def example_record(base: str, metadata_path: Path | None, token: str | None = None) -> dict[str, Any]:
    """The bundle's example record: from a local metadata.json when given, else from the service's /model."""
    if metadata_path is not None:
        if not metadata_path.is_file():
            raise UserError(f"{metadata_path}: not found; run `make pipeline` or omit --metadata to ask /model")
        example: Any = read_metadata_file(metadata_path).example
    else:
        example = _model_info(base, token).get("example")
    if not isinstance(example, dict) or not example:
        raise UserError("the model metadata has no `example` record to send to /predict")
    return example


def wait_for_release(
    base: str, expected: dict[str, str], wait: float, interval: float = 2.0, token: str | None = None
) -> None:
    """Poll GET /model until it reports the `expected` model_version / git_commit: the release just deployed is
    the one answering (Heroku restarts dynos, Cloud Run and GKE shift traffic to the new revision gradually)."""
    deadline = time.monotonic() + wait
    while True:
        info = _model_info(base, token)
        wrong = {key: info.get(key) for key, value in expected.items() if info.get(key) != value}
        if not wrong:
            return
        if time.monotonic() >= deadline:
            found = ", ".join(f"{key} {got!r} (deployed: {expected[key]!r})" for key, got in wrong.items())
            raise UserError(f"{base}/model still serves another release after {wait:g} s: {found}")
        time.sleep(interval)


def smoke_test(
    url: str,
    metadata_path: Path | None = None,
    wait: float = 120,
    expected: dict[str, str] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """GET /ready (waiting for it), /model is the `expected` release (waiting for it), GET /health, POST /predict
    with the example; raise on any failure."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UserError(f"URL must start with http:// or https://, got {url!r}")
    started = time.monotonic()
    wait_ready(base, wait, token=token)
    expected = {key: value for key, value in (expected or {}).items() if value}
    if expected:
        wait_for_release(base, expected, max(wait - (time.monotonic() - started), 0), token=token)
    status, payload = _request(f"{base}/health", token=token)
    if status != 200:
        raise UserError(f"{base}/health: HTTP {status}: {payload}")
    example = example_record(base, metadata_path, token)
    status, payload = _request(f"{base}/predict", example, token=token)
    if status != 200:
        raise UserError(f"{base}/predict with the example: HTTP {status}: {payload}")
    log.info(
        "smoke-test: %s ready%s, /predict -> %s",
        base,
        f", serving {expected}" if expected else "",
        json.dumps(payload)[:200],
    )
    return payload


def served_version(url: str) -> str | None:
    """The model_version of the bundle a service runs (GET /model)."""
    return _model_info(url.rstrip("/")).get("model_version")


def fetch_metrics(url: str, output: Path) -> dict[str, float]:
    """The metrics of the model a service runs (from /model), written as a metrics JSON for the gate."""
    info = _model_info(url.rstrip("/"))
    metrics = info.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise UserError(f"{url}/model has no `metrics`; is it serving a gated bundle?")
    write_text(output, json.dumps(metrics, indent=2) + "\n")
    log.info("production metrics -> %s", output)
    return metrics
