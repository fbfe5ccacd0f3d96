"""The API's JSON turned into the tables (and a few sentences) the pages show (pure functions: no Streamlit, no
HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime
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


COMPARISON_COLUMNS = ["challenger", "feedback (champion / challenger)", "champion rate", "challenger rate", "alpha",
                      "p-value", "decision", "reason"]  # fmt: skip


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "—"


def comparison_table(experiment: dict[str, Any]) -> pd.DataFrame:
    """Each challenger's test against the champion (GET /experiment `comparisons`): its feedback, success rates,
    alpha (Bonferroni: the configured alpha / challengers), p-value ("—" until the test computes one) and decision."""
    rows = []
    for name, test in (experiment.get("comparisons") or {}).items():
        reached = test.get("reached") or {}
        rows.append({
            "challenger": name,
            "feedback (champion / challenger)": f"{reached.get('champion', 0)} / {reached.get(name, 0)}",
            "champion rate": _number(test.get("champion_rate")),
            "challenger rate": _number(test.get("challenger_rate")),
            "alpha": _number(test.get("alpha")),
            "p-value": _number(test.get("p_value")),
            "decision": test.get("decision"),
            "reason": test.get("reason", ""),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


UNKNOWN_COMMIT_TIME = ("not known: the service was started without MODEL_COMMITTED_AT (no git history where it "
                       "started, or a bundle no commit records yet)")  # fmt: skip


def committed_sentence(model: dict[str, Any]) -> str:
    """GET /model's model_committed_at in words that say what it is: when a commit first recorded the bundle in
    dvc.lock, not the training time (training ran before it; the bundle holds no clock time)."""
    moment = model.get("model_committed_at")
    if not moment:
        return UNKNOWN_COMMIT_TIME
    try:
        when = datetime.fromisoformat(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError):
        when = str(moment)
    return f"{when}, when a commit first recorded this bundle in dvc.lock (the model was trained before)"
