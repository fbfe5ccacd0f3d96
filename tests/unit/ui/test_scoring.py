"""Reading an uploaded CSV as the batch CLI does, and the chunk loop's retry of a rate-limited call."""

from __future__ import annotations

import pandas as pd
import pytest

from mlops_template.core.config import ReadConfig
from mlops_template.core.errors import UserError
from mlops_template.ui.client import ApiProblem
from mlops_template.ui.scoring import read_upload, records, score, to_csv

MODEL = {
    "task": "binary",
    "classes": ["no", "yes"],
    "features": [{"name": "income", "type": "numeric"}, {"name": "area", "type": "categorical"}],
}


def test_upload_read_like_the_batch_cli():
    data = b"id,income,area\n007,12.5, urban\nx2,NA,\nx3,abc,rural\n"
    frame, extra, written = read_upload(data, MODEL)
    assert extra == ["id"] and written == {"sep": ",", "decimal": "."}
    assert frame["id"].tolist() == ["007", "x2", "x3"]  # pass-through columns stay text as written
    assert records(frame, MODEL) == [
        {"income": 12.5, "area": "urban"},  # spaces after the comma skipped
        {"income": None, "area": None},  # missing spellings -> null
        {"income": "abc", "area": "rural"},  # left as written: the service refuses that row, naming the field
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"id,area\n1,a\n", r"column\(s\) \['income'\] missing"),
        (b"income,area,prediction\n1,a,x\n", r"\['prediction'\] would be overwritten"),
        (b'income,area\n1,"a\n', "not a readable CSV"),
    ],
)
def test_unusable_uploads_are_one_sentence(data: bytes, message: str):
    with pytest.raises(UserError, match=message) as raised:
        read_upload(data, MODEL, "up.csv")
    assert str(raised.value).startswith("up.csv: ")  # the person's file, not the temporary copy


def test_upload_read_with_data_read_like_make_predict():
    """A fork's data.read (here a European export: semicolons, decimal commas, latin-1, `?` for missing) reads
    the upload as `make predict` reads it, and the download is written in the same format."""
    read = ReadConfig(delimiter=";", decimal=",", encoding="latin-1", na_values=["?"])
    data = "id;income;area\n1;12,5;Zürich\n2;?;rural\n".encode("latin-1")
    frame, extra, written = read_upload(data, MODEL, "export.csv", read)
    assert extra == ["id"] and frame["id"].tolist() == ["1", "2"]
    assert records(frame, MODEL) == [{"income": 12.5, "area": "Zürich"}, {"income": None, "area": "rural"}]
    assert written == {"sep": ";", "decimal": ","}
    result = pd.DataFrame({"id": ["1"], "prediction": [0.5]})
    assert to_csv(result, written).decode() == "id;prediction\n1;0,5\n"
    with pytest.raises(UserError, match=r"export.csv: the header line 'id,income,area' looks comma-separated"):
        read_upload(b"id,income,area\n1,2,a\n", MODEL, "export.csv", read)


def test_a_rate_limited_chunk_is_sent_again_after_retry_after():
    calls = []

    def predict(rows: list[dict]) -> dict:
        calls.append(len(rows))
        if len(calls) == 1:
            raise ApiProblem("Too many requests (429)", 429, "rate_limited", retry_after=0.01)
        return {"model_version": "v1", "runtime": "sklearn", "predictions": [
            {"prediction": "yes", "probabilities": {"no": 0.25, "yes": 0.75}, "out_of_range": ["income"],
             "unknown_categories": []} for _ in rows]}  # fmt: skip

    frame, extra, _ = read_upload(b"id,income,area\n1,2,a\n", MODEL)
    result = score(frame, extra, MODEL, predict)
    assert calls == [1, 1] and result.model_version == "v1"
    assert to_csv(result.output).decode().splitlines() == [
        "id,prediction,probability_no,probability_yes,flags_out_of_range,flags_unknown_categories",
        "1,yes,0.25,0.75,income,",
    ]


def test_other_errors_are_not_retried():
    def predict(rows: list[dict]) -> dict:
        raise ApiProblem("The service is not available (503)", 503)

    frame, extra, _ = read_upload(b"income,area\n1,a\n", MODEL)
    with pytest.raises(ApiProblem, match="503"):
        score(frame, extra, MODEL, predict)
    assert score(pd.DataFrame(columns=["income", "area"]), [], MODEL, predict).output.empty


def test_rows_go_in_chunks_with_progress_and_refused_rows_keep_their_csv_line():
    sent, done = [], []

    def predict(rows: list[dict]) -> dict:
        sent.append([r["income"] for r in rows])
        bad = [i for i, r in enumerate(rows) if r["income"] == "abc"]
        if bad:  # the service names the row of the request it refuses
            raise ApiProblem("refused (422)", 422, "invalid_records", [{"row": bad[0], "field": "income",
                                                                        "message": "not a number"}])  # fmt: skip
        return {"model_version": "v1", "runtime": "onnx", "predictions": [
            {"prediction": "no", "probabilities": {"no": 0.9, "yes": 0.1}} for _ in rows]}  # fmt: skip

    frame, extra, _ = read_upload(b"income,area\n1,a\n2,a\n3,a\nabc,a\n5,a\n", MODEL)
    result = score(frame, extra, MODEL, predict, chunk_rows=2, progress=done.append)
    assert done == [2, 4, 5]  # the progress bar after each chunk
    assert sent == [[1, 2], [3, "abc"], [3], [5]]  # the refused row is left out when its chunk is sent again
    assert result.rejected.to_dict("records") == [{"line": 5, "reason": "income: not a number"}]  # header = line 1
    assert len(result.output) == 4 and result.runtime == "onnx"
