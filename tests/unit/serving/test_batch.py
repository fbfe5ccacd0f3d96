"""Batch scoring in-process: chunks, rejects with CSV line numbers, copied columns, atomic output, clear refusals."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd
import pytest

from mlops_template.core.errors import UserError
from mlops_template.pipeline.sample import write_sample
from mlops_template.serving.batch import count_rows, predict_file
from tests.serving_helpers import build_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("batch"))


@pytest.fixture
def batch(tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(write_sample(tmp_path / "sample.csv", rows=25, seed=11), dtype=str, keep_default_na=False)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_count_rows(tmp_path: Path) -> None:
    cases = {"a\n1\n2\n": 2, "a\n1\n2": 2, "a\n": 0, "a": 0, "": 0}
    for i, (text, expected) in enumerate(cases.items()):
        (tmp_path / f"{i}.csv").write_text(text)
        assert count_rows(tmp_path / f"{i}.csv") == expected, text


def test_chunks_keep_order_copy_other_columns_and_reject_with_line_numbers(
    bundle: Path, batch: pd.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batch.loc[9, "applicant_income"] = "lots"  # CSV line 11 (line 1 is the header), in the second chunk of 7
    batch.loc[20, "loan_amount"] = "-"  # line 22, in the third chunk
    batch.loc[3, "property_area"] = "Mars"  # unseen category: scored and flagged, not rejected
    batch.to_csv(tmp_path / "in.csv", index=False)
    out, rejects = tmp_path / "out.csv", tmp_path / "rejects.csv"
    with caplog.at_level(logging.WARNING):
        summary = predict_file(tmp_path / "in.csv", out, bundle, rejects, chunk_rows=7, progress=False)
    assert (summary.rows, summary.scored, summary.rejected) == (25, 23, 2)
    assert summary.runtime == "onnx" and summary.output == str(out) and summary.rejects == str(rejects)
    scored = rows(out)
    kept = batch.drop(index=[9, 20])
    assert [r["loan_id"] for r in scored] == list(kept["loan_id"])  # order kept, ids copied
    assert [r["loan_status"] for r in scored] == list(kept["loan_status"])  # non-features copied unchanged
    assert list(scored[0])[-5:] == [
        "prediction", "probability_N", "probability_Y", "flags_out_of_range", "flags_unknown_categories"
    ]  # fmt: skip
    assert all(abs(float(r["probability_N"]) + float(r["probability_Y"]) - 1) < 1e-6 for r in scored)
    assert scored[3]["flags_unknown_categories"] == "property_area"
    assert [(r["line"], r["reason"].split(":")[0]) for r in rows(rejects)] == [
        ("11", "applicant_income"),
        ("22", "loan_amount"),
    ]
    assert "line 11: applicant_income" in caplog.text and "all of them in" in caplog.text


def test_a_chunk_with_every_row_rejected(bundle: Path, batch: pd.DataFrame, tmp_path: Path) -> None:
    batch.loc[0, "applicant_income"] = "lots"  # the first chunk (one row) has nothing to score
    batch.head(3).to_csv(tmp_path / "in.csv", index=False)
    summary = predict_file(tmp_path / "in.csv", tmp_path / "out.csv", bundle, chunk_rows=1, progress=False)
    assert (summary.scored, summary.rejected) == (2, 1)
    scored = rows(tmp_path / "out.csv")  # the header is still written once, by the empty first chunk
    assert [r["loan_id"] for r in scored] == list(batch["loan_id"][1:3]) and scored[0]["prediction"] in "NY"


def test_a_broken_line_later_in_the_file_leaves_no_output(bundle: Path, batch: pd.DataFrame, tmp_path: Path) -> None:
    batch.to_csv(tmp_path / "in.csv", index=False)
    with (tmp_path / "in.csv").open("a") as handle:
        handle.write("x,y,z," * 10 + "\n")  # too many fields: a parser error in the last chunk
    out = tmp_path / "out.csv"
    out.write_text("previous results\n")
    with pytest.raises(UserError, match=r"in\.csv: not a readable CSV \(.*line 27, saw 31\); fix that line and rerun"):
        predict_file(tmp_path / "in.csv", out, bundle, tmp_path / "rejects.csv", chunk_rows=5, progress=False)
    assert out.read_text() == "previous results\n"  # untouched: written atomically or not at all
    assert not (tmp_path / "rejects.csv").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_refusals_name_the_file_and_the_fix(bundle: Path, batch: pd.DataFrame, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    (tmp_path / "empty.csv").write_text("")
    batch.drop(columns=["education"]).to_csv(tmp_path / "no_feature.csv", index=False)
    batch.assign(prediction="mine").to_csv(tmp_path / "clash.csv", index=False)
    cases = {
        "absent.csv": "absent.csv: file not found",
        "empty.csv": "empty.csv: the file is empty; it needs a header line",
        "no_feature.csv": r"no_feature.csv: column\(s\) \['education'\] missing; the model needs",
        "clash.csv": r"clash.csv: column\(s\) \['prediction'\] would be overwritten by the predictions; rename",
    }
    for name, message in cases.items():
        with pytest.raises(UserError, match=message):
            predict_file(tmp_path / name, out, bundle, progress=False)
    assert not out.exists()
