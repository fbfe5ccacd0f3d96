"""Drift statistics of current data against the reference profile: PSI plus a significance test.

Numeric entries: PSI on the profile's quantile bins and the two-sample Kolmogorov-Smirnov test
against the profile's raw reference sample. Why a sample rather than KS from binned CDFs: binned
CDFs only see the distance at the bin edges (the statistic is biased low) and the p-value of a KS
test on binned, heavily tied data is not valid; a seeded sample of 1,000 values per feature costs
~20 KB and gives `scipy.stats.ks_2samp` its exact finite-sample p-value, with both sample sizes.
Categorical entries (and the predicted class): PSI and the chi-square test of homogeneity on the
2 x k table of reference and current bucket counts (the reference is a sample too, not the truth).

An entry drifts when its PSI is at least psi_threshold *and* above what sampling noise alone gives at the
configured level, or when its test rejects at p_value / m (Bonferroni over the m entries of a report) *and*
its effect size (KS D, Cramér's V) is at least min_effect: with thousands of rows a test alone flags
differences too small to matter, and with a few hundred rows (or a small reference, or many buckets) a fixed
PSI threshold alone flags noise. The noise bound is the 1 - p_value / m quantile of PSI between two samples of
the report's sizes drawn from the same distribution (the reference's), by a seeded parametric bootstrap. Under
no drift PSI is roughly (1/N + 1/M) * chi2(k - 1) (B. Yurdakul, "Statistical properties of population stability
index", 2018), but that approximation undershoots the tail when buckets hold a few rows each, which is
exactly the small-batch case this bound is for. With thousands of rows the bound is far below psi_threshold.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlops_template.core.config import DriftConfig
from mlops_template.monitoring.profile import Entry, bucket_index, n_buckets

log = logging.getLogger(__name__)
DRIFT, NO_DRIFT, NOT_ENOUGH = "drift", "no drift", "not enough data"
NOISE_DRAWS = 4000  # bootstrap samples for the PSI noise bound: its 1 - alpha quantile needs many beyond it
NOISE_SEED = 0  # the same data gives the same verdict


@dataclass(frozen=True)
class Observed:
    """Current data for one entry: counts per profile bucket and (numeric) the non-missing raw values."""

    counts: np.ndarray
    values: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return int(self.counts.sum())


def observe(entry: Entry, values: Any) -> Observed:
    """Bucket counts (and numeric values) of a column of current data."""
    buckets = bucket_index(entry, values)
    counts = np.bincount(buckets, minlength=n_buckets(entry))
    if entry["type"] != "numeric":
        return Observed(counts)
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)
    return Observed(counts, numbers[~np.isnan(numbers)])


def _fractions(counts: np.ndarray) -> np.ndarray:
    """Bucket fractions (along the last axis) where an empty bucket counts as half a row, so PSI stays finite;
    a fixed tiny floor instead makes every bucket a small batch happens to miss weigh ~0.1 PSI on its own."""
    counts = np.asarray(counts, float)
    total = np.maximum(counts.sum(axis=-1, keepdims=True), 1.0)
    return np.maximum(counts, 0.5) / total


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index between two count vectors over the same buckets."""
    expected, actual = _fractions(reference), _fractions(current)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_noise_bound(reference: np.ndarray, current_rows: int, alpha: float, threshold: float = 0.0) -> float:
    """The PSI that sampling noise alone exceeds with probability `alpha` (module docstring).

    The chi-square approximation is used as is when even twice it stays below `threshold` (the bound cannot
    decide then; the bootstrap was within 1.2x of it in every case tried), which keeps large batches cheap.
    """
    reference_rows, buckets = int(np.sum(reference)), int(np.count_nonzero(reference))
    if reference_rows == 0 or current_rows == 0 or buckets < 2:
        return math.inf
    approximation = (1 / reference_rows + 1 / current_rows) * float(stats.chi2.isf(alpha, buckets - 1))
    if 2 * approximation < threshold:
        return approximation
    return _bootstrap_bound(tuple(int(c) for c in reference), current_rows, alpha)


@functools.lru_cache(maxsize=1024)  # the live window asks again with the same sizes every refresh
def _bootstrap_bound(reference: tuple[int, ...], current_rows: int, alpha: float) -> float:
    rng = np.random.default_rng(NOISE_SEED)
    p = _fractions(np.array(reference))
    p /= p.sum()
    simulated_reference = rng.multinomial(sum(reference), p, size=NOISE_DRAWS)
    simulated_current = rng.multinomial(current_rows, p, size=NOISE_DRAWS)
    expected, actual = _fractions(simulated_reference), _fractions(simulated_current)
    values = np.sum((actual - expected) * np.log(actual / expected), axis=1)
    return float(np.quantile(values, 1 - alpha))


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic D and p-value (D=0, p=1 when a side is empty)."""
    if len(reference) == 0 or len(current) == 0:
        return 0.0, 1.0
    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def chi2_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float, float]:
    """Chi-square homogeneity test on the 2 x k count table: statistic, p-value, Cramér's V."""
    table = np.vstack([reference, current]).astype(float)
    table = table[:, table.sum(axis=0) > 0]  # buckets empty on both sides carry no information
    if table.shape[1] < 2 or min(table.sum(axis=1)) == 0:
        return 0.0, 1.0, 0.0
    statistic, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    return float(statistic), float(p_value), math.sqrt(statistic / table.sum())  # 2 rows: V = sqrt(chi2/n)


