"""The FastAPI app factory: the bundle is loaded and checked once, before the server takes traffic.

Start-up policy (documented in README "Serving the model"): a bundle that cannot be served (missing,
bad checksum, not VALIDATED, incompatible library versions, unusable ONNX) is a UserError raised by
`create_app`; `python -m mlops_template serve` turns it into one log line and exit code 2, so the
process never listens with a broken model (an orchestrator restarts it and alerts, a deploy fails).

Extension points (challenger models, monitoring, your own observers):
- `app.state.variants` maps a variant name (`champion`, then each challenger's, see `load_variants`) to a loaded
  `Variant`;
  `app.state.batchers` the same names to their `MicroBatcher` (shared model calls, batching.py).
- `app.state.observers` is a list of callables receiving a `PredictionEvent` after each prediction.
- `app.state.metrics.registry` is the Prometheus registry /metrics exposes.

The pieces it wires: predict.py (the /predict endpoint), routes.py (ops, monitoring and admin routes),
schemas.py (the documented models), asgi.py (middlewares), live.py (monitoring state).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from threadpoolctl import threadpool_limits

from mlops_template.core.bundle import load_bundle
from mlops_template.core.errors import UserError
from mlops_template.monitoring.experiment import CHALLENGER, CHAMPION
from mlops_template.monitoring.security import ApiKeys
from mlops_template.serving.asgi import (
    ApiError,
    DirectRoute,
    DirectRoutes,
    JSONBody,
    PredictKeys,
    RateLimit,
    RequestContext,
    error_body,
)
from mlops_template.serving.batching import MicroBatcher
from mlops_template.serving.contract import Columns, Contract, RowError
from mlops_template.serving.live import Collector, Live, check_compatible, load_monitoring
from mlops_template.serving.metrics import ServiceMetrics
from mlops_template.serving.predict import Observer, Predict, PredictionEvent, Variant, add_predict_route
from mlops_template.serving.predictor import build_predictor
from mlops_template.serving.routes import API_KEY_HEADER, add_monitoring_routes, add_ops_routes, admin_dependency
from mlops_template.serving.settings import Settings, check_arm_name

log = logging.getLogger("mlops_template.serving")
PREDICT_PATHS = frozenset({"/predict"})  # what PREDICT_API_KEYS guards


def load_variant(name: str, directory: Path, runtime: str = "auto") -> Variant:
    """Verify and load a bundle (VALIDATED only), build its predictor and prove it on the metadata example."""
    bundle = load_bundle(directory)
    contract = Contract(bundle.metadata)
    predictor = build_predictor(bundle, runtime)
    try:
        predictor.predict(contract.validate_records([contract.example]))
    except RowError as exc:
        raise UserError(f"{directory}/metadata.json: its `example` row does not fit its own features ({exc})") from None
    return Variant(name=name, bundle=bundle, contract=contract, predictor=predictor)


def load_variants(settings: Settings) -> dict[str, Variant]:
    """The champion (MODEL_DIR) and the challengers of CHALLENGER_MODEL_DIR, which must fit the same requests.

    A challenger's arm name: the one configured (`name=path`), else `challenger` when it is the only one (the name
    one challenger always had), else its bundle's model_version.
    """
    champion = load_variant(CHAMPION, settings.model_dir, settings.model_runtime)
    metadata = champion.bundle.metadata
    variants = {CHAMPION: champion}
    for configured, directory in settings.challengers:
        challenger = load_variant(configured or CHALLENGER, directory, settings.model_runtime)
        check_compatible(metadata, challenger.bundle.metadata, directory)
        name = configured or (CHALLENGER if len(settings.challengers) == 1 else challenger.version)
        try:
            check_arm_name(name)
        except ValueError as exc:
            raise UserError(f"CHALLENGER_MODEL_DIR: {directory}: {exc}; name it: <name>={directory}") from None
        if name in variants:
            raise UserError(
                f"CHALLENGER_MODEL_DIR: {directory} and {variants[name].bundle.path} are both named {name!r}: "
                "give each its own name, CHALLENGER_MODEL_DIR=a=<folder>,b=<folder>"
            )
        variants[name] = dataclasses.replace(challenger, name=name)
    return variants


def service_metrics(variants: dict[str, Variant], live: Live) -> ServiceMetrics:
    """The app's Prometheus registry: the service's metrics, model_info per variant, the scrape-time gauges."""
    metrics = ServiceMetrics()
    for variant in variants.values():
        meta = variant.bundle.metadata
        metrics.info.labels(variant.name, variant.version, variant.bundle.verdict, meta.estimator).set(1)
    metrics.registry.register(Collector(live))
    return metrics


def build_live(settings: Settings, variants: dict[str, Variant]) -> Live:
    """The monitoring state: PARAMS_FILE's `monitoring` with the environment's overrides (mode, limit, Redis)."""
    champion = variants[CHAMPION]
    live = Live(
        load_monitoring(settings.params_file),
        champion.bundle.path,
        champion.bundle.metadata,
        challengers=[name for name in variants if name != CHAMPION],
        experiment_mode=settings.experiment_mode,
        rate_limit=settings.rate_limit,
        redis_url=settings.redis_url,
    )
    live.versions = {name: variant.version for name, variant in variants.items()}
    return live


@asynccontextmanager
async def flush_on_shutdown(live: Live, _: FastAPI) -> AsyncIterator[None]:
    """The app's lifespan: uvicorn ends it on SIGTERM once in-flight requests are done, so queued monitoring
    state reaches Redis."""
    yield
    await run_in_threadpool(live.close)


def create_app(
    settings: Settings | None = None, observers: Sequence[Observer] = (), admin_keys: ApiKeys | None = None
) -> FastAPI:
    """Load and verify the bundle(s) (UserError if one cannot be served), then build the app around them.

    `admin_keys`: the admin API keys; by default ADMIN_API_KEYS from the environment (none: admin routes 503).
    """
    settings = settings or Settings.from_env()
    admin_keys = access_keys(settings, admin_keys)
    # OpenMP/BLAS thread pools spin per call: with small batches one thread per process is fastest
    threadpool_limits(settings.model_threads)
    variants = load_variants(settings)
    champion = variants[CHAMPION]
    contract, metadata = champion.contract, champion.bundle.metadata
    live = build_live(settings, variants)
    metrics = service_metrics(variants, live)

    app = FastAPI(
        title=f"Prediction service: {metadata.target} ({metadata.task})",
        version=champion.version,
        description=(
            f"Predicts `{metadata.target}` with model {champion.version} ({metadata.estimator}, trained on "
            f"{metadata.training_data.source} {metadata.training_data.sha256[:12]}). Request fields come from the "
            "model bundle's metadata.json. "
            "POST one record (a JSON object) or a batch (a JSON array of records) to /predict."
        ),
        default_response_class=JSONBody,
        # FastAPI's native OpenTelemetry looks the providers up on every request; this app exports
        # Prometheus metrics and JSON logs instead
        telemetry={"tracing": False, "metrics": False, "logs": False},
        lifespan=partial(flush_on_shutdown, live),
    )
    app.state.settings = settings
    app.state.variants = variants
    app.state.live = live

    def monitor(event: PredictionEvent) -> None:
        live.record(event.request_id, event.batch, event.columns, event.predictions, event.variant)

    app.state.observers = [monitor, *observers]
    app.state.metrics = metrics
    app.state.ready = True
    # small requests share model calls under load (see batching.py); bigger ones run alone in a thread
    batchers = {
        name: MicroBatcher(variant.predictor.predict, Columns.concat, settings.thread_rows)
        for name, variant in variants.items()
    }
    app.state.batchers = batchers
    add_routes(app, Predict(app, settings, live, metrics, batchers), contract, admin_keys)
    add_error_handlers(app)
    app.openapi = partial(openapi, app, contract, settings)  # type: ignore[method-assign]
    # an admin key opens /predict too (one key for a client that reads /model and predicts, e.g. the UI)
    add_middlewares(app, settings, live, metrics, settings.predict_api_keys + admin_keys)
    log_loaded(settings, variants, live)
    return app


def access_keys(settings: Settings, admin_keys: ApiKeys | None) -> ApiKeys:
    """The admin keys (ADMIN_API_KEYS unless given); UserError when PROTECT_METADATA has none to ask for."""
    admin_keys = ApiKeys.from_env() if admin_keys is None else admin_keys
    if settings.protect_metadata and not admin_keys.digests:  # else /model would answer 503 to everyone
        raise UserError("PROTECT_METADATA=true puts /model, /experiment and /monitoring/drift behind the admin key: "
                        "set ADMIN_API_KEYS (comma-separated keys) too")  # fmt: skip
    return admin_keys


def add_routes(app: FastAPI, predict: Predict, contract: Contract, admin_keys: ApiKeys) -> None:
    """/predict, the ops, monitoring and admin routes; PROTECT_METADATA puts the read routes behind the admin key."""
    admin = admin_dependency(admin_keys, predict.metrics)
    guard = [Security(admin)] if predict.settings.protect_metadata else []
    add_predict_route(app, predict, contract)
    add_ops_routes(app, predict.metrics, guard)
    add_monitoring_routes(app, predict.live, admin, guard)


def log_loaded(settings: Settings, variants: dict[str, Variant], live: Live) -> None:
    """The start-up line: what is served and how."""
    champion = variants[CHAMPION]
    log.info(
        "model loaded",
        extra={
            "variant": CHAMPION,
            "model_version": champion.version,
            "runtime": champion.predictor.runtime,
            "model_dir": str(settings.model_dir),
            "variants": {name: v.version for name, v in variants.items()},
            "experiment_mode": live.experiment.mode,
            "rate_limit": live.limiter is not None,
            "predict_keys": len(settings.predict_api_keys.digests),  # how many, never which
            "output_precision": settings.output_precision,
            "protect_metadata": settings.protect_metadata,
            "shared_state": live.shared.where if live.shared else None,  # Redis host:port, never the password
        },
    )


def add_error_handlers(app: FastAPI) -> None:
    """Every refusal, FastAPI's and Starlette's included, as the JSON error body with the request id."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_body(request, exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = error_body(request, exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. Allow on 405
        if exc.status_code == 405:  # one path may have several routes (GET and POST /experiment): list them all
            path = request.scope["path"]
            methods = {m for r in app.routes if getattr(r, "path", None) == path for m in getattr(r, "methods", ())}
            if methods:
                response.headers["Allow"] = ", ".join(sorted(methods))
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        details = [{"row": None, "field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
        return error_body(request, 422, "invalid_request", "invalid request", details)


def openapi(app: FastAPI, contract: Contract, settings: Settings | None = None) -> dict[str, Any]:
    """The OpenAPI document (built once), with the contract's Record that the /predict body refers to, and the
    PredictKey security scheme on /predict when PREDICT_API_KEYS is set (a DirectRoute declares no dependency)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        record = contract.record_model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(record.pop("$defs", {}))
        components["Record"] = record
        if settings is not None and settings.predict_api_keys.digests:
            schemes = schema["components"].setdefault("securitySchemes", {})
            schemes["PredictKey"] = {"type": "apiKey", "in": "header", "name": API_KEY_HEADER,
                                     "description": "one of PREDICT_API_KEYS (or ADMIN_API_KEYS)"}  # fmt: skip
            operation = schema["paths"]["/predict"]["post"]
            operation["security"] = [{"PredictKey": []}]
            operation["responses"].update(predict_key_errors())
        app.openapi_schema = schema
    return app.openapi_schema


def predict_key_errors() -> dict[str, Any]:
    """The 401/403 of /predict with PREDICT_API_KEYS, in the document's own terms."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    return {
        "401": {"description": f"no API key: send one of PREDICT_API_KEYS in the {API_KEY_HEADER} header",
                "content": error},
        "403": {"description": f"the {API_KEY_HEADER} key is not one of PREDICT_API_KEYS", "content": error},
    }  # fmt: skip


def add_middlewares(app: FastAPI, settings: Settings, live: Live, metrics: ServiceMetrics,
                    predict_keys: ApiKeys) -> None:  # fmt: skip
    """The pure-ASGI middlewares of asgi.py around FastAPI's, outermost last (Starlette's order)."""
    direct_routes = [route for route in app.router.routes if isinstance(route, DirectRoute)]
    app.add_middleware(DirectRoutes, routes=direct_routes)  # first added: the innermost
    if live.limiter is not None:
        app.add_middleware(RateLimit, limiter=live.limiter, metrics=metrics)
    if settings.predict_api_keys.digests:  # outside RateLimit: an accepted key picks the caller's bucket
        app.add_middleware(PredictKeys, keys=predict_keys, paths=PREDICT_PATHS, limiter=live.limiter, metrics=metrics)
    if settings.cors_origins:  # off unless CORS_ORIGINS lists the browser origins allowed to call the API
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "X-Client-ID", "X-Request-ID"],
        )
    app.add_middleware(RequestContext, metrics=metrics)


def freeze_startup_heap() -> None:
    """Keep what start-up loaded (libraries, the model) out of garbage collection from now on.

    Otherwise every full collection walks those ~1M long-lived objects and stalls all requests for tens of
    milliseconds (measured: p99 36-68 ms without, 7 ms with, see README "Benchmarks > Serving").
    """
    gc.collect()
    gc.freeze()


def app_from_env() -> FastAPI:
    """uvicorn factory for several workers (`--factory`): settings from the environment, one line on failure."""
    from mlops_template.serving.logs import configure

    configure("INFO")
    try:
        settings = Settings.from_env()
        configure(settings.log_level)
        app = create_app(settings)
    except UserError as exc:
        log.error("cannot serve: %s", exc)
        raise SystemExit(2) from None
    freeze_startup_heap()
    return app
