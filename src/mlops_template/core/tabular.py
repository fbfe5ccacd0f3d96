"""Reading tabular data the same way everywhere: training, batch scoring, drift reports and the API."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES

from mlops_template.core.config import ReadConfig
from mlops_template.core.errors import UserError, one_line

MAX_ROWS_SHOWN = 5
NA_VALUES = ["", "NA", "NaN", "null"]  # missing-value spellings in CSV (on top of pandas' defaults); batch too
DELIMITERS = ",;\t|"
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
MISSING_CATEGORY = "__missing__"  # what a missing categorical value is imputed to (model and ONNX graph)
SCORING_NA_VALUES = sorted(set(STR_NA_VALUES) | set(NA_VALUES))  # missing-value spellings in a CSV to score


def scoring_csv_options(
    features: list[str], categorical: list[str], extra: list[str], na_values: list[str] | None = None
) -> dict:
    """pandas.read_csv options for a CSV to score (batch CLI and web UI alike): categories and pass-through
    columns stay text as written, only feature cells spelled as missing (plus data.read.na_values) become NaN."""
    return {
        "dtype": {name: str for name in [*categorical, *extra]},
        "skipinitialspace": True,
        "skip_blank_lines": False,
        "keep_default_na": False,
        "na_values": {name: SCORING_NA_VALUES + list(na_values or []) for name in features},
    }


def prediction_columns(task: str, classes: list[str] | None) -> list[str]:
    """The columns batch scoring adds to each row: prediction, a probability per class, the two flags."""
    probabilities = [f"probability_{c}" for c in classes or []] if task != "regression" else []
    return ["prediction", *probabilities, "flags_out_of_range", "flags_unknown_categories"]


def lines(index: pd.Index) -> str:
    """CSV line numbers (header is line 1) of the first offending rows."""
    shown = [str(int(i) + 2) for i in index[:MAX_ROWS_SHOWN]]
    more = f" and {len(index) - MAX_ROWS_SHOWN} more" if len(index) > MAX_ROWS_SHOWN else ""
    return ", ".join(shown) + more


def sniff_delimiter(path: Path, encoding: str) -> str:
    """The delimiter of a CSV among , ; tab | from its first 64 KB (data.read.delimiter: auto)."""
    with open(path, encoding=encoding, errors="replace", newline="") as handle:
        head = handle.read(1 << 16)
    try:
        return csv.Sniffer().sniff(head, delimiters=DELIMITERS).delimiter
    except csv.Error:
        raise UserError(
            f"{path}: cannot tell its delimiter from the first lines; set data.read.delimiter in params.yaml "
            "(one of ',', ';', '\\t', '|')"
        ) from None


def csv_options(path: Path, read: ReadConfig) -> dict[str, Any]:
    """pandas.read_csv keyword arguments for data.read (the delimiter sniffed when it is auto)."""
    delimiter = sniff_delimiter(path, read.encoding) if read.delimiter == "auto" else read.delimiter
    return {"sep": delimiter, "decimal": read.decimal, "thousands": read.thousands, "encoding": read.encoding}


def check_delimiter(path: Path, options: dict[str, Any]) -> None:
    """A header line that the delimiter does not split but another one would: say which to set (before pandas
    reads the file, which would otherwise complain about the first data line instead)."""
    with open(path, encoding=options["encoding"], errors="replace", newline="") as handle:
        header = handle.readline().strip("\r\n")
    if options["sep"] in header:
        return
    found = next((d for d in DELIMITERS if d != options["sep"] and d in header), None)
    if found:
        raise UserError(
            f"{path}: the header line {header[:60]!r} looks {DELIMITER_NAMES[found]}-separated; "
            f"set data.read.delimiter: {found!r} in params.yaml (or auto)"
        )


@contextmanager
def csv_errors(path: Path, read: ReadConfig) -> Iterator[None]:
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
            raise unreadable(path, exc, read) from None


def unreadable(path: Path, exc: Exception, read: ReadConfig) -> UserError:
    """The error for a CSV pandas cannot parse or decode, with the setting that fixes it."""
    if isinstance(exc, UnicodeDecodeError):
        return UserError(
            f"{path}: not readable as {read.encoding} ({exc.reason} at byte {exc.start}); set data.read.encoding "
            "in params.yaml (e.g. latin-1, cp1252) or save the file as UTF-8"
        )
    return UserError(
        f"{path}: not a readable CSV ({one_line(exc)}); fix that line and rerun, "
        "or check data.read in params.yaml (delimiter, encoding)"
    )


def read_csv(path: str | Path, read: ReadConfig | None = None) -> pd.DataFrame:
    """Read a CSV as data.read says, every column as text or number as pandas infers; errors name the file."""
    path, read = Path(path), read or ReadConfig()
    if not path.is_file():
        raise UserError(
            f"{path}: file not found; run `make data` (DVC remote or embedded sample) "
            "or point data.path in params.yaml at your CSV"
        )
    options = csv_options(path, read)
    check_delimiter(path, options)
    try:
        with csv_errors(path, read):
            frame = pd.read_csv(path, skipinitialspace=True, na_values=NA_VALUES + read.na_values, index_col=False,
                                **options)  # fmt: skip
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
