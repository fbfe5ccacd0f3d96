"""The verified fast path: export the fitted pipeline to ONNX, keep it only if it reproduces sklearn.

The graph takes two inputs: `numeric_features` [n, numeric features] float64 (NaN = missing) and
`categorical_features` [n, categorical features] strings (MISSING_TEXT = missing), columns in metadata order. It
is converted with one [n, 1] input per feature and then fused (`fuse`): fewer inputs cost less per call.
Bundles written before the fusion (one input per feature) still serve: `feeds` follows the graph's inputs.
Parity is checked on the fused graph, on the prepared test split with the tolerances in params.yaml
(`onnx:`); any failure (no converter, runtime error, parity) is recorded, not raised.
The bytes are a function of the pipeline alone (`convert`): model.onnx is a DVC output, hashed in dvc.lock.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_template.core.bundle import OnnxRecord
from mlops_template.core.config import OnnxConfig
from mlops_template.core.onnx_runtime import (
    CATEGORICAL_INPUT,
    MISSING_TEXT,
    NUMERIC_INPUT,
    ONNX_FILE,
    feeds,
    frame_columns,
    is_fused,
    onnx_output,
    session,
)

log = logging.getLogger(__name__)
# The graph's name: skl2onnx names it with a random uuid4 unless given one, so every export had other bytes.
GRAPH_NAME = "mlops_template"


def fuse(model: Any, numeric: list[str], categorical: list[str]) -> Any:
    """The graph with the per-feature inputs replaced by the two matrices (in place; returns it).

    skl2onnx starts the graph with a Concat of each group's inputs: that Concat is dropped and its
    output renamed to the matrix. Any other use of a feature input is served by a Split of the matrix.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    if {NUMERIC_INPUT, CATEGORICAL_INPUT} & set(numeric + categorical):
        raise ValueError(f"a feature is named {NUMERIC_INPUT!r} or {CATEGORICAL_INPUT!r}")
    if [i.name for i in graph.input] != numeric + categorical:
        raise ValueError(f"unexpected graph inputs {[i.name for i in graph.input]}")
    new_inputs = []
    for names, fused_name, kind in (
        (numeric, NUMERIC_INPUT, TensorProto.DOUBLE),
        (categorical, CATEGORICAL_INPUT, TensorProto.STRING),
    ):
        if not names:
            continue
        new_inputs.append(helper.make_tensor_value_info(fused_name, kind, [None, len(names)]))
        concat = next((n for n in graph.node if n.op_type == "Concat" and list(n.input) == names), None)
        if concat is not None and [(a.name, a.i) for a in concat.attribute] in ([("axis", 1)], [("axis", -1)]):
            graph.node.remove(concat)
            _rename(graph, concat.output[0], fused_name)
        consumers = {x for node in graph.node for x in node.input} | {o.name for o in graph.output}
        if consumers & set(names):  # still used one by one: split the matrix back into [n, 1] columns
            sizes = f"split_sizes_{fused_name}"
            graph.initializer.append(helper.make_tensor(sizes, TensorProto.INT64, [len(names)], [1] * len(names)))
            split = helper.make_node("Split", [fused_name, sizes], list(names), axis=1, name=f"split_{fused_name}")
            graph.node.insert(0, split)
    del graph.input[:]
    graph.input.extend(new_inputs)
    return model


