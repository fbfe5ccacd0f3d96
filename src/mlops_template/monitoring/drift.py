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
from scipy.spatial import distance

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


def noise_bounds(reference: np.ndarray, current_rows: int, alpha: float, threshold: float = 0.0) -> dict[str, float]:
    """PSI, KL and JS distance that sampling noise alone exceeds with probability `alpha` (module docstring).

    When even twice the PSI's chi-square approximation stays below `threshold` the bounds cannot decide (the
    bootstrap was within 1.2x of it in every case tried): approximations are returned and large batches stay
    cheap (KL ~ PSI / 2, JS divergence ~ PSI / 8 for small differences).
    """
    reference_rows, buckets = int(np.sum(reference)), int(np.count_nonzero(reference))
    if reference_rows == 0 or current_rows == 0 or buckets < 2:
        return {"psi": math.inf, "kl": math.inf, "js": math.inf}
    approximation = (1 / reference_rows + 1 / current_rows) * float(stats.chi2.isf(alpha, buckets - 1))
    if 2 * approximation < threshold:
        return {"psi": approximation, "kl": approximation / 2, "js": math.sqrt(approximation / 8)}
    psi_bound, kl_bound, js_bound = _bootstrap_bounds(tuple(int(c) for c in reference), current_rows, alpha)
    return {"psi": psi_bound, "kl": kl_bound, "js": js_bound}


def psi_noise_bound(reference: np.ndarray, current_rows: int, alpha: float, threshold: float = 0.0) -> float:
    """The PSI that sampling noise alone exceeds with probability `alpha`."""
    return noise_bounds(reference, current_rows, alpha, threshold)["psi"]


@functools.lru_cache(maxsize=1024)  # the live window asks again with the same sizes every refresh
def _bootstrap_bounds(reference: tuple[int, ...], current_rows: int, alpha: float) -> tuple[float, float, float]:
    rng = np.random.default_rng(NOISE_SEED)
    p = _fractions(np.array(reference))
    p /= p.sum()
    simulated_reference = rng.multinomial(sum(reference), p, size=NOISE_DRAWS)
    simulated_current = rng.multinomial(current_rows, p, size=NOISE_DRAWS)
    expected, actual = _fractions(simulated_reference), _fractions(simulated_current)
    psi_values = np.sum((actual - expected) * np.log(actual / expected), axis=1)
    expected, actual = expected / expected.sum(axis=1, keepdims=True), actual / actual.sum(axis=1, keepdims=True)
    kl_values = np.sum(actual * np.log(actual / expected), axis=1)
    js_values = distance.jensenshannon(actual, expected, base=2, axis=1)
    quantile = 1 - alpha
    psi_bound, kl_bound, js_bound = (float(np.quantile(v, quantile)) for v in (psi_values, kl_values, js_values))
    return psi_bound, kl_bound, js_bound


