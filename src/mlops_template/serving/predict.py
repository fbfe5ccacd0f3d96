"""POST /predict: parse and validate the records, score them (micro-batched or in a thread), count, answer.

The hot path of the service (README "Benchmarks > Serving"): `Predict.predict` runs on a `DirectRoute`, so
FastAPI's per-request machinery is skipped and the endpoint reads its own body. Monitoring is queued, not done
here (observers get a `PredictionEvent`; the drift/feedback one is a list append, see live.py); the shadow
predictions (every challenger in `shadow` mode) run after the answer is sent.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from mlops_template.core.bundle import Bundle
from mlops_template.serving.asgi import ApiError, DirectRoute, JSONBody, parse_json, read_body
from mlops_template.serving.batching import MicroBatcher
from mlops_template.serving.contract import Columns, Contract, Flags, RowError
from mlops_template.serving.live import Live
from mlops_template.serving.metrics import ServiceMetrics
from mlops_template.serving.predictor import Predictions, Predictor
from mlops_template.serving.schemas import ERRORS, predict_request_body, predict_response_model
from mlops_template.serving.settings import Settings

log = logging.getLogger("mlops_template.serving")


@dataclass(frozen=True)
class Variant:
    """One servable model: its bundle, request contract and predictor."""

    name: str
    bundle: Bundle
    contract: Contract
    predictor: Predictor

    @property
    def version(self) -> str:
        return self.bundle.version


@dataclass(slots=True)  # per request: a frozen dataclass takes 4x longer to build
class PredictionEvent:
    """What observers (drift windows, feedback joins, A/B) get after each prediction."""

    request_id: str
    variant: str
    model_version: str
    columns: Columns  # validated features of the batch: a mapping of one array per feature, and the matrices
    predictions: Predictions
    flags: Flags
    batch: bool = False  # the body was a JSON array: feedback keys are `<request_id>:<row>`


Observer = Callable[[PredictionEvent], None]


def parse_rows(body: bytes, max_rows: int) -> tuple[list[Any], bool]:
    """A JSON object (one record) or a JSON array of records -> (list of records, whether it was an array)."""
    # NaN/Infinity are not JSON, but read anyway: the contract then names the field
    data = parse_json(body, 'a JSON object {"feature": value, ...} or an array of such objects', allow_nan=True)
    if isinstance(data, dict):
        return [data], False
    if not isinstance(data, list):
        raise ApiError(
            422,
            "invalid_body",
            "the body must be a JSON object (one record) or an array of records",
            [{"row": None, "field": None, "message": f"got a JSON {type(data).__name__}"}],
        )
    if not data:
        raise ApiError(422, "invalid_body", "the array of records is empty")
    if len(data) > max_rows:
        raise ApiError(
            422,
            "too_many_rows",
            f"{len(data)} records exceed MAX_BATCH_ROWS={max_rows}; "
            "split the batch or use `python -m mlops_template predict` for files",
        )
    return data, True


def client_key(request: Request) -> str:
    """Who is asking, for sticky A/B assignment: the X-Client-ID header, else the client address."""
    return request.headers.get("x-client-id") or (request.client.host if request.client else "unknown")


def score(variant: Variant, columns: Columns, n: int) -> tuple[Predictions, Flags]:
    return variant.predictor.predict(columns), variant.contract.flags(columns, n)


class Predict:
    """The /predict endpoint with what it uses per request, wired once by `create_app`.

    Variants and observers are read from `app.state` on each request (extension points, see app.py).
    """

    def __init__(
        self,
        app: FastAPI,
        settings: Settings,
        live: Live,
        metrics: ServiceMetrics,
        batchers: dict[str, MicroBatcher],
    ) -> None:
        self.app, self.settings, self.live, self.metrics, self.batchers = app, settings, live, metrics, batchers
        self.prediction_children: dict[tuple[str, str], Any] = {}  # Prometheus children, made once per label

    def count(self, variant: str, predictions: Predictions, flags: Flags) -> None:
        metrics, prediction_children = self.metrics, self.prediction_children
        classes = (
            Counter(predictions.labels) if predictions.probabilities is not None else {"value": len(predictions.labels)}
        )
        for label, n in classes.items():
            child = prediction_children.get((variant, label))
            if child is None:
                child = prediction_children[(variant, label)] = metrics.predictions.labels(variant, label)
            child.inc(n)
        for feature, n in flags.counts_out_of_range.items():
            metrics.out_of_range.labels(feature).inc(n)
        for feature, n in flags.counts_unknown.items():
            metrics.unknown.labels(feature).inc(n)

    # no docstring on the endpoint: FastAPI would publish it as the route's description in /docs
    async def predict(self, request: Request) -> Response:
        app, settings, live = self.app, self.settings, self.live
        route = live.experiment.route(client_key(request) if live.experiment.sticky else "")
        variant: Variant = app.state.variants[route.served]
        rows, batch = parse_rows(await read_body(request, settings.max_body_bytes), settings.max_batch_rows)
        try:
            columns = variant.contract.validate_records(rows)
        except RowError as exc:
            raise ApiError(
                422, "invalid_records", f"{len(exc.details)} problem(s) in the records: {exc}", exc.details
            ) from None
        n = len(rows)
        if n > settings.thread_rows:  # big batches: keep the event loop answering /health meanwhile
            predictions, flags = await run_in_threadpool(score, variant, columns, n)
        else:
            predictions = await self.batchers[variant.name].predict(columns, n)
            flags = variant.contract.flags(columns, n)
        request_id = request.scope["request_id"]
        self.count(variant.name, predictions, flags)
        event = PredictionEvent(request_id, variant.name, variant.version, columns, predictions, flags, batch)
        if n > settings.thread_rows:
            await run_in_threadpool(self.notify, event)
        else:
            self.notify(event)
        out_of_range, unknown = flags.out_of_range, flags.unknown_categories
        if predictions.probabilities is not None:
            classes = variant.contract.classes
            probabilities = predictions.probabilities
            if settings.output_precision is not None:  # only what is returned: monitoring keeps full precision
                probabilities = probabilities.round(settings.output_precision)
            items = [
                {
                    "prediction": label,
                    "probabilities": dict(zip(classes, p, strict=True)),
                    "out_of_range": o,
                    "unknown_categories": u,
                }
                for label, p, o, u in zip(
                    predictions.labels, probabilities.tolist(), out_of_range, unknown, strict=True
                )
            ]
        else:
            items = [
                {"prediction": v, "out_of_range": o, "unknown_categories": u}
                for v, o, u in zip(predictions.labels, out_of_range, unknown, strict=True)
            ]
        shadow = None
        if route.shadow:  # after the answer is sent, in a worker thread: the client never waits for it
            shadow = BackgroundTask(self.predict_shadow, route.shadow, request_id, batch, columns)
        return JSONBody(
            {
                "model_version": variant.version,
                "variant": variant.name,
                "runtime": variant.predictor.runtime,
                "request_id": request_id,
                "feedback_key": f"{request_id}:{{row}}" if batch else request_id,
                "predictions": items,
            },
            background=shadow,
        )

    def notify(self, event: PredictionEvent) -> None:
        for observer in self.app.state.observers:
            try:
                observer(event)
            except Exception:
                log.exception("observer %r failed", observer, extra={"request_id": event.request_id})

    def predict_shadow(self, names: Sequence[str], request_id: str, batch: bool, columns: Columns) -> None:
        for name in names:
            variant: Variant = self.app.state.variants[name]
            try:
                predictions = variant.predictor.predict(columns)
                self.live.record(request_id, batch, columns, predictions, variant.name, served=False)
            except Exception:  # a failing challenger must never fail the champion's answers, nor the other shadows
                log.exception("shadow prediction of %s failed", variant.name, extra={"request_id": request_id})


def add_predict_route(app: FastAPI, endpoint: Predict, contract: Contract) -> None:
    """POST /predict on a DirectRoute, documented with the contract's Record, response model and errors."""
    app.router.add_api_route(
        "/predict",
        endpoint.predict,
        methods=["POST"],
        response_model=predict_response_model(contract),
        responses=ERRORS,
        openapi_extra={"requestBody": predict_request_body(contract.example, endpoint.settings.max_batch_rows)},
        summary="Predict one record or a batch",
        tags=["model"],
        route_class_override=DirectRoute,
    )
