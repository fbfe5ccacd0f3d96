"""Stage `evaluate`: metrics on the test split and plot data that `dvc plots show` renders."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.inspection import permutation_importance

from mlops_template import tracking
from mlops_template.core.bundle import PENDING, ModelRecord, load_bundle
from mlops_template.core.config import Params
from mlops_template.core.errors import UserError
from mlops_template.core.fsutil import atomic_dir, write_text
from mlops_template.pipeline import robustness
from mlops_template.pipeline.prep import load_prepared

log = logging.getLogger(__name__)


def binary_metrics(y: pd.Series, proba: np.ndarray, predicted: np.ndarray, positive: str) -> dict[str, float]:
    truth = (y == positive).to_numpy()
    hit = predicted == positive
    return {
        "roc_auc": skm.roc_auc_score(truth, proba),
        "pr_auc": skm.average_precision_score(truth, proba),
        "accuracy": skm.accuracy_score(truth, hit),
        "precision": skm.precision_score(truth, hit, zero_division=0),
        "recall": skm.recall_score(truth, hit, zero_division=0),
        "f1": skm.f1_score(truth, hit, zero_division=0),
        "log_loss": skm.log_loss(truth, proba, labels=[False, True]),
    }


def multiclass_metrics(y: pd.Series, proba: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict[str, float]:
    return {
        "roc_auc_ovr_macro": skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes),
        "accuracy": skm.accuracy_score(y, predicted),
        "balanced_accuracy": skm.balanced_accuracy_score(y, predicted),
        "precision_macro": skm.precision_score(y, predicted, average="macro", zero_division=0),
        "recall_macro": skm.recall_score(y, predicted, average="macro", zero_division=0),
        "f1_macro": skm.f1_score(y, predicted, average="macro", zero_division=0),
        "log_loss": skm.log_loss(y, proba, labels=classes),
    }


def regression_metrics(y: pd.Series, predicted: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, predicted))),
        "mae": skm.mean_absolute_error(y, predicted),
        "r2": skm.r2_score(y, predicted),
        "mape": skm.mean_absolute_percentage_error(y, predicted),
    }


def _thin(frame: pd.DataFrame, points: int) -> pd.DataFrame:
    """At most `points` evenly spaced rows, always keeping the first and last."""
    if len(frame) <= points:
        return frame
    return frame.iloc[np.unique(np.linspace(0, len(frame) - 1, points).round().astype(int))]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records", double_precision=6))


def classification_plots(
    y: pd.Series, proba: np.ndarray, predicted: np.ndarray, positive: str | None, points: int
) -> dict[str, Any]:
    plots: dict[str, Any] = {"confusion.json": _records(pd.DataFrame({"actual": y.to_numpy(), "predicted": predicted}))}
    if positive is not None:
        truth = (y == positive).to_numpy()
        fpr, tpr, _ = skm.roc_curve(truth, proba)
        precision, recall, _ = skm.precision_recall_curve(truth, proba)
        plots["roc.json"] = _records(_thin(pd.DataFrame({"fpr": fpr, "tpr": tpr}), points))
        plots["precision_recall.json"] = _records(
            _thin(pd.DataFrame({"recall": recall, "precision": precision}), points)
        )
    return plots


def regression_plots(y: pd.Series, predicted: np.ndarray, points: int) -> dict[str, Any]:
    frame = pd.DataFrame({"actual": y.to_numpy(), "predicted": predicted})
    frame = frame.sample(min(len(frame), points * 5), random_state=0).sort_values("actual")
    frame["residual"] = frame["actual"] - frame["predicted"]
    return {
        "predicted_vs_actual.json": _records(frame[["actual", "predicted"]]),
        "residuals.json": _records(frame[["predicted", "residual"]]),
    }


def feature_importance(model: Any, x: pd.DataFrame, y: pd.Series, task: str, rows: int, seed: int) -> pd.DataFrame:
    """Permutation importance on raw features (model-agnostic), on a bounded sample of the test split."""
    sample = x.sample(min(rows, len(x)), random_state=seed)
    scoring = "r2" if task == "regression" else "accuracy"
    result = permutation_importance(model, sample, y.loc[sample.index], scoring=scoring, n_repeats=3, random_state=seed)
    return pd.DataFrame({"feature": x.columns, "importance": result.importances_mean}).sort_values(
        "importance", ascending=False
    )


def compute(
    model: Any, metadata: ModelRecord, x: pd.DataFrame, y: pd.Series, params: Params, importance: bool = True
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics and plot data for a fitted model on a labelled frame (`importance`: permutation importance too)."""
    task, points = metadata.task, params.evaluate.curve_points
    if task == "regression":
        predicted = model.predict(x)
        metrics, plots = regression_metrics(y, predicted), regression_plots(y, predicted, points)
    else:
        classes = metadata.classes or []
        proba = model.predict_proba(x)
        predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        if task == "binary":
            positive = metadata.positive_class
            score = proba[:, classes.index(positive)]
            metrics = binary_metrics(y, score, predicted, positive)
            plots = classification_plots(y, score, predicted, positive, points)
        else:
            metrics = multiclass_metrics(y, proba, predicted, classes)
            plots = classification_plots(y, proba, predicted, None, points)
    if importance:
        ranked = feature_importance(model, x, y, task, params.evaluate.importance_rows, params.train.seed)
        plots["feature_importance.json"] = _records(ranked)
    return {k: round(float(v), 6) for k, v in metrics.items()}, plots


def run(params: Params) -> dict[str, float]:
    bundle = load_bundle(params.train.output_dir, allow=(PENDING,))
    frame, schema, _ = load_prepared(params.prep.output_dir, "test")
    features = bundle.metadata.feature_names
    metrics, plots = compute(bundle.model, bundle.metadata, frame[features], frame[schema.target], params)
    security = params.evaluate.robustness
    if security.evasion or security.membership:
        train, _, _ = load_prepared(params.prep.output_dir, "train")
        started, cpu = time.perf_counter(), time.process_time()
        test_split = (frame[features], frame[schema.target])
        train_split = (train[features], train[schema.target])
        ranges = {f.name: (f.min, f.max) for f in bundle.metadata.features if f.type == "numeric" and f.min is not None}
        extra, curve = robustness.evaluate(
            bundle.model, bundle.metadata.task, ranges, test_split, train_split, security
        )
        metrics |= {k: round(v, 6) for k, v in extra.items()}
        if curve:
            plots["robustness.json"] = curve
        log.info(
            "evaluate: robustness and membership figures in %.1f s (%.1f s CPU)",
            time.perf_counter() - started,
            time.process_time() - cpu,
        )
    with atomic_dir(params.evaluate.plots_dir) as tmp:
        for name, records in plots.items():
            (tmp / name).write_text(json.dumps(records) + "\n", encoding="utf-8")
    write_text(params.evaluate.metrics_path, json.dumps(metrics, indent=2) + "\n")
    log.info("evaluate: %s", ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    tracking.evaluate_done(params, metrics)  # no-op unless MLflow tracking is configured
    return metrics


def metrics_table(metrics: dict[str, float]) -> str:
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in metrics.items())
    return "| metric | value |\n|---|---|\n" + rows


def read_metrics(path: Path) -> dict[str, float]:
    if not path.is_file():
        raise UserError(f"{path}: not found; run the pipeline first (`make pipeline`)")
    return json.loads(path.read_text(encoding="utf-8"))
