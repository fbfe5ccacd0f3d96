"""Live monitoring state of one service process: drift window, feedback store, experiment, rate limiter.

Wires the pure modules of `mlops_template.monitoring` into the app (see README "Monitoring"):
- `record` (fed by an app observer) queues each request's predictions; they are filed into the drift
  window and the feedback store together, QUEUE_ROWS rows at a time or before anything reads them, so a
  single-row request costs one list append instead of a numpy round-trip per feature;
- `Collector` is a prometheus_client custom collector: drift, live quality and experiment gauges are
  computed when /metrics is scraped (drift at most every `drift.refresh_seconds`), never per request.

Without REDIS_URL the state is per process: with WEB_CONCURRENCY > 1 or several replicas each has its own
feedback store, experiment counts and rate limit (a feedback must reach the process that predicted). With
REDIS_URL those live in Redis (monitoring/shared.py) and a flush thread files the queue: when it is full (so no
request, and not the event loop, waits for Redis), every `feedback.flush_seconds`, and once more at shutdown
(`close`, on SIGTERM); the drift window stays per process either way.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import ValidationError

from mlops_template.core.bundle import ModelRecord
from mlops_template.core.config import ExperimentConfig, MonitoringConfig, load_params
from mlops_template.core.errors import UserError
from mlops_template.monitoring.drift import prometheus_samples
from mlops_template.monitoring.experiment import CHALLENGER, CHAMPION, Experiment
from mlops_template.monitoring.feedback import FeedbackStore, StateUnavailable
from mlops_template.monitoring.metrics import METRICS
from mlops_template.monitoring.profile import load_profile, output_frame
from mlops_template.monitoring.security import RateLimiter
from mlops_template.monitoring.shared import (
    OPERATIONS,
    Shared,
    SharedExperiment,
    SharedFeedbackStore,
    SharedRateLimiter,
    flush_every,
)
from mlops_template.monitoring.window import DriftWindow
from mlops_template.serving.contract import Columns
from mlops_template.serving.predictor import Predictions

log = logging.getLogger("mlops_template.serving")
HELP = {name: help_text for name, _, help_text, _ in METRICS}
LABELS = {name: labels for name, _, _, labels in METRICS}
DRIFT_GAUGES = (
    "model_drift_window_rows",
    "model_feature_drift_psi",
    "model_feature_drift_p_value",
    "model_feature_drift_js",
    "model_feature_drift_kl",
    "model_feature_drift_wasserstein",
    "model_drift_detected",
    "model_prediction_drift_psi",
    "model_prediction_drift_p_value",
    "model_prediction_drift_js",
    "model_prediction_drift_detected",
)
LIVE_GAUGES = ("model_live_feedback", "model_live_accuracy", "model_live_roc_auc", "model_live_mae")
QUEUE_ROWS = 256  # predictions waiting to be filed (bounded: a read or the 256th row files them)
# with REDIS_URL the flush thread files a full queue; a request files it itself only when the thread is this far
# behind (Redis slow), so the queue stays bounded
BACKLOG_ROWS = 8 * QUEUE_ROWS


def load_monitoring(params_file: Path) -> MonitoringConfig:
    """`monitoring` of params.yaml (the image ships it); the defaults when the file is absent."""
    if not params_file.is_file():
        log.warning("%s not found: monitoring uses its default settings", params_file)
        return MonitoringConfig()
    return load_params(params_file).monitoring


def feedback_ids(request_id: str, rows: int, batch: bool) -> list[str]:
    """The feedback key of each row: the request id for one record, `<request_id>:<row>` in a batch (array)."""
    return [f"{request_id}:{i}" for i in range(rows)] if batch else [request_id]


@dataclass(slots=True)  # per request: a frozen dataclass takes 4x longer to build
class Queued:
    """One request's predictions by one variant, waiting to be filed."""

    created: float  # the feedback store's clock when predicted (its TTL counts from here)
    ids: list[str]
    columns: Columns
    predictions: Predictions
    variant: str
    served: bool