def _rename(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
    for output in graph.output:
        if output.name == old:  # a graph that is only the Concat: keep its output name via Identity
            from onnx import helper

            graph.node.append(helper.make_node("Identity", [new], [old]))


def _register_double_imputer() -> None:
    """onnxruntime's Imputer op has no float64 kernel: impute doubles with IsNaN + Where instead."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.common import concatenate_variables
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
    from skl2onnx.proto import onnx_proto
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes
    from sklearn.impute import SimpleImputer

    def convert(scope, operator, container):
        if not isinstance(operator.inputs[0].type, DoubleTensorType):
            return convert_sklearn_imputer(scope, operator, container)
        statistics = operator.raw_operator.statistics_.astype(np.float64)
        source = concatenate_variables(scope, operator.inputs, container)
        fill = scope.get_unique_variable_name("fill")
        container.add_initializer(fill, onnx_proto.TensorProto.DOUBLE, [1, statistics.size], statistics.tolist())
        isnan = scope.get_unique_variable_name("isnan")
        container.add_node("IsNaN", [source], [isnan], name=scope.get_unique_operator_name("IsNaN"))
        where = scope.get_unique_operator_name("Where")
        container.add_node("Where", [isnan, fill, source], [operator.outputs[0].full_name], name=where)
        return None

    update_registered_converter(
        SimpleImputer, "SklearnSimpleImputer", calculate_sklearn_imputer_output_shapes, convert, overwrite=True
    )


def _exportable(pipeline: Any) -> Any:
    """A copy of the pipeline that converts to the same function as the original."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    export = copy.deepcopy(pipeline)
    features = export.named_steps["features"]
    for _, transformer, _ in features.transformers_:
        steps = transformer.steps if isinstance(transformer, Pipeline) else []
        for step in list(steps):
            imputer = step[1]
            if not (isinstance(imputer, SimpleImputer) and isinstance(imputer.fill_value, str)):
                continue
            if imputer.fill_value == MISSING_TEXT and len(steps) > 1:
                steps.remove(step)  # the inputs arrive imputed with this very value (see feeds): 30 nodes fewer
            else:
                imputer.missing_values = MISSING_TEXT  # string inputs carry missing as MISSING_TEXT
    estimator = export.steps[-1][1]
    if type(estimator).__module__.startswith(("sklearn.ensemble", "sklearn.tree")):
        # onnxruntime's tree ensembles compute in float32 (sklearn's forests compare float32 copies of X too):
        # cast after the float64 preprocessing; the parity check below decides whether that is close enough
        from skl2onnx.sklapi import CastTransformer

        cast = CastTransformer(dtype=np.float32).fit(np.zeros((1, 1)))
        export = Pipeline([*export.steps[:-1], ("float32", cast), export.steps[-1]])
    return export


def convert(pipeline: Any, numeric: list[str], categorical: list[str], opset: int) -> bytes:
    """Serialized ONNX model of the pipeline (raises whatever skl2onnx raises)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    _register_double_imputer()
    export = _exportable(pipeline)
    inputs = [(n, DoubleTensorType([None, 1])) for n in numeric]
    inputs += [(n, StringTensorType([None, 1])) for n in categorical]
    estimator = export.steps[-1][1]
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    with warnings.catch_warnings():  # skl2onnx 1.20 writes bool tree attributes; protobuf 6 still converts them
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="onnx")
        model = convert_sklearn(
            export, initial_types=inputs, options=options, target_opset={"": opset, "ai.onnx.ml": 3}, name=GRAPH_NAME
        )
    try:
        fuse(model, numeric, categorical)
    except ValueError as exc:  # an unusual graph: keep one input per feature (still verified by parity)
        log.warning("ONNX inputs not fused, one input per feature kept: %s", exc)
    return deterministic(model).SerializeToString()


def deterministic(model: Any) -> Any:
    """The model with its opset imports in domain order (in place; returns it).

    skl2onnx lists them in the order of a Python set of strings, which changes with PYTHONHASHSEED from one
    process to the next: the same graph would serialize to other bytes on every train.
    """
    imports = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, version in imports:
        model.opset_import.add(domain=domain, version=version)
    return model


def parity(
    sess: Any,
    pipeline: Any,
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    task: str,
    config: OnnxConfig,
) -> dict[str, Any]:
    """Compare ONNX and sklearn on `frame`; returns the figures and whether they are within tolerance."""
    columns = frame_columns(frame, numeric, categorical)
    got = sess.run([onnx_output(sess, task)], feeds(columns, numeric, categorical, is_fused(sess)))[0]
    x = frame[numeric + categorical]
    if task == "regression":
        want = pipeline.predict(x).astype(np.float64)
        got = np.asarray(got, dtype=np.float64).reshape(-1)
        rel = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0))) if len(want) else 0.0
        ok = rel <= config.regression_rtol
        return {"parity": ok, "max_rel_diff": rel, "tolerance": config.regression_rtol, "rows_checked": len(x)}
    want_p = pipeline.predict_proba(x)
    classes = np.asarray(pipeline.classes_)
    mismatches = int(np.sum(classes[np.argmax(got, axis=1)] != pipeline.predict(x)))
    diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want_p))) if len(x) else 0.0
    ok = mismatches == 0 and diff <= config.probability_tolerance
    return {
        "parity": ok,
        "max_abs_diff": diff,
        "label_mismatches": mismatches,
        "tolerance": config.probability_tolerance,
        "rows_checked": len(x),
    }


def export(
    pipeline: Any,
    numeric: list[str],
    categorical: list[str],
    task: str,
    check: pd.DataFrame,
    config: OnnxConfig,
    directory: Path,
) -> tuple[Path | None, OnnxRecord]:
    """Write model.onnx into `directory` if conversion works and parity holds; always return the record."""
    if not config.enabled:
        return None, OnnxRecord(used=False, reason="disabled in params.yaml (onnx.enabled: false)")
    record: dict[str, Any] = {"used": False, "opset": config.opset, "file": ONNX_FILE}
    try:
        model = convert(pipeline, numeric, categorical, config.opset)
    except Exception as exc:  # noqa: BLE001 - any converter failure means: serve sklearn, say why
        return None, OnnxRecord(**record, reason=f"conversion failed: {_short(exc)}")
    try:
        figures = parity(session(model), pipeline, check, numeric, categorical, task, config)
    except Exception as exc:  # noqa: BLE001 - a graph onnxruntime cannot run is a fallback, not a crash
        return None, OnnxRecord(**record, reason=f"onnxruntime could not run the graph: {_short(exc)}")
    holds = figures.pop("parity")
    record |= figures
    if not holds:
        return None, OnnxRecord(**record, reason="parity failed on the test split (see the figures beside this)")
    path = directory / ONNX_FILE
    path.write_bytes(model)
    return path, OnnxRecord(**record | {"used": True}, reason="parity holds on the test split")


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"
