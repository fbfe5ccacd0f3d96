"""The four pages (Predict, Batch, Model, Monitoring): Streamlit widgets around the client and the form/scoring
helpers. Every API failure ends as one st.error sentence; an unreachable service as one banner."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from mlops_template.core.config import DEFAULT_PARAMS, ReadConfig, load_params
from mlops_template.core.errors import UserError
from mlops_template.ui.client import ApiDown, ApiProblem, Client, api_url
from mlops_template.ui.form import EXAMPLE, TYPICAL, flag_sentences, inputs, probability_rows
from mlops_template.ui.scoring import CHUNK_ROWS, read_upload, score, to_csv
from mlops_template.ui.tables import (
    committed_sentence,
    comparison_table,
    drift_table,
    gate_table,
    importance_table,
    metric_table,
    quality_table,
)

MODEL_TTL_SECONDS = 30  # a redeployed model shows up within this time
REFUSED_SHOWN = 20  # refused rows listed on the page; all of them are in the download


def client() -> Client:
    """One HTTP client (connection pool) per browser session."""
    if "client" not in st.session_state:
        st.session_state["client"] = Client(api_url())
    return st.session_state["client"]


@st.cache_data(ttl=MODEL_TTL_SECONDS, show_spinner=False)
def _model(base_url: str) -> dict[str, Any]:
    return Client(base_url).model()


def current_model() -> dict[str, Any]:
    """GET /model (cached briefly): the contract every page is built from, after /ready says the service is up."""
    client().request("GET", "/ready")  # down: ApiDown (the banner); loading or draining: 503
    return _model(client().base_url)


def guarded(render: Callable[[], None]) -> Callable[[], None]:
    """A page whose API failures show as one message: the banner when the service is down, else st.error."""

    @functools.wraps(render)
    def page() -> None:
        try:
            render()
        except ApiDown as exc:
            st.error(f"**Service unavailable.** {exc}", icon="🔌")
        except ApiProblem as exc:
            st.error(str(exc), icon="⚠️")

    return page


def _caption(model: dict[str, Any]) -> None:
    st.caption(f"model {model['model_version']} ({model.get('estimator')}, {model['task']}) · service {api_url()}")


# ---- Predict ------------------------------------------------------------------------------------------------
def predict_page() -> None:
    model = current_model()
    st.title(f"Predict {model['target']}")
    _caption(model)
    start = st.radio("Start from", [EXAMPLE, TYPICAL], horizontal=True, disabled=not model.get("example"))
    bounded = st.toggle("Keep numbers within the training range", value=True,
                        help="switch off to try values the model never saw (the answer then flags them)")  # fmt: skip
    values: dict[str, Any] = {}
    with st.form("predict"):
        columns = st.columns(3)
        for i, field in enumerate(inputs(model, start)):
            key = f"{start}:{bounded}:{field.name}"  # a new start row or bound setting resets the inputs
            with columns[i % 3]:
                if field.numeric:
                    # pre-filled through the session state with value=None: the input can then be emptied (null)
                    st.session_state.setdefault(key, field.value)
                    values[field.name] = st.number_input(
                        field.name, min_value=field.low if bounded else None, max_value=field.high if bounded else None,
                        value=None, step=1 if field.integer else None, format="%d" if field.integer else None,
                        key=key, help=field.help,
                    )  # fmt: skip
                else:
                    options = list(field.categories)
                    if field.value is not None and field.value not in options:
                        options.append(field.value)
                    index = options.index(field.value) if field.value is not None else None
                    values[field.name] = st.selectbox(field.name, options, index=index, key=key, help=field.help,
                                                      accept_new_options=True, placeholder="(missing)")  # fmt: skip
        submitted = st.form_submit_button("Predict", type="primary")
    if submitted:
        answer = client().predict(values)  # one record: a JSON object
        show_prediction(answer, model)


def show_prediction(answer: dict[str, Any], model: dict[str, Any]) -> None:
    item = answer["predictions"][0]
    with st.container(key="prediction", border=True):
        if model["task"] == "regression":
            st.metric(f"Predicted {model['target']}", f"{item['prediction']:,.4g}")
        else:
            st.subheader(f"Predicted {model['target']}: {item['prediction']}")
            rows = probability_rows(item)
            st.bar_chart(pd.DataFrame(rows), x="class", y="probability", horizontal=True, sort=False)
            st.caption(" · ".join(f"P({r['class']}) = {r['probability']:.3f}" for r in rows))
        sentences = flag_sentences(item, model)
        for sentence in sentences:
            st.warning(sentence)
        if not sentences:
            st.caption("Every value lies within the training range and categories.")
        st.caption(f"model {answer['model_version']} · runtime {answer['runtime']} · request {answer['request_id']}")


# ---- Batch --------------------------------------------------------------------------------------------------
def chunk_rows() -> int:
    """Rows per /predict call (UI_CHUNK_ROWS): at most the service's MAX_BATCH_ROWS."""
    return max(1, int(os.environ.get("UI_CHUNK_ROWS") or CHUNK_ROWS))


