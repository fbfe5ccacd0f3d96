"""Live monitoring state: predictions are queued per request and filed before anything reads them."""

from pathlib import Path

import pytest

from mlops_template.core.bundle import load_bundle, read_metadata
from mlops_template.core.config import MonitoringConfig
from mlops_template.monitoring.feedback import FeedbackError
from mlops_template.serving.contract import Contract
from mlops_template.serving.live import QUEUE_ROWS, Live
from mlops_template.serving.predictor import build_predictor
from tests.serving_helpers import build_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("live"))


@pytest.fixture
def live(bundle: Path) -> Live:
    return Live(MonitoringConfig(), bundle, read_metadata(bundle), challengers=(), rate_limit=False)


def predict(bundle: Path, rows: int = 1):
    loaded = load_bundle(bundle)
    contract = Contract(loaded.metadata)
    columns = contract.validate_records([contract.example] * rows)
    return columns, build_predictor(loaded).predict(columns)


def test_a_request_is_queued_and_filed_before_any_read(live: Live, bundle: Path):
    columns, predictions = predict(bundle)
    live.record("r1", False, columns, predictions, "champion")
    assert len(live.window) == 0 and len(live.feedback) == 0  # one append per request, nothing encoded yet
    assert live.drift()["rows_seen"] == 1  # a read files the queue first
    assert len(live.window) == 1 and len(live.feedback) == 1
    live.record("r2", False, columns, predictions, "champion")
    outcome = live.answer("r2", predictions.labels[0])  # feedback right after the prediction finds it
    assert outcome.success == {"champion": True}
    assert live.experiment_stats()["live_quality"]["served"]["feedback"] == 1


def test_the_queue_files_itself_at_queue_rows(live: Live, bundle: Path):
    columns, predictions = predict(bundle, rows=10)
    requests = -(-QUEUE_ROWS // 10)  # the request that brings the queue to QUEUE_ROWS rows or more
    for i in range(requests - 1):
        live.record(f"b{i}", True, columns, predictions, "champion")
    assert len(live.window) == 0
    live.record("last", True, columns, predictions, "champion")
    assert len(live.window) == requests * 10
    assert len(live.feedback) == requests * 10


def test_feedback_ttl_counts_from_the_prediction_not_the_filing(live: Live, bundle: Path):
    now = [1000.0]
    live.feedback.clock = lambda: now[0]
    columns, predictions = predict(bundle)
    live.record("old", False, columns, predictions, "champion")
    now[0] += live.config.feedback.ttl_seconds + 1  # filed only now, by the read below
    with pytest.raises(FeedbackError, match="expired"):
        live.answer("old", predictions.labels[0])


def test_shadow_predictions_join_the_served_ones(live: Live, bundle: Path):
    columns, predictions = predict(bundle)
    live.record("s", False, columns, predictions, "champion")
    live.record("s", False, columns, predictions, "challenger", served=False)
    outcome = live.answer("s", predictions.labels[0])
    assert outcome.served == "champion"
    assert outcome.success == {"champion": True, "challenger": True}
    assert live.drift()["rows_seen"] == 1  # only served predictions reach the drift window
    # this service has no arm `challenger` (with REDIS_URL another process may): its outcome is not counted, not a 500
    assert [v["feedback"] for v in live.experiment_stats()["variants"].values()] == [1]
