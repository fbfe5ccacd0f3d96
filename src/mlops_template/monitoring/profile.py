"""The reference profile: what training data and predictions looked like, saved in the model bundle.

Every feature and model output becomes an *entry* with a fixed list of buckets (quantile bins for
numbers, frequent categories for text, plus "(other)" and "(missing)") and the reference counts per
bucket. Numeric entries also keep a bounded, seeded sample of raw values for the Kolmogorov-Smirnov
test. Batch and live drift both map values to the same buckets with `bucket_index`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_template.core.config import ProfileConfig
from mlops_template.core.errors import UserError
from mlops_template.core.tabular import as_label, as_labels

PROFILE_FILE = "reference_profile.json"
FORMAT_VERSION = 1
OTHER, MISSING = "(other)", "(missing)"
Entry = dict[str, Any]


def numeric_entry(values: Any, config: ProfileConfig, seed_offset: int = 0) -> Entry:
    """Quantile bin edges, counts per bin (two open outer bins catch out-of-range values) and a sample."""
    array = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    present = array[~np.isnan(array)]
    if len(present):
        # observed values as edges (not interpolated ones): ties then merge bins instead of splitting a value
        quantiles = np.quantile(present, np.linspace(0, 1, config.bins + 1)[1:-1], method="inverted_cdf")
        # min and max are edges too, so "below/above the training range" are buckets of their own
        edges = np.unique([present.min(), *quantiles, present.max()])
    else:
        edges = np.array([])
    entry: Entry = {"type": "numeric", "edges": edges.tolist()}
    rng = np.random.default_rng([config.seed, seed_offset])
    take = min(len(present), config.reference_sample)
    sample = rng.choice(present, size=take, replace=False) if take else present
    entry["sample"] = np.sort(sample).tolist()  # JSON floats round-trip exactly
    return _with_counts(entry, array)


def categorical_entry(values: Any, config: ProfileConfig) -> Entry:
    """The frequent categories (most frequent first); rare ones are pooled into "(other)"."""
    series = pd.Series(values, dtype=object)
    labels = as_labels(series[series.notna()])
    freq = labels.value_counts(normalize=True, sort=True)
    kept = freq[freq >= config.min_category_fraction].index[: config.max_categories]
    # ties in frequency are ordered by name so the profile is the same on every run
    kept = sorted(kept, key=lambda c: (-freq[c], c))
    return _with_counts({"type": "categorical", "categories": list(kept)}, series)


def labels(entry: Entry) -> list[str]:
    """Bucket names, in bucket order."""
    if entry["type"] == "numeric":
        edges = [f"{e:g}" for e in entry["edges"]]
        inner = [f"({a}, {b}]" for a, b in itertools.pairwise(edges)]
        outer = [f"<= {edges[0]}", *inner, f"> {edges[-1]}"] if edges else ["(any)"]
        return [*outer, MISSING]
    return [*entry["categories"], OTHER, MISSING]


def n_buckets(entry: Entry) -> int:
    return len(labels(entry))


def bucket_index(entry: Entry, values: Any) -> np.ndarray:
    """Bucket of each value (vectorised); the last bucket is "(missing)"."""
    missing_bucket = n_buckets(entry) - 1
    if entry["type"] == "numeric":
        array = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)
        # right-closed bins: a value equal to an edge belongs to the bin that ends there
        index = np.searchsorted(np.asarray(entry["edges"], dtype=float), array, side="left")
        index[np.isnan(array)] = missing_bucket
        return index.astype(np.int32)
    lookup = {c: i for i, c in enumerate(entry["categories"])}
    # label each distinct value once (few per column), then index: missing values have code -1
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    buckets = [lookup.get(as_label(u), len(lookup)) for u in uniques]
    return np.array([*buckets, missing_bucket], dtype=np.int32)[codes]


def _with_counts(entry: Entry, values: Any) -> Entry:
    counts = np.bincount(bucket_index(entry, values), minlength=n_buckets(entry))
    return {**entry, "rows": int(counts.sum()), "counts": counts.tolist(), "labels": labels(entry)}


def output_frame(task: str, classes: Sequence[str] | None, predicted: Any, proba: Any | None) -> dict[str, Any]:
    """Model outputs as profile columns: "class" (+ "score", the positive probability, for binary) or "value"."""
    if task == "regression":
        return {"value": np.asarray(predicted, dtype=float)}
    predicted = np.asarray(predicted, dtype=object).tolist()
    names = {p: as_label(p) for p in set(predicted)}  # a few distinct classes: label each once
    outputs: dict[str, Any] = {"class": np.array([names[p] for p in predicted], dtype=object)}
    if task == "binary" and proba is not None:
        # the last class in the model's order: the same column in the profile, the batch report and live
        outputs["score"] = np.asarray(proba, dtype=float)[:, -1]
    return outputs


def build_profile(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    task: str,
    classes: Sequence[str] | None,
    outputs: dict[str, Any],
    config: ProfileConfig,
) -> dict[str, Any]:
    """The reference profile of `frame` (features) and of the model `outputs` (see `output_frame`)."""
    features = {name: numeric_entry(frame[name], config, i) for i, name in enumerate(numeric)}
    features |= {name: categorical_entry(frame[name], config) for name in categorical}
    profiled: dict[str, Entry] = {}
    for name, values in outputs.items():
        if name == "class":
            # every class is a bucket, however rare: a class that vanishes in production is drift
            profiled[name] = _with_counts({"type": "categorical", "categories": list(classes or [])}, values)
        else:
            profiled[name] = numeric_entry(values, config, len(features) + len(profiled))
    return {
        "format_version": FORMAT_VERSION,
        "task": task,
        "classes": list(classes) if classes else None,
        "settings": config.model_dump(),
        "features": {name: features[name] for name in [*numeric, *categorical]},
        "outputs": profiled,
    }


def load_profile(bundle_dir: str | Path) -> dict[str, Any]:
    """The profile stored in a bundle (the bundle loader has already verified its checksum)."""
    path = Path(bundle_dir) / PROFILE_FILE
    if not path.is_file():
        raise UserError(
            f"{path}: missing; this bundle was trained before drift monitoring existed. "
            "Retrain it (`make pipeline`) to get a reference profile"
        )
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); retrain the bundle") from None
    if profile.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: format_version {profile.get('format_version')} is not {FORMAT_VERSION}; retrain")
    return profile
