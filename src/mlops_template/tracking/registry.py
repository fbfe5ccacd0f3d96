"""The model registry: VALIDATED bundles become versions (alias `challenger`), `promote` moves `champion`.

Aliases, not the deprecated stages. Each version carries tags a person can filter on: the gate verdict,
the test metrics, the bundle's model_version (sha256 prefix of model.joblib) and, once deployed, the image.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mlops_template.core.bundle import now
from mlops_template.core.errors import UserError
from mlops_template.tracking.connect import check_server
from mlops_template.tracking.model import BUNDLE_SUBDIR
from mlops_template.tracking.settings import TrackingSettings

log = logging.getLogger(__name__)
CHALLENGER, CHAMPION = "challenger", "champion"


def versions_of(client: Any, name: str, model_version: str) -> list[Any]:
    """Registered versions holding the bundle `model_version` (its tag), newest first."""
    query = f"name = '{name}' and tags.model_version = '{model_version}'"
    return client.search_model_versions(query, order_by=["version_number DESC"])


def register(client: Any, settings: TrackingSettings, model_uri: str, run_id: str) -> str:
    """A new version of the registered model from the logged model; alias `challenger` moves to it.

    A bundle already registered (the same model_version: `make gate` re-judging it, an identical retrain) keeps
    its version instead of getting a duplicate.
    """
    import mlflow

    run = client.get_run(run_id)
    tags = {f"metric.{name}": str(value) for name, value in run.data.metrics.items()}
    kept = ("gate.verdict", "model_version", "git_commit")
    tags |= {name: run.data.tags[name] for name in kept if name in run.data.tags}
    known = versions_of(client, settings.model_name, tags["model_version"]) if "model_version" in tags else []
    version = known[0].version if known else mlflow.register_model(model_uri, settings.model_name, tags=tags).version
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version)
    log.info("registry: %s version %s (alias %s)", settings.model_name, version, CHALLENGER)
    return str(version)


def promote(settings: TrackingSettings, model_version: str, image: str | None = None) -> str:
    """Move `champion` to the registered version of the bundle `model_version` (what the deployment serves)."""
    from mlops_template.tracking.connect import client as connect

    client = connect(settings)
    found = versions_of(client, settings.model_name, model_version)
    if not found:
        raise UserError(
            f"registry: no version of {settings.model_name!r} holds the bundle {model_version}; "
            "only VALIDATED pipeline runs with tracking on are registered (`make pipeline` with MLFLOW_TRACKING_URI)"
        )
    version = str(found[0].version)
    client.set_registered_model_alias(settings.model_name, CHAMPION, version)
    client.set_model_version_tag(settings.model_name, version, "promoted_at", now())
    if image:
        client.set_model_version_tag(settings.model_name, version, "image", image)
    log.info("registry: %s@%s -> version %s (bundle %s)", settings.model_name, CHAMPION, version, model_version)
    return version


def download_bundle(uri: str, destination: Path) -> Path:
    """Download a registered model (models:/<name>@champion, runs:/..., a path) and return its bundle folder."""
    check_server(os.environ.get("MLFLOW_TRACKING_URI", ""))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a service logs lines, not bars
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination)))
    except MlflowException as exc:
        first = str(exc.message).strip().splitlines()[0] if str(exc.message).strip() else type(exc).__name__
        raise UserError(f"MODEL_URI={uri}: {first}") from None
    bundle = local / BUNDLE_SUBDIR
    if not bundle.is_dir():
        raise UserError(f"MODEL_URI={uri}: not a model logged by this project's pipeline (no {BUNDLE_SUBDIR}/ bundle)")
    return bundle