def read_options() -> ReadConfig:
    """data.read of PARAMS_FILE (default params.yaml), as `make predict` reads its input; defaults without one."""
    path = Path(os.environ.get("PARAMS_FILE") or DEFAULT_PARAMS)
    return load_params(path).data.read if path.is_file() else ReadConfig()


def batch_page() -> None:
    model = current_model()
    st.title("Batch scoring")
    _caption(model)
    features = [f["name"] for f in model["features"]]
    upload = st.file_uploader("A CSV with the feature columns (other columns are copied to the result)", type=["csv"])
    if upload is None:
        st.info(f"The CSV needs a header with these columns: {', '.join(features)}. It is read as "
                "`make predict` reads it; rows the model refuses are listed with their line number.")  # fmt: skip
        return
    try:
        frame, extra, written = read_upload(upload.getvalue(), model, upload.name, read_options())
    except UserError as exc:
        st.error(str(exc), icon="⚠️")
        return
    st.write(f"**{upload.name}**: {len(frame)} rows. Preview:")
    st.dataframe(frame.head(20), hide_index=True)
    key = (upload.file_id, model["model_version"])
    if st.button("Score", type="primary"):
        bar = st.progress(0.0, text="scoring…")
        total = max(len(frame), 1)

        def progress(done: int) -> None:
            bar.progress(done / total, text=f"{done} of {len(frame)} rows")

        st.session_state["batch"] = (key, score(frame, extra, model, client().predict, chunk_rows(), progress))
    stored = st.session_state.get("batch")
    if not stored or stored[0] != key:
        return
    result = stored[1]
    stem = Path(upload.name).stem
    with st.container(key="batch-result"):
        st.success(f"{len(result.output)} rows scored, {len(result.rejected)} refused "
                   f"(model {result.model_version}, runtime {result.runtime}).")  # fmt: skip
        st.dataframe(result.output.head(100), hide_index=True)
        st.download_button("Download the predictions (CSV)", to_csv(result.output, written),
                           file_name=f"{stem}-predictions.csv", mime="text/csv", on_click="ignore",
                           type="primary")  # fmt: skip
        if len(result.rejected):
            shown = result.rejected.head(REFUSED_SHOWN)
            lines = [f"- line {r.line}: {r.reason}" for r in shown.itertuples()]
            if len(result.rejected) > len(shown):
                lines.append(f"- … and {len(result.rejected) - len(shown)} more in the file below")
            header = f"{len(result.rejected)} row(s) refused by the service (CSV line numbers, header = line 1):"
            st.warning(header + "\n\n" + "\n".join(lines))
            st.download_button("Download the refused rows (CSV)", to_csv(result.rejected, written),
                               file_name=f"{stem}-rejects.csv", mime="text/csv", on_click="ignore")  # fmt: skip


