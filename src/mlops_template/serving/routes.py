"""The routes besides /predict: ops (/health, /ready, /model, /metrics), monitoring and admin (X-API-Key)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from fastapi import FastAPI, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from mlops_template.monitoring.experiment import CHAMPION
from mlops_template.monitoring.feedback import FeedbackError, StateUnavailable
from mlops_template.monitoring.security import DISABLED, MISSING, OK, STATUS, ApiKeys
from mlops_template.serving.asgi import ApiError, JSONBody, parse_json, read_body
from mlops_template.serving.contract import class_type
from mlops_template.serving.live import Live
from mlops_template.serving.metrics import CONTENT_TYPE, ServiceMetrics
from mlops_template.serving.predict import Variant
from mlops_template.serving.schemas import RATE_LIMITED, ErrorResponse, ModelInfo, Status

ADMIN_BODY_BYTES = 16 * 1024  # admin bodies are a few fields: refuse anything bigger before parsing
API_KEY_HEADER = "X-API-Key"


def feedback_model(task: str, classes: list[str] | None) -> type[BaseModel]:
    """The /feedback body: `actual` is one of the model's classes, or a finite number for regression."""
    if task == "regression":
        actual: Any = (float, Field(allow_inf_nan=False, description="the true value"))
    else:
        actual = (class_type(classes or [], "the true class"), ...)  # the label rule: 1 for class "1"
    return create_model(
        "FeedbackRequest",
        __config__=ConfigDict(extra="forbid", strict=True),
        request_id=(
            str,
            Field(min_length=1, max_length=300, description="`feedback_key` of the /predict answer (row filled in)"),
        ),
        actual=actual,
    )


class FeedbackResponse(BaseModel):
    request_id: str
    served: str = Field(description="the variant whose answer the client got")
    success: dict[str, bool] = Field(description="per variant (served and shadow): was its prediction right")


class ExperimentChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON false is not a share
    mode: Literal["single", "ab", "shadow", "bandit"] | None = None
    challenger_share: float | None = Field(None, ge=0.0, le=1.0, description="ab: clients sent to the challengers")
    name: str | None = Field(None, min_length=1, max_length=200, description="a new name reshuffles A/B clients")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "malformed JSON",
        401: f"no API key: send an admin key (ADMIN_API_KEYS) in the {API_KEY_HEADER} header",
        403: f"the {API_KEY_HEADER} key is not one of ADMIN_API_KEYS",
        404: "request_id unknown: no prediction was recorded under it",
        409: "request_id expired, evicted or already answered",
        413: f"body larger than {ADMIN_BODY_BYTES} bytes",
        422: "invalid body (e.g. actual not one of the model's classes, or not a number for regression)",
        503: "admin routes disabled (ADMIN_API_KEYS is not set), or the shared state (REDIS_URL) does not answer",
    }
    return {**RATE_LIMITED, **{c: {"model": ErrorResponse, "description": described[c]} for c in codes}}


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    body = await read_body(request, ADMIN_BODY_BYTES)
    data = parse_json(body, "a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [{"row": None, "field": ".".join(map(str, e["loc"])) or None, "message": e["msg"]}
                   for e in exc.errors()]  # fmt: skip
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        raise ApiError(422, "invalid_body", f"invalid {model.__name__}: {summary}", details) from None


async def shared_read(read: Callable[[], Any]) -> Any:
    """`read()` in a worker thread; 503 when the shared state (REDIS_URL) does not answer."""
    try:
        return await run_in_threadpool(read)
    except StateUnavailable as exc:
        raise ApiError(503, "state_unavailable", str(exc)) from None


def add_ops_routes(app: FastAPI, metrics: ServiceMetrics, guard: Sequence[Any] = ()) -> None:
    """Register /health, /ready, /model and /metrics on `app` (variants read from `app.state`; `guard`: on /model)."""

    @app.get("/health", response_model=Status, summary="Liveness: the process answers", tags=["ops"])
    async def health() -> Response:
        return JSONBody({"status": "ok"})

    @app.get(
        "/ready",
        response_model=Status,
        responses={503: {"model": Status, "description": "not ready"}},
        summary="Readiness: the model is loaded and answered its warm-up prediction",
        tags=["ops"],
    )
    async def ready() -> Response:
        ok = app.state.ready and all(v.predictor is not None for v in app.state.variants.values())
        return JSONBody({"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503)

    @app.get(
        "/model",
        response_model=ModelInfo,
        responses=_errors(401, 403) if guard else RATE_LIMITED,
        dependencies=list(guard),
        summary="The model served: version, metrics, features, verdict",
        tags=["model"],
    )
    async def model() -> Response:
        variant: Variant = app.state.variants[CHAMPION]
        return JSONBody(
            {
                "variant": variant.name,
                "model_version": variant.version,
                "runtime": variant.predictor.runtime,
                # the rest of ModelInfo is metadata.json's fields of the same names
                **variant.bundle.metadata.model_dump(mode="json", include=set(ModelInfo.model_fields)),
                "git_commit": app.state.settings.git_commit,  # the deployment's: a bundle records no commit
                # when dvc.lock's history first recorded the bundle (MODEL_COMMITTED_AT): it records no clock time
                "model_committed_at": app.state.settings.model_committed_at,
            }
        )

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        tags=["ops"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "metrics"}},
    )
    async def prometheus() -> Response:
        # scrape-time gauges may recompute the drift report (~0.1 s CPU): keep the event loop free
        return Response(await run_in_threadpool(metrics.render), media_type=CONTENT_TYPE)