class Live:
    """Everything the service keeps to watch its model; thread-safe (the pieces lock themselves)."""

    def __init__(
        self,
        config: MonitoringConfig,
        champion_dir: Path,
        metadata: ModelRecord,
        challengers: Sequence[str] = (),
        experiment_mode: str | None = None,
        rate_limit: bool | None = None,
        redis_url: str | None = None,
    ) -> None:
        self.config = config
        self.shared = Shared(redis_url) if redis_url else None
        self.task, self.classes = metadata.task, metadata.classes
        self.features = metadata.feature_names
        self.window = DriftWindow(load_profile(champion_dir), config.drift.window_size)
        arms = (CHAMPION, *challengers)
        if self.shared:
            self.feedback: FeedbackStore = SharedFeedbackStore(self.shared, self.task, self.classes, config.feedback,
                                                               arms)  # fmt: skip
        else:
            self.feedback = FeedbackStore(self.task, self.classes, config.feedback)
        experiment = config.experiment
        if experiment_mode:
            try:
                experiment = ExperimentConfig.model_validate({**experiment.model_dump(), "mode": experiment_mode})
            except ValidationError:
                modes = ", ".join(ExperimentConfig.model_fields["mode"].annotation.__args__)
                problem = f"environment variable EXPERIMENT_MODE={experiment_mode!r}: expected one of {modes}"
                raise UserError(problem) from None
        if experiment.mode != "single" and not challengers:
            log.warning("experiment mode %s needs CHALLENGER_MODEL_DIR; serving the champion only", experiment.mode)
        if self.shared:
            self.experiment: Experiment = SharedExperiment(self.shared, experiment, challengers)
        else:
            self.experiment = Experiment(experiment, challengers)
        self.versions: dict[str, str] = {}  # arm -> model_version, for /experiment (set by the app)
        enabled = config.rate_limit.enabled if rate_limit is None else rate_limit
        limiter = SharedRateLimiter(self.shared, config.rate_limit) if self.shared else RateLimiter(config.rate_limit)
        self.limiter = limiter if enabled else None
        self._drift_lock = threading.Lock()  # one recomputation at a time (scrape and GET may coincide)
        self._queue: list[Queued] = []
        self._queued_rows = 0
        self._queue_lock = threading.Lock()
        self._filing_lock = threading.Lock()  # a read waits until rows taken off the queue are filed
        self._flusher = flush_every(config.feedback.flush_seconds, self.flush) if self.shared else None

    # ---- per request ---------------------------------------------------------------------------------------
    def record(self, request_id: str, batch: bool, columns: Columns, predictions: Predictions,
               variant: str, served: bool = True) -> None:  # fmt: skip
        """Queue a variant's predictions for feedback; served ones also go to the drift window."""
        rows = len(predictions.labels)
        queued = Queued(self.feedback.clock(), feedback_ids(request_id, rows, batch), columns, predictions,
                        variant, served)  # fmt: skip
        with self._queue_lock:
            self._queue.append(queued)
            self._queued_rows += rows
            queued_rows = self._queued_rows
        if queued_rows < QUEUE_ROWS:
            return
        if self._flusher is not None and queued_rows < BACKLOG_ROWS:
            self._flusher.wake()  # filing waits on Redis: off the event loop, in the flush thread
        else:
            self.flush()

    def flush(self) -> None:
        """File the queued predictions into the drift window and the feedback store (reads call this)."""
        with self._filing_lock:
            with self._queue_lock:
                queue, self._queue, self._queued_rows = self._queue, [], 0
            groups: dict[tuple[str, bool], list[Queued]] = {}
            for queued in queue:
                groups.setdefault((queued.variant, queued.served), []).append(queued)
            filed = []
            for (variant, served), group in groups.items():
                labels, proba = _stack([q.predictions for q in group])
                if served:  # what clients got goes to the drift window too
                    columns = Columns.concat([q.columns for q in group])  # two matrices, not an array per row
                    features = {name: columns[name] for name in self.window.profile["features"]}
                    self.window.add(features, output_frame(self.task, self.classes, labels, proba))
                ids = [i for q in group for i in q.ids]
                created = [q.created for q in group for _ in q.ids]
                filed.append((ids, labels, proba, variant, served, created))
            if self.shared:
                self._file_shared(filed)
            else:
                self.feedback.record_groups(filed)

    def _file_shared(self, filed: list[tuple[Any, ...]]) -> None:
        """Predictions (one pipeline) and request counts to Redis; dropped and counted while it is down."""
        try:
            if filed:
                self.feedback.record_groups(filed)
            if isinstance(self.experiment, SharedExperiment):
                self.experiment.sync()
        except StateUnavailable:
            pass  # /predict must keep answering: Shared counted it (model_shared_state_errors_total)

    def close(self) -> None:
        """At shutdown (SIGTERM, after the last request): stop the periodic flush and file what is still queued.

        With REDIS_URL the predictions of the last `flush_seconds` and the unsent request counts would otherwise be
        lost; a Redis that does not answer drops them (counted), the shutdown goes on.
        """
        if self._flusher is not None:
            self._flusher.stop()
        self.flush()

    def answer(self, request_id: str, actual: Any) -> Any:
        """The ground truth of a prediction: joined in the feedback store, counted by the experiment."""
        self.flush()
        outcome = self.feedback.feedback(request_id, actual)
        for variant, success in outcome.success.items():
            if variant in self.experiment.arms:
                self.experiment.observe(variant, success)
            else:  # with REDIS_URL, predicted by a process serving other challengers (a rollout): not this experiment
                log.warning("feedback %s: variant %r is not an arm of this experiment %s", request_id, variant,
                            self.experiment.arms)  # fmt: skip
        return outcome

    # ---- read side -------------------------------------------------------------------------------------------
    def drift(self) -> dict[str, Any]:
        """The cached live drift report (blocking: call it from a worker thread)."""
        self.flush()
        with self._drift_lock:
            return self.window.cached_drift(self.config.drift)

    def experiment_stats(self) -> dict[str, Any]:
        self.flush()
        stats = self.experiment.stats()
        for arm, counts in stats["variants"].items():
            counts["model_version"] = self.versions.get(arm)
        stats["live_quality"] = {scope: self.feedback.metrics(scope) for scope in ("served", *self.experiment.arms)}
        return stats