# ---- Model --------------------------------------------------------------------------------------------------
def model_page() -> None:
    model = current_model()
    st.title("Model card")
    _caption(model)
    gate = model.get("gate") or {}
    left, middle, right = st.columns(3)
    left.metric("Task", model["task"], help=f"target: {model['target']}")
    middle.metric("Version", model["model_version"], help=f"git commit {model.get('git_commit')}")
    right.metric("Gate verdict", gate.get("verdict", "unknown"), help=f"baseline: {gate.get('baseline') or 'none'}")
    classes = f" (classes: {', '.join(model['classes'])})" if model.get("classes") else ""
    lines = [
        f"**Target**: `{model['target']}`{classes}",
        f"**Estimator**: {model.get('estimator')}",
        f"**Service built from commit**: {model.get('git_commit') or 'not recorded (GIT_COMMIT unset)'}",
        # bundles are byte-reproducible (metadata format 3): no clock time inside; git's history of dvc.lock dates it
        f"**Committed at** (not the training time: a bundle records none, so a rebuild is byte-identical): "
        f"{committed_sentence(model)}",
        f"**Runtime in use**: {runtime_sentence(model)}",
    ]
    if model.get("training_data"):
        lines.append(f"**Training data**: {training_sentence(model['training_data'])}")
    st.markdown("\n".join(f"- {line}" for line in lines))
    st.subheader("Metrics and gate")
    table = gate_table(model)
    st.table((metric_table(model) if table.empty else table).set_index("metric"))
    st.subheader("Feature importance")
    importance = importance_table(model)
    if importance.empty:
        st.info("This bundle records no feature importance (see reports/plots/feature_importance.json of its run).")
    else:
        st.bar_chart(importance, x="feature", y="importance", horizontal=True, sort="-importance")
    st.subheader("Features (the request contract)")
    st.table(pd.DataFrame([feature_row(f) for f in model["features"]]).set_index("feature"))


def runtime_sentence(model: dict[str, Any]) -> str:
    onnx = model.get("onnx") or {}
    reason = f" ({onnx['reason']})" if onnx.get("reason") else ""
    if model.get("runtime") == "onnx":
        return f"ONNX Runtime{reason}"
    return f"scikit-learn{reason}"


def training_sentence(data: dict[str, Any]) -> str:
    rows = data.get("rows") or {}
    counts = ", ".join(f"{n} {split}" for split, n in rows.items()) if isinstance(rows, dict) else str(rows)
    return f"{data.get('source')} ({counts}), sha256 {str(data.get('sha256', ''))[:12]}"


def feature_row(feature: dict[str, Any]) -> dict[str, Any]:
    if feature.get("type") == "numeric":
        values = f"{feature.get('min'):g} to {feature.get('max'):g}, median {feature.get('median'):g}"
    else:
        values = ", ".join(map(str, feature.get("categories") or []))
    return {"feature": feature["name"], "type": feature.get("type"), "training values": values,
            "missing in training": f"{feature.get('missing_rate', 0):.1%}"}  # fmt: skip


# ---- Monitoring ---------------------------------------------------------------------------------------------
def monitoring_page() -> None:
    model = current_model()
    st.title("Monitoring")
    _caption(model)
    st.button("Refresh")
    report = client().drift()
    st.subheader("Drift of recent requests vs training")
    status = report.get("status", "")
    text = (f"status **{status}** on {report.get('rows', 0)} recent rows "
            f"(reference: {report.get('reference_rows', 0)} training rows)")  # fmt: skip
    if report.get("drifted"):
        drifted = [i["name"] for i in report.get("features", []) + report.get("outputs", []) if i.get("drifted")]
        st.error(f"Drift detected in {', '.join(drifted)}: {text}")
    elif status == "not enough data":
        st.info(f"Not enough recent requests to judge yet: {text}")
    else:
        st.success(f"No drift: {text}")
    frame = drift_table(report)
    if not frame.empty:
        highlight = frame["drifted"].map({True: "background-color: #fbd5d5", False: ""})
        st.dataframe(frame.style.apply(lambda _: highlight, axis=0), hide_index=True)
    thresholds = (report.get("thresholds") or {}).items()
    st.caption("thresholds: " + ", ".join(f"{k} {v:g}" for k, v in thresholds if isinstance(v, int | float)))
    st.subheader("Experiment (champion / challengers)")
    experiment = client().experiment()  # a 503 (REDIS_URL's Redis down) ends the page here with its sentence
    comparison = experiment.get("comparison") or {}
    st.markdown(f"mode **{experiment.get('mode')}**, challenger loaded: {experiment.get('challenger_loaded')}; "
                f"decision: **{comparison.get('decision')}**, {comparison.get('reason', '')}")  # fmt: skip
    comparisons = comparison_table(experiment)
    if not comparisons.empty:
        if comparison.get("correction"):
            st.caption(comparison["correction"])
        st.table(comparisons.set_index("challenger"))
    variants = experiment.get("variants") or {}
    if variants:
        st.dataframe(pd.DataFrame([{"variant": k, **v} for k, v in variants.items()]), hide_index=True)
    st.subheader("Live quality (from POST /feedback)")
    st.dataframe(quality_table(experiment), hide_index=True)
