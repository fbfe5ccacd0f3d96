"""A real Prometheus with the shipped alert rules scrapes the monitoring gauges and fires the alerts.

The exporter here serves what the service serves, computed by the real DriftWindow (fed with the
sample generator's drifted rows) and FeedbackStore, through `drift.prometheus_samples`: it covers
the accuracy and prediction-drift alerts in seconds. The same rules against the real service:
test_serving_monitoring.py::test_prometheus_fires_feature_drift_from_the_real_service.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mlops_template.core.config import DriftConfig, FeedbackConfig
from mlops_template.monitoring.drift import prometheus_samples
from mlops_template.monitoring.feedback import FeedbackStore
from mlops_template.monitoring.window import DriftWindow
from tests.conftest import FakeHandler, loopback_server, require_tool
from tests.monitoring_support import fake_outputs, loan_frame, prometheus_with_shipped_rules, reference, wait_for

pytestmark = pytest.mark.integration


def exposition(window: DriftWindow, feedback: FeedbackStore, min_accuracy: float) -> str:
    """Prometheus text format of the drift and live-quality gauges."""
    lines = []
    for name, labels, value in prometheus_samples(window.drift(DriftConfig())):
        label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines.append(f"{name}{{{label_text}}} {'NaN' if math.isnan(value) else value}")
    live = feedback.metrics()
    lines.append(f"model_live_accuracy {live['accuracy'] if live['accuracy'] is not None else 'NaN'}")
    lines.append(f"model_live_accuracy_min {min_accuracy}")
    return "\n".join(lines) + "\n"


def test_prometheus_fires_drift_and_accuracy_alerts(tmp_path: Path) -> None:
    prometheus = require_tool("prometheus", "Debian package prometheus")
    profile = reference(rows=4000, seed=1)
    window = DriftWindow(profile, size=2000)
    drifted = loan_frame(2000, 21, drift=0.5)
    window.add({k: drifted[k].to_numpy(dtype=object) for k in drifted}, fake_outputs(drifted))
    feedback = FeedbackStore("binary", ["N", "Y"], FeedbackConfig(min_feedback=100))
    for i in range(200):  # 60% right: below the 0.68 minimum
        feedback.record(str(i), "Y", [0.3, 0.7])
        feedback.feedback(str(i), "Y" if i % 10 < 6 else "N")
    body = exposition(window, feedback, FeedbackConfig().min_accuracy).encode()

    class Exporter(FakeHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

    with loopback_server(Exporter) as url:
        target = url.removeprefix("http://")
        with prometheus_with_shipped_rules(prometheus, target, tmp_path) as alerts:
            firing = wait_for(
                alerts, lambda f: "LiveAccuracyLow" in f and "loan_amount" in f.get("FeatureDrift", set())
            )
    assert "loan_amount" in firing.get("FeatureDrift", set()), (
        firing,
        (tmp_path / "prometheus.log").read_text()[-2000:],
    )
    assert "married" not in firing["FeatureDrift"]  # an unshifted feature stays quiet
    assert "LiveAccuracyLow" in firing and "PredictionDrift" in firing
    assert "HighErrorRate" not in firing and "ServiceDown" not in firing
