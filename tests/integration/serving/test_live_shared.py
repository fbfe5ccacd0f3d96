"""serving/live.py with REDIS_URL (a real redis-server): who files the queue into Redis."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mlops_template.core.bundle import load_bundle, read_metadata
from mlops_template.core.config import MonitoringConfig
from mlops_template.serving.contract import Contract
from mlops_template.serving.live import BACKLOG_ROWS, QUEUE_ROWS, Live
from mlops_template.serving.predictor import build_predictor
from tests.serving_helpers import build_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("live-shared"))


@pytest.fixture
def filers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread of every Live.flush call."""
    names: list[str] = []
    flush = Live.flush

    def spy(self: Live) -> None:
        names.append(threading.current_thread().name)
        flush(self)

    monkeypatch.setattr(Live, "flush", spy)
    return names


def predict(bundle: Path, rows: int):
    loaded = load_bundle(bundle)
    contract = Contract(loaded.metadata)
    columns = contract.validate_records([contract.example] * rows)
    return columns, build_predictor(loaded).predict(columns)


def test_a_full_queue_is_filed_by_the_flush_thread_not_by_the_request(bundle: Path, redis_url: str,
                                                                       filers: list[str]) -> None:  # fmt: skip
    live = Live(MonitoringConfig(), bundle, read_metadata(bundle), rate_limit=False, redis_url=redis_url)
    try:
        columns, predictions = predict(bundle, QUEUE_ROWS)
        live.record("full", True, columns, predictions, "champion")  # the queue is full with this request
        deadline = time.monotonic() + 10
        while len(live.feedback) < QUEUE_ROWS and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(live.feedback) == QUEUE_ROWS  # in Redis
        assert filers and set(filers) == {"shared-state-flush"}  # the request (event loop) never waited for Redis
    finally:
        live.close()


def test_a_request_files_itself_when_the_flush_thread_is_behind(bundle: Path, redis_url: str,
                                                                 filers: list[str]) -> None:  # fmt: skip
    live = Live(MonitoringConfig(), bundle, read_metadata(bundle), rate_limit=False, redis_url=redis_url)
    live._flusher.stop()  # a thread that never catches up: the queue must stay bounded anyway
    columns, predictions = predict(bundle, QUEUE_ROWS)
    for i in range(BACKLOG_ROWS // QUEUE_ROWS - 1):
        live.record(f"b{i}", True, columns, predictions, "champion")
    assert len(live.feedback) == 0 and filers == []  # queued, waiting for the thread
    live.record("over", True, columns, predictions, "champion")
    assert filers == [threading.current_thread().name]
    assert len(live.feedback) == BACKLOG_ROWS
