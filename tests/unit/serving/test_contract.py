"""The request contract built from metadata: types, nulls, extras, flags; JSON and CSV rules agree."""

import math

import numpy as np
import pandas as pd
import pytest

from mlops_template.pipeline.onnx_export import MISSING_TEXT
from mlops_template.serving.contract import SMALL_BATCH, Contract, RowError
from tests.conftest import model_record

METADATA = {
    "task": "binary",
    "classes": ["N", "Y"],
    "features": [
        {
            "name": "income",
            "type": "numeric",
            "missing_rate": 0.0,
            "min": 10.0,
            "max": 100.0,
            "median": 50.0,
            "integer": False,
        },
        {
            "name": "loan amount",
            "type": "numeric",
            "missing_rate": 0.1,
            "min": 1.0,
            "max": 5.0,
            "median": 2.0,
            "integer": False,
        },
        {"name": "area", "type": "categorical", "missing_rate": 0.0, "categories": ["Rural", "Urban"]},
        {"name": "gender", "type": "categorical", "missing_rate": 0.05, "categories": ["F", "M"]},
    ],
    "example": {"income": 50.0, "loan amount": 2.0, "area": "Urban", "gender": "F"},
}


@pytest.fixture
def contract() -> Contract:
    return Contract(model_record(**METADATA))


def test_valid_records_become_columns(contract: Contract):
    columns = contract.validate_records(
        [METADATA["example"], {**METADATA["example"], "loan amount": None, "gender": None, "income": 7}]
    )
    assert columns["income"].tolist() == [50.0, 7.0]
    assert math.isnan(columns["loan amount"][1])
    assert columns["gender"][0] == "F"
    assert pd.isna(columns["gender"][1])
    assert list(columns) == [f["name"] for f in METADATA["features"]]
    # the fused ONNX graph's inputs, ready made: numeric matrix (NaN) and text matrix (imputed: MISSING_TEXT)
    np.testing.assert_array_equal(columns.numbers, [[50.0, 2.0], [7.0, np.nan]])
    assert columns.texts.tolist() == [["Urban", "F"], ["Urban", MISSING_TEXT]]
    flags = contract.flags(columns, 2)
    assert flags.out_of_range == [[], ["income"]] and flags.unknown_categories == [[], []]
    assert flags == contract.flags(dict(columns), 2)  # same as from plain columns (the CSV path's form)


@pytest.mark.parametrize(
    ("change", "field", "hint"),
    [
        ({"income": "50"}, "income", "not a string"),
        ({"income": None}, "income", "no missing values in training"),
        ({"income": float("nan")}, "income", "NaN and Infinity"),
        ({"income": float("inf")}, "income", "NaN and Infinity"),
        ({"income": True}, "income", "valid number"),
        ({"area": [3]}, "area", "send text"),
        ({"area": float("nan")}, "area", "send text"),
        ({"area": ""}, "area", "at least 1 character"),
        ({"extra": 1}, "extra", "unknown field"),
    ],
)
def test_bad_values_name_row_and_field(contract: Contract, change: dict, field: str, hint: str):
    rows = [METADATA["example"], {**METADATA["example"], **change}]
    with pytest.raises(RowError) as caught:
        contract.validate_records(rows)
    detail = caught.value.details[0]
    assert (detail["row"], detail["field"]) == (1, field)
    assert hint in detail["message"]


def test_missing_field_is_named(contract: Contract):
    row = {k: v for k, v in METADATA["example"].items() if k != "loan amount"}
    with pytest.raises(RowError) as caught:
        contract.validate_records([row])
    assert caught.value.details[0]["field"] == "loan amount"
    assert "send null" in caught.value.details[0]["message"]


def test_record_model_documents_ranges_and_categories(contract: Contract):
    schema = contract.record_model.model_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"income", "loan amount", "area", "gender"}
    income = schema["properties"]["income"]
    assert income["x-training-min"] == 10.0
    assert "minimum" not in income
    assert schema["properties"]["area"]["x-known-categories"] == ["Rural", "Urban"]
    assert schema["examples"] == [METADATA["example"]]


def test_flags_small_and_vectorised_paths_agree(contract: Contract):
    rng = np.random.default_rng(0)
    n = SMALL_BATCH * 3
    rows = [
        {
            "income": float(rng.uniform(0, 120)),
            "loan amount": None if rng.random() < 0.2 else float(rng.uniform(0, 6)),
            "area": str(rng.choice(["Rural", "Urban", "Mars"])),
            "gender": None if rng.random() < 0.2 else "X",
        }
        for _ in range(n)
    ]
    columns = contract.validate_records(rows)
    big = contract.flags(columns, n)
    small = contract._flags_small(columns, n)
    assert big.out_of_range == small.out_of_range
    assert big.unknown_categories == small.unknown_categories
    assert big.counts_out_of_range == small.counts_out_of_range
    assert big.counts_unknown == small.counts_unknown
    expected = sum(1 for r in rows if r["income"] < 10 or r["income"] > 100)
    assert big.counts_out_of_range.get("income", 0) == expected
    assert big.counts_unknown["area"] == sum(1 for r in rows if r["area"] == "Mars")


def test_csv_rules_match_json_rules(contract: Contract):
    frame = pd.DataFrame(
        {
            "income": ["50", "abc", None, "inf", "20"],
            "loan amount": ["2", "2", "2", "2", None],
            "area": ["Urban", "Urban", "Urban", None, "Mars"],
            "gender": ["F", "F", "F", "F", None],
        }
    )
    columns, reasons = contract.validate_frame(frame)
    assert reasons[0] is None
    assert reasons[4] is None
    assert "'abc' is not a number" in reasons[1]
    assert "income: missing" in reasons[2]
    assert "Infinity" in reasons[3]
    assert "area: missing" in reasons[3]
    assert columns["income"].tolist() == [50.0, 20.0]
    flags = contract.flags(columns, 2)
    assert flags.unknown_categories == [[], ["area"]]
