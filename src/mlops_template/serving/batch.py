"""Batch scoring of a CSV in constant memory: same bundle checks, contract and predictor as the API.

Rows that break the contract are never dropped silently: they are counted, the first few are logged
with their CSV line numbers, and `--rejects` keeps every one of them with its reason. Columns that are
not features (ids, the target...) are copied to the output unchanged, so results can be joined back.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_template.core.bundle import load_bundle
from mlops_template.core.config import ReadConfig
from mlops_template.core.errors import UserError
from mlops_template.core.fsutil import atomic_path
from mlops_template.core.scoring_csv import open_scoring_csv
from mlops_template.core.tabular import csv_errors, prediction_columns
from mlops_template.serving.contract import Contract
from mlops_template.serving.predictor import build_predictor

log = logging.getLogger(__name__)
REJECTS_SHOWN = 5


@dataclass
class Summary:
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    runtime: str = ""
    model_version: str = ""
    output: str = ""
    rejects: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_rows(path: Path) -> int:
    """Data lines in the file (for the progress bar): newlines minus the header."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 23):
            lines += block.count(b"\n")
            last = block[-1:]
    return max(lines - 1 + (last != b"\n"), 0)


def output_columns(contract: Contract) -> list[str]:
    return prediction_columns(contract.task, contract.classes)


def predict_file(
    input_path: Path,
    output_path: Path,
    model_dir: Path,
    rejects_path: Path | None = None,
    chunk_rows: int = 100_000,
    runtime: str = "auto",
    progress: bool = True,
    read: ReadConfig | None = None,
) -> Summary:
    """Score `input_path` chunk by chunk into `output_path` (written atomically); returns the counts.

    `read` (params.yaml data.read) says how to read the input; the output and rejects files are written with
    the same delimiter and decimal separator, so the tools that made the input read the output.
    """
    read = read or ReadConfig()
    if not input_path.is_file():
        raise UserError(f"{input_path}: file not found")
    bundle = load_bundle(model_dir)  # sha256 verified before unpickling; VALIDATED bundles only
    contract = Contract(bundle.metadata)
    predictor = build_predictor(bundle, runtime)
    reader, extra, written = open_scoring_csv(input_path, list(contract.by_name), contract.categorical,
                                              output_columns(contract), read, chunk_rows)  # fmt: skip
    summary = Summary(runtime=predictor.runtime, model_version=bundle.version, output=str(output_path),
                      rejects=str(rejects_path) if rejects_path else None)  # fmt: skip
    shown: list[str] = []
    start = time.perf_counter()
    bar = _progress(count_rows(input_path) if progress else None, progress)
    with ExitStack() as files:  # closed, then renamed into place, only if every chunk succeeded
        out = files.enter_context(
            open(files.enter_context(atomic_path(output_path)), "w", encoding="utf-8", newline="")
        )
        rej = None
        if rejects_path:
            rej = files.enter_context(
                open(files.enter_context(atomic_path(rejects_path)), "w", encoding="utf-8", newline="")
            )
        files.callback(bar.close)
        with csv_errors(input_path, read):
            for chunk in reader:
                first_line = summary.rows + 2  # line 1 is the header
                scored, rejected = _score_chunk(chunk, contract, predictor, extra, first_line)
                scored.to_csv(out, header=summary.rows == 0, index=False, **written)
                if rej is not None:
                    rejected.to_csv(rej, header=summary.rows == 0, index=False, **written)
                shown += [f"line {r.line}: {r.reason}" for r in rejected.head(REJECTS_SHOWN - len(shown)).itertuples()]
                summary.rows += len(chunk)
                summary.scored += len(scored)
                summary.rejected += len(rejected)
                bar.update(len(chunk))
    summary.seconds = round(time.perf_counter() - start, 3)
    summary.rows_per_second = round(summary.rows / summary.seconds, 1) if summary.seconds else 0.0
    if summary.rejected:
        more = summary.rejected - len(shown)
        where = f"all of them in {rejects_path}" if rejects_path else "pass --rejects FILE to keep them all"
        log.warning("predict: %d row(s) rejected (%s): %s%s", summary.rejected, where, "; ".join(shown),
                    f"; and {more} more" if more > 0 else "")  # fmt: skip
    return summary


def _score_chunk(chunk: pd.DataFrame, contract: Contract, predictor: Any, extra: list[str],
                 first_line: int) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    columns, reasons = contract.validate_frame(chunk)
    bad = np.fromiter((r is not None for r in reasons), dtype=bool, count=len(chunk))
    lines = np.arange(first_line, first_line + len(chunk))
    rejected = pd.DataFrame({"line": lines[bad], "reason": [r for r in reasons if r is not None]})
    good = ~bad
    n = int(good.sum())
    scored = chunk.loc[good, extra].reset_index(drop=True)
    if n == 0:
        return scored.reindex(columns=[*extra, *output_columns(contract)]), rejected
    predictions = predictor.predict(columns)
    flags = contract.flags(columns, n)
    scored["prediction"] = predictions.labels
    if predictions.probabilities is not None:
        for i, name in enumerate(contract.classes):
            scored[f"probability_{name}"] = predictions.probabilities[:, i]
    scored["flags_out_of_range"] = [";".join(f) for f in flags.out_of_range]
    scored["flags_unknown_categories"] = [";".join(f) for f in flags.unknown_categories]
    return scored, rejected


def _progress(total: int | None, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, unit="rows", unit_scale=True, file=sys.stderr, desc="predict", mininterval=0.5, disable=not enabled
    )
