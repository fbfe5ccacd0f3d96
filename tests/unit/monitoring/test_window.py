"""Live window: fixed memory under a long stream, same statistics as the batch computation, thread-safe."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest

from mlops_template.core.config import DriftConfig
from mlops_template.monitoring.drift import NOT_ENOUGH, compare, observe_frame, observe_outputs
from mlops_template.monitoring.window import DriftWindow
from tests.monitoring_support import DRIFT, fake_outputs, loan_frame, reference


@pytest.fixture(scope="module")
def profile():
    return reference(rows=4000, seed=1)


def columns(frame):
    return {name: frame[name].to_numpy(dtype=object) for name in frame.columns}


def statistics(report):
    return [
        (i["name"], i["psi"], i["statistic"], i["p_value"], i["drifted"])
        for i in report["features"] + report["outputs"]
    ]


def test_memory_stays_bounded_under_a_million_rows(profile) -> None:
    window = DriftWindow(profile, size=2000)
    frame = loan_frame(5000, 5)
    cols, outs = columns(frame), fake_outputs(frame)
    shapes = {k: (v.shape, v.dtype) for k, v in window._buffers.items()}
    nbytes = window.nbytes
    rng = np.random.default_rng(0)

    def stream(rows: int, largest: int) -> int:
        seen = 0
        while seen < rows:
            start, size = int(rng.integers(0, 3000)), int(rng.integers(1, largest + 1))
            window.add(
                {k: v[start : start + size] for k, v in cols.items()},
                {k: v[start : start + size] for k, v in outs.items()},
            )
            seen += size
        return seen

    seen = stream(20_000, 1)  # single-row requests
    seen += stream(900_000, 2000)  # batch requests
    tracemalloc.start()
    seen += stream(20_000, 1)
    before = tracemalloc.get_traced_memory()[0]
    seen += stream(60_000, 2000)
    growth = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert seen >= 1_000_000 and window.seen == seen and len(window) == 2000
    assert {k: (v.shape, v.dtype) for k, v in window._buffers.items()} == shapes
    assert window.nbytes == nbytes
    assert growth < 100_000  # nothing kept per row: 60,000 more rows would need megabytes


def test_window_statistics_equal_the_batch_computation(profile) -> None:
    frame = loan_frame(3000, 9, drift=0.3)
    outputs = fake_outputs(frame)
    window = DriftWindow(profile, size=1200)
    cols = columns(frame)
    for i in range(len(frame)):  # row by row, like the service does per request
        window.add({k: v[i : i + 1] for k, v in cols.items()}, {k: v[i : i + 1] for k, v in outputs.items()})
    last = frame.iloc[-1200:]
    batch = compare(profile, observe_frame(profile, last), observe_outputs(profile, fake_outputs(last)), DRIFT)
    live = window.drift(DRIFT)
    assert statistics(live) == statistics(batch)
    assert live["rows"] == 1200 and live["rows_seen"] == 3000


def test_a_batch_larger_than_the_window_keeps_its_last_rows(profile) -> None:
    frame = loan_frame(900, 4)
    window = DriftWindow(profile, size=300)
    window.add(columns(frame), fake_outputs(frame))
    last = frame.iloc[-300:]
    batch = compare(profile, observe_frame(profile, last), observe_outputs(profile, fake_outputs(last)), DRIFT)
    assert statistics(window.drift(DRIFT)) == statistics(batch)


def test_empty_and_small_windows_give_no_verdict(profile) -> None:
    window = DriftWindow(profile, size=100)
    assert window.drift(DRIFT)["status"] == NOT_ENOUGH
    window.add({k: [] for k in profile["features"]}, {k: [] for k in profile["outputs"]})
    assert len(window) == 0
    with pytest.raises(ValueError, match="lengths"):
        window.add({k: [1] for k in profile["features"]}, {k: [] for k in profile["outputs"]})
    with pytest.raises(ValueError, match="positive"):
        DriftWindow(profile, size=0)


def test_concurrent_writers_lose_no_rows_and_never_mix_rows(profile) -> None:
    frame = loan_frame(400, 6)
    cols, outs = columns(frame), fake_outputs(frame)
    window = DriftWindow(profile, size=500)

    def writer(offset: int) -> None:
        for j in range(400):
            i = (j + offset) % 400
            window.add({k: v[i : i + 1] for k, v in cols.items()}, {k: v[i : i + 1] for k, v in outs.items()})

    threads = [threading.Thread(target=writer, args=(100 * n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert window.seen == 1600 and len(window) == 500
    data = window.snapshot()
    # every slot holds one whole row: its income and its score come from the same input row
    income = frame["applicant_income"].to_numpy()
    for a, s in zip(data["features:applicant_income"], data["outputs:score"], strict=True):
        assert s in outs["score"][income == a]


def test_cached_drift_is_recomputed_only_after_refresh_seconds(profile) -> None:
    frame = loan_frame(300, 6)
    window = DriftWindow(profile, size=1000)
    config = DriftConfig(refresh_seconds=10, min_rows=1)
    first = window.cached_drift(config, now=100.0)
    window.add(columns(frame), fake_outputs(frame))
    assert window.cached_drift(config, now=105.0) is first
    assert window.cached_drift(config, now=110.0)["rows"] == 300
