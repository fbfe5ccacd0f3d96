"""The metric gate: thresholds from params.yaml and an optional baseline decide VALIDATED/REJECTED.

The DVC `gate` stage (no baseline) writes its verdict into the judged bundle's metadata, the serving contract;
loaders refuse anything not VALIDATED. A comparison against a baseline (CI against main, CT against
production) writes its verdict to reports only (`<report>-baseline.md` and `.json`): the stage's outputs stay
byte for byte what dvc.lock records, so `dvc status` stays clean and CD ships the bundle dvc.lock names.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from mlops_template import tracking
from mlops_template.core.bundle import (
    REJECTED,
    VALIDATED,
    BundleMetadata,
    GateRecord,
    read_metadata,
    verify_files,
    write_metadata,
)
from mlops_template.core.config import Params, Threshold
from mlops_template.core.errors import GateRejected, UserError
from mlops_template.core.fsutil import atomic_dir, sha256_file, write_text
from mlops_template.pipeline.evaluate import read_metrics

log = logging.getLogger(__name__)
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae", "mape", "membership_auc", "mae_under_attack"})


@dataclass(frozen=True)
class Row:
    metric: str
    value: float
    threshold: str = ""
    baseline: float | None = None
    passed: bool | None = None  # None: reported, not checked

    @property
    def delta(self) -> float | None:
        return None if self.baseline is None else self.value - self.baseline


def baseline_metrics(baseline: str, metrics_path: Path) -> tuple[dict[str, float] | None, str]:
    """Metrics from a JSON file, or from `metrics_path` as committed at a git ref (e.g. main)."""
    candidate = Path(baseline)
    if candidate.is_file():
        return read_metrics(candidate), str(candidate)
    verify = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{baseline}^{{commit}}"], capture_output=True, text=True
    )
    if verify.returncode != 0:
        raise UserError(
            f"baseline {baseline!r} is neither a metrics file nor a git ref (try `git fetch origin {baseline}`)"
        )
    # "./" makes git resolve the path from the working directory, so absolute paths work too
    relative = Path(os.path.relpath(metrics_path)).as_posix()
    shown = subprocess.run(["git", "show", f"{baseline}:./{relative}"], capture_output=True, text=True)
    if shown.returncode != 0:
        log.warning("gate: %s has no %s yet; comparing against thresholds only", baseline, metrics_path)
        return None, baseline
    return json.loads(shown.stdout), f"{baseline} ({verify.stdout.strip()[:12]})"


def _bound(threshold: Threshold) -> str:
    return f"≥ {threshold.min:g}" if threshold.min is not None else f"≤ {threshold.max:g}"


def judge(
    metrics: dict[str, float],
    thresholds: list[Threshold],
    baseline: dict[str, float] | None,
    tolerance: dict[str, float] | None = None,
) -> list[Row]:
    """One row per metric; gated metrics must meet their bound and not fall behind the baseline."""
    tolerance = tolerance or {}
    unknown = [t.metric for t in thresholds if t.metric not in metrics]
    if unknown:
        raise UserError(f"params.yaml gate.thresholds: {unknown} not among the metrics {sorted(metrics)}")
    bounds = {t.metric: t for t in thresholds}
    rows = []
    for name, value in metrics.items():
        limit = bounds.get(name)
        base = (baseline or {}).get(name)
        if limit is None:
            rows.append(Row(name, value, baseline=base))
            continue
        passed = (limit.min is None or value >= limit.min) and (limit.max is None or value <= limit.max)
        if base is not None:
            allowed = tolerance.get(name, tolerance.get("default", 0.0))
            worse = value - base if name in LOWER_IS_BETTER else base - value
            passed = passed and worse <= allowed
        rows.append(Row(name, value, _bound(limit), base, passed))
    return rows


def markdown(rows: list[Row], verdict: str, baseline_label: str | None) -> str:
    def fmt(x: float | None, signed: bool = False) -> str:
        return "" if x is None else (f"{x:+.4f}" if signed else f"{x:.4f}")

    mark = {True: "✅ pass", False: "❌ fail", None: ""}
    lines = [
        f"### Metric gate: **{verdict}**",
        "",
        f"Baseline: {baseline_label or 'none (thresholds only)'}",
        "",
        "| metric | value | threshold | baseline | delta | result |",
        "|---|---:|---|---:|---:|---|",
    ]
    lines += [
        f"| {r.metric} | {fmt(r.value)} | {r.threshold} | {fmt(r.baseline)} | {fmt(r.delta, True)} | {mark[r.passed]} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def read_importance(plots_dir: Path) -> dict[str, float]:
    """Permutation importance per feature from evaluate's plots (empty when evaluate wrote none)."""
    path = plots_dir / "feature_importance.json"
    if not path.is_file():
        return {}
    return {row["feature"]: float(row["importance"]) for row in json.loads(path.read_text(encoding="utf-8"))}


