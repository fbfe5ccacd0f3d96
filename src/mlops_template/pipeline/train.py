"""Stage `train`: fit preprocessing + estimator, write the candidate bundle with its contract."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_template.core.bundle import (
    CategoricalFeature,
    Feature,
    GateRecord,
    ModelRecord,
    NumericFeature,
    OnnxRecord,
    Scalar,
    TrainedWith,
    TrainingData,
    TrainRecord,
    dump_json,
    save_bundle,
)
from mlops_template.core.config import Params
from mlops_template.core.fsutil import write_text
from mlops_template.monitoring.profile import PROFILE_FILE, build_profile, output_frame
from mlops_template.pipeline.data import Schema
from mlops_template.pipeline.features import model_pipeline
from mlops_template.pipeline.models import make_estimator
from mlops_template.pipeline.prep import load_prepared

log = logging.getLogger(__name__)
MAX_CATEGORIES_LISTED = 200


def _plain(value: Any) -> Any:
    """numpy scalars -> JSON-friendly Python values."""
    return value.item() if isinstance(value, np.generic) else value


def feature_contract(frame: pd.DataFrame, schema: Schema) -> list[Feature]:
    """What a request may contain: type, observed range or categories, missing rate."""
    features: list[Feature] = []
    for name in schema.features:
        column = frame[name]
        missing_rate = round(float(column.isna().mean()), 6)
        if name in schema.numeric:
            observed = column.dropna()
            features.append(
                NumericFeature(
                    name=name,
                    missing_rate=missing_rate,
                    min=_number(observed.min()),
                    max=_number(observed.max()),
                    median=_number(observed.median()),
                    integer=bool(np.all(np.mod(observed, 1) == 0)),
                )
            )
        else:
            counts = column.value_counts()
            categories = sorted(map(str, counts.index[:MAX_CATEGORIES_LISTED]))
            features.append(CategoricalFeature(name=name, missing_rate=missing_rate, categories=categories))
    return features


def _number(value: Any) -> float | None:
    """A float for the metadata; None when nothing was observed (an all-missing column's min is NaN)."""
    return None if pd.isna(value) else float(value)


def example_row(frame: pd.DataFrame, schema: Schema) -> dict[str, Scalar]:
    """A real, complete training row (for /docs and smoke tests)."""
    complete = frame[schema.features].dropna()
    row = (complete if len(complete) else frame[schema.features]).iloc[0]
    return {k: (None if pd.isna(v) else _plain(v)) for k, v in row.items()}


def reference_profile(
    params: Params, pipeline: Any, frame: pd.DataFrame, test: pd.DataFrame, schema: Schema
) -> dict[str, Any]:
    """Drift reference: features from the training split, predictions from the held-out test split.

    Predictions on training rows are over-confident; live traffic looks like unseen rows, so the
    prediction reference is taken on the test split to avoid false prediction drift.
    """
    classes = [str(c) for c in getattr(pipeline, "classes_", [])] or None
    if schema.task == "binary":
        proba = pipeline.predict_proba(test[schema.features])
        predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    else:
        proba, predicted = None, pipeline.predict(test[schema.features])
    outputs = output_frame(schema.task, classes, predicted, proba)
    return build_profile(
        frame, schema.numeric, schema.categorical, schema.task, classes, outputs, params.monitoring.profile
    )


def onnx_fast_path(
    params: Params, pipeline: Any, schema: Schema, test: pd.DataFrame, scratch: Path
) -> tuple[dict[str, Path], OnnxRecord]:
    """Export to ONNX and check parity on the prepared test split; the record goes into the metadata."""
    from mlops_template.pipeline.onnx_export import ONNX_FILE, export

    path, record = export(pipeline, schema.numeric, schema.categorical, schema.task, test, params.onnx, scratch)
    log.info("train: ONNX fast path %s (%s)", "kept" if path else "not used", record.reason)
    return ({ONNX_FILE: path} if path else {}), record


def candidate_record(
    params: Params, schema: Schema, pipeline: Any, frame: pd.DataFrame, info: dict, onnx: OnnxRecord
) -> ModelRecord:
    """The candidate's metadata, built (and so validated) through the contract's model."""
    return ModelRecord(
        task=schema.task,
        target=schema.target,
        classes=[str(c) for c in getattr(pipeline, "classes_", [])] or None,
        positive_class=schema.classes[-1] if schema.task == "binary" else None,
        estimator=params.train.estimator,
        features=feature_contract(frame, schema),
        example=example_row(frame, schema),
        training_data=TrainingData(source=info["source"], sha256=info["source_sha256"], rows=info["rows"]),
        params=TrainedWith(
            schema=params.schema_,
            train=TrainRecord(
                estimator=params.train.estimator, seed=params.train.seed, hyperparameters=params.train.hyperparameters()
            ),
        ),
        metrics=None,
        gate=GateRecord(),  # PENDING until the gate judges it
        onnx=onnx,
    )


def run(params: Params) -> Path:
    frame, schema, info = load_prepared(params.prep.output_dir, "train")
    estimator = make_estimator(schema.task, params.train.estimator, params.train.hyperparameters(), params.train.seed)
    pipeline = model_pipeline(schema, estimator)
    pipeline.fit(frame[schema.features], frame[schema.target])
    test, _, _ = load_prepared(params.prep.output_dir, "test")
    with tempfile.TemporaryDirectory() as scratch:
        extra, onnx = onnx_fast_path(params, pipeline, schema, test, Path(scratch))
        record = candidate_record(params, schema, pipeline, frame, info, onnx)
        profile = Path(scratch) / PROFILE_FILE
        write_text(profile, dump_json(reference_profile(params, pipeline, frame, test, schema)))
        save_bundle(params.train.output_dir, pipeline, record, extra_files={**extra, PROFILE_FILE: profile})
    log.info("train: %s on %d rows -> %s", params.train.estimator, len(frame), params.train.output_dir)
    return params.train.output_dir
