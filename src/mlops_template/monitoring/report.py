"""`drift --current batch.csv`: a batch against the bundle's reference profile -> JSON, markdown, PNG."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_template.core.bundle import load_bundle
from mlops_template.core.config import Params, ReadConfig
from mlops_template.core.errors import DriftDetected, UserError
from mlops_template.core.fsutil import atomic_dir
from mlops_template.core.tabular import as_labels, coerce_numeric, read_csv
from mlops_template.monitoring.drift import NOT_ENOUGH, compare, markdown, observe_frame, observe_outputs
from mlops_template.monitoring.profile import load_profile, output_frame

log = logging.getLogger(__name__)
JSON_FILE, MARKDOWN_FILE, PLOT_FILE = "drift.json", "drift.md", "drift.png"


def read_batch(path: Path, profile: dict[str, Any], read: ReadConfig | None = None) -> pd.DataFrame:
    """The batch's feature columns, typed like the training data; errors name the file, column and lines."""
    frame = read_csv(path, read)
    features = list(profile["features"])
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise UserError(
            f"{path}: column(s) {missing} missing; the model's features are {features} "
            "(extra columns such as the target or ids are ignored)"
        )
    frame = frame[features].copy()
    for name, entry in profile["features"].items():
        if entry["type"] == "numeric":
            coerce_numeric(frame, name, path)
        else:
            frame[name] = as_labels(frame[name])
    return frame


def predict_outputs(model: Any, frame: pd.DataFrame, profile: dict[str, Any]) -> dict[str, Any]:
    """The model outputs the profile describes, predicted by the bundle's own model."""
    task = profile["task"]
    proba = model.predict_proba(frame) if task == "binary" else None
    return output_frame(task, profile.get("classes"), model.predict(frame), proba)


def run(params: Params, current: Path, bundle_dir: Path | None = None, output_dir: Path | None = None) -> dict:
    """Write drift.json, drift.md and drift.png atomically, print the markdown; raise DriftDetected on drift."""
    config = params.monitoring.drift
    bundle_dir = bundle_dir or params.gate.bundle_dir
    output_dir = output_dir or config.output_dir
    bundle = load_bundle(bundle_dir)  # VALIDATED only, checksums (the profile's too) verified
    profile = load_profile(bundle_dir)
    frame = read_batch(current, profile, params.data.read)
    outputs = predict_outputs(bundle.model, frame, profile)
    report = compare(profile, observe_frame(profile, frame), observe_outputs(profile, outputs), config)
    if report["status"] == NOT_ENOUGH:
        raise UserError(
            f"{current}: {report['rows']} rows, fewer than monitoring.drift.min_rows={config.min_rows}; "
            "a verdict on so few rows would be noise. Collect a larger batch"
        )
    report = {"current": str(current), "bundle": str(bundle_dir), "model_version": bundle.version, **report}
    text = markdown(report, title=f"Drift report: {current.name} vs model {bundle.version}")
    with atomic_dir(output_dir) as tmp:
        (tmp / JSON_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (tmp / MARKDOWN_FILE).write_text(text, encoding="utf-8")
        plot(report, tmp / PLOT_FILE)
    print(text)
    log.info("drift: %s -> %s/{%s,%s,%s}", report["status"], output_dir, JSON_FILE, MARKDOWN_FILE, PLOT_FILE)
    if report["drifted"]:
        names = [i["name"] for i in report["features"] + report["outputs"] if i["drifted"]]
        raise DriftDetected(f"drift: detected in {', '.join(names)}; see {output_dir / MARKDOWN_FILE}")
    return report


def plot(report: Mapping[str, Any], path: Path) -> None:
    """PNG: PSI per feature/output with the threshold line, and the most drifted entry's distributions."""
    import matplotlib

    matplotlib.use("Agg")  # no display: CI, containers
    import matplotlib.pyplot as plt

    items = [*report["features"], *[{**o, "name": f"prediction: {o['name']}"} for o in report["outputs"]]]
    worst = max(items, key=lambda i: i["psi"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, max(4.0, 0.35 * len(items) + 1.5)))
    colors = ["#c0392b" if i["drifted"] else "#2e86c1" for i in items]
    left.barh([i["name"] for i in items], [i["psi"] for i in items], color=colors)
    left.axvline(report["thresholds"]["psi_threshold"], color="black", linestyle="--", label="PSI threshold")
    left.invert_yaxis()
    left.set_xlabel("PSI (red: drift)")
    left.set_title(f"Drift per feature - {report['status']} ({report['rows']} rows)")
    left.legend(loc="lower right")
    positions = np.arange(len(worst["labels"]))
    right.bar(positions - 0.2, worst["reference_fractions"], width=0.4, label="reference")
    right.bar(positions + 0.2, worst["current_fractions"], width=0.4, label="current")
    right.set_xticks(positions, worst["labels"], rotation=60, ha="right", fontsize=7)
    right.set_ylabel("fraction of rows")
    right.set_title(f"Largest PSI: {worst['name']} ({worst['psi']:.3f})")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