def admin_dependency(keys: ApiKeys, metrics: ServiceMetrics) -> Callable[..., None]:
    """The dependency of admin routes: one of `keys` in X-API-Key (401 without, 403 wrong, 503 none configured)."""
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, scheme_name="AdminKey",
                          description="one of the comma-separated keys of ADMIN_API_KEYS")  # fmt: skip

    def admin(key: str | None = Security(header)) -> None:
        outcome = keys.check(key)  # constant time; the key itself is never logged or stored
        if outcome == OK:
            return
        status = STATUS[outcome]
        if outcome != DISABLED:
            metrics.admin_failures.labels(str(status)).inc()
        message = {
            MISSING: f"this route needs an admin API key in the {API_KEY_HEADER} header",
            DISABLED: "admin routes are disabled: set ADMIN_API_KEYS (comma-separated keys) on the service",
        }.get(outcome, f"the {API_KEY_HEADER} key is not valid")
        raise ApiError(status, {401: "unauthorized", 403: "forbidden"}.get(status, "admin_disabled"), message)

    return admin


def add_monitoring_routes(app: FastAPI, live: Live, admin: Callable[..., None], guard: Sequence[Any] = ()) -> None:
    """Register the monitoring (read; `guard` = PROTECT_METADATA's admin key) and admin (key) routes on `app`."""
    feedback_request = feedback_model(live.task, live.classes)
    read = _errors(401, 403) if guard else RATE_LIMITED

    @app.get("/monitoring/drift", response_model=dict[str, Any], responses=read, dependencies=list(guard),
             tags=["monitoring"],
             summary="Live drift of recent requests vs the training profile (cached refresh_seconds)")  # fmt: skip
    async def drift() -> Response:
        return JSONBody(await run_in_threadpool(live.drift))

    @app.get("/experiment", response_model=dict[str, Any], responses=read, dependencies=list(guard),
             tags=["monitoring"],
             summary="Champion/challengers: per-variant counts, quality and decision, the tests' design")  # fmt: skip
    async def experiment() -> Response:
        return JSONBody(await shared_read(live.experiment_stats))

    @app.post("/experiment", response_model=dict[str, Any], responses=_errors(400, 401, 403, 413, 422, 503),
              openapi_extra=_body_schema(ExperimentChange), dependencies=[Security(admin)], tags=["admin"],
              summary="Change the experiment mode, challenger share or name (admin)")  # fmt: skip
    async def change_experiment(request: Request) -> Response:
        change: ExperimentChange = await _parse(request, ExperimentChange)
        try:  # with REDIS_URL the change is stored for every process (503 when Redis does not answer)
            await shared_read(lambda: live.experiment.reconfigure(**change.model_dump(exclude_none=True)))
        except ValidationError as exc:
            raise ApiError(422, "invalid_body", str(exc)) from None
        return JSONBody(await shared_read(live.experiment_stats))

    @app.post("/feedback", response_model=FeedbackResponse, tags=["admin"],
              responses=_errors(400, 401, 403, 404, 409, 413, 422, 503),
              openapi_extra=_body_schema(feedback_request), dependencies=[Security(admin)],
              summary="Ground truth of a prediction: live accuracy/ROC-AUC/MAE and the experiment (admin)")  # fmt: skip
    async def feedback(request: Request) -> Response:
        body: Any = await _parse(request, feedback_request)
        try:
            outcome = live.answer(body.request_id, body.actual)
        except FeedbackError as exc:
            code = {404: "unknown_request", 409: "conflict", 422: "invalid_actual", 503: "state_unavailable"}.get(
                exc.http_status, "bad_request"
            )
            raise ApiError(exc.http_status, code, str(exc)) from None
        return JSONBody({"request_id": outcome.request_id, "served": outcome.served, "success": outcome.success})
