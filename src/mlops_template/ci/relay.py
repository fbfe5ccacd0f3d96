"""Alertmanager webhook -> GitHub `repository_dispatch`: a firing retrain alert starts the CT workflow.

Alertmanager posts its own JSON (version 4: status, alerts, labels...) and cannot shape the body
GitHub's `POST /repos/{owner}/{repo}/dispatches` needs (`event_type`, `client_payload` with at most
10 top-level keys), nor should it hold the GitHub token. This relay does both, ignores resolved
notifications, and starts at most one retraining per `min_interval` seconds.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mlops_template.ci.github import GitHub
from mlops_template.core.errors import UserError

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
GITHUB_API = "https://api.github.com"


@dataclass(frozen=True)
class RelaySettings:
    repository: str  # owner/name
    token: str
    api_url: str = GITHUB_API
    event_type: str = "retrain"
    inbound_token: str | None = None  # what Alertmanager must send as "Authorization: Bearer ..."
    min_interval: float = 3600.0
    timeout: float = 10.0  # seconds GitHub gets to answer; then Alertmanager hears 502 and retries later

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RelaySettings:
        env = os.environ if environ is None else environ
        missing = [name for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN") if not env.get(name)]
        if missing:
            raise UserError(
                f"alert-relay: set {' and '.join(missing)} (owner/repo, and a token allowed to create "
                "repository dispatch events: fine-grained 'Contents: write' on that repository)"
            )
        if env["GITHUB_REPOSITORY"].count("/") != 1:
            raise UserError(f"alert-relay: GITHUB_REPOSITORY must be owner/name, got {env['GITHUB_REPOSITORY']!r}")
        try:
            interval = float(env.get("RELAY_MIN_INTERVAL", "3600"))
        except ValueError:
            raise UserError("alert-relay: RELAY_MIN_INTERVAL must be a number of seconds") from None
        return cls(
            repository=env["GITHUB_REPOSITORY"],
            token=env["GITHUB_TOKEN"],
            api_url=env.get("GITHUB_API_URL", GITHUB_API).rstrip("/"),
            event_type=env.get("RELAY_EVENT_TYPE", "retrain"),
            inbound_token=env.get("RELAY_TOKEN") or None,
            min_interval=interval,
        )

    def __repr__(self) -> str:  # never print the tokens
        return f"RelaySettings(repository={self.repository!r}, event_type={self.event_type!r})"


def dispatch_body(alert: Mapping[str, Any], event_type: str) -> dict[str, Any] | None:
    """GitHub's dispatch body for an Alertmanager notification; None when nothing is firing."""
    firing = [a for a in alert.get("alerts", []) if a.get("status") == "firing"]
    if alert.get("status") != "firing" or not firing:
        return None
    names = sorted({a.get("labels", {}).get("alertname", "?") for a in firing})
    features = sorted({a["labels"][k] for a in firing for k in ("feature", "output") if k in a.get("labels", {})})
    return {
        "event_type": event_type,
        "client_payload": {  # GitHub allows at most 10 top-level keys here
            "reason": "alert",
            "alerts": names[:20],
            "features": features[:50],
            "group_key": str(alert.get("groupKey", ""))[:200],
            "started_at": min((a.get("startsAt", "") for a in firing), default=""),
            "source": str(alert.get("externalURL", ""))[:200],
        },
    }


class Relay:
    """The relay's state: settings and when it last started a retraining."""

    def __init__(self, settings: RelaySettings, clock=time.monotonic) -> None:
        self.settings, self.clock = settings, clock
        self.github = GitHub(settings.token, settings.repository, settings.api_url, timeout=settings.timeout)
        self._last: float | None = None
        self._lock = threading.Lock()

    def authorized(self, header: str | None) -> bool:
        if self.settings.inbound_token is None:
            return True
        expected = f"Bearer {self.settings.inbound_token}".encode()
        return hmac.compare_digest((header or "").encode(), expected)

    def handle(self, alert: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """(HTTP status for Alertmanager, JSON answer) for one notification."""
        body = dispatch_body(alert, self.settings.event_type)
        if body is None:
            return 200, {"dispatched": False, "reason": "no firing alert"}
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < self.settings.min_interval:
                wait = self.settings.min_interval - (now - self._last)
                return 200, {"dispatched": False, "reason": f"a retraining started recently; next in {wait:.0f} s"}
            try:  # any failure (HTTP status, network, timeout) is a UserError: Alertmanager hears 502, retries
                self.github.call("POST", "/dispatches", body)
            except UserError as exc:
                log.error("alert-relay: the dispatch of %s failed: %s", body["client_payload"]["alerts"], exc)
                return 502, {"dispatched": False, "reason": str(exc)}
            self._last = now
        log.info("alert-relay: dispatched %s for %s", self.settings.event_type, body["client_payload"]["alerts"])
        return 202, {"dispatched": True, "event_type": self.settings.event_type}


def _webhook_body(alert: Any) -> bool:
    """The shape dispatch_body reads: an object whose `alerts` are objects with object `labels`."""
    if not isinstance(alert, dict) or not isinstance(alert.get("alerts"), list):
        return False
    return all(isinstance(a, dict) and isinstance(a.get("labels", {}), dict) for a in alert["alerts"])


def make_server(relay: Relay, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server: POST /alerts (Alertmanager webhook), GET /health."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # a client that stops sending mid-body is dropped instead of holding its thread forever

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer(*((200, {"status": "ok"}) if self.path == "/health" else (404, {"error": "not found"})))

        def do_POST(self) -> None:
            if self.path != "/alerts":
                return self._answer(404, {"error": "not found; Alertmanager posts to /alerts"})
            if not relay.authorized(self.headers.get("Authorization")):
                return self._answer(401, {"error": "missing or wrong bearer token (RELAY_TOKEN)"})
            declared = (self.headers.get("Content-Length") or "0").strip()
            if not (declared.isascii() and declared.isdigit()):
                return self._answer(400, {"error": "Content-Length is not a number"})
            length = int(declared)
            if length > MAX_BODY:
                return self._answer(413, {"error": f"body over {MAX_BODY} bytes"})
            try:
                alert = json.loads(self.rfile.read(length) or b"null")
            except ValueError:  # not JSON, or not UTF-8
                return self._answer(400, {"error": "body is not JSON"})
            if not _webhook_body(alert):
                return self._answer(400, {"error": "expected an Alertmanager webhook body (version 4) with 'alerts'"})
            self._answer(*relay.handle(alert))

        def log_message(self, format: str, *args: Any) -> None:  # headers carry tokens: log the line only
            log.debug("alert-relay: %s", format % args)

    return ThreadingHTTPServer((host, port), Handler)
