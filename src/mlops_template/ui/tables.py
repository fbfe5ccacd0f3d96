"""The API's JSON turned into the tables the pages show (pure functions: no Streamlit, no HTTP)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def metric_table(model: dict[str, Any]) -> pd.DataFrame:
    """The test-split metrics of the bundle: one row per metric."""
    metrics = model.get("metrics") or {}
    return pd.DataFrame([{"metric": k, "value": v} for k, v in metrics.items()], columns=["metric", "value"])


def gate_table(model: dict[str, Any]) -> pd.DataFrame:
    """Every metric with its gate threshold (if any) and whether it passed, thresholds first."""
    metrics = model.get("metrics") or {}
    rows, seen = [], set()
    for threshold in (model.get("gate") or {}).get("thresholds") or []:
        name = threshold.get("metric")
        value = metrics.get(name)
        rules, passed = [], value is not None
        if threshold.get("min") is not None:
            rules.append(f"≥ {threshold['min']:g}")
            passed = passed and value >= threshold["min"]
        if threshold.get("max") is not None:
            rules.append(f"≤ {threshold['max']:g}")
            passed = passed and value <= threshold["max"]
        rows.append({"metric": name, "value": value, "gate": " and ".join(rules), "passed": "yes" if passed else "NO"})
        seen.add(name)
    if not rows:
        return pd.DataFrame(columns=["metric", "value", "gate", "passed"])
    rows += [{"metric": k, "value": v, "gate": "", "passed": ""} for k, v in metrics.items() if k not in seen]
    return pd.DataFrame(rows)


def importance_table(model: dict[str, Any]) -> pd.DataFrame:
    """Feature importance, when the bundle's features carry it (`importance`), largest first."""
    rows = [{"feature": f["name"], "importance": f["importance"]} for f in model["features"]
            if isinstance(f.get("importance"), int | float)]  # fmt: skip
    return pd.DataFrame(rows, columns=["feature", "importance"]).sort_values("importance", ascending=False)


DRIFT_COLUMNS = ["name", "kind", "type", "rows", "psi", "test", "p_value", "effect", "drifted", "reason"]


def drift_table(report: dict[str, Any]) -> pd.DataFrame:
    """The live drift report: one row per feature and model output, with its test and verdict."""
    items = [{**i, "kind": "feature"} for i in report.get("features") or []]
    items += [{**i, "kind": "prediction"} for i in report.get("outputs") or []]
    frame = pd.DataFrame(items).reindex(columns=DRIFT_COLUMNS)
    frame["drifted"] = frame["drifted"].fillna(False).astype(bool)
    return frame


def quality_table(experiment: dict[str, Any]) -> pd.DataFrame:
    """Live quality per variant (accuracy / ROC AUC / MAE from the feedback received)."""
    quality = experiment.get("live_quality") or {}
    return pd.DataFrame([{"variant": k, **v} for k, v in quality.items()])
