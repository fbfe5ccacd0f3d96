"""Opening a CSV to score, the same way for the batch CLI (`make predict`) and the web UI's upload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mlops_template.core.config import ReadConfig
from mlops_template.core.errors import UserError
from mlops_template.core.tabular import check_delimiter, csv_errors, csv_options, scoring_csv_options


def open_scoring_csv(
    path: Path, features: list[str], categorical: list[str], added: list[str], read: ReadConfig,
    chunk_rows: int | None = None,
) -> tuple[Any, list[str], dict[str, str]]:  # fmt: skip
    """A CSV to score, read as data.read says (batch CLI and web UI alike): its reader (chunks of `chunk_rows`,
    or the whole frame), its pass-through columns, and the delimiter and decimal to write the result with.
    One UserError line for an empty file, a missing feature column, or a column the `added` ones would overwrite."""
    options = csv_options(path, read)
    check_delimiter(path, options)
    with open(path, encoding=options["encoding"], errors="replace", newline="") as handle:
        first, more = handle.readline(), handle.read(1)
    # pandas would take the next line for the header here, but not in the chunk reader (it keeps blank lines, so
    # that reject line numbers are the file's): the two would disagree on the columns
    if more and not first.strip():
        raise UserError(f"{path}: line 1 is blank; the header line (the column names) must come first")
    try:
        with csv_errors(path, read):
            header = list(pd.read_csv(path, nrows=0, index_col=False, **options).columns)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty; it needs a header line with the feature names") from None
    missing = [name for name in features if name not in header]
    if missing:
        raise UserError(f"{path}: column(s) {missing} missing; the model needs {features}")
    extra = [c for c in header if c not in features]
    clash = sorted(set(extra) & set(added))
    if clash:
        raise UserError(f"{path}: column(s) {clash} would be overwritten by the predictions; rename them")
    typed = scoring_csv_options(features, categorical, extra, read.na_values)
    with csv_errors(path, read):
        reader = pd.read_csv(path, chunksize=chunk_rows, index_col=False, **typed, **options)
    return reader, extra, {"sep": options["sep"], "decimal": read.decimal}
