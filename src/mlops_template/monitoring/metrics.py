"""The Prometheus metric names of the service, in one place (alert rules and dashboards use these).

(name, type, help, labels). The service creates its prometheus_client objects (serving/metrics.py) and its
scrape-time gauges (serving/live.py) from this table. Tests check that a created app's registry exposes exactly
this table (tests/unit/serving/test_metrics.py) and that deploy/monitoring (alerts, dashboard) uses only these.
"""

from __future__ import annotations

METRICS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    # traffic (the service)
    ("http_requests_total", "counter", "HTTP requests by route, method and status", ("route", "method", "status")),
    ("http_request_duration_seconds", "histogram", "HTTP request latency", ("route",)),
    ("model_predictions_total", "counter", "Predictions by variant and predicted class", ("variant", "class")),
    ("model_info", "gauge", "The loaded model bundles (value 1)", ("variant", "version", "verdict", "estimator")),
    ("model_input_out_of_range_total", "counter", "Numeric inputs outside the training range", ("feature",)),
    ("model_unknown_category_total", "counter", "Categorical inputs not seen in training", ("feature",)),
    # drift (window.DriftWindow -> drift.prometheus_samples)
    ("model_drift_window_rows", "gauge", "Rows in the live drift window", ()),
    ("model_feature_drift_psi", "gauge", "PSI of a feature in the live window vs the training profile", ("feature",)),
    ("model_feature_drift_p_value", "gauge", "KS (numeric) or chi-square (categorical) p-value", ("feature",)),
    ("model_feature_drift_js", "gauge", "Jensen-Shannon distance (base 2) of a feature vs the profile", ("feature",)),
    ("model_feature_drift_kl", "gauge", "KL divergence (current || reference) of a feature", ("feature",)),
    ("model_feature_drift_wasserstein", "gauge", "Wasserstein distance / training IQR (numeric)", ("feature",)),
    ("model_drift_detected", "gauge", "1 when a feature drifts by the params.yaml thresholds", ("feature",)),
    ("model_prediction_drift_psi", "gauge", "PSI of a model output (class, score, value)", ("output",)),
    ("model_prediction_drift_p_value", "gauge", "Test p-value of a model output", ("output",)),
    ("model_prediction_drift_js", "gauge", "Jensen-Shannon distance of a model output", ("output",)),
    ("model_prediction_drift_detected", "gauge", "1 when a model output drifts", ("output",)),
    # live quality (feedback.FeedbackStore.metrics; NaN until min_feedback)
    ("model_live_feedback", "gauge", "Feedback rows in the live quality window", ()),
    ("model_live_accuracy", "gauge", "Accuracy of served answers over the feedback window", ()),
    ("model_live_roc_auc", "gauge", "ROC-AUC of served answers over the feedback window (binary)", ()),
    ("model_live_mae", "gauge", "Mean absolute error over the feedback window (regression)", ()),
    ("model_live_accuracy_min", "gauge", "monitoring.feedback.min_accuracy from params.yaml", ()),
    # experiment (experiment.Experiment.stats)
    ("model_experiment_requests_total", "counter", "Requests answered per variant", ("variant",)),
    ("model_experiment_feedback_total", "counter", "Feedback received per variant", ("variant",)),
    ("model_experiment_success_rate", "gauge", "Success rate per variant (feedback)", ("variant",)),
    ("model_experiment_p_value", "gauge", "p-value of a challenger vs the champion", ("variant",)),
    # shared state (monitoring/shared.py; REDIS_URL)
    ("model_shared_state_errors_total", "counter", "Redis operations that failed (updates dropped)", ("operation",)),
    # security
    ("http_rate_limited_total", "counter", "Requests refused with 429 by the service's rate limiter", ()),
    ("http_admin_auth_failures_total", "counter", "Admin requests refused (401/403)", ("status",)),
    ("http_predict_auth_failures_total", "counter", "/predict requests refused (401/403)", ("status",)),
)
NAMES = frozenset(name for name, *_ in METRICS)
