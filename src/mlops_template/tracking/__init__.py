"""MLflow tracking and model registry, opt-in: nothing here imports MLflow until tracking is configured.

The pipeline calls the two hooks below (evaluate, gate; train does not, see runs.py); each is a no-op (no MLflow
import) unless MLFLOW_TRACKING_URI is set or params.yaml `tracking.mlflow` names an experiment. A tracking failure
is a warning unless `tracking.required`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops_template.core.config import Params
from mlops_template.core.errors import UserError
from mlops_template.tracking.settings import TrackingSettings, resolve

log = logging.getLogger(__name__)


def _hook(params: Params, stage: str, action: Callable[[TrackingSettings], None]) -> None:
    settings = resolve(params.tracking)
    if settings is None:
        return
    started, cpu = time.perf_counter(), time.process_time()
    try:
        action(settings)  # CPU time too: what tracking costs the stage, whatever the machine's load
        log.info(
            "tracking: stage %s logged in %.1f s (%.1f s CPU)",
            stage,
            time.perf_counter() - started,
            time.process_time() - cpu,
        )
    except Exception as exc:  # noqa: BLE001 - tracking is a side channel: any failure is one line, never a traceback
        message = f"MLflow tracking failed in stage {stage} ({settings.uri}): {exc}"
        if settings.required:
            raise UserError(f"{message}; tracking.required is true, so the stage fails") from None
        log.warning("%s; the pipeline goes on (set tracking.required: true to fail instead)", message)


def evaluate_done(params: Params, metrics: dict[str, float]) -> None:
    """Stage evaluate: a new run with the params, data hash, git commit, test metrics (metrics.json) and plots."""

    def action(settings: TrackingSettings) -> None:
        from mlops_template.tracking import runs

        runs.on_evaluate(settings, params, metrics)

    _hook(params, "evaluate", action)


def gate_done(params: Params, verdict: str, rows: list[dict[str, Any]], report: Path | None = None) -> None:
    """Stage gate: verdict, table, dvc.lock hashes, the bundle as an MLflow model; VALIDATED -> registry.
    `report`: the markdown written (default: the stage's, params gate.report_path)."""

    def action(settings: TrackingSettings) -> None:
        from mlops_template.tracking import runs

        runs.on_gate(settings, params, verdict, rows, report or params.gate.report_path)

    _hook(params, "gate", action)