def _stack(predictions: Sequence[Predictions]) -> tuple[list[Any], np.ndarray | None]:
    """The labels and probabilities of several requests as those of one batch."""
    labels = [label for p in predictions for label in p.labels]
    if predictions[0].probabilities is None:
        return labels, None
    return labels, np.concatenate([p.probabilities for p in predictions])


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


class Collector:
    """Scrape-time gauges: drift (cached report), live quality, experiment; names from monitoring/metrics.py."""

    def __init__(self, live: Live) -> None:
        self.live = live

    def _family(self, name: str, kind: str = "gauge") -> Metric:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        return cls(name.removesuffix("_total") if kind == "counter" else name, HELP[name], labels=LABELS[name])

    def describe(self) -> Iterator[Metric]:
        """Names only (no computation at registration)."""
        for name in (*DRIFT_GAUGES, *LIVE_GAUGES, "model_live_accuracy_min", "model_experiment_success_rate",
                     "model_experiment_p_value"):  # fmt: skip
            yield self._family(name)
        yield self._family("model_experiment_requests_total", "counter")
        yield self._family("model_experiment_feedback_total", "counter")
        yield self._family("model_shared_state_errors_total", "counter")

    def _errors(self) -> Metric:
        """Shared-state (Redis) operations that failed, per operation; zeros without REDIS_URL."""
        family = self._family("model_shared_state_errors_total", "counter")
        errors = self.live.shared.errors if self.live.shared else dict.fromkeys(OPERATIONS, 0)
        for operation, n in errors.items():
            family.add_metric([operation], n)
        return family

    def collect(self) -> Iterator[Metric]:
        live = self.live
        live.flush()
        families = {name: self._family(name) for name in DRIFT_GAUGES}
        for name, labels, value in prometheus_samples(live.drift()):
            families[name].add_metric([labels[k] for k in LABELS[name]], value)
        yield from families.values()
        yield self._errors()
        try:
            quality, stats = live.feedback.metrics(), live.experiment.stats()
        except StateUnavailable:
            return  # no stale numbers: the live quality and experiment series are absent until Redis is back
        for name, key in zip(LIVE_GAUGES, ("feedback", "accuracy", "roc_auc", "mae"), strict=True):
            family = self._family(name)
            family.add_metric([], _nan(quality[key]))
            yield family
        minimum = self._family("model_live_accuracy_min")
        minimum.add_metric([], live.config.feedback.min_accuracy)
        yield minimum
        requests = self._family("model_experiment_requests_total", "counter")
        feedback = self._family("model_experiment_feedback_total", "counter")
        rate = self._family("model_experiment_success_rate")
        for variant, counts in stats["variants"].items():
            requests.add_metric([variant], counts["requests"])
            feedback.add_metric([variant], counts["feedback"])
            rate.add_metric([variant], _nan(counts["success_rate"]))
        p_value = self._family("model_experiment_p_value")
        for challenger, comparison in stats["comparisons"].items():
            p_value.add_metric([challenger], _nan(comparison["p_value"]))
        yield from (requests, feedback, rate, p_value)


def check_compatible(champion: ModelRecord, challenger: ModelRecord, directory: Path) -> None:
    """A challenger must answer the same requests with the same kind of output (task, classes, features)."""
    problems: Sequence[str] = [
        f"{key} {getattr(challenger, key)!r} differs from the champion's {getattr(champion, key)!r}"
        for key in ("task", "classes")
        if getattr(champion, key) != getattr(challenger, key)
    ]

    def shape(meta: ModelRecord) -> list[tuple[str, str]]:
        return [(f.name, f.type) for f in meta.features]

    if shape(champion) != shape(challenger):
        problems = [*problems, f"features {shape(challenger)} differ from the champion's {shape(champion)}"]
    if problems:
        raise UserError(
            f"CHALLENGER_MODEL_DIR={directory}: cannot serve it next to the champion: {'; '.join(problems)}"
        )


__all__ = ["CHALLENGER", "CHAMPION", "Collector", "Live", "check_compatible", "feedback_ids", "load_monitoring"]
