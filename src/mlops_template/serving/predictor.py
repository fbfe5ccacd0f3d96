"""Whole-batch prediction from validated columns: ONNX Runtime when the bundle verified it, else sklearn.

Both paths take the columns of the whole batch at once (never a DataFrame per row) and return labels
(classification: argmax of the probabilities, as sklearn does) or values (regression).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mlops_template.core.bundle import Bundle, BundleMetadata, ModelRecord
from mlops_template.core.errors import UserError
from mlops_template.core.onnx_runtime import ONNX_FILE, feeds, is_fused, onnx_output, session

log = logging.getLogger(__name__)


@dataclass(slots=True)  # per request: a frozen dataclass takes 4x longer to build
class Predictions:
    labels: list[Any]  # class label per row, or the predicted value (regression)
    probabilities: np.ndarray | None  # [rows, classes] in `classes` order; None for regression

    def rows(self, start: int, stop: int) -> Predictions:
        """The predictions of rows start..stop-1."""
        proba = None if self.probabilities is None else self.probabilities[start:stop]
        return Predictions(self.labels[start:stop], proba)


class Predictor(Protocol):
    runtime: str

    def predict(self, columns: dict[str, np.ndarray]) -> Predictions: ...


class _Base:
    runtime = ""

    def __init__(self, metadata: ModelRecord):
        self.task = metadata.task
        self.numeric, self.categorical = metadata.numeric, metadata.categorical
        self.classes = np.asarray(metadata.classes or [], dtype=object)
        self.labels = self.classes.tolist()

    def _finish(self, raw: np.ndarray) -> Predictions:
        if self.task == "regression":
            return Predictions(np.asarray(raw, dtype=np.float64).reshape(-1).tolist(), None)
        proba = np.asarray(raw, dtype=np.float64)
        if len(proba) <= 64:  # a handful of rows: indexing a list beats numpy's fancy indexing set-up
            return Predictions([self.labels[i] for i in proba.argmax(axis=1).tolist()], proba)
        return Predictions(self.classes[np.argmax(proba, axis=1)].tolist(), proba)


class OnnxPredictor(_Base):
    runtime = "onnx"

    def __init__(self, bundle: Bundle):
        super().__init__(bundle.metadata)
        self.session = session(bundle.path / ONNX_FILE)
        self.output = [onnx_output(self.session, self.task)]
        self.fused = is_fused(self.session)  # two matrix inputs; older bundles: one input per feature

    def predict(self, columns: dict[str, np.ndarray]) -> Predictions:
        inputs = feeds(columns, self.numeric, self.categorical, self.fused)
        return self._finish(self.session.run(self.output, inputs)[0])


class SklearnPredictor(_Base):
    runtime = "sklearn"

    def __init__(self, bundle: Bundle):
        super().__init__(bundle.metadata)
        self.pipeline = bundle.model
        self.order = bundle.metadata.feature_names

    def predict(self, columns: dict[str, np.ndarray]) -> Predictions:
        frame = pd.DataFrame({name: columns[name] for name in self.order}, copy=False)
        if self.task == "regression":
            return self._finish(self.pipeline.predict(frame))
        return self._finish(self.pipeline.predict_proba(frame))


def onnx_verified(metadata: BundleMetadata) -> bool:
    return metadata.onnx.used and ONNX_FILE in metadata.files


def build_predictor(bundle: Bundle, runtime: str = "auto") -> Predictor:
    """`auto`: ONNX when the bundle recorded parity (its file checksum was verified by load_bundle)."""
    if runtime == "sklearn" or (runtime == "auto" and not onnx_verified(bundle.metadata)):
        return SklearnPredictor(bundle)
    if not onnx_verified(bundle.metadata):
        reason = bundle.metadata.onnx.reason
        raise UserError(f"{bundle.path}: MODEL_RUNTIME=onnx but the bundle has no verified ONNX model ({reason})")
    try:
        return OnnxPredictor(bundle)
    except Exception as exc:  # noqa: BLE001 - a runtime that cannot load the graph: name it, don't crash
        problem = f"{bundle.path / ONNX_FILE}: onnxruntime cannot load it ({type(exc).__name__}: {exc})"
        if runtime == "onnx":
            raise UserError(problem) from None
        log.warning("%s; serving the scikit-learn pipeline instead", problem)
        return SklearnPredictor(bundle)
