"""Prometheus metrics of the service. The names are a contract with alert rules and dashboards.

Each app gets its own registry (tests build many apps); monitoring code adds its metrics to
`app.state.metrics.registry`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# fine below 10 ms (the p99 goal), coarse above: a request taking seconds is an incident either way
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

disable_created_metrics()  # *_created series double the scrape size and no rule uses them


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("http_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.predictions = Counter(
            "model_predictions_total", "Predicted rows by class", ["variant", "class"], registry=r
        )
        self.info = Gauge(
            "model_info", "The model served (value 1)", ["variant", "version", "verdict", "estimator"], registry=r
        )
        self.out_of_range = Counter(
            "model_input_out_of_range_total", "Values outside the training range", ["feature"], registry=r
        )
        self.unknown = Counter("model_unknown_category_total", "Categories unseen in training", ["feature"], registry=r)
        self.rate_limited = Counter(
            "http_rate_limited_total", "Requests refused with 429 by the service's rate limiter", registry=r
        )
        self.admin_failures = Counter(
            "http_admin_auth_failures_total", "Admin requests refused (401/403)", ["status"], registry=r
        )
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, method, str(status))
        child.inc()
        latency = self._latency_children.get(route)
        if latency is None:
            latency = self._latency_children[route] = self.latency.labels(route)
        latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
