"""One clear error when the tracking server is down or the URI is wrong, before MLflow's long retry loop."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mlops_template.core.errors import UserError
from mlops_template.tracking.settings import TrackingSettings

TIMEOUT = 5.0


def public_uri(uri: str) -> str:
    """The URI without user:password (it goes into logs, run files and reports)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))


def check_server(uri: str) -> None:
    """GET <uri>/health of an HTTP tracking server: refused, timed out or not MLflow -> UserError naming the fix."""
    if not uri.startswith(("http://", "https://")):
        return
    request = urllib.request.Request(f"{uri.rstrip('/')}/health")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    where = public_uri(uri)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        hint = "check MLFLOW_TRACKING_TOKEN" if exc.code in (401, 403) else "is MLFLOW_TRACKING_URI an MLflow server?"
        raise UserError(f"MLflow tracking server {where} answered HTTP {exc.code} on /health; {hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(
            f"MLflow tracking server {where} is not reachable ({reason}); start it (`make mlflow-ui`) "
            "or fix/unset MLFLOW_TRACKING_URI"
        ) from None


def client(settings: TrackingSettings) -> Any:
    """An MlflowClient for `settings.uri` (and the fluent API pointed at it), after the reachability check."""
    check_server(settings.uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stage logs are lines, not bars
    if settings.uri.startswith("sqlite:///"):
        Path(settings.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(settings.uri)
    return MlflowClient(settings.uri)