def divergences(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Jensen-Shannon distance (base 2) and KL(current || reference) over the same buckets."""
    p, q = _fractions(reference), _fractions(current)
    p, q = p / p.sum(), q / q.sum()
    return float(distance.jensenshannon(q, p, base=2)), float(np.sum(q * np.log(q / p)))


def scaled_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein distance between the reference sample and the current values, in reference IQRs."""
    if len(reference) == 0 or len(current) == 0:
        return 0.0
    q1, q3 = np.percentile(reference, [25, 75])
    scale = (q3 - q1) or float(np.std(reference)) or 1.0  # a near-constant feature: fall back to its spread
    return float(stats.wasserstein_distance(reference, current) / scale)


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
    result["js"], result["kl"] = divergences(reference, observed.counts)
    result["wasserstein"] = None
    if entry["type"] == "numeric":
        values = observed.values if observed.values is not None else np.array([])
        sample = np.asarray(entry["sample"], dtype=float)
        statistic, p_value = ks_test(sample, values)
        result |= {"test": "ks", "statistic": statistic, "p_value": p_value, "effect": statistic}
        result["wasserstein"] = scaled_wasserstein(sample, values)
    else:
        statistic, p_value, cramers_v = chi2_test(reference, observed.counts)
        result |= {"test": "chi2", "statistic": statistic, "p_value": p_value, "effect": cramers_v}
    alpha = config.p_value / max(tests, 1)
    noise = {k: v if math.isfinite(v) else None for k, v in noise_bounds(reference, observed.rows, alpha,
                                                                          config.psi_threshold).items()}  # fmt: skip
    result["psi_noise"], result["noise"] = noise["psi"], noise  # None (JSON null): one bucket, nothing to compare
    reasons = [reason for measure in config.decide_on if (reason := _verdict(measure, result, config, alpha))]
    enough = observed.rows >= config.min_rows
    result["drifted"] = bool(reasons) and enough
    result["reason"] = "; ".join(reasons) if enough else f"{observed.rows} rows < min_rows {config.min_rows}"
    result["reference_fractions"] = (reference / max(reference.sum(), 1)).round(6).tolist()
    result["current_fractions"] = (observed.counts / max(observed.rows, 1)).round(6).tolist()
    result["labels"] = entry["labels"]
    return result


def _verdict(measure: str, result: dict[str, Any], config: DriftConfig, alpha: float) -> str | None:
    """Why `measure` says this entry drifted, or None."""
    noise = result["noise"]
    if measure == "test":
        if result["p_value"] < alpha and result["effect"] >= config.min_effect:
            return f"{result['test']} p={result['p_value']:.2g} < {alpha:.2g} with effect {result['effect']:.3f}"
        return None
    limits = {  # (value, threshold, the threshold small-sample noise needs)
        "psi": (result["psi"], config.psi_threshold, noise["psi"]),
        "kl": (result["kl"], config.kl_threshold, noise["kl"]),
        "js": (result["js"], config.js_threshold, noise["js"]),
        "wasserstein": (result["wasserstein"], config.wasserstein_threshold, 0.0),
    }
    value, threshold, floor = limits[measure]
    floor = math.inf if floor is None else floor
    if value is None or value < max(threshold, floor):
        return None
    bound = f" and noise bound {floor:.3f}" if floor > threshold else ""
    label = {"psi": "PSI", "kl": "KL", "js": "JS distance", "wasserstein": "Wasserstein/IQR"}[measure]
    return f"{label} {value:.3f} >= {threshold}{bound}"


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
            "decide_on": list(config.decide_on),
            "js_threshold": config.js_threshold,
            "kl_threshold": config.kl_threshold,
            "wasserstein_threshold": config.wasserstein_threshold,
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
        yield "model_feature_drift_js", labels, item["js"] if judged else math.nan
        yield "model_feature_drift_kl", labels, item["kl"] if judged else math.nan
        if item["wasserstein"] is not None:
            yield "model_feature_drift_wasserstein", labels, item["wasserstein"] if judged else math.nan
        yield "model_drift_detected", labels, float(item["drifted"])
    for item in report["outputs"]:
        labels = {"output": item["name"]}
        yield "model_prediction_drift_psi", labels, item["psi"] if judged else math.nan
        yield "model_prediction_drift_p_value", labels, item["p_value"] if judged else math.nan
        yield "model_prediction_drift_js", labels, item["js"] if judged else math.nan
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
        f"reference rows. Decided on {', '.join(t['decide_on'])}: PSI >= {t['psi_threshold']}, test p < "
        f"{t['p_value_corrected']:.2g} (p_value {t['p_value']} / tests) with effect >= {t['min_effect']}, "
        f"JS distance >= {t['js_threshold']}, KL >= {t['kl_threshold']}, Wasserstein >= "
        f"{t['wasserstein_threshold']} IQR (small samples: PSI, JS and KL must also beat their noise bound).",
        "",
        "| | name | PSI | JS | KL | W/IQR | test | statistic | p-value | effect | drift | why |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for kind, items in (("feature", report["features"]), ("prediction", report["outputs"])):
        for i in items:
            moved = "" if i["wasserstein"] is None else _fmt(i["wasserstein"])
            lines.append(
                f"| {kind} | {i['name']} | {_fmt(i['psi'])} | {_fmt(i['js'])} | {_fmt(i['kl'])} | {moved} | "
                f"{i['test']} | {_fmt(i['statistic'])} | "
                f"{_fmt(i['p_value'])} | {_fmt(i['effect'])} | {'**yes**' if i['drifted'] else 'no'} | {i['reason']} |"
            )
    return "\n".join(lines) + "\n"
