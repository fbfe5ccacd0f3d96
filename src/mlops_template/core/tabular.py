"""Reading tabular data the same way everywhere: training, batch scoring, drift reports and the API."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_template.core.errors import UserError, one_line

MAX_ROWS_SHOWN = 5
NA_VALUES = ["", "NA", "NaN", "null"]  # missing-value spellings in CSV (on top of pandas' defaults); batch too
MISSING_CATEGORY = "__missing__"  # what a missing categorical value is imputed to (model and ONNX graph)


def lines(index: pd.Index) -> str:
    """CSV line numbers (header is line 1) of the first offending rows."""
    shown = [str(int(i) + 2) for i in index[:MAX_ROWS_SHOWN]]
    more = f" and {len(index) - MAX_ROWS_SHOWN} more" if len(index) > MAX_ROWS_SHOWN else ""
    return ", ".join(shown) + more


@contextmanager
def csv_errors(path: Path, fix: str) -> Iterator[None]:
    """pandas' complaints while reading `path` (with index_col=False) as one UserError line naming the file.

    index_col=False: otherwise a first data line with one field too many (a trailing comma) silently turns the
    first column into the index and shifts every column by one; pandas then warns instead, and the warning is
    an error here, as a later line with too many fields already is.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            yield
        except pd.errors.ParserWarning:
            raise UserError(
                f"{path}: line 2 has more fields than the header line; remove the extra field(s) (a trailing comma?)"
            ) from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not a readable CSV ({one_line(exc)}); {fix}") from None


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV with every column as text or number as pandas infers; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{path}: file not found; run `make data` (DVC remote or embedded sample) "
            "or point data.path in params.yaml at your CSV"
        )
    try:
        with csv_errors(path, "save it as UTF-8 comma-separated"):
            frame = pd.read_csv(path, skipinitialspace=True, na_values=NA_VALUES, index_col=False)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty; it needs a header line and data rows") from None
    if frame.empty:
        raise UserError(f"{path}: has a header but no data rows")
    return frame


def numeric_errors(column: pd.Series) -> pd.Index:
    parsed = pd.to_numeric(column, errors="coerce")
    return column.index[column.notna() & parsed.isna()]


def coerce_numeric(frame: pd.DataFrame, name: str, path: Path) -> None:
    bad = numeric_errors(frame[name])
    if len(bad):
        examples = ", ".join(repr(v) for v in frame.loc[bad[:MAX_ROWS_SHOWN], name])
        raise UserError(
            f"{path}: column {name!r} is numeric but has text at line(s) {lines(bad)} ({examples}); "
            "fix or blank those cells, or list the column under schema.categorical in params.yaml"
        )
    frame[name] = pd.to_numeric(frame[name]).astype("float64")


def as_label(value: object) -> str:
    """Class labels as text, so 1, 1.0 and "1" are the same class everywhere (CSV, JSON, API)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def as_labels(column: pd.Series) -> pd.Series:
    """`as_label` for a whole column: once per distinct value, not once per row; missing stays None."""
    codes, uniques = pd.factorize(column)
    labels = np.array([as_label(u) for u in uniques] + [None], dtype=object)
    return pd.Series(labels[codes], index=column.index, name=column.name, dtype=object)
