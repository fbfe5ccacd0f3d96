"""Reference profile: buckets, counts, the "(other)" bucket, the bounded sample, and loading from a bundle."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops_template.core.config import ProfileConfig
from mlops_template.core.errors import UserError
from mlops_template.monitoring.profile import (
    MISSING,
    OTHER,
    PROFILE_FILE,
    bucket_index,
    categorical_entry,
    load_profile,
    numeric_entry,
)
from tests.monitoring_support import CATEGORICAL, NUMERIC, loan_frame, reference


def test_numeric_bins_are_quantiles_with_open_ends_and_missing() -> None:
    values = pd.Series([*range(1, 1001), None, None])
    entry = numeric_entry(values, ProfileConfig(bins=4, reference_sample=100))
    assert entry["edges"][0] == 1 and entry["edges"][-1] == 1000
    assert entry["counts"][-1] == 2  # the "(missing)" bucket
    inner = entry["counts"][1:-2]
    assert len(inner) == 4 and max(inner) - min(inner) <= 1  # quantile bins hold equal shares
    assert entry["labels"][-1] == MISSING and entry["labels"][0] == "<= 1" and entry["labels"][-2] == "> 1000"
    assert sum(entry["counts"]) == entry["rows"] == 1002


def test_values_outside_the_training_range_get_their_own_buckets() -> None:
    entry = numeric_entry(np.arange(100.0), ProfileConfig(bins=5, reference_sample=50))
    index = bucket_index(entry, [-5.0, 0.0, 50.0, 99.0, 1e9, None, "text"])
    last = len(entry["labels"]) - 1
    assert index[0] == 0 and index[1] == 0  # below and at the minimum
    assert index[4] == last - 1  # above the maximum
    assert index[5] == last and index[6] == last  # missing, unparsable
    assert 0 < index[2] < last - 1 and index[3] == last - 2


def test_ties_merge_bins_instead_of_creating_empty_ones() -> None:
    entry = numeric_entry([0.0] * 300 + [1.0] * 700, ProfileConfig(bins=10, reference_sample=50))
    assert entry["edges"] == [0.0, 1.0]
    assert entry["counts"] == [300, 700, 0, 0]


def test_rare_categories_are_pooled_into_other() -> None:
    values = ["a"] * 600 + ["b"] * 395 + ["rare1"] * 3 + ["rare2"] * 2 + [None] * 10
    entry = categorical_entry(values, ProfileConfig(min_category_fraction=0.01))
    assert entry["categories"] == ["a", "b"]
    assert entry["labels"] == ["a", "b", OTHER, MISSING]
    assert entry["counts"] == [600, 395, 5, 10]
    assert list(bucket_index(entry, ["b", "never seen", None, 1.0])) == [1, 2, 3, 2]


def test_category_labels_match_training_labels() -> None:
    entry = categorical_entry([1, 2, 2, 3.0], ProfileConfig(min_category_fraction=0.0))
    assert entry["categories"] == ["2", "1", "3"]
    assert list(bucket_index(entry, ["1", 1, 1.0, 3])) == [1, 1, 1, 2]


def test_profile_covers_features_and_outputs_with_a_bounded_seeded_sample() -> None:
    config = ProfileConfig(reference_sample=500)
    profile = reference(rows=3000, config=config)
    assert list(profile["features"]) == NUMERIC + CATEGORICAL
    assert set(profile["outputs"]) == {"class", "score"}
    assert profile["outputs"]["class"]["categories"] == ["N", "Y"]
    for name in NUMERIC:
        assert len(profile["features"][name]["sample"]) <= 500
    assert profile == reference(rows=3000, config=config)  # deterministic
    json.dumps(profile)  # JSON-serialisable as it is


def test_regression_outputs_are_profiled_as_numbers() -> None:
    from mlops_template.monitoring.profile import build_profile, output_frame

    frame = loan_frame(500, 2)
    outputs = output_frame("regression", None, frame["loan_amount"].fillna(0) * 2, None)
    profile = build_profile(frame, NUMERIC, CATEGORICAL, "regression", None, outputs, ProfileConfig())
    assert profile["outputs"]["value"]["type"] == "numeric"


def test_load_profile_explains_missing_and_broken_files(tmp_path) -> None:
    with pytest.raises(UserError, match="Retrain"):
        load_profile(tmp_path)
    (tmp_path / PROFILE_FILE).write_text("{nope")
    with pytest.raises(UserError, match="not valid JSON"):
        load_profile(tmp_path)
    (tmp_path / PROFILE_FILE).write_text('{"format_version": 99}')
    with pytest.raises(UserError, match="format_version"):
        load_profile(tmp_path)