def record_verdict(
    candidate: Path,
    target: Path,
    metrics: dict[str, float],
    gate: GateRecord,
    importance: dict[str, float] | None = None,
) -> None:
    """Copy the candidate bundle to `target` with metrics, verdict and each feature's importance in its metadata
    (atomically); the importance travels with the model card (GET /model lists the features as recorded)."""
    metadata = read_metadata(candidate)
    verify_files(candidate, metadata)
    importance = importance or {}
    features = [f.model_copy(update={"importance": importance.get(f.name, f.importance)}) for f in metadata.features]
    judged = BundleMetadata.model_validate(
        {**metadata.model_dump(), "features": [f.model_dump() for f in features], "metrics": metrics, "gate": gate}
    )
    with atomic_dir(target) as tmp:
        for name in metadata.files:
            shutil.copy2(candidate / name, tmp / name)
        write_metadata(tmp, judged)


def record_for_ci(verdict: str) -> None:
    """In GitHub Actions, the step output `verdict`: CI then reports only a verdict this run produced."""
    output = os.environ.get("GITHUB_OUTPUT")
    if output:
        with open(output, "a", encoding="utf-8") as handle:
            handle.write(f"verdict={verdict}\n")


def comparison_paths(params: Params) -> tuple[Path, Path]:
    """Where a comparison against a baseline writes its verdict: beside the stage's report, outside DVC's outputs."""
    report = params.gate.report_path
    stem = report.with_name(f"{report.stem}-baseline")
    return stem.with_suffix(".md"), stem.with_suffix(".json")


def record_comparison(params: Params, report: str, verdict: str, label: str | None, rows: list[Row]) -> Path:
    """Write a comparison's markdown and record; the record names the metrics it judged (their sha256)."""
    text_path, record_path = comparison_paths(params)
    record = {
        "verdict": verdict,
        "baseline": label,
        "metrics_sha256": sha256_file(params.evaluate.metrics_path),
        "rows": [asdict(r) for r in rows],
    }
    write_text(text_path, report)
    write_text(record_path, json.dumps(record, indent=2) + "\n")
    return text_path


def current_report(params: Params) -> Path:
    """The gate report of the current metrics: a comparison against a baseline when one judged them, else the
    stage's own (a comparison left over from earlier metrics is ignored)."""
    text_path, record_path = comparison_paths(params)
    metrics = params.evaluate.metrics_path
    if text_path.is_file() and record_path.is_file() and metrics.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("metrics_sha256") == sha256_file(metrics):
            return text_path
    return params.gate.report_path


def run(params: Params, baseline: str | None = None, label: str | None = None) -> str:
    """Judge the metrics against the thresholds and `baseline`; `label` says what the baseline is (the report).

    Without a baseline (the DVC stage) the verdict goes into the bundle; with one, into reports only."""
    metrics = read_metrics(params.evaluate.metrics_path)
    base, found = baseline_metrics(baseline, params.evaluate.metrics_path) if baseline else (None, None)
    label = label or found
    rows = judge(metrics, params.gate.thresholds, base, params.gate.tolerance)
    failed = [r.metric for r in rows if r.passed is False]
    verdict = REJECTED if failed else VALIDATED
    report = markdown(rows, verdict, label)
    if baseline:
        written = record_comparison(params, report, verdict, label, rows)
    else:
        written = params.gate.report_path
        write_text(written, report)
        gate = GateRecord(verdict=verdict, baseline=label, failed=failed, thresholds=params.gate.thresholds)
        importance = read_importance(params.evaluate.plots_dir)
        record_verdict(params.train.output_dir, params.gate.bundle_dir, metrics, gate, importance)
    record_for_ci(verdict)
    # MLflow (if configured): only VALIDATED registers
    tracking.gate_done(params, verdict, [asdict(r) for r in rows], written)
    print(report)
    if failed:
        raise GateRejected(f"gate: REJECTED ({', '.join(failed)}); see {written}")
    log.info("gate: VALIDATED -> %s", written if baseline else params.gate.bundle_dir)
    return verdict
