"""Where tracking goes, from the environment and params.yaml; deciding this imports nothing from MLflow."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mlops_template.core.config import TrackingConfig
from mlops_template.core.errors import UserError

# The project's local store when only an experiment is named: `make mlflow-ui` serves the same files.
LOCAL_STORE = Path("mlruns")
LOCAL_URI = f"sqlite:///{LOCAL_STORE.as_posix()}/mlflow.db"
PROJECT = __name__.split(".")[0].replace("_", "-")  # the package's name, renamed by `make template-cleanup`


@dataclass(frozen=True)
class TrackingSettings:
    uri: str
    experiment: str
    model_name: str
    required: bool
    run_file: Path


def resolve(config: TrackingConfig, env: dict[str, str] | None = None) -> TrackingSettings | None:
    """None when tracking is off: no MLFLOW_TRACKING_URI and no experiment named in params.yaml."""
    env = os.environ if env is None else env
    uri = env.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri and config.mlflow is None:
        return None
    return TrackingSettings(
        uri=uri or LOCAL_URI,
        experiment=config.mlflow or env.get("MLFLOW_EXPERIMENT_NAME", "").strip() or PROJECT,
        model_name=config.registered_model or PROJECT,
        required=config.required,
        run_file=config.run_file,
    )


def require(config: TrackingConfig) -> TrackingSettings:
    """For commands that only make sense with a tracking server (promote)."""
    settings = resolve(config)
    if settings is None:
        raise UserError("MLflow tracking is off: set MLFLOW_TRACKING_URI (or params.yaml tracking.mlflow)")
    return settings
