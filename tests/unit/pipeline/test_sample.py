import numpy as np
import pandas as pd

from mlops_template.pipeline.sample import CHUNK_ROWS, make_chunk, write_sample


def test_same_arguments_same_bytes(tmp_path):
    first = write_sample(tmp_path / "a.csv", rows=1500, seed=5).read_bytes()
    second = write_sample(tmp_path / "b.csv", rows=1500, seed=5).read_bytes()
    assert first == second
    assert write_sample(tmp_path / "c.csv", rows=1500, seed=6).read_bytes() != first


def test_rows_stream_in_chunks_that_do_not_depend_on_the_total(tmp_path):
    rows = CHUNK_ROWS + 10
    longer = write_sample(tmp_path / "a.csv", rows=rows, seed=1)
    frame = pd.read_csv(longer, usecols=["loan_id"])
    assert len(frame) == rows
    assert frame["loan_id"].is_unique
    # a full chunk is the same whatever the total: a larger file extends a smaller one
    shorter = write_sample(tmp_path / "b.csv", rows=CHUNK_ROWS, seed=1).read_bytes()
    assert longer.read_bytes().startswith(shorter)


def test_realistic_shape():
    frame = make_chunk(0, 20_000, 42, 0.0)
    missing = frame.isna().mean()
    for column in ("gender", "dependents", "self_employed", "loan_amount", "credit_history"):
        assert 0.005 < missing[column] < 0.12, column
    assert frame["loan_status"].isin(["Y", "N"]).all()
    assert 0.6 < (frame["loan_status"] == "Y").mean() < 0.85
    income = frame["applicant_income"]
    assert income.mean() > income.median() * 1.1  # right-skewed, like real incomes
    approved_with_credit = (frame.loc[frame["credit_history"] == 1, "loan_status"] == "Y").mean()
    approved_without = (frame.loc[frame["credit_history"] == 0, "loan_status"] == "Y").mean()
    assert approved_with_credit > approved_without + 0.3


def test_drift_shifts_inputs():
    reference = make_chunk(0, 20_000, 1, 0.0)
    drifted = make_chunk(0, 20_000, 1, 0.6)
    assert drifted["applicant_income"].median() > reference["applicant_income"].median() * 1.2
    assert (drifted["property_area"] == "Urban").mean() > (reference["property_area"] == "Urban").mean() + 0.1
    assert np.nanmean(drifted["credit_history"]) < np.nanmean(reference["credit_history"]) - 0.1
