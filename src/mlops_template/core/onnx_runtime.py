"""Running a bundle's ONNX graph, the same way for training's parity check and for serving.

The graph takes two inputs: `numeric_features` [n, numeric features] float64 (NaN = missing) and
`categorical_features` [n, categorical features] strings (MISSING_TEXT = missing), columns in metadata order.
Bundles written before the fusion (one input per feature) still serve: `feeds` follows the graph's inputs.
Only onnxruntime is needed here (a runtime requirement); exporting needs skl2onnx (pipeline.onnx_export).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_template.core.tabular import MISSING_CATEGORY

ONNX_FILE = "model.onnx"
# how a missing categorical value reaches the ONNX graph (strings cannot be NaN): already imputed, so the
# graph needs no imputer nodes (see pipeline.onnx_export); graphs from older bundles map "" to it, and pass it as is
MISSING_TEXT = MISSING_CATEGORY
NUMERIC_INPUT = "numeric_features"  # the fused graph's inputs (see pipeline.onnx_export.fuse)
CATEGORICAL_INPUT = "categorical_features"


def _text(values: np.ndarray) -> list[Any]:
    return [v if isinstance(v, str) else MISSING_TEXT for v in values.tolist()]


def feeds(
    columns: dict[str, np.ndarray], numeric: list[str], categorical: list[str], fused: bool = False
) -> dict[str, np.ndarray]:
    """ONNX inputs from whole-batch columns (float64 with NaN / object with None or NaN).

    `fused`: the two matrices of a fused graph (taken as they are when the columns carry them, see
    `serving.contract.Columns`), else one [n, 1] input per feature.
    """
    if not fused:
        out = {name: np.asarray(columns[name], dtype=np.float64).reshape(-1, 1) for name in numeric}
        for name in categorical:
            out[name] = np.array(_text(columns[name]), dtype=object).reshape(-1, 1)
        return out
    out = {}
    if numeric:
        numbers = getattr(columns, "numbers", None)
        if numbers is None:
            numbers = np.column_stack([np.asarray(columns[name], dtype=np.float64) for name in numeric])
        out[NUMERIC_INPUT] = numbers
    if categorical:
        texts = getattr(columns, "texts", None)
        if texts is None:
            texts = np.empty((len(columns[categorical[0]]), len(categorical)), dtype=object)
            for j, name in enumerate(categorical):
                texts[:, j] = _text(columns[name])
        out[CATEGORICAL_INPUT] = texts
    return out


def is_fused(sess: Any) -> bool:
    """Whether a session's graph takes the fused inputs (bundles from before the fusion do not)."""
    return {i.name for i in sess.get_inputs()} <= {NUMERIC_INPUT, CATEGORICAL_INPUT}


def frame_columns(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, np.ndarray]:
    columns = {name: frame[name].to_numpy(dtype=np.float64) for name in numeric}
    columns |= {name: frame[name].to_numpy(dtype=object) for name in categorical}
    return columns


def session(model: bytes | str | Path) -> Any:
    """A single-threaded onnxruntime session: serving scales with processes, not intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_output(sess: Any, task: str) -> str:
    """The output to read: probabilities for classifiers, the value for regressors."""
    names = [o.name for o in sess.get_outputs()]
    if task == "regression":
        return names[0]
    if "probabilities" not in names:
        raise ValueError(f"the ONNX graph has no probabilities output (outputs: {names})")
    return "probabilities"
