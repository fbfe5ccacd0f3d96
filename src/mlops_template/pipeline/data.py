"""Load the raw CSV, validate it against the configured (or inferred) schema, clean and split it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from mlops_template.core.config import ReadConfig, SchemaConfig
from mlops_template.core.errors import UserError
from mlops_template.core.tabular import as_label, as_labels, coerce_numeric, lines, numeric_errors, read_csv

NUMERIC_SHARE = 0.95  # a text column whose values are this numeric is a numeric column with typos
ID_LIKE_UNIQUE = 0.5  # a categorical with more distinct values per row than this is an identifier


@dataclass(frozen=True)
class Schema:
    """The resolved contract between data and model: which columns, of which type."""

    target: str
    task: str
    numeric: list[str]
    categorical: list[str]
    classes: list[str] | None = None

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical

    def to_dict(self) -> dict:
        return asdict(self)


def _infer_types(frame: pd.DataFrame, candidates: list[str], path: Path) -> tuple[list[str], list[str]]:
    numeric, categorical = [], []
    for name in candidates:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            numeric.append(name)
            continue
        present = column.dropna()
        # a seeded sample decides cheaply whether a text column could be numeric at all
        probe = present.sample(min(len(present), 2000), random_state=0)
        if (
            len(present)
            and pd.to_numeric(probe, errors="coerce").notna().mean() >= NUMERIC_SHARE / 2
            and (pd.to_numeric(present, errors="coerce").notna().mean() >= NUMERIC_SHARE)
        ):
            coerce_numeric(frame, name, path)  # raises: mostly numbers, a few typos
        if present.nunique() > max(50, ID_LIKE_UNIQUE * len(present)):
            raise UserError(
                f"{path}: column {name!r} looks like an identifier ({present.nunique()} distinct values "
                f"in {len(present)} rows); add it to schema.drop in params.yaml"
            )
        categorical.append(name)
    return numeric, categorical


def resolve_schema(frame: pd.DataFrame, config: SchemaConfig, path: Path) -> Schema:
    """Check the configured columns exist and fill in the feature types that are not listed."""
    columns = list(frame.columns)
    missing = [c for c in [config.target, *(config.numeric or []), *(config.categorical or [])] if c not in columns]
    if missing:
        raise UserError(
            f"{path}: column(s) {missing} from params.yaml (schema) not found; "
            f"the file has {columns}. Fix schema.target / schema.numeric / schema.categorical"
        )
    unknown_drop = [c for c in config.drop if c not in columns]
    if unknown_drop:
        raise UserError(f"{path}: schema.drop lists {unknown_drop}, not in the file's columns {columns}")
    listed = set(config.numeric or []) | set(config.categorical or [])
    rest = [c for c in columns if c not in listed and c != config.target and c not in config.drop]
    explicit = config.numeric is not None and config.categorical is not None
    inferred_num, inferred_cat = ([], []) if explicit else _infer_types(frame, rest, path)
    numeric = (config.numeric if config.numeric is not None else []) + inferred_num
    categorical = (config.categorical if config.categorical is not None else []) + inferred_cat
    if not numeric and not categorical:
        raise UserError(f"{path}: no feature columns left after schema.drop and the target")
    return Schema(target=config.target, task=config.task, numeric=numeric, categorical=categorical)


def clean(frame: pd.DataFrame, schema: Schema, path: Path) -> pd.DataFrame:
    """Types per the schema, no rows without a target; the target validated for the task."""
    frame = frame[[*schema.features, schema.target]].copy()
    for name in schema.numeric:
        coerce_numeric(frame, name, path)
        inf = frame.index[np.isinf(frame[name])]
        if len(inf):
            raise UserError(f"{path}: column {name!r} has infinite values at line(s) {lines(inf)}")
    for name in schema.categorical:
        frame[name] = as_labels(frame[name])
    frame = frame[frame[schema.target].notna()]
    if frame.empty:
        raise UserError(f"{path}: the target column {schema.target!r} is empty in every row")
    target = frame[schema.target]
    if schema.task == "regression":
        bad = numeric_errors(target)
        if len(bad):
            raise UserError(
                f"{path}: target {schema.target!r} must be numeric for task regression; "
                f"text at line(s) {lines(bad)}. Fix the rows or set schema.task to binary/multiclass"
            )
        frame[schema.target] = pd.to_numeric(target).astype("float64")
        return frame
    frame[schema.target] = as_labels(target)
    return frame


def check_classes(frame: pd.DataFrame, schema: Schema, config: SchemaConfig, path: Path) -> list[str]:
    """Classes in a stable order; for binary the positive class last, as sklearn expects."""
    counts = frame[schema.target].value_counts()
    classes = sorted(counts.index)
    if len(classes) < 2:
        raise UserError(
            f"{path}: target {schema.target!r} has a single class {classes}; a classifier needs at least "
            "two. Check the data, or set schema.task: regression for a numeric target"
        )
    if schema.task == "binary":
        if len(classes) != 2:
            raise UserError(
                f"{path}: target {schema.target!r} has {len(classes)} classes {classes[:10]} but "
                "schema.task is binary; set schema.task: multiclass"
            )
        if config.positive_class is not None:
            positive = as_label(config.positive_class)
            if positive not in classes:
                raise UserError(f"{path}: schema.positive_class {positive!r} is not one of {classes}")
            classes = [c for c in classes if c != positive] + [positive]
    rare = counts[counts < 2]
    if len(rare):
        raise UserError(
            f"{path}: class(es) {list(rare.index)} of {schema.target!r} appear only once; "
            "a stratified split needs at least two rows per class"
        )
    return classes


def load_dataset(path: str | Path, config: SchemaConfig, read: ReadConfig | None = None) -> tuple[pd.DataFrame, Schema]:
    """Read (as data.read says), validate and clean the raw CSV; returns the frame and its resolved schema."""
    path = Path(path)
    frame = read_csv(path, read)
    schema = resolve_schema(frame, config, path)
    frame = clean(frame, schema, path)
    if schema.task != "regression":
        classes = check_classes(frame, schema, config, path)
        schema = Schema(**{**schema.to_dict(), "classes": classes})
    return frame.reset_index(drop=True), schema


def split(frame: pd.DataFrame, schema: Schema, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    stratify = None if schema.task == "regression" else frame[schema.target]
    try:
        return train_test_split(frame, test_size=test_size, random_state=seed, stratify=stratify)
    except ValueError as exc:
        raise UserError(f"cannot split {len(frame)} rows with prep.test_size={test_size}: {exc}") from None
