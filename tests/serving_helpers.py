"""Small model bundles for the serving tests, trained in a temp dir in a few seconds (no DVC)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlops_template.core.bundle import VALIDATED, GateRecord
from mlops_template.core.config import Params
from tests.conftest import ROOT

REGRESSION = {"target": "loan_amount", "task": "regression", "positive_class": None, "drop": ["loan_id", "loan_status"]}


def small_params(directory: Path, estimator: str = "logistic_regression", schema: dict | None = None,
                 onnx: dict | None = None) -> Params:  # fmt: skip
    """The project's params.yaml with every path inside `directory`."""
    raw: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["path"] = str(directory / "data.csv")
    raw["prep"]["output_dir"] = str(directory / "prepared")
    raw["train"] |= {"output_dir": str(directory / "candidate"), "estimator": estimator}
    raw["evaluate"] |= {"metrics_path": str(directory / "metrics.json"), "plots_dir": str(directory / "plots")}
    raw["gate"] |= {"bundle_dir": str(directory / "model"), "report_path": str(directory / "gate.md")}
    raw["schema"] |= schema or {}
    raw["onnx"] = {**raw.get("onnx", {}), **(onnx or {})}
    return Params.model_validate(raw)


def build_bundle(directory: Path, estimator: str = "logistic_regression", rows: int = 1500,
                 schema: dict | None = None, onnx: dict | None = None, verdict: str = VALIDATED) -> Path:  # fmt: skip
    """prep + train on a small sample, then the gate's verdict recorded (metrics not computed)."""
    from mlops_template.pipeline import prep, train
    from mlops_template.pipeline.gate import record_verdict
    from mlops_template.pipeline.sample import write_sample

    params = small_params(directory, estimator, schema, onnx)
    write_sample(params.data.path, rows, seed=7, drift=0.0)
    prep.run(params)
    train.run(params)
    record_verdict(params.train.output_dir, params.gate.bundle_dir, {"roc_auc": 0.9}, GateRecord(verdict=verdict))
    return params.gate.bundle_dir
