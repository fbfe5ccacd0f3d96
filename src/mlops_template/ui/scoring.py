"""Batch scoring of an uploaded CSV through the API: the batch CLI's read options and output columns, rows
sent in chunks, rows the service refuses (422) set aside with their CSV line and reason, the rest scored."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlops_template.core.config import ReadConfig
from mlops_template.core.errors import UserError
from mlops_template.core.scoring_csv import open_scoring_csv
from mlops_template.core.tabular import prediction_columns
from mlops_template.ui.client import ApiProblem

CHUNK_ROWS = 500
RATE_LIMIT_RETRIES = 5
Predict = Callable[[list[dict]], dict]  # POST /predict: records in, the JSON answer out


@dataclass
class Scored:
    """The batch result: the scored rows (the batch CLI's columns) and the refused ones (line, reason)."""

    output: pd.DataFrame
    rejected: pd.DataFrame
    model_version: str = ""
    runtime: str = ""


def read_upload(data: bytes, model: dict[str, Any], name: str = "the upload",
                read: ReadConfig | None = None) -> tuple[pd.DataFrame, list[str], dict[str, str]]:  # fmt: skip
    """The uploaded CSV read as `make predict` reads it (data.read: delimiter, decimal, encoding, missing
    spellings), its pass-through (non-feature) columns, and the CSV format `make predict` writes its result in."""
    features = [f["name"] for f in model["features"]]
    categorical = [f["name"] for f in model["features"] if f.get("type") != "numeric"]
    added = prediction_columns(model["task"], model.get("classes"))
    with tempfile.TemporaryDirectory(prefix="ui-upload-") as directory:
        path = Path(directory) / (Path(name).name or "upload.csv")
        path.write_bytes(data)
        try:
            return open_scoring_csv(path, features, categorical, added, read or ReadConfig())
        except UserError as exc:  # the messages name the file: the person's file, not this temporary copy
            raise UserError(str(exc).replace(str(path), name)) from None


def column_values(column: pd.Series, numeric: bool) -> list[Any]:
    """A column as plain Python values (exact floats), missing cells as None. In a numeric column that pandas
    read as text (one bad cell makes the whole column text) the numbers become numbers again and the bad
    cells stay as written, so the service refuses only those rows, naming the field."""
    if numeric and not pd.api.types.is_numeric_dtype(column):
        parsed = pd.to_numeric(column, errors="coerce")
        column = parsed.astype(object).where(parsed.notna(), column)
    return column.astype(object).where(column.notna(), None).tolist()


def records(frame: pd.DataFrame, model: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows as JSON records of the model's features."""
    features = [f["name"] for f in model["features"]]
    numeric = {f["name"] for f in model["features"] if f.get("type") == "numeric"}
    columns = [column_values(frame[name], name in numeric) for name in features]
    return [dict(zip(features, values, strict=True)) for values in zip(*columns, strict=True)]


def _post(predict: Predict, rows: list[dict]) -> dict[str, Any]:
    """One /predict call; waits out a 429 (Retry-After) a few times before giving up."""
    for attempt in range(RATE_LIMIT_RETRIES + 1):
        try:
            return predict(rows)
        except ApiProblem as exc:
            if exc.status != 429 or attempt == RATE_LIMIT_RETRIES:
                raise
            time.sleep(exc.retry_after or 1.0)
    raise AssertionError("unreachable")


def score_chunk(predict: Predict, rows: list[dict]) -> tuple[dict[int, dict], dict[int, str], dict]:
    """Predictions by row index; refused rows (422 naming them) by index with their reasons, sent again without them."""
    pending = list(range(len(rows)))
    refused: dict[int, str] = {}
    while pending:
        try:
            answer = _post(predict, [rows[i] for i in pending])
        except ApiProblem as exc:
            named = [d for d in exc.details if isinstance(d.get("row"), int) and 0 <= d["row"] < len(pending)]
            if exc.status != 422 or not named:
                raise
            for detail in named:
                index = pending[detail["row"]]
                reason = f"{detail.get('field')}: {detail.get('message')}" if detail.get("field") else detail["message"]
                refused[index] = f"{refused[index]}; {reason}" if index in refused else reason
            pending = [i for i in pending if i not in refused]
            continue
        return dict(zip(pending, answer["predictions"], strict=True)), refused, answer
    return {}, refused, {}


def score(frame: pd.DataFrame, extra: list[str], model: dict[str, Any], predict: Predict,
          chunk_rows: int = CHUNK_ROWS, progress: Callable[[int], None] = lambda done: None) -> Scored:  # fmt: skip
    """Score every row through `predict` (POST /predict) `chunk_rows` at a time; `progress(rows done)`."""
    columns = prediction_columns(model["task"], model.get("classes"))
    out: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    version = runtime = ""
    for start in range(0, len(frame), chunk_rows):
        chunk = frame.iloc[start : start + chunk_rows]
        predictions, refused, answer = score_chunk(predict, records(chunk, model))
        version, runtime = answer.get("model_version", version), answer.get("runtime", runtime)
        passed = chunk[extra].to_dict("records")
        for i in range(len(chunk)):
            if i in refused:
                rejected.append({"line": start + i + 2, "reason": refused[i]})  # line 1 is the header
                continue
            item = predictions[i]
            row = {**passed[i], "prediction": item["prediction"]}
            for label, p in (item.get("probabilities") or {}).items():
                row[f"probability_{label}"] = p
            row["flags_out_of_range"] = ";".join(item.get("out_of_range") or [])
            row["flags_unknown_categories"] = ";".join(item.get("unknown_categories") or [])
            out.append(row)
        progress(min(start + chunk_rows, len(frame)))
    output = pd.DataFrame(out, columns=[*extra, *columns])
    return Scored(output, pd.DataFrame(rejected, columns=["line", "reason"]), version, runtime)


def to_csv(frame: pd.DataFrame, written: dict[str, str] | None = None) -> bytes:
    """A frame as the CSV bytes `make predict` writes (same writer, delimiter and decimal, no index)."""
    return frame.to_csv(index=False, **(written or {})).encode("utf-8")
