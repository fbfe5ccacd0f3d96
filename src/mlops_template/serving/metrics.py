"""Prometheus metrics of the service. The names are a contract with alert rules and dashboards.

Names, types, help texts and labels come from the one table, monitoring/metrics.py METRICS. Each app gets its
own registry (tests build many apps); monitoring code adds its metrics to `app.state.metrics.registry`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mlops_template.monitoring.metrics import METRICS

CONTENT_TYPE = CONTENT_TYPE_LATEST
# fine below 10 ms (the p99 goal), coarse above: a request taking seconds is an incident either way
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

KINDS = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
SPECS = {name: (kind, help_text, labels) for name, kind, help_text, labels in METRICS}

disable_created_metrics()  # *_created series double the scrape size and no rule uses them


def declare(name: str, registry: CollectorRegistry, **options: object) -> Any:
    """The prometheus_client metric `name` as METRICS declares it (a KeyError names an undeclared metric)."""
    kind, help_text, labels = SPECS[name]
    return KINDS[kind](name, help_text, labels, registry=registry, **options)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # prometheus_client's default collectors, which a private registry leaves out: process_cpu_seconds_total,
        # process_resident_memory_bytes, process_open_fds... (per replica CPU and memory) and python_info
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.requests: Counter = declare("http_requests_total", r)
        self.latency: Histogram = declare("http_request_duration_seconds", r, buckets=LATENCY_BUCKETS)
        self.predictions: Counter = declare("model_predictions_total", r)
        self.info: Gauge = declare("model_info", r)
        self.out_of_range: Counter = declare("model_input_out_of_range_total", r)
        self.unknown: Counter = declare("model_unknown_category_total", r)
        self.rate_limited: Counter = declare("http_rate_limited_total", r)
        self.admin_failures: Counter = declare("http_admin_auth_failures_total", r)
        self.predict_failures: Counter = declare("http_predict_auth_failures_total", r)
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
