"""One MLflow run per pipeline run, across the evaluate and gate processes.

The stages are separate processes (DVC runs each command on its own), so they meet through a tag: evaluate
creates the run (params, training tags, metrics, plots) and tags it with the sha256 of the candidate bundle's
metadata.json; gate hashes the same file and attaches to the newest run carrying that tag. Train does not
touch MLflow: its process would pay MLflow's import (about 1 s of CPU) only to log what evaluate can log
from the bundle it reads anyway. Nothing extra is written into DVC outputs, it works the same in `dvc repro`,
`dvc exp run` (also --temp / queued: no file has to survive between stages) and across CI jobs. Under
`mlflow run`, the run MLflow created (MLFLOW_RUN_ID) is the pipeline's run. A gate whose run is missing
(evaluate cached by DVC from before tracking was on) starts one and logs the training side itself.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml

from mlops_template.core.bundle import METADATA, VALIDATED, git_commit, read_metadata
from mlops_template.core.config import Params
from mlops_template.core.fsutil import sha256_file, write_text
from mlops_template.tracking.connect import client as connect
from mlops_template.tracking.connect import public_uri
from mlops_template.tracking.settings import TrackingSettings

log = logging.getLogger(__name__)
CANDIDATE_TAG = "mlops.candidate_sha256"
MAX_PARAM_LENGTH = 6000  # MLflow's limit for a param value
BATCH = 100  # MLflow accepts at most 100 params per log_batch call


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested params.yaml sections -> {"train.hist_gradient_boosting.learning_rate": "0.05", ...}."""
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for key, value in data.items():
            out |= flatten(value, f"{prefix}{key}.")
        return out
    text = json.dumps(data, default=str) if isinstance(data, list | tuple) else str(data)
    return {prefix.rstrip("."): text[:MAX_PARAM_LENGTH]}


def candidate_key(params: Params) -> str:
    return sha256_file(Path(params.train.output_dir) / METADATA)


def _training_tags(metadata: dict[str, Any], key: str) -> dict[str, str]:
    data = metadata.get("training_data") or {}
    commit = git_commit()  # the run's, from git: the bundle records none (reproducible)
    tags = {
        CANDIDATE_TAG: key,
        "model_version": metadata.get("model_version"),
        "task": metadata.get("task"),
        "estimator": metadata.get("estimator"),
        "data.sha256": data.get("sha256"),
        "data.source": data.get("source"),
        "data.rows": data.get("rows"),
        "mlflow.source.git.commit": commit,
        "git_commit": commit,
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME"),
    }
    return {k: str(v) for k, v in tags.items() if v is not None}


def _start(client: Any, settings: TrackingSettings, params: Params, key: str, metrics: list[Any] | None = None) -> str:
    """The run of this pipeline run: MLflow's own under `mlflow run`, else a new one; params, tags (and metrics)."""
    import mlflow
    from mlflow.entities import Param, RunTag

    metadata = read_metadata(params.train.output_dir).model_dump(mode="json")
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        experiment = mlflow.set_experiment(settings.experiment)
        name = f"{metadata.get('estimator', 'model')}-{metadata.get('model_version', '')}"
        run_id = client.create_run(experiment.experiment_id, run_name=name).info.run_id
    logged = client.get_run(run_id).data.params
    flat = flatten(params.model_dump(mode="json", by_alias=True, exclude_none=True))
    pending = [Param(k, v) for k, v in flat.items() if k not in logged]
    tags = [RunTag(k, v) for k, v in _training_tags(metadata, key).items()]
    batches = [pending[start : start + BATCH] for start in range(0, len(pending), BATCH)] or [[]]
    for index, batch in enumerate(batches):
        first = {"tags": tags, "metrics": metrics or []} if index == 0 else {}
        client.log_batch(run_id, params=batch, **first)
    log.info("tracking: MLflow run %s (experiment %s) at %s", run_id, settings.experiment, public_uri(settings.uri))
    return run_id


def _find(client: Any, settings: TrackingSettings, params: Params) -> str:
    """The run evaluate started for this candidate bundle (the newest one), else a new one."""
    import mlflow

    key = candidate_key(params)
    if os.environ.get("MLFLOW_RUN_ID"):
        return _start(client, settings, params, key)
    experiment = mlflow.set_experiment(settings.experiment)
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{CANDIDATE_TAG}` = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].info.run_id if found else _start(client, settings, params, key)


def on_evaluate(settings: TrackingSettings, params: Params, metrics: dict[str, float]) -> None:
    """A new run for this evaluation (even of a candidate evaluated before): params, tags, metrics, plots."""
    from mlflow.entities import Metric

    client = connect(settings)
    stamp = int(time.time() * 1000)
    logged = [Metric(name, float(value), stamp, 0) for name, value in metrics.items()]
    run_id = _start(client, settings, params, candidate_key(params), logged)
    client.log_artifact(run_id, str(params.evaluate.metrics_path))
    client.log_artifacts(run_id, str(params.evaluate.plots_dir), "plots")


def lock_tags(lock: Path = Path("dvc.lock")) -> dict[str, str]:
    """The md5 of every stage output recorded in dvc.lock, e.g. dvc.train.artifacts/candidate -> 3f2a….dir."""
    if not lock.is_file():
        return {}
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages") or {}
    return {
        f"dvc.{stage}.{out['path']}": str(out.get("md5") or out.get("hash") or "")
        for stage, entry in stages.items()
        for out in entry.get("outs") or []
    }


def run_link(settings: TrackingSettings, experiment_id: str, run_id: str) -> str | None:
    if not settings.uri.startswith(("http://", "https://")):
        return None
    return f"{public_uri(settings.uri).rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def on_gate(settings: TrackingSettings, params: Params, verdict: str, rows: list[dict[str, Any]], report: Path) -> None:
    from mlflow.entities import RunTag

    from mlops_template.tracking import model, registry

    client = connect(settings)
    run_id = _find(client, settings, params)
    tags = {"gate.verdict": verdict, "gate.failed": ",".join(r["metric"] for r in rows if r["passed"] is False)}
    client.log_batch(run_id, tags=[RunTag(name, value) for name, value in (tags | lock_tags()).items()])
    client.log_dict(run_id, rows, "gate/table.json")
    client.log_artifact(run_id, str(report), "gate")
    info = model.log(Path(params.gate.bundle_dir), run_id)
    version = registry.register(client, settings, info.model_uri, run_id) if verdict == VALIDATED else None
    run = client.get_run(run_id)
    if not os.environ.get("MLFLOW_RUN_ID"):  # `mlflow run` ends its own run when the command exits
        client.set_terminated(run_id, "FINISHED")
    record = {
        "run_id": run_id,
        "experiment_id": run.info.experiment_id,
        "tracking_uri": public_uri(settings.uri),
        "url": run_link(settings, run.info.experiment_id, run_id),
        "candidate_sha256": candidate_key(params),
        "verdict": verdict,
        "registered_model": settings.model_name if version else None,
        "registered_version": version,
    }
    write_text(settings.run_file, json.dumps(record, indent=2) + "\n")
    registered = f", registered version {version}" if version else ""
    log.info("tracking: gate %s logged to run %s%s", verdict, run_id, registered)
