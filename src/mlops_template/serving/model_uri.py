"""MODEL_URI=models:/<name>@champion: download the registered bundle, then serve it like MODEL_DIR.

The downloaded folder goes through the very same checks as a local bundle (checksums before unpickling,
gate verdict VALIDATED, library versions) when the app loads it. Needs the MLflow client, which the serving
image does not carry by default (requirements-mlflow.txt: mlflow-skinny).
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from pathlib import Path

from mlops_template.core.errors import UserError

log = logging.getLogger(__name__)


def fetch_model(uri: str, destination: Path | None = None) -> Path:
    """The local bundle folder for MODEL_URI; a refusal is one UserError line."""
    if importlib.util.find_spec("mlflow") is None:
        raise UserError(
            f"MODEL_URI={uri} needs the MLflow client: pip install -r requirements-mlflow.txt (mlflow-skinny), "
            "or serve a folder with MODEL_DIR"
        )
    from mlops_template.tracking.registry import download_bundle

    target = destination or Path(tempfile.mkdtemp(prefix="model-uri-"))
    bundle = download_bundle(uri, target)
    log.info("MODEL_URI %s downloaded to %s", uri, bundle)
    return bundle
