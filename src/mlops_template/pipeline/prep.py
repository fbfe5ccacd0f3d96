"""Stage `prep`: raw CSV -> validated, cleaned, split parquet files plus the resolved schema."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from mlops_template.core.config import Params
from mlops_template.core.errors import UserError
from mlops_template.core.fsutil import atomic_dir, sha256_file
from mlops_template.pipeline.data import Schema, load_dataset, split

log = logging.getLogger(__name__)
TRAIN_FILE, TEST_FILE, SCHEMA_FILE = "train.parquet", "test.parquet", "schema.json"


def run(params: Params) -> Path:
    source = params.data.path
    frame, schema = load_dataset(source, params.schema_, params.data.read)
    train, test = split(frame, schema, params.prep.test_size, params.prep.seed)
    info = {
        **schema.to_dict(),
        "source": str(source),
        "source_sha256": sha256_file(source),
        "rows": {"train": len(train), "test": len(test)},
    }
    with atomic_dir(params.prep.output_dir) as tmp:
        train.to_parquet(tmp / TRAIN_FILE, index=False)
        test.to_parquet(tmp / TEST_FILE, index=False)
        (tmp / SCHEMA_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info(
        "prep: %d train / %d test rows, %d numeric + %d categorical features -> %s",
        len(train),
        len(test),
        len(schema.numeric),
        len(schema.categorical),
        params.prep.output_dir,
    )
    return params.prep.output_dir


def load_prepared(directory: Path, which: str) -> tuple[pd.DataFrame, Schema, dict]:
    """One split plus the schema written by `run` (which: 'train' or 'test')."""
    if not (directory / SCHEMA_FILE).is_file():
        raise UserError(f"{directory / SCHEMA_FILE}: missing; run the prep stage first (`make pipeline`)")
    info = json.loads((directory / SCHEMA_FILE).read_text(encoding="utf-8"))
    fields = {k: info[k] for k in ("target", "task", "numeric", "categorical", "classes")}
    return pd.read_parquet(directory / f"{which}.parquet"), Schema(**fields), info