def entry_drift(name: str, entry: Entry, observed: Observed, config: DriftConfig, tests: int) -> dict[str, Any]:
    """The statistics of one entry and whether they say drift."""
    reference = np.asarray(entry["counts"])
    result: dict[str, Any] = {"name": name, "type": entry["type"], "rows": observed.rows}
    result["psi"] = psi(reference, observed.counts)
    if entry["type"] == "numeric":
        values = observed.values if observed.values is not None else np.array([])
        statistic, p_value = ks_test(np.asarray(entry["sample"], dtype=float), values)
        result |= {"test": "ks", "statistic": statistic, "p_value": p_value, "effect": statistic}
    else:
        statistic, p_value, cramers_v = chi2_test(reference, observed.counts)
        result |= {"test": "chi2", "statistic": statistic, "p_value": p_value, "effect": cramers_v}
    reasons = []
    alpha = config.p_value / max(tests, 1)
    result["psi_noise"] = psi_noise_bound(reference, observed.rows, alpha, config.psi_threshold)
    if result["psi"] >= max(config.psi_threshold, result["psi_noise"]):
        limit = "" if config.psi_threshold >= result["psi_noise"] else f" and noise bound {result['psi_noise']:.3f}"
        reasons.append(f"PSI {result['psi']:.3f} >= {config.psi_threshold}{limit}")
    if p_value < alpha and result["effect"] >= config.min_effect:
        reasons.append(f"{result['test']} p={p_value:.2g} < {alpha:.2g} with effect {result['effect']:.3f}")
    enough = observed.rows >= config.min_rows
    result["drifted"] = bool(reasons) and enough
    result["reason"] = "; ".join(reasons) if enough else f"{observed.rows} rows < min_rows {config.min_rows}"
    result["reference_fractions"] = (reference / max(reference.sum(), 1)).round(6).tolist()
    result["current_fractions"] = (observed.counts / max(observed.rows, 1)).round(6).tolist()
    result["labels"] = entry["labels"]
    return result


def compare(
    profile: Mapping[str, Any], features: Mapping[str, Observed], outputs: Mapping[str, Observed], config: DriftConfig
) -> dict[str, Any]:
    """The drift report of current observations against the profile (features and model outputs)."""
    missing = [name for name in profile["features"] if name not in features]
    if missing:
        raise ValueError(f"no observations for feature(s) {missing}")
    tests = len(profile["features"]) + len(outputs)
    report_features = [entry_drift(n, e, features[n], config, tests) for n, e in profile["features"].items()]
    report_outputs = [entry_drift(n, profile["outputs"][n], o, config, tests) for n, o in outputs.items()]
    rows = max((item["rows"] for item in report_features), default=0)
    drifted = any(item["drifted"] for item in report_features + report_outputs)
    status = NOT_ENOUGH if rows < config.min_rows else DRIFT if drifted else NO_DRIFT
    return {
        "status": status,
        "drifted": drifted,
        "rows": rows,
        "reference_rows": max((e["rows"] for e in profile["features"].values()), default=0),
        "thresholds": {
            "psi_threshold": config.psi_threshold,
            "p_value": config.p_value,
            "p_value_corrected": config.p_value / max(tests, 1),
            "min_effect": config.min_effect,
            "min_rows": config.min_rows,
        },
        "features": report_features,
        "outputs": report_outputs,
    }


def observe_frame(profile: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, Observed]:
    """Observations of every profiled feature in a batch of rows."""
    return {name: observe(entry, frame[name]) for name, entry in profile["features"].items()}


def observe_outputs(profile: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Observed]:
    """Observations of the model outputs (see profile.output_frame) that the profile has."""
    return {name: observe(profile["outputs"][name], v) for name, v in outputs.items() if name in profile["outputs"]}


def prometheus_samples(report: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, str], float]]:
    """(metric name, labels, value) for the drift gauges on /metrics; NaN when there is no verdict."""
    judged = report["status"] != NOT_ENOUGH
    yield "model_drift_window_rows", {}, float(report["rows"])
    for item in report["features"]:
        labels = {"feature": item["name"]}
        yield "model_feature_drift_psi", labels, item["psi"] if judged else math.nan
        yield "model_feature_drift_p_value", labels, item["p_value"] if judged else math.nan
        yield "model_drift_detected", labels, float(item["drifted"])
    for item in report["outputs"]:
        labels = {"output": item["name"]}
        yield "model_prediction_drift_psi", labels, item["psi"] if judged else math.nan
        yield "model_prediction_drift_p_value", labels, item["p_value"] if judged else math.nan
        yield "model_prediction_drift_detected", labels, float(item["drifted"])


def _fmt(x: float) -> str:
    return f"{x:.2e}" if 0 < abs(x) < 1e-3 else f"{x:.3f}"


def markdown(report: Mapping[str, Any], title: str = "Drift report") -> str:
    """A human-readable report: verdict, thresholds and one table row per feature and output."""
    t = report["thresholds"]
    lines = [
        f"# {title}",
        "",
        f"**{report['status'].upper()}** - {report['rows']} current rows against {report['reference_rows']} "
        f"reference rows. Drift when PSI >= {t['psi_threshold']}, or test p < {t['p_value_corrected']:.2g} "
        f"(p_value {t['p_value']} / tests) with effect >= {t['min_effect']}.",
        "",
        "| | name | PSI | test | statistic | p-value | effect | drift | why |",
        "|---|---|---:|---|---:|---:|---:|---|---|",
    ]
    for kind, items in (("feature", report["features"]), ("prediction", report["outputs"])):
        for i in items:
            lines.append(
                f"| {kind} | {i['name']} | {_fmt(i['psi'])} | {i['test']} | {_fmt(i['statistic'])} | "
                f"{_fmt(i['p_value'])} | {_fmt(i['effect'])} | {'**yes**' if i['drifted'] else 'no'} | {i['reason']} |"
            )
    return "\n".join(lines) + "\n"
